#include "dist/gradient_reducer.hpp"

#include <algorithm>

#include "nngraph/error.hpp"

namespace nngraph::dist {

GradientReducer::GradientReducer(Communicator& comm, std::vector<Tensor>& gradients, std::size_t bucket_bytes)
    : comm_(comm), gradients_(gradients), bucket_of_(gradients.size()), offset_of_(gradients.size()) {
    if (bucket_bytes == 0) throw InputError("the gradient bucket size must be positive");
    const std::size_t capacity = std::max<std::size_t>(bucket_bytes / sizeof(float), 1);
    for (std::size_t w = gradients.size(); w-- > 0;) {
        const Tensor& g = gradients[w];
        if (g.empty()) continue;
        if (g.dtype() != DType::F32)
            throw RunError("gradients are averaged as F32, but weight " + std::to_string(w) + "'s is not");
        const auto count = static_cast<std::size_t>(g.numel());
        // A gradient larger than a bucket gets a bucket of its own.
        if (buckets_.empty() || (!buckets_.back().values.empty() && buckets_.back().values.size() + count > capacity))
            buckets_.emplace_back();
        Bucket& b = buckets_.back();
        bucket_of_[w] = buckets_.size() - 1;
        offset_of_[w] = b.values.size();
        b.weights.push_back(w);
        b.values.resize(b.values.size() + count);
    }
}

void GradientReducer::begin(std::int64_t local_rows, std::int64_t global_rows) {
    weight_ = static_cast<float>(double(local_rows) / double(global_rows));
    for (Bucket& b : buckets_) b.pending = b.weights.size();
    next_launch_ = 0;
}

void GradientReducer::ready(std::size_t weight) {
    const Tensor& g = gradients_[weight];
    if (g.empty()) return;
    Bucket& b = buckets_[bucket_of_[weight]];
    const float* from = g.data<float>();
    float* to = b.values.data() + offset_of_[weight];
    for (std::int64_t i = 0; i < g.numel(); ++i) to[i] = from[i] * weight_;
    --b.pending;
    launch_complete_buckets();
}

void GradientReducer::launch_complete_buckets() {
    // Collectives must start in the same order on every rank: a bucket waits for those before it.
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
        Bucket& b = buckets_[next_launch_++];
        b.request = comm_.allreduce_sum_async(std::span<float>(b.values));
    }
}

void GradientReducer::finish() {
    if (next_launch_ < buckets_.size()) throw RunError("a gradient was never marked ready before the average");
    for (Bucket& b : buckets_) {
        b.request->wait();
        b.request.reset();
        for (std::size_t w : b.weights) {
            Tensor& g = gradients_[w];
            std::copy_n(b.values.data() + offset_of_[w], g.numel(), g.data<float>());
        }
    }
}

}  // namespace nngraph::dist
