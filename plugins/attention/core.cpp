// MaterializedCore: the whole (G, Tq, Tv) score matrix in memory. oneDNN does the three matmuls
// of each direction and the softmax; the passes here are the masks (before the softmax), the
// zeroing of masked rows and dropout (after it), each fused into one sweep over the scores.
#include "core.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace nngraph_attention {
namespace {

using DataType = onednn::DataType;

constexpr std::int64_t kParallelElements = 1 << 15;
// Keras's large negative for float32 scores (Attention subtracts it, MultiHeadAttention puts it
// in place of the score).
constexpr float kLargeNegative = -1.0e9f;

// One row (g, i) of the score matrix: which sample it belongs to and which keys it may see.
struct RowMasks {
    const Problem& p;
    std::int64_t b, i;
    const std::uint8_t* km0;
    const std::uint8_t* km1;

    RowMasks(const Problem& problem, std::int64_t row)
        : p(problem), b(row / problem.tq / problem.heads), i(row % problem.tq),
          km0(problem.key_masks[0] ? problem.key_masks[0] + b * problem.tv : nullptr),
          km1(problem.key_masks[1] ? problem.key_masks[1] + b * problem.tv : nullptr) {}

    bool query_kept() const { return !p.query_mask || p.query_mask[b * p.tq + i]; }
    // Key j passes the key masks and the causal mask (the query mask aside).
    bool key_allowed(std::int64_t j) const {
        return (!km0 || km0[j]) && (!km1 || km1[j]) && (!p.causal || j <= i);
    }
    // The keys [0, end) that the causal mask leaves; every later key is masked.
    std::int64_t causal_end() const { return p.causal ? std::min(p.tv, i + 1) : p.tv; }
    // kReplace: whether the row's attention mask keeps any key at all.
    bool any_allowed() const {
        if (!query_kept()) return false;
        for (std::int64_t j = 0; j < causal_end(); ++j) {
            if (key_allowed(j)) return true;
        }
        return false;
    }
};

int threads_for(std::int64_t elements) { return elements > kParallelElements ? 0 : 1; }

// The masks before the softmax, as the op's Keras layer writes them.
void apply_masks(const Problem& p, float* scores) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv;
    const bool parallel = threads_for(rows * tv) == 0;
#pragma omp parallel for if (parallel) schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
        const RowMasks m(p, r);
        float* s = scores + r * tv;
        if (p.style == MaskStyle::kSubtract) {
            for (std::int64_t j = 0; j < tv; ++j) {
                if (!m.key_allowed(j)) s[j] = s[j] + kLargeNegative;  // Keras: scores - 1e9, in float32
            }
        } else if (!m.query_kept()) {
            std::fill(s, s + tv, kLargeNegative);
        } else {
            for (std::int64_t j = 0; j < tv; ++j) {
                if (!m.key_allowed(j)) s[j] = kLargeNegative;
            }
        }
    }
}

// Bit j of a row's keep mask, drawn from (seed, global element index): 32 random bits per element,
// two elements per draw, as nngraph's Dropout draws.
inline bool draw_keep(const Problem& p, std::uint64_t element) {
    const std::uint64_t bits = nng::random_bits(p.seed, element >> 1);
    const std::uint32_t half = static_cast<std::uint32_t>((element & 1) ? bits >> 32 : bits);
    return half >= p.drop_threshold;
}

// After the softmax: zero what Keras zeroes (masked query rows in Attention, masked entries in
// MultiHeadAttention's Softmax layer) and, with dropout, draw the keep bits and write the dropped
// probabilities. Returns nothing to do when no part applies.
bool needs_post_pass(const Problem& p) {
    const bool zero_rows = p.style == MaskStyle::kSubtract && p.query_mask;
    const bool zero_masked = p.style == MaskStyle::kReplace && p.zero_masked && p.has_masks();
    return zero_rows || zero_masked || p.dropout;
}

void post_softmax(const Problem& p, float* probs, float* dropped, std::uint8_t* keep) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv, row_bytes = (tv + 7) / 8;
    const bool zero_masked = p.style == MaskStyle::kReplace && p.zero_masked && p.has_masks();
    const bool parallel = threads_for(rows * tv) == 0;
#pragma omp parallel for if (parallel) schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
        const RowMasks m(p, r);
        float* s = probs + r * tv;
        if (p.style == MaskStyle::kSubtract && !m.query_kept()) {
            std::fill(s, s + tv, 0.0f);
        } else if (zero_masked) {
            const bool row_kept = m.query_kept();
            for (std::int64_t j = 0; j < tv; ++j) {
                if (!row_kept || !m.key_allowed(j)) s[j] = 0.0f;
            }
        }
        if (!p.dropout) continue;
        std::uint8_t* bits = keep + r * row_bytes;
        std::memset(bits, 0, static_cast<std::size_t>(row_bytes));
        float* d = dropped + r * tv;
        const std::uint64_t first = static_cast<std::uint64_t>(r * tv);
        for (std::int64_t j = 0; j < tv; ++j) {
            const bool kept = draw_keep(p, first + static_cast<std::uint64_t>(j));
            bits[j >> 3] = static_cast<std::uint8_t>(bits[j >> 3] | (kept << (j & 7)));
            d[j] = kept ? s[j] * p.keep_scale : 0.0f;
        }
    }
}

// Backward of dropout, from the saved keep bits: dropped = probs ⊙ keep·scale (for dv) and
// dprobs ⊙= keep·scale in place.
void dropout_backward(const Problem& p, const float* probs, const std::uint8_t* keep, float* dropped, float* dprobs) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv, row_bytes = (tv + 7) / 8;
    const bool parallel = threads_for(rows * tv) == 0;
#pragma omp parallel for if (parallel) schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint8_t* bits = keep + r * row_bytes;
        const float* s = probs + r * tv;
        float* d = dropped + r * tv;
        float* g = dprobs + r * tv;
        for (std::int64_t j = 0; j < tv; ++j) {
            const float factor = ((bits[j >> 3] >> (j & 7)) & 1) ? p.keep_scale : 0.0f;
            d[j] = s[j] * factor;
            g[j] *= factor;
        }
    }
}

// MultiHeadAttention puts a constant in place of masked scores, so none of their gradient
// survives. Where a row keeps a key, the masked probabilities are exactly 0 and so are their
// gradients already; only rows that mask every key (uniform probabilities) need zeroing.
void zero_fully_masked_rows(const Problem& p, float* dscores) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv;
#pragma omp parallel for if (threads_for(rows * tv) == 0) schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
        if (!RowMasks(p, r).any_allowed()) std::fill(dscores + r * tv, dscores + (r + 1) * tv, 0.0f);
    }
}

onednn::View scores_view(const Problem& p, float* data) {
    return onednn::view(data, DataType::f32, {p.groups(), p.tq, p.tv});
}

void zero_view(const onednn::View& v) {
    if (!v.present()) return;
    if (!v.contiguous()) throw std::logic_error("attention core: zeroing a strided gradient view");
    std::memset(v.data, 0, static_cast<std::size_t>(v.numel()) * sizeof(float));
}

}  // namespace

void* Bump::bytes(std::int64_t count) {
    constexpr std::uint64_t kAlign = 64;
    const std::uint64_t size = (static_cast<std::uint64_t>(count < 0 ? 0 : count) + kAlign - 1) / kAlign * kAlign;
    if (used_ + size > capacity_) {
        throw std::runtime_error("attention: the scratch of " + std::to_string(capacity_) + " bytes is too small (" +
                                 std::to_string(used_ + size) + " needed)");
    }
    void* out = base_ ? base_ + used_ : nullptr;
    used_ += size;
    return out;
}

void set_dropout_rate(Problem& p, double rate) {
    p.drop_threshold = static_cast<std::uint32_t>(std::min<double>(std::llround(std::ldexp(rate, 32)), 4294967295.0));
    p.keep_scale = static_cast<float>(1.0 / (1.0 - rate));
}

void MaterializedCore::reserve_forward(Bump& bump, const Problem& p, bool probs_in_scratch) {
    if (probs_in_scratch) bump.floats(p.score_count());
    if (p.dropout) bump.floats(p.score_count());
}

void MaterializedCore::reserve_backward(Bump& bump, const Problem& p, bool need_dq_buffer) {
    if (p.dropout) bump.floats(p.score_count());
    if (need_dq_buffer) bump.floats(p.groups() * p.tq * p.dk);
}

void MaterializedCore::forward(const Problem& p, const ProbabilityState& state, Bump& scratch, bool scores_given) {
    const onednn::View scores = scores_view(p, state.probs);
    if (!scores_given) onednn::matmul(p.q, p.k.transposed(), scores, {.alpha = p.alpha});
    if (p.has_masks()) apply_masks(p, state.probs);
    onednn::softmax_forward(scores, scores);
    float* dropped = p.dropout ? scratch.floats(p.score_count()) : nullptr;
    if (p.dropout && !state.keep) throw std::logic_error("attention core: dropout without a keep mask buffer");
    if (needs_post_pass(p)) post_softmax(p, state.probs, dropped, state.keep);
    onednn::matmul(dropped ? scores_view(p, dropped) : scores, p.v, p.out);
}

void MaterializedCore::backward_to_scores(const Problem& p, const ProbabilityState& state, const onednn::View& dout,
                                          const onednn::View& dv, float* dscores, Bump& scratch) {
    const onednn::View dS = scores_view(p, dscores);
    if (!dout.present()) {
        std::memset(dscores, 0, static_cast<std::size_t>(p.score_count()) * sizeof(float));
        zero_view(dv);
        return;
    }
    onednn::matmul(dout, p.v.transposed(), dS);  // dL/d(dropped probabilities)
    onednn::View used_probs = scores_view(p, state.probs);
    if (p.dropout) {
        float* dropped = scratch.floats(p.score_count());
        dropout_backward(p, state.probs, state.keep, dropped, dscores);
        used_probs = scores_view(p, dropped);
    }
    if (dv.present()) onednn::matmul(used_probs.transposed(), dout, dv);
    onednn::softmax_backward(scores_view(p, state.probs), dS, dS);
    if (p.style == MaskStyle::kReplace && p.has_masks()) zero_fully_masked_rows(p, dscores);
}

void MaterializedCore::backward_dot(const Problem& p, const float* dscores, const CoreGradients& grads, Bump& scratch) {
    const onednn::View dS = scores_view(p, const_cast<float*>(dscores));
    if (grads.d_alpha_product) {
        // t = dS·k without alpha; <q, t> = <dS, q·kᵀ>.
        const onednn::View t = onednn::view(scratch.floats(p.groups() * p.tq * p.dk), DataType::f32, {p.groups(), p.tq, p.dk});
        onednn::matmul(dS, p.k, t);
        const float* tv = static_cast<const float*>(t.data);
        const float* q = static_cast<const float*>(p.q.data);
        double sum = 0.0;
        const std::int64_t rows = p.groups() * p.tq;
#pragma omp parallel for reduction(+ : sum) if (threads_for(rows * p.dk) == 0) schedule(static)
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* qr = q + (r / p.tq) * p.q.strides[0] + (r % p.tq) * p.q.strides[1];
            for (std::int64_t d = 0; d < p.dk; ++d) sum += double(qr[d * p.q.strides[2]]) * double(tv[r * p.dk + d]);
        }
        *grads.d_alpha_product = sum;
    }
    if (grads.dq.present()) onednn::matmul(dS, p.k, grads.dq, {.alpha = p.alpha});
    if (grads.dk.present()) onednn::matmul(dS.transposed(), p.q, grads.dk, {.alpha = p.alpha, .beta = grads.dk_accumulates ? 1.0f : 0.0f});
}

}  // namespace nngraph_attention
