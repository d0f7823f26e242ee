// Keras's GlobalAveragePooling1D and GlobalMaxPooling1D: a mean or a max over the steps axis.
//
// On one rank's share of the steps (sequence parallelism, channels_last) each rank reduces its own
// steps and the ranks combine the partial results through the SDK's communicator: the average sums
// and unmasked counts (allreduce), the max its partial maxima passed around the ring of ranks, and
// its backward the count of steps that tie for the max over all ranks.
//
// Hand loops rather than oneDNN: the average needs Keras's masked mean (the sum over unmasked
// steps over their count), which oneDNN's pooling cannot weight, and oneDNN's reduction has no
// backward; both are one pass over memory, which a loop the compiler vectorises does as fast.
#include <limits>
#include <span>

#include "pooling.hpp"

namespace nngraph_pooling {
namespace {

using nng::Dims;
using nng::OpError;

// What the two global poolings share: their attributes, parsed once, and their output.
struct GlobalPooling1D {
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        kDataFormatAttr, nng::bool_attr("keepdims", "false", "keep the steps axis with length 1")};

    explicit GlobalPooling1D(const nng::Attrs& attrs)
        : channels_first_(parse_channels_first(attrs)), keepdims_(attrs.get_bool("keepdims")) {}

    // Checks the input and adds the output: (batch, features), or with keepdims the input's
    // shape with 1 step. No output mask (Keras's compute_mask gives None or is not defined).
    Layout add_output(nng::InferContext& ctx) const {
        const Layout in = infer_input(ctx, channels_first_);
        ctx.add_output(NNG_F32, keepdims_ ? in.dims(1) : Dims{in.batch, in.features});
        if (ctx.counting_work()) {
            // One add (or comparison) a value, every input read; backward writes every input's gradient.
            const nng::Work pass = nng::elementwise_work(in.batch * in.steps * in.features, 1, 1);
            ctx.count_work(pass, pass);
        }
        // Shares of channels_first inputs would be cut along their features, not their steps.
        if (!channels_first_) ctx.set_sequence_role(NNG_SEQUENCE_COMBINES);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        return in;
    }

    bool channels_first_, keepdims_;
};

// The mask of a call, checked against the input: (batch, steps), or null when none arrives.
const std::uint8_t* steps_mask(const nng::Exec& exec, const Layout& in) {
    const nng::TensorRef mask = exec.input_mask(0);
    if (!mask) return nullptr;
    if (mask.rank() != 2 || mask.dim(0) != in.batch || mask.dim(1) != in.steps) {
        throw OpError("the input's mask has shape " + nng::dims_string(mask.dims()) + " but the input " +
                      nng::dims_string(exec.input(0).dims()) +
                      " needs (batch, steps) = " + nng::dims_string(Dims{in.batch, in.steps}));
    }
    return mask.u8();
}

// out[f] = init combined with term(x[s, f], f) for every row s of x (rows x width) that the mask
// keeps (every row without one). Four rows per pass over `out`: one row per pass would chain each
// row through a store and a load of `out`.
template <class Term, class Combine>
void reduce_rows(const float* x, std::int64_t rows, std::int64_t width, const std::uint8_t* mask, float init, Term term,
                 Combine combine, float* out) {
    std::fill(out, out + width, init);
    const float* group[4];
    int n = 0;
    const auto flush = [&] {
        if (n == 4) {
            const float *a = group[0], *b = group[1], *c = group[2], *d = group[3];
#pragma omp simd
            for (std::int64_t f = 0; f < width; ++f) {
                out[f] = combine(out[f],
                                 combine(combine(term(a[f], f), term(b[f], f)), combine(term(c[f], f), term(d[f], f))));
            }
        } else {
            for (int i = 0; i < n; ++i) {
                const float* r = group[i];
#pragma omp simd
                for (std::int64_t f = 0; f < width; ++f) out[f] = combine(out[f], term(r[f], f));
            }
        }
        n = 0;
    };
    for (std::int64_t s = 0; s < rows; ++s) {
        if (mask && !mask[s]) continue;
        group[n++] = x + s * width;
        if (n == 4) flush();
    }
    flush();
}
constexpr auto kValue = [](float v, std::int64_t) { return v; };
constexpr auto kSum = [](float a, float b) { return a + b; };
constexpr auto kMax = [](float a, float b) { return std::max(a, b); };

// Keras's weights of step s in sample b: 1 / steps, or with a mask, mask / (unmasked steps), so
// that an all-masked sample has all weights 0 (and, in forward, the mean 0 / 0 as Keras has it).
std::int64_t kept_steps(const std::uint8_t* mask, const Layout& in, std::int64_t b) {
    if (!mask) return in.steps;
    std::int64_t kept = 0;
    for (std::int64_t s = 0; s < in.steps; ++s) kept += mask[b * in.steps + s] != 0;
    return kept;
}

// counts[b] = the unmasked steps of sample b over the whole sequence: this call's, plus the other
// ranks' on a share of the steps.
void count_kept_steps(const nng::Exec& exec, const std::uint8_t* mask, const Layout& in, float* counts) {
    for (std::int64_t b = 0; b < in.batch; ++b) counts[b] = static_cast<float>(kept_steps(mask, in, b));
    if (exec.sequence_shard()) exec.comm().allreduce_sum({counts, static_cast<std::size_t>(in.batch)});
}

// ---- GlobalAveragePooling1D ------------------------------------------------------------------------

struct GlobalAveragePooling1D : GlobalPooling1D {
    static constexpr const char* kName = "GlobalAveragePooling1D";
    static constexpr const char* kDoc = "Mean over the steps axis; with a mask, over the unmasked steps only";

    using GlobalPooling1D::GlobalPooling1D;

    void infer(nng::InferContext& ctx) {
        const Layout in = add_output(ctx);
        counts_ = ctx.buffer<float>("kept steps", in.batch, nng::Lifetime::PerCall);
        ctx.set_backward_needs(0);  // backward reads only the mask
    }

    void forward(nng::Exec& exec) {
        const nng::TensorRef x_ref = exec.input(0);
        const Layout in = Layout::of(x_ref, channels_first_);
        const std::uint8_t* mask = steps_mask(exec, in);
        const float* x = x_ref.f32();
        float* y = exec.output(0).f32();
        const std::int64_t S = in.steps, F = in.features;
        if (!channels_first_) {
            float* counts = exec.buffer(counts_);
            count_kept_steps(exec, mask, in, counts);
            const int threads = exec.threads_for(x_ref.numel(), kParallelElements);
            nng::parallel_for(in.batch, threads, [&](std::int64_t b) {
                reduce_rows(x + b * S * F, S, F, mask ? mask + b * S : nullptr, 0.0f, kValue, kSum, y + b * F);
            });
            if (exec.sequence_shard()) exec.comm().allreduce_sum({y, static_cast<std::size_t>(in.batch * F)});
            nng::parallel_for(in.batch, threads, [&](std::int64_t b) {
                for (std::int64_t f = 0; f < F; ++f) y[b * F + f] /= counts[b];
            });
        } else {
            nng::parallel_for(in.batch, exec.threads_for(x_ref.numel(), kParallelElements), [&](std::int64_t b) {
                const float count = static_cast<float>(kept_steps(mask, in, b));
                const std::uint8_t* m = mask ? mask + b * S : nullptr;
                for (std::int64_t f = 0; f < F; ++f) {
                    const float* row = x + (b * F + f) * S;
                    float sum = 0.0f;
                    if (m) {
#pragma omp simd reduction(+ : sum)
                        for (std::int64_t s = 0; s < S; ++s) sum += m[s] ? row[s] : 0.0f;
                    } else {
#pragma omp simd reduction(+ : sum)
                        for (std::int64_t s = 0; s < S; ++s) sum += row[s];
                    }
                    y[b * F + f] = sum / count;
                }
            });
        }
    }

    // dx[b, s, :] = weight(b, s) * dy[b, :].
    void backward(nng::Exec& exec) {
        nng::TensorRef dx_ref, dy_ref;
        if (!gradients_to_compute(exec, dx_ref, dy_ref)) return;
        const Layout in = Layout::of(dx_ref, channels_first_);
        const std::uint8_t* mask = steps_mask(exec, in);
        const float* dy = dy_ref.f32();
        float* dx = dx_ref.f32();
        const std::int64_t S = in.steps, F = in.features;
        float* counts = exec.buffer(counts_);
        count_kept_steps(exec, mask, in, counts);
        nng::parallel_for(in.batch, exec.threads_for(dx_ref.numel(), kParallelElements), [&](std::int64_t b) {
            const float share = counts[b] > 0.0f ? 1.0f / counts[b] : 0.0f;
            const float* g = dy + b * F;
            if (!channels_first_) {
                for (std::int64_t s = 0; s < S; ++s) {
                    const float w = mask && !mask[b * S + s] ? 0.0f : share;
                    float* row = dx + (b * S + s) * F;
#pragma omp simd
                    for (std::int64_t f = 0; f < F; ++f) row[f] = w * g[f];
                }
            } else {
                const std::uint8_t* m = mask ? mask + b * S : nullptr;
                for (std::int64_t f = 0; f < F; ++f) {
                    float* row = dx + (b * F + f) * S;
                    const float v = share * g[f];
#pragma omp simd
                    for (std::int64_t s = 0; s < S; ++s) row[s] = m && !m[s] ? 0.0f : v;
                }
            }
        });
    }

    nng::Buffer<float> counts_;
};

// ---- GlobalMaxPooling1D ------------------------------------------------------------------------------

// Keras's GlobalMaxPooling1D does not support masking: a mask that arrives is neither used nor
// passed on. Backward splits the gradient evenly between steps that tie for the max, as the
// gradient of Keras's ops.max does (TensorFlow and JAX alike).
struct GlobalMaxPooling1D : GlobalPooling1D {
    static constexpr const char* kName = "GlobalMaxPooling1D";
    static constexpr const char* kDoc = "Max over the steps axis";

    using GlobalPooling1D::GlobalPooling1D;

    void infer(nng::InferContext& ctx) {
        const Layout in = add_output(ctx);
        // channels_last counts ties per (sample, feature) while it walks the steps.
        ties_ = ctx.buffer<float>("ties", channels_first_ ? 0 : in.batch * in.features, nng::Lifetime::Backward);
        // A share's maxima travel around the ring of ranks through these two.
        const std::int64_t maxima = channels_first_ ? 0 : in.batch * in.features;
        ring_out_ = ctx.buffer<float>("ring send", maxima, nng::Lifetime::PerCall);
        ring_in_ = ctx.buffer<float>("ring receive", maxima, nng::Lifetime::PerCall);
        ctx.set_backward_needs(NNG_NEEDS_INPUT(0) | NNG_NEEDS_OUTPUT(0));
    }

    void forward(nng::Exec& exec) {
        const nng::TensorRef x_ref = exec.input(0);
        const Layout in = Layout::of(x_ref, channels_first_);
        const float* x = x_ref.f32();
        float* y = exec.output(0).f32();
        const std::int64_t S = in.steps, F = in.features;
        constexpr float kLowest = -std::numeric_limits<float>::infinity();
        if (!channels_first_) {
            nng::parallel_for(in.batch, exec.threads_for(x_ref.numel(), kParallelElements), [&](std::int64_t b) {
                reduce_rows(x + b * S * F, S, F, nullptr, kLowest, kValue, kMax, y + b * F);
            });
            if (exec.sequence_shard()) combine_maxima(exec, y, in.batch * F);
        } else {
            nng::parallel_for(in.batch * F, exec.threads_for(x_ref.numel(), kParallelElements), [&](std::int64_t r) {
                const float* row = x + r * S;
                float best = kLowest;
#pragma omp simd reduction(max : best)
                for (std::int64_t s = 0; s < S; ++s) best = std::max(best, row[s]);
                y[r] = best;
            });
        }
    }

    // dx = dy / (number of steps equal to the max) where x equals the max, else 0.
    void backward(nng::Exec& exec) {
        nng::TensorRef dx_ref, dy_ref;
        if (!gradients_to_compute(exec, dx_ref, dy_ref)) return;
        const Layout in = Layout::of(dx_ref, channels_first_);
        const float *x = exec.input(0).f32(), *y = exec.output(0).f32(), *dy = dy_ref.f32();
        float* dx = dx_ref.f32();
        const std::int64_t S = in.steps, F = in.features;
        if (!channels_first_) {
            float* shares = exec.buffer(ties_);  // ties, then each tie's share of dy
            const int threads = exec.threads_for(dx_ref.numel(), kParallelElements);
            nng::parallel_for(in.batch, threads, [&](std::int64_t b) {
                const float* top = y + b * F;
                const auto tie = [top](float v, std::int64_t f) { return v == top[f] ? 1.0f : 0.0f; };
                reduce_rows(x + b * S * F, S, F, nullptr, 0.0f, tie, kSum, shares + b * F);
            });
            // The max may tie on other ranks' steps too: dy is split over them all.
            if (exec.sequence_shard()) exec.comm().allreduce_sum({shares, static_cast<std::size_t>(in.batch * F)});
            nng::parallel_for(in.batch, threads, [&](std::int64_t b) {
                const float* top = y + b * F;
                float* count = shares + b * F;
                for (std::int64_t f = 0; f < F; ++f) count[f] = dy[b * F + f] / count[f];
                for (std::int64_t s = 0; s < S; ++s) {
                    const float* row = x + (b * S + s) * F;
                    float* out = dx + (b * S + s) * F;
                    // An indicator times the share, as TensorFlow's gradient of reduce_max writes it
                    // (and a product vectorises where a select of a load does not).
#pragma omp simd
                    for (std::int64_t f = 0; f < F; ++f) out[f] = (row[f] == top[f] ? 1.0f : 0.0f) * count[f];
                }
            });
        } else {
            nng::parallel_for(in.batch * F, exec.threads_for(dx_ref.numel(), kParallelElements), [&](std::int64_t r) {
                const float* row = x + r * S;
                float* out = dx + r * S;
                const float top = y[r];
                float ties = 0.0f;
#pragma omp simd reduction(+ : ties)
                for (std::int64_t s = 0; s < S; ++s) ties += row[s] == top ? 1.0f : 0.0f;
                const float g = dy[r] / ties;
#pragma omp simd
                for (std::int64_t s = 0; s < S; ++s) out[s] = (row[s] == top ? 1.0f : 0.0f) * g;
            });
        }
    }

    // y = the max of every rank's partial maxima y: each rank's own passed once around the ring.
    void combine_maxima(const nng::Exec& exec, float* y, std::int64_t count) {
        const nng::Comm comm = exec.comm();
        const int size = comm.size(), rank = comm.rank();
        std::span<float> out(exec.buffer(ring_out_), static_cast<std::size_t>(count));
        std::span<float> in(exec.buffer(ring_in_), static_cast<std::size_t>(count));
        std::copy_n(y, count, out.begin());
        for (int hop = 1; hop < size; ++hop) {
            comm.sendrecv(out, (rank + 1) % size, in, (rank + size - 1) % size, kRingTag);
            for (std::int64_t i = 0; i < count; ++i) y[i] = std::max(y[i], in[static_cast<std::size_t>(i)]);
            std::swap(out, in);
        }
    }
    static constexpr int kRingTag = 7301;

    nng::Buffer<float> ties_, ring_out_, ring_in_;
};

}  // namespace

const nng_op_def* global_average_pooling_op() { return nng::op<GlobalAveragePooling1D>(); }
const nng_op_def* global_max_pooling_op() { return nng::op<GlobalMaxPooling1D>(); }

}  // namespace nngraph_pooling
