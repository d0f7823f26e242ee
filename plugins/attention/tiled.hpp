// TiledCore: attention without the (Tq, Tv) score matrix (FlashAttention's scheme, Dao et al.
// 2022). Queries and keys go in tiles of 64; each query tile keeps a running row maximum, a running
// sum of exponentials and an unnormalised output, rescaled whenever the maximum grows (the online
// softmax). Forward saves two floats per query row (the maximum and 1 / the sum); backward
// recomputes each tile's probabilities from them, so memory grows linearly with the sequence.
//
// The same core computes the sparse patterns, by skipping the tiles a pattern excludes:
//   - a sliding window (Longformer, Beltagy et al. 2020): keys within `window` steps, only earlier
//     ones when causal, plus `global` leading positions that see and are seen by every position;
//   - block-sparse (Sparse Transformer, Child et al. 2019): blocks of `block` steps; a query block
//     sees the key blocks fewer than `local_blocks` blocks away and every `stride`-th block
//     (blocks stride-1, 2·stride-1, ...: the "summary" blocks);
//   - adaptive span (Sukhbaatar et al. 2019): head h weights key j of query i by
//     m = clamp((R + z_h - x) / R, 0, 1), x = i - j (|i - j| when not causal), and renormalises:
//     softmax(s + log m). z_h is a learned weight, clamped to [0, max_span].
// A key outside the pattern is treated exactly as a causally masked one (the op's mask style), so
// each pattern equals dense attention under the matching explicit mask. Masks, causal masking,
// scales and dropout are the dense core's (see core.hpp); dropout's keep decisions are the same
// counter-based draws, so for one seed both cores drop the same probabilities.
#pragma once

#include "core.hpp"

namespace nngraph_attention {

// What a pattern lets a query see, besides masks and causality (see above). Default: everything.
struct Pattern {
    std::int64_t window = -1;  // -1: no window
    std::int64_t global = 0;   // with a window: leading positions seen by and seeing all
    std::int64_t block = 0, local_blocks = 1, stride = 0;  // block-sparse when block > 0
    std::int64_t max_span = 0;  // adaptive span when > 0
    double ramp = 0.0;          // R
    const float* spans = nullptr;  // z, one per head (the op's weight)

    bool adaptive() const { return max_span > 0; }
};

// The tiled core's one saved buffer: per query row its score maximum and 1 / its exponential sum.
inline std::int64_t tiled_stats_floats(const Problem& p) { return p.groups() * p.tq * 2; }

struct TiledGradients {
    onednn::View dq, dk, dv;
    bool dk_accumulates = false;  // add dk into what dk already holds (the key is the value)
    double* d_alpha_product = nullptr;  // as CoreGradients
    float* d_spans = nullptr;           // adaptive span: dL/dz per head (overwritten)
};

// The memory the tiled core works in, in buffers the op declares: per call the combined key masks
// and the value means; per thread the tiles, backward's accumulators and the uniform rows' totals.
struct TiledMemory {
    const nng::Exec* exec = nullptr;
    nng::Buffer<std::uint8_t> masks;
    nng::Buffer<float> means, tiles, accumulators, totals;

    // Declares them, in one order for every plan; `p` null (the op does not use the core) or its
    // problem with the batch of the plan, any views and masks.
    void declare(nng::InferContext& ctx, const Problem* p);
    TiledMemory bound(const nng::Exec& call) const {
        TiledMemory m = *this;
        m.exec = &call;
        return m;
    }
};

class TiledCore {
public:
    // out = attention(p) with `pattern`; `stats` (tiled_stats_floats) written when not null.
    static void forward(const Problem& p, const Pattern& pattern, float* stats, const TiledMemory& memory);
    // From dL/dout (absent: zero), the saved stats and the forward's output.
    static void backward(const Problem& p, const Pattern& pattern, const float* stats, const onednn::View& dout,
                         const TiledGradients& grads, const TiledMemory& memory);
};

}  // namespace nngraph_attention
