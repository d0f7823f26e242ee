#include "dist/gradient_reducer.hpp"

#include <algorithm>

#include "nngraph/error.hpp"

namespace nngraph::dist {

GradientReducer::GradientReducer(Communicator& comm, std::vector<Tensor>& gradients, std::size_t bucket_bytes,
                                 Overlap overlap)
    : comm_(comm),
      gradients_(gradients),
      bucket_of_(gradients.size()),
      offset_of_(gradients.size()),
      overlap_(overlap),
      weight_scale_(gradients.size(), 1.0f) {
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

void GradientReducer::begin(std::function<double()> local_weight) {
    local_weight_ = std::move(local_weight);
    weighed_ = false;
    for (Bucket& b : buckets_) b.pending = b.weights.size();
    next_launch_ = 0;
    next_done_ = 0;
}

void GradientReducer::weigh() {
    weight_ = static_cast<float>(local_weight_());
    total_weight_[0] = weight_;
    weighed_ = true;
    if (overlap_ == Overlap::DuringBackward)
        total_request_ = comm_.allreduce_sum_async(std::span<float>(total_weight_));
}

void GradientReducer::sum_over_ranks(std::size_t weight, bool whole_on_every_rank) {
    // Every rank weighs the same whole batch, so the weighted average is the mean over the ranks:
    // a part scaled by the ranks' count sums, and equal whole copies average to themselves.
    weight_scale_.at(weight) = whole_on_every_rank ? 1.0f : static_cast<float>(comm_.size());
}

void GradientReducer::ready(std::size_t weight) {
    if (!weighed_) weigh();
    const Tensor& g = gradients_[weight];
    if (g.empty()) return;
    Bucket& b = buckets_[bucket_of_[weight]];
    const float* from = g.data<float>();
    float* to = b.values.data() + offset_of_[weight];
    const float scale = weight_ * weight_scale_[weight];
    for (std::int64_t i = 0; i < g.numel(); ++i) to[i] = from[i] * scale;
    --b.pending;
    if (overlap_ == Overlap::AfterBackward) return;
    launch_complete_buckets();
    poll();
}

void GradientReducer::launch_complete_buckets() {
    // Collectives must start in the same order on every rank: a bucket waits for those before it.
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
        if (next_launch_ == 0) first_launch_ = Clock::now();
        Bucket& b = buckets_[next_launch_++];
        b.request = comm_.allreduce_sum_async(std::span<float>(b.values));
    }
}

void GradientReducer::poll() {
    while (next_done_ < next_launch_ && buckets_[next_done_].request->test()) {
        last_done_ = Clock::now();
        ++next_done_;
    }
}

void GradientReducer::finish() {
    const Clock::time_point backward_done = Clock::now();
    if (!weighed_) weigh();  // a model without gradients: the ranks still sum their weights alike
    if (overlap_ == Overlap::AfterBackward) {
        first_launch_ = backward_done;
        comm_.allreduce_sum(std::span<float>(total_weight_));
        while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0)
            comm_.allreduce_sum(std::span<float>(buckets_[next_launch_++].values));
        next_done_ = next_launch_;
    }
    if (next_launch_ < buckets_.size()) throw RunError("a gradient was never marked ready before the average");
    const bool waits = next_done_ < buckets_.size();
    for (; next_done_ < buckets_.size(); ++next_done_) buckets_[next_done_].request->wait();
    if (total_request_) total_request_->wait();
    const Clock::time_point averaged = Clock::now();
    const Clock::time_point last_done = waits || overlap_ == Overlap::AfterBackward ? averaged : last_done_;
    ++time_.steps;
    time_.seconds += std::chrono::duration<double>(last_done - first_launch_).count();
    time_.exposed_seconds += std::chrono::duration<double>(averaged - backward_done).count();
    total_request_.reset();
    // No rank counted anything (every position masked): every gradient was zero, and stays so.
    const float scale = total_weight_[0] > 0.0f ? 1.0f / total_weight_[0] : 0.0f;
    for (Bucket& b : buckets_) {
        b.request.reset();
        for (std::size_t w : b.weights) {
            Tensor& g = gradients_[w];
            const float* from = b.values.data() + offset_of_[w];
            float* to = g.data<float>();
            for (std::int64_t i = 0; i < g.numel(); ++i) to[i] = from[i] * scale;
        }
    }
}

}  // namespace nngraph::dist
