// The attention core shared by Attention and MultiHeadAttention: scores, masked softmax, dropout
// on the probabilities, weighted sum of the values, and the backward of all of it.
//
// Both ops reduce to G independent problems (G = batch * heads): queries (G, Tq, dk), keys
// (G, Tv, dk), values (G, Tv, dv), output (G, Tq, dv), with per-sample masks. An op describes
// them in a Problem and hands the core its buffers; how the core gets from Q, K, V to the output
// is its own business. MaterializedCore (the only one so far) writes the whole (G, Tq, Tv) score
// matrix: oneDNN matmul for Q·Kᵀ and P·V, oneDNN softmax, and one pass of its own for the masks
// and one for dropout. Long-context variants (blockwise, sliding window, ...) are further
// implementations of the same Problem, chosen by attribute.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nngraph/onednn.hpp"

namespace nngraph_attention {

namespace onednn = nng::onednn;
using nng::Dims;

// Hands out 64-byte aligned pieces of one block, front to back. With a null base it only counts,
// so infer() sizes the scratch with the very code that later carves it.
class Bump {
public:
    Bump(void* base, std::uint64_t capacity) : base_(static_cast<std::byte*>(base)), capacity_(capacity) {}
    static Bump counting() { return Bump(nullptr, UINT64_MAX); }

    void* bytes(std::int64_t count);
    float* floats(std::int64_t count) { return static_cast<float*>(bytes(count * static_cast<std::int64_t>(sizeof(float)))); }
    std::uint64_t used() const { return used_; }

private:
    std::byte* base_;
    std::uint64_t capacity_;
    std::uint64_t used_ = 0;
};

// How masked scores are treated, as the two Keras layers do it.
enum class MaskStyle {
    // keras.layers.Attention: a masked key's score becomes score - 1e9 (the gradient passes
    // through unchanged); a masked query's output row is zero (its probabilities are zeroed).
    kSubtract,
    // keras.layers.MultiHeadAttention: the attention mask (query mask x key masks x causal) puts
    // -1e9 in place of masked scores (no gradient reaches them); a fully masked row softmaxes to
    // a uniform row, or to zeros when `zero_masked` (Keras's Softmax layer, used when dropout > 0).
    kReplace,
};

struct Problem {
    std::int64_t batch = 0, heads = 1, tq = 0, tv = 0, dk = 0, dv = 0;
    // (G, T, d) views, G = batch * heads ordered (batch, head); any strides.
    onednn::View q, k, v, out;
    float alpha = 1.0f;  // the factor on q·k

    MaskStyle style = MaskStyle::kSubtract;
    bool zero_masked = false;                   // kReplace only: masked probabilities are set to 0
    const std::uint8_t* query_mask = nullptr;   // (batch, tq), 1 = keep
    const std::uint8_t* key_masks[2] = {};      // (batch, tv) each, 1 = keep
    bool causal = false;                        // key j > query i is masked

    // Inverted dropout on the probabilities: kept with probability 1 - rate, scaled by 1/(1-rate).
    bool dropout = false;                       // active in this call
    std::uint32_t drop_threshold = 0;           // keep iff 16 random bits >= threshold
    float keep_scale = 1.0f;                    // 1 / (1 - rate)
    std::uint64_t seed = 0;

    std::int64_t groups() const { return batch * heads; }
    std::int64_t score_count() const { return groups() * tq * tv; }
    // Bytes of the packed keep mask: one bit per probability, each row starting on a byte.
    std::int64_t keep_bytes() const { return groups() * tq * ((tv + 7) / 8); }
    bool has_masks() const { return query_mask || key_masks[0] || key_masks[1] || causal; }
};

// Dropout's 32-bit threshold and scale for a rate in [0, 1).
void set_dropout_rate(Problem& p, double rate);

// Dropout's keep decisions, counter-based so that any core can draw any tile in any order: key j
// of score row r (rows ordered (group, query)) keeps iff bits 16·(j % 4) to 16·(j % 4) + 15 of
// word (r, j / 4) = random_bits(seed, r · ceil(Tv / 4) + j / 4) are at least the threshold.
struct KeepStream {
    std::uint64_t mixed_seed, words_per_row;
    std::uint32_t threshold;

    explicit KeepStream(const Problem& p)
        : mixed_seed(nng::mix64(p.seed)), words_per_row(static_cast<std::uint64_t>((p.tv + 3) / 4)), threshold(p.drop_threshold) {}
    // The keep bits of keys 4·w to 4·w + 3 of row r, bit l for key 4·w + l (nng::random_bits unrolled).
    unsigned nibble(std::uint64_t row, std::uint64_t w) const {
        const std::uint64_t word = nng::mix64(mixed_seed + 0x9e3779b97f4a7c15ULL * (row * words_per_row + w + 1));
        unsigned bits = 0;
        for (unsigned lane = 0; lane < 4; ++lane) bits |= static_cast<unsigned>(((word >> (16 * lane)) & 0xffffu) >= threshold) << lane;
        return bits;
    }
};

// Where the probabilities live: P (softmax output, masked rows zeroed) and, when dropout is
// active, the keep bits. Forward writes them; backward reads them.
struct ProbabilityState {
    float* probs = nullptr;          // (G, Tq, Tv)
    std::uint8_t* keep = nullptr;    // keep_bytes(), only with dropout
};

// The gradients backward writes (absent views are not wanted) and what it reports.
struct CoreGradients {
    onednn::View dq, dk, dv;
    bool dk_accumulates = false;  // add into dk instead of overwriting it (dv is written first)
    // When set, also <dL/dscores, q·kᵀ> (the raw product before alpha): the gradient of a factor
    // on the scores, for a learned scale.
    double* d_alpha_product = nullptr;
};

class MaterializedCore {
public:
    // Scratch needed by forward (when `probs_in_scratch`, P itself too).
    static void reserve_forward(Bump& bump, const Problem& p, bool probs_in_scratch);
    // out = dropout(softmax(mask(alpha * q·kᵀ))) · v. With `scores_given`, state.probs already
    // holds the raw scores (another score function, e.g. concat) and q, k and alpha are unused.
    static void forward(const Problem& p, const ProbabilityState& state, Bump& scratch, bool scores_given = false);

    // Backward of dot scores from dL/dout (absent: zero): dv, dq = alpha dS·k, dk = alpha dSᵀ·q.
    // It runs a few batch elements at a time, so that dL/dscores (as large as P) only ever exists
    // for one chunk: the scratch stays near the cache and the step's peak does not hold a second
    // score-sized matrix beside the saved P.
    static void reserve_backward(Bump& bump, const Problem& p, bool with_alpha_product);
    static void backward(const Problem& p, const ProbabilityState& state, const onednn::View& dout, const CoreGradients& grads,
                         Bump& scratch);

    // For other score functions (e.g. concat): dv and the whole dL/dscores (G, Tq, Tv), written into
    // the caller's `dscores`.
    static void reserve_backward_to_scores(Bump& bump, const Problem& p);
    static void backward_to_scores(const Problem& p, const ProbabilityState& state, const onednn::View& dout,
                                   const onednn::View& dv, float* dscores, Bump& scratch);
};

}  // namespace nngraph_attention
