// The attention core interface, shared by Attention and MultiHeadAttention: scores, masked
// softmax, dropout on the probabilities, weighted sum of the values, and the backward of all of it.
//
// Both ops reduce to G independent problems (G = batch * heads): queries (G, Tq, dk), keys
// (G, Tv, dk), values (G, Tv, dv), output (G, Tq, dv), with per-sample masks. An op describes
// them in a Problem, picks its core once when it is built (make_core) and hands it the buffers
// the core asked for; how a core gets from Q, K, V to the output is its own business:
//   - DenseCore (dense.hpp) writes the whole (G, Tq, Tv) score matrix and saves the probabilities;
//   - BlockwiseCore (blockwise.hpp) goes through tiles with an online softmax, skips what a
//     sparsity pattern leaves out, and saves per query row its score maximum m and 1 / its
//     exponential sum l (the row's log-sum-exp is m + log l); backward recomputes the rest.
// A core that splits the keys further (across processes, or into hash buckets) merges its partial
// results by their log-sum-exp, and saves that, the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "buffers.hpp"
#include "nngraph/sequence_shard.hpp"

namespace nngraph_attention {

namespace onednn = nng::onednn;
using nng::Dims;

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

// What a sparsity pattern lets a query see, besides masks and causality. Default: everything.
//   - a sliding window (Longformer, Beltagy et al. 2020): keys within `window` steps, only earlier
//     ones when causal, plus `global` leading positions that see and are seen by every position;
//   - block-sparse (Sparse Transformer, Child et al. 2019): blocks of `block` steps; a query block
//     sees the key blocks fewer than `local_blocks` blocks away and every `stride`-th block
//     (blocks stride-1, 2·stride-1, ...: the "summary" blocks);
//   - adaptive span (Sukhbaatar et al. 2019): head h weights key j of query i by
//     m = clamp((R + z_h - x) / R, 0, 1), x = i - j (|i - j| when not causal), and renormalises:
//     softmax(s + log m). z_h is a learned weight (Problem::spans), clamped to [0, max_span].
// A key outside the pattern is treated exactly as a causally masked one (the op's mask style), so
// each pattern equals dense attention under the matching explicit mask.
struct Pattern {
    std::int64_t window = -1;                              // -1: no window
    std::int64_t global = 0;                               // with a window: leading positions seen by and seeing all
    std::int64_t block = 0, local_blocks = 1, stride = 0;  // block-sparse when block > 0
    std::int64_t max_span = 0;                             // adaptive span when > 0
    double ramp = 0.0;                                     // R
    std::int64_t lsh_hashes = 0, lsh_bucket_size = 0;      // LSH attention (lsh.hpp) when lsh_hashes > 0

    bool adaptive() const { return max_span > 0; }
    bool sparse() const { return window >= 0 || block > 0 || adaptive(); }
    bool lsh() const { return lsh_hashes > 0; }
};

struct Problem {
    std::int64_t batch = 0, heads = 1, tq = 0, tv = 0, dk = 0, dv = 0;
    // (G, T, d) views, G = batch * heads ordered (batch, head); any strides.
    onednn::View q, k, v, out;
    float alpha = 1.0f;  // the factor on q·k

    MaskStyle style = MaskStyle::kSubtract;
    bool zero_masked = false;                  // kReplace only: masked probabilities are set to 0
    const std::uint8_t* query_mask = nullptr;  // (batch, tq), 1 = keep
    const std::uint8_t* key_masks[2] = {};     // (batch, tv) each, 1 = keep
    bool causal = false;                       // key j > query i is masked
    const float* spans = nullptr;              // adaptive span: z, one per head (the op's weight)

    // Inverted dropout on the probabilities: kept with probability 1 - rate, scaled by 1/(1-rate).
    bool may_drop = false;             // the op has a dropout rate (buffers are sized for it)
    bool dropout = false;              // active in this call
    std::uint32_t drop_threshold = 0;  // keep iff 16 random bits >= threshold
    float keep_scale = 1.0f;           // 1 / (1 - rate)
    std::uint64_t seed = 0;
    std::uint64_t hash_seed = 0;  // LSH: the stream of this call's random rotations

    // mixed_bfloat16: the dense core's matmuls, the blockwise core's tile products (hence the
    // sparse patterns' and the ring's) and the LSH core's chunk products read bf16 copies of their
    // operands and accumulate in f32; hashing, scores, softmax statistics and outputs stay f32.
    bool bfloat16 = false;
    // Where these steps sit in a longer sequence, for a core that splits one (ring.hpp): the global
    // positions of query 0 and key 0, and the whole sequence's lengths (0: these). Causality,
    // patterns, dropout's draws and the uniform rows' mean all count in global positions.
    std::int64_t query_start = 0, key_start = 0, whole_tq = 0, whole_tv = 0;
    // Sequence parallelism: this rank's share of the steps and the job's ranks (ring.hpp). The
    // default shard holds whole sequences.
    nngraph::SequenceShard shard;
    nng::Comm comm{nullptr};

    bool alpha_gradient = false;  // backward is asked for CoreGradients::d_alpha_product
    // q and k are one tensor, whose two gradients the op's host sums anyway, and the core adds dk
    // into dq (AttentionCore::adds_dk_into_dq): backward then writes dq + dk into dq, given no dk.
    bool key_is_query = false;
    bool two_key_masks = false;  // both key masks may be given (sizes the room to combine them)
    // Key/value-gradient-sized room the op lends its core's backward as scratch: 1, dk and dv
    // themselves (distinct contiguous (G, tv, d) arrays, written, never added to, and read by
    // nobody before); 2, also CoreGradients::spare_dk and spare_dv.
    int lent_gradient_blocks = 0;

    std::int64_t groups() const { return batch * heads; }
    std::int64_t score_count() const { return groups() * tq * tv; }
    // Bytes of the packed keep mask: one bit per probability, each row starting on a byte.
    std::int64_t keep_bytes() const { return groups() * tq * nng::ceil_div(tv, 8); }
    bool has_masks() const { return query_mask || key_masks[0] || key_masks[1] || causal; }
    std::int64_t total_tq() const { return whole_tq > 0 ? whole_tq : tq; }
    std::int64_t total_tv() const { return whole_tv > 0 ? whole_tv : tv; }
};

// What a core's buffer list depends on (see AttentionCore::buffers): the key it is cached by.
struct BufferShape {
    std::int64_t batch = 0, heads = 1, tq = 0, tv = 0, dk = 0, dv = 0;
    MaskStyle style = MaskStyle::kSubtract;
    bool may_drop = false, zero_masked = false, alpha_gradient = false, key_is_query = false, two_key_masks = false,
         bfloat16 = false, training = false;
    int threads = 1;  // per-thread buffers may be sized by the thread count
    int lent_gradient_blocks = 0;

    BufferShape(const Problem& p, bool training);
    bool operator==(const BufferShape&) const = default;
};

// Dropout's 32-bit threshold and scale for a rate in [0, 1).
void set_dropout_rate(Problem& p, double rate);

// Dropout's keep decisions, counter-based so that any core can draw any tile in any order: key j
// of score row r (rows ordered (group, query)) keeps iff bits 16·(j % 4) to 16·(j % 4) + 15 of
// word (r, j / 4) = random_bits(seed, r · ceil(Tv / 4) + j / 4) are at least the threshold. Rows,
// keys and Tv are those of the whole sequence (Problem::total_tq, total_tv).
struct KeepStream {
    std::uint64_t mixed_seed, words_per_row;
    std::uint32_t threshold;

    explicit KeepStream(const Problem& p)
        : mixed_seed(nng::mix64(p.seed)),
          words_per_row(static_cast<std::uint64_t>(nng::ceil_div(p.total_tv(), 4))),
          threshold(p.drop_threshold) {}
    // The keep bits of keys 4·w to 4·w + 3 of row r, bit l for key 4·w + l (nng::random_bits unrolled).
    unsigned nibble(std::uint64_t row, std::uint64_t w) const {
        const std::uint64_t word = nng::mix64(mixed_seed + 0x9e3779b97f4a7c15ULL * (row * words_per_row + w + 1));
        unsigned bits = 0;
        for (unsigned lane = 0; lane < 4; ++lane)
            bits |= static_cast<unsigned>(((word >> (16 * lane)) & 0xffffu) >= threshold) << lane;
        return bits;
    }
};

// The gradients backward writes (absent views are not wanted) and what it reports.
struct CoreGradients {
    onednn::View dq, dk, dv;
    bool dk_accumulates = false;  // add into dk instead of overwriting it (dv is written first)
    // Add into dq too, where the core can (AttentionCore::adds_dq_onto_dv): dv is written first.
    bool dq_accumulates = false;
    // Add into dv too: the blockwise core's, for the ring core, which sums the pairs of a block in place.
    bool dv_accumulates = false;
    // When set, <dL/dscores, q·kᵀ> (the raw product before alpha): the gradient of a factor on
    // the scores, for a learned scale. Problem::alpha_gradient must have been set when sizing.
    double* d_alpha_product = nullptr;
    float* d_spans = nullptr;  // adaptive span: dL/dz per head (overwritten)
    // With Problem::lent_gradient_blocks 2: contiguous (G, tv, dk) and (G, tv, dv) arrays that
    // nobody reads during the call, for the core's scratch.
    onednn::View spare_dk, spare_dv;
};

// The work of one forward and one backward call of a core, as it computes them.
struct CoreWork {
    nng::Work forward, backward;
};

class AttentionCore {
public:
    virtual ~AttentionCore() = default;

    // What forward and backward compute for problems of p's shapes (the fields buffers() reads),
    // as planned with buffers(p, training), with no padding masks: what a pattern or causality
    // lets a core skip is not counted.
    virtual CoreWork work(const Problem& p, bool training) const = 0;

    // The buffers forward and backward need for problems of p's shapes, in a fixed order (saved
    // ones only when `training`). Only the shape fields, `may_drop`, `style`, `zero_masked`,
    // `alpha_gradient`, `key_is_query`, `two_key_masks` and `bfloat16` of p are read, so that the
    // list is the same at every call; p.batch may be 0 when the batch is not known yet. Built once
    // per BufferShape.
    virtual const BufferList& buffers(const Problem& p, bool training) const = 0;
    // Whether backward reads the forward's output (p.out), which the op must then keep for it.
    virtual bool backward_reads_output() const = 0;
    // Whether backward can add the key gradient into the query's (Problem::key_is_query).
    virtual bool adds_dk_into_dq() const { return false; }
    // Whether backward writes dv before dq and can add dq onto it (CoreGradients::dq_accumulates),
    // so that one tensor as query and value takes one gradient slot.
    virtual bool adds_dq_onto_dv() const { return false; }

    // p.out = attention(p); in training (the saved buffers present) also what backward needs.
    virtual void forward(const Problem& p, const Buffers& buffers) const = 0;
    // From dL/dout (absent: zero) and what forward saved, the gradients `grads` asks for.
    virtual void backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                          const CoreGradients& grads) const = 0;
};

enum class CoreKind { kDense, kBlockwise, kRing };

// The core for `pattern`: LSH attention when it asks for hashing; the ring one when asked for; the
// blockwise one when asked for or when the pattern is sparse (only it can skip what a pattern
// leaves out), else the dense one.
std::unique_ptr<AttentionCore> make_core(CoreKind kind, const Pattern& pattern);

}  // namespace nngraph_attention
