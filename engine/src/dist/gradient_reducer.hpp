// The gradient average of data-parallel training, in buckets as PyTorch DDP's Reducer does: the
// gradients are packed, in reverse weight order (the order backward produces them), into buckets of
// a bounded size; a bucket's non-blocking allreduce starts as soon as all its gradients are ready,
// so communication can run while backward still computes earlier layers. Open MPI moves a
// non-blocking reduction on only inside MPI calls, so every ready() also polls the buckets in flight.
#pragma once

#include <chrono>
#include <cstdint>
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

    // Starts a step in which this rank's gradients are the mean over `local_rows` of `global_rows`.
    void begin(std::int64_t local_rows, std::int64_t global_rows);
    // Sequence parallelism: every rank holds the whole batch, and gradient `weight` is either this
    // rank's part of a sum over the steps (summed over the ranks: the default there) or, with
    // `whole_on_every_rank`, the same whole gradient on every rank (kept as it is, not summed).
    void sum_over_ranks(std::size_t weight, bool whole_on_every_rank);
    // Gradient `weight` is final for this step: it goes into its bucket, and every bucket now
    // complete starts its allreduce, in bucket order on every rank.
    void ready(std::size_t weight);
    // Every gradient must have been ready. Waits for the buckets and leaves in each gradient the
    // mean over all ranks' rows: the single-process gradient of the global batch.
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
    float weight_ = 1.0f;              // this rank's share of the global batch
    std::vector<float> weight_scale_;  // by weight: 1, or 1 / ranks for a gradient whole on every rank
};

}  // namespace nngraph::dist
