// The gradient average of data-parallel training, in buckets as PyTorch DDP's Reducer does: the
// gradients are packed, in reverse weight order (the order backward produces them), into buckets of
// a bounded size; a bucket's non-blocking allreduce starts as soon as all its gradients are ready,
// so communication can run while backward still computes earlier layers. Open MPI moves a
// non-blocking reduction on only inside MPI calls, so every ready() also polls the buckets in flight.
// Each rank's gradient is the mean over what its loss averaged over (its rows, or its real tokens
// under a mask), so each goes in weighed by that count and the sum is divided by the ranks' total:
// the mean over the global batch, however unevenly the ranks' tokens fall.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dist/communicator.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph::dist {

// PyTorch DDP's default bucket size.
constexpr std::size_t kDefaultBucketBytes = std::size_t(25) << 20;

// When the buckets go out: during backward, as each fills (the default), or all after backward in
// blocking allreduces, the baseline that shows what the overlap buys.
enum class Overlap { DuringBackward, AfterBackward };

// The averages' time, summed over steps. `seconds` runs from a step's first bucket sent to its last
// one seen done; `exposed_seconds` is the part of it this rank waited for after backward, and the
// rest ran hidden behind backward.
struct AveragingTime {
    std::int64_t steps = 0;
    double seconds = 0.0;
    double exposed_seconds = 0.0;
};

class GradientReducer {
public:
    // `gradients` (empty tensors are skipped) must outlive the reducer and keep their buffers.
    GradientReducer(Communicator& comm, std::vector<Tensor>& gradients, std::size_t bucket_bytes = kDefaultBucketBytes,
                    Overlap overlap = Overlap::DuringBackward);

    // Starts a step. `local_weight` is asked once, at the step's first ready gradient (the loss has
    // run by then): what this rank's gradients are the mean over, 0 for a rank without rows.
    void begin(std::function<double()> local_weight);
    // Sequence parallelism: every rank holds the whole batch, and gradient `weight` is either this
    // rank's part of a sum over the steps (summed over the ranks: the default there) or, with
    // `whole_on_every_rank`, the same whole gradient on every rank (kept as it is, not summed).
    void sum_over_ranks(std::size_t weight, bool whole_on_every_rank);
    // Gradient `weight` is final for this step: it goes into its bucket, and every bucket now
    // complete starts its allreduce, in bucket order on every rank.
    void ready(std::size_t weight);
    // Every gradient must have been ready. Waits for the buckets and leaves in each gradient the
    // mean over all ranks' rows or tokens: the single-process gradient of the global batch.
    void finish();

    std::size_t buckets() const { return buckets_.size(); }
    const AveragingTime& time() const { return time_; }

private:
    using Clock = std::chrono::steady_clock;
    struct Bucket {
        std::vector<std::size_t> weights;  // in packing order
        std::vector<float> values;
        std::size_t pending = 0;  // gradients not yet ready this step
        std::unique_ptr<Request> request;
    };
    // Takes this rank's weight and starts summing it over the ranks, before any bucket goes out.
    void weigh();
    void launch_complete_buckets();
    // Tests the buckets in flight, in order, noting when the last of them is done.
    void poll();

    Communicator& comm_;
    std::vector<Tensor>& gradients_;
    std::vector<Bucket> buckets_;
    std::vector<std::size_t> bucket_of_, offset_of_;  // by weight
    Overlap overlap_;
    std::size_t next_launch_ = 0;
    std::size_t next_done_ = 0;  // buckets before it are known done this step
    Clock::time_point first_launch_, last_done_;
    AveragingTime time_;
    std::function<double()> local_weight_;
    bool weighed_ = false;
    float weight_ = 0.0f;  // this rank's, by which its gradients go into the buckets
    // The ranks' weights summed. Float is exact for counts up to 2^24 a step, and beyond only rounds.
    std::array<float, 1> total_weight_{};
    std::unique_ptr<Request> total_request_;
    // By weight: 1, or the ranks' count for a gradient that is one rank's part of a sum (sequence
    // parallelism), since the ranks' gradients are averaged by their weights.
    std::vector<float> weight_scale_;
};

}  // namespace nngraph::dist
