// The gradient average of data-parallel training, in buckets as PyTorch DDP's Reducer does: the
// gradients are packed, in reverse weight order (the order backward produces them), into buckets of
// a bounded size; a bucket's non-blocking allreduce starts as soon as all its gradients are ready,
// so communication can run while backward still computes earlier layers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/communicator.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph::dist {

// PyTorch DDP's default bucket size.
constexpr std::size_t kDefaultBucketBytes = std::size_t(25) << 20;

class GradientReducer {
public:
    // `gradients` (empty tensors are skipped) must outlive the reducer and keep their buffers.
    GradientReducer(Communicator& comm, std::vector<Tensor>& gradients, std::size_t bucket_bytes = kDefaultBucketBytes);

    // Starts a step in which this rank's gradients are the mean over `local_rows` of `global_rows`.
    void begin(std::int64_t local_rows, std::int64_t global_rows);
    // Gradient `weight` is final for this step: it goes into its bucket, and every bucket now
    // complete starts its allreduce, in bucket order on every rank.
    void ready(std::size_t weight);
    // Every gradient must have been ready. Waits for the buckets and leaves in each gradient the
    // mean over all ranks' rows: the single-process gradient of the global batch.
    void finish();

    std::size_t buckets() const { return buckets_.size(); }

private:
    struct Bucket {
        std::vector<std::size_t> weights;  // in packing order
        std::vector<float> values;
        std::size_t pending = 0;  // gradients not yet ready this step
        std::unique_ptr<Request> request;
    };
    void launch_complete_buckets();

    Communicator& comm_;
    std::vector<Tensor>& gradients_;
    std::vector<Bucket> buckets_;
    std::vector<std::size_t> bucket_of_, offset_of_;  // by weight
    std::size_t next_launch_ = 0;
    float weight_ = 1.0f;  // this rank's share of the global batch
};

}  // namespace nngraph::dist
