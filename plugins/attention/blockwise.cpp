// BlockwiseCore (see blockwise.hpp). Work items are (group, query tile) pairs shared among the
// threads; each thread owns 64-row tiles of its own (per-thread buffers), so nothing of size
// Tq x Tv exists. The products on tiles are the register-blocked kernels of kernels.hpp.
//
// Rows are of four kinds (RowKind): skipped (output zero, no gradient: Attention's masked
// queries, MultiHeadAttention's fully masked rows when it zeroes them), uniform
// (MultiHeadAttention's fully masked rows without dropout: the mean of every value), normal, and
// fallback: an Attention row whose every key is masked, which the dense core softmaxes over all
// keys' score - 1e9; such rows are recomputed over every key tile, skipping none. Forward finds
// them from the maximum (below kFullyMaskedBelow when no unmasked key was seen) and so does
// backward, from the saved maximum.
#include "blockwise.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels.hpp"
#include "masks.hpp"

namespace nngraph_attention {
namespace {

using namespace kernels;

constexpr std::int64_t kTile = 64;  // query and key rows per tile: a tile row is 4 AVX-512 vectors
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

enum class RowKind : std::uint8_t { kSkip, kUniform, kNormal, kFallback };

// The (T, d) matrix of one group of a (G, T, d) view: row r at data + r * row_stride.
struct Rows {
    const float* data;
    std::int64_t row_stride;
    const float* row(std::int64_t r) const { return data + r * row_stride; }
};
Rows rows_of(const onednn::View& v, std::int64_t g) {
    return {static_cast<const float*>(v.data) + g * v.strides[0], v.strides[1]};
}

// Copies rows [r0, r0 + 64) of `src` (columns [0, d)) into a 64 x ld block, zeros elsewhere.
void pack_rows(const Rows& src, std::int64_t r0, std::int64_t count, std::int64_t d, float* dst, std::int64_t ld) {
    for (std::int64_t r = 0; r < count; ++r) {
        std::memcpy(dst + r * ld, src.row(r0 + r), sizeof(float) * d);
        std::fill(dst + r * ld + d, dst + (r + 1) * ld, 0.0f);
    }
    std::fill(dst + count * ld, dst + kTile * ld, 0.0f);
}
// The same transposed: dst (d x 64), column r is row r0 + r.
void pack_rows_transposed(const Rows& src, std::int64_t r0, std::int64_t count, std::int64_t d, float* dst) {
    if (count < kTile) std::memset(dst, 0, sizeof(float) * kTile * d);
    for (std::int64_t r = 0; r < count; ++r) {
        const float* s = src.row(r0 + r);
        for (std::int64_t e = 0; e < d; ++e) dst[e * kTile + r] = s[e];
    }
}

// Under mixed_bfloat16, the call's bf16 copies of k and v (kernels.hpp's layouts), each group's
// keys padded with zero rows to whole tiles: k's rows (read by k·qᵀ) and v's pairs (P̃·v) in
// forward; k's rows, k's pairs (dS·k) and v's rows (v·doutᵀ) in backward.
struct Bfloat16Copies {
    std::uint16_t *key_rows = nullptr, *key_pairs = nullptr, *value_rows = nullptr, *value_pairs = nullptr;
    std::int64_t tv_padded, dk2, dv2, dkp, dvp;  // the rows' lengths even, the pairs' N multiples of 16

    explicit Bfloat16Copies(const Problem& p)
        : tv_padded(nng::round_up(p.tv, kTile)),
          dk2(round2(p.dk)),
          dv2(round2(p.dv)),
          dkp(round16(p.dk)),
          dvp(round16(p.dv)) {}
    // Where key (value) tile j0 of group g starts in each copy (tv_padded and j0 are even).
    const std::uint16_t* key_rows_at(std::int64_t g, std::int64_t j0) const {
        return key_rows + (g * tv_padded + j0) * dk2;
    }
    const std::uint16_t* key_pairs_at(std::int64_t g, std::int64_t j0) const {
        return key_pairs + (g * tv_padded + j0) * dkp;
    }
    const std::uint16_t* value_rows_at(std::int64_t g, std::int64_t j0) const {
        return value_rows + (g * tv_padded + j0) * dv2;
    }
    const std::uint16_t* value_pairs_at(std::int64_t g, std::int64_t j0) const {
        return value_pairs + (g * tv_padded + j0) * dvp;
    }
    // Element counts of the four copies for p's shapes.
    static std::int64_t rows_count(const Problem& p, std::int64_t d) {
        return p.groups() * nng::round_up(p.tv, kTile) * round2(d);
    }
    static std::int64_t pairs_count(const Problem& p, std::int64_t d) {
        return p.groups() * nng::round_up(p.tv, kTile) * round16(d);
    }

    // Fills the copies present from p's k and v.
    void fill(const Problem& p) const {
#pragma omp parallel for schedule(static)
        for (std::int64_t g = 0; g < p.groups(); ++g) {
            const Rows k = rows_of(p.k, g), v = rows_of(p.v, g);
            const kernels::FloatMatrix keys{k.data, p.tv, p.dk, k.row_stride}, values{v.data, p.tv, p.dv, v.row_stride};
            if (key_rows) to_bfloat16_rows(keys, {key_rows + g * tv_padded * dk2, tv_padded, dk2, dk2});
            if (key_pairs) to_bfloat16_pairs(keys, {key_pairs + g * tv_padded * dkp, tv_padded, dkp, 2 * dkp});
            if (value_rows) to_bfloat16_rows(values, {value_rows + g * tv_padded * dv2, tv_padded, dv2, dv2});
            if (value_pairs) to_bfloat16_pairs(values, {value_pairs + g * tv_padded * dvp, tv_padded, dvp, 2 * dvp});
        }
    }
};

// Everything one call shares: the problem, its masks and derived sizes.
struct Plan {
    const Problem& p;
    const Masks& masks;
    std::int64_t q_tiles, k_tiles, dkp, dvp;
    KeepStream stream;
    const Bfloat16Copies* bfloat16 = nullptr;  // mixed_bfloat16: the products read these (f32 when null)

    Plan(const Problem& problem, const Masks& m, const Bfloat16Copies* copies)
        : p(problem),
          masks(m),
          q_tiles(nng::ceil_div(problem.tq, kTile)),
          k_tiles(nng::ceil_div(problem.tv, kTile)),
          dkp(round16(problem.dk)),
          dvp(round16(problem.dv)),
          stream(problem),
          bfloat16(copies) {}

    const Pattern& pattern() const { return masks.pattern(); }
};

// Per-thread tile memory, carved in this order. Score-sized tiles are
// key-major: row c is key j0 + c, column r query i0 + r. Then every product reads its operands
// as they are stored or transposed (Layout), from the query tile's rows and columns packed once,
// and from the key tile's source rows; and the softmax runs along columns, 16 queries a vector.
struct Tiles {
    float *q_rows, *q_columns;    // the query tile, (64 x dkp) and (dk x 64)
    float *do_rows, *do_columns;  // backward: its dL/dout, (64 x dvp) and (dv x 64)
    float *k_rows, *v_rows;       // a key tile's rows, padded (64 x dkp, 64 x dvp), when needed
    float *s, *p, *dp, *keep;     // key-major: raw scores, probabilities, their gradients, dropout's factors
    float *acc, *dacc;
    // mixed_bfloat16: the query tile's q and dout in bf16, as the products read them (pairs of qᵀ,
    // (dk2 x 64); pairs of q, (64 x dkp); the same of dout), and P̃ and dS rounded per key tile,
    // as rows (key-major, 64 x 64) and in pairs (of the key-major tile: the transposed operand).
    std::uint16_t *q_pairs_transposed = nullptr, *q_pairs = nullptr, *do_pairs_transposed = nullptr,
                  *do_pairs = nullptr;
    std::uint16_t *p_rows = nullptr, *p_pairs = nullptr, *ds_rows = nullptr, *ds_pairs = nullptr;
    float m[kTile], l[kTile], d[kTile];
    std::int32_t active[kTile];  // all ones for the query rows (tile columns) being computed, else 0
    RowKind kind[kTile];

    static std::int64_t floats(const Problem& p) {
        nng::Carver counter;
        [[maybe_unused]] const Tiles sized(p, counter);
        return counter.floats();
    }
    // Carves the tiles from `carver` (a counting one sizes them: floats()).
    Tiles(const Problem& problem, nng::Carver& carver) {
        const std::int64_t dkp = round16(problem.dk), dvp = round16(problem.dv);
        const auto take = [&carver](std::int64_t n) { return carver.take<float>(n); };
        q_rows = take(kTile * dkp);
        q_columns = take(problem.dk * kTile);
        do_rows = take(kTile * dvp);
        do_columns = take(problem.dv * kTile);
        k_rows = take(kTile * dkp);
        v_rows = take(kTile * dvp);
        s = take(kTile * kTile);
        p = take(kTile * kTile);
        dp = take(kTile * kTile);
        keep = take(kTile * kTile);
        acc = take(kTile * dvp);   // forward: the output accumulator
        dacc = take(kTile * dkp);  // backward: the query gradient accumulator
        if (!problem.bfloat16) return;
        const auto take_bf16 = [&carver](std::int64_t n) { return carver.take<std::uint16_t>(n); };
        q_pairs_transposed = take_bf16(round2(problem.dk) * kTile);
        q_pairs = take_bf16(kTile * dkp);
        do_pairs_transposed = take_bf16(round2(problem.dv) * kTile);
        do_pairs = take_bf16(kTile * dvp);
        p_rows = take_bf16(kTile * kTile);
        p_pairs = take_bf16(kTile * kTile);
        ds_rows = take_bf16(kTile * kTile);
        ds_pairs = take_bf16(kTile * kTile);
    }
    // Marks the rows of kind `wanted` as the ones being computed.
    void mark_active(RowKind wanted) {
        for (std::int64_t r = 0; r < kTile; ++r) active[r] = kind[r] == wanted ? ~0 : 0;
    }
};

// A product operand of 64 rows: where row 0 starts and the row stride.
struct Operand {
    const float* data;
    std::int64_t ld;
};
// Rows [r0, r0 + 64) of `src`, columns padded to dp: the source rows themselves when the tile is
// whole and needs no padding, else a zero-padded copy in `pad` (64 x dp).
Operand tile_rows(const Rows& src, std::int64_t r0, std::int64_t count, std::int64_t d, std::int64_t dp, float* pad) {
    if (count == kTile && d == dp) return {src.row(r0), src.row_stride};
    pack_rows(src, r0, count, d, pad, dp);
    return {pad, dp};
}

// TileScores' general case, one query row at a time with the masks' own row rules (patterns,
// adaptive spans): plain loops that need no vectors, so built once rather than at every width.
// `keep` holds the key mask's 0/1 for the tile's keys.
__attribute__((noinline)) void scores_row_by_row(const Plan& plan, std::int64_t g, std::int64_t i0, std::int64_t j0,
                                                 const float* raw, float* x, const RowKind* kind, RowKind active,
                                                 const float* keep) {
    const Masks& masks = plan.masks;
    const MaskedScore masked = masks.masked_score();
    const std::int64_t count = std::min(kTile, plan.p.tv - j0);
    const float alpha = plan.p.alpha, z = plan.pattern().adaptive() ? masks.span(g) : 0.0f;
    alignas(64) float allow[kTile], log_weight[kTile] = {};
    for (std::int64_t r = 0; r < kTile; ++r) {
        if (kind[r] != active) continue;
        masks.row_allowed(i0 + r, j0, count, kTile, z, keep, allow, log_weight);
        const float* raw_row = raw + r;
        float* x_row = x + r;
        for (std::int64_t c = 0; c < count; ++c) {
            const float v = alpha * raw_row[c * kTile] + log_weight[c];
            x_row[c * kTile] = allow[c] != 0.0f ? v : masked(v);
        }
    }
}

// Scores of the key-major tile (keys j0.. as rows, queries i0.. as columns) from the raw products
// `raw`, written as the softmax's inputs into `x`: alpha·s, masked as the op's style masks, log
// weights added, and -inf for keys past the end. Columns of rows whose kind is not `active` hold
// anything afterwards (the softmax passes ignore them).
template <int kBytes>
struct TileScores {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    using VI = typename nng::simd::Vectors<kBytes>::Int;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(const Plan* plan_pointer, std::int64_t g, std::int64_t i0,
                                                          std::int64_t j0, bool full, const float* raw, float* x,
                                                          const RowKind* kind, RowKind active) {
        const Plan& plan = *plan_pointer;
        const Problem& p = plan.p;
        const Masks& masks = plan.masks;
        const std::int64_t b = masks.batch_of_group(g), count = std::min(kTile, p.tv - j0);
        const std::uint8_t* keys = masks.any_key_mask() ? masks.keys(b) + j0 : nullptr;
        const MaskedScore masked = masks.masked_score();
        alignas(64) float keep[kTile];
        for (std::int64_t c = 0; c < kTile; ++c) keep[c] = c < count && (!keys || keys[c]) ? 1.0f : 0.0f;
        const float alpha = p.alpha;
        if (full) {
            // Every query sees every key the key mask keeps: whole rows at once.
            for (std::int64_t c = 0; c < count; ++c) {
                const float* s = raw + c * kTile;
                float* o = x + c * kTile;
                if (keep[c] != 0.0f) {
                    for (int r = 0; r < kTile; r += kLanes) store(o + r, alpha * load<V>(s + r));
                } else {
                    for (int r = 0; r < kTile; r += kLanes)
                        store(o + r, (alpha * load<V>(s + r) + masked.add) * masked.keep + masked.set);
                }
            }
        } else if (std::int64_t first = 0, end = 0; masks.shifted_ranges(i0, j0, 2 * kTile, first, end)) {
            // Query i0 + r sees keys [first + r, end + r), a vector of queries at once. Key c is
            // outside when c - (first + r) or (end + r) - 1 - c is negative: small integers, exact
            // as floats, whose sign bits make the lane mask (GCC 12 takes vector comparisons apart
            // lane by lane here).
            V iota;
            for (int l = 0; l < kLanes; ++l) iota[l] = static_cast<float>(l);
            for (int q = 0; q < kTile; q += kLanes) {
                const V from = iota + static_cast<float>(first + q), last = iota + static_cast<float>(end - 1 + q);
                for (std::int64_t c = 0; c < count; ++c) {
                    const V key = V{} + static_cast<float>(c);
                    const VI dropped = VI{} + (keep[c] != 0.0f ? 0 : ~0);
                    const V v = alpha * load<V>(raw + c * kTile + q);
                    const V m = (v + masked.add) * masked.keep + masked.set;
                    const VI outside = (((VI)(key - from) | (VI)(last - key)) >> 31) | dropped;
                    store(x + c * kTile + q, select_lanes(outside, m, v));
                }
            }
        } else {
            scores_row_by_row(plan, g, i0, j0, raw, x, kind, active, keep);
        }
        for (std::int64_t c = count; c < kTile; ++c)
            for (int r = 0; r < kTile; r += kLanes) store(x + c * kTile + r, V{} + kMinusInfinity);
    }
};

// Keep factors (0 or 1/(1-rate)) of the tile's row r into f[0..64), drawn at the global positions.
void keep_factors(const Plan& plan, std::int64_t g, std::int64_t i, std::int64_t j0, float* f) {
    const Problem& p = plan.p;
    const std::uint64_t row = static_cast<std::uint64_t>(g * p.total_tq() + p.query_start + i);
    const std::int64_t count = std::min(kTile, p.tv - j0), first = p.key_start + j0;
    if (first % 4 == 0) {
        for (std::int64_t c = 0; c < count; c += 4) {
            const unsigned bits = plan.stream.nibble(row, static_cast<std::uint64_t>((first + c) / 4));
            for (int l = 0; l < 4; ++l) f[c + l] = (bits >> l) & 1u ? p.keep_scale : 0.0f;
        }
    } else {
        // A key block that starts mid-word (a split sequence): one word per key.
        for (std::int64_t c = 0; c < count; ++c) {
            const std::int64_t j = first + c;
            const unsigned bits = plan.stream.nibble(row, static_cast<std::uint64_t>(j / 4));
            f[c] = (bits >> (j % 4)) & 1u ? p.keep_scale : 0.0f;
        }
    }
    for (std::int64_t c = count; c < kTile; ++c) f[c] = 0.0f;
}

// Dropout's keep factors of the active rows, key-major into t.keep (other columns untouched).
void keep_tile(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t i0, std::int64_t j0) {
    alignas(64) float f[kTile];
    for (std::int64_t r = 0; r < kTile; ++r) {
        if (!t.active[r]) continue;
        keep_factors(plan, g, i0 + r, j0, f);
        for (std::int64_t c = 0; c < kTile; ++c) t.keep[c * kTile + r] = f[c];
    }
}

// Whether a key tile must be visited for `active` rows of query tile i0 (fallback rows visit all).
bool visit(const Plan& plan, std::int64_t g, std::int64_t i0, std::int64_t i1, std::int64_t kt, RowKind active) {
    if (active == RowKind::kFallback) return true;
    const std::int64_t j0 = kt * kTile, j1 = std::min(plan.p.tv, j0 + kTile);
    return plan.masks.block_candidate(g, i0, i1, j0, j1) &&
           plan.masks.any_key_kept(plan.masks.batch_of_group(g), j0, j1);
}

// ---- the tile products: f32, or under mixed_bfloat16 on bf16 operands (f32 sums either way) ----

// Key tile j0 of group g, and its f32 rows (none under mixed_bfloat16: the products read the
// call's bf16 copies).
struct KeyTile {
    std::int64_t g, j0;
    Operand keys, values;
};
KeyTile key_tile(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t j0, std::int64_t count) {
    if (plan.bfloat16) return {g, j0, {}, {}};
    const Problem& p = plan.p;
    return {g, j0, tile_rows(rows_of(p.k, g), j0, count, p.dk, plan.dkp, t.k_rows),
            tile_rows(rows_of(p.v, g), j0, count, p.dv, plan.dvp, t.v_rows)};
}

// Query rows [i0, i0 + rows) of group g as the products read them: q's columns (and, for
// backward, its rows) and the same of dout.
void pack_query_tile(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t i0, std::int64_t rows,
                     const onednn::View* dout) {
    const Problem& p = plan.p;
    const Rows q = rows_of(p.q, g);
    if (const Bfloat16Copies* c = plan.bfloat16) {
        const FloatMatrix q_tile{q.row(i0), rows, p.dk, q.row_stride};
        to_bfloat16_pairs_transposed(q_tile, {t.q_pairs_transposed, c->dk2, kTile, 2 * kTile});
        if (!dout) return;
        to_bfloat16_pairs(q_tile, {t.q_pairs, kTile, plan.dkp, 2 * plan.dkp});
        const Rows dO = rows_of(*dout, g);
        const FloatMatrix do_tile{dO.row(i0), rows, p.dv, dO.row_stride};
        to_bfloat16_pairs_transposed(do_tile, {t.do_pairs_transposed, c->dv2, kTile, 2 * kTile});
        to_bfloat16_pairs(do_tile, {t.do_pairs, kTile, plan.dvp, 2 * plan.dvp});
        return;
    }
    pack_rows_transposed(q, i0, rows, p.dk, t.q_columns);
    if (!dout) return;
    pack_rows(q, i0, rows, p.dk, t.q_rows, plan.dkp);
    const Rows dO = rows_of(*dout, g);
    pack_rows(dO, i0, rows, p.dv, t.do_rows, plan.dvp);
    pack_rows_transposed(dO, i0, rows, p.dv, t.do_columns);
}

// out = x·yᵀ for one key tile, key-major (64 x 64): x the tile's keys or values (f32 rows, or
// under mixed_bfloat16 the call's bf16 rows, `d2` long), y the query tile's q or dout (f32
// columns, or bf16 pairs of its transpose).
void key_major_product(const Plan& plan, std::int64_t d, const Operand& rows, const std::uint16_t* rows16,
                       std::int64_t d2, const float* columns, const std::uint16_t* pairs_transposed, float* out) {
    if (plan.bfloat16) {
        gemm_bfloat16(Layout::kAsStored, kTile, kTile, d2, rows16, d2, pairs_transposed, 2 * kTile, out, kTile, false);
        return;
    }
    gemm(Layout::kAsStored, kTile, kTile, d, rows.data, rows.ld, columns, kTile, out, kTile, false);
}

// t.s = k·qᵀ, key-major.
void scores_product(const Plan& plan, Tiles& t, const KeyTile& tile) {
    const Bfloat16Copies* c = plan.bfloat16;
    key_major_product(plan, plan.p.dk, tile.keys, c ? c->key_rows_at(tile.g, tile.j0) : nullptr, c ? c->dk2 : 0,
                      t.q_columns, t.q_pairs_transposed, t.s);
}

// t.acc += P̃·v, P̃ key-major in `probabilities`.
void output_product(const Plan& plan, Tiles& t, const KeyTile& tile, const float* probabilities) {
    if (const Bfloat16Copies* c = plan.bfloat16) {
        to_bfloat16_pairs({probabilities, kTile, kTile, kTile}, {t.p_pairs, kTile, kTile, 2 * kTile});
        gemm_bfloat16(Layout::kTransposed, kTile, plan.dvp, kTile, t.p_pairs, 2 * kTile,
                      c->value_pairs_at(tile.g, tile.j0), 2 * plan.dvp, t.acc, plan.dvp, true);
        return;
    }
    gemm(Layout::kTransposed, kTile, plan.dvp, kTile, probabilities, kTile, tile.values.data, tile.values.ld, t.acc,
         plan.dvp, true);
}

// t.dp = v·doutᵀ (dL/d(dropped P)), key-major.
void probability_gradient_product(const Plan& plan, Tiles& t, const KeyTile& tile) {
    const Bfloat16Copies* c = plan.bfloat16;
    key_major_product(plan, plan.p.dv, tile.values, c ? c->value_rows_at(tile.g, tile.j0) : nullptr, c ? c->dv2 : 0,
                      t.do_columns, t.do_pairs_transposed, t.dp);
}

// From α dS (t.dp) and P̃ (t.p), key-major: t.dacc += α dS·k (the query tile's dq), and the key
// tile's dk += α dSᵀ·q and dv += P̃ᵀ·dO into the rows `dk` and `dv` point to.
void gradient_products(const Plan& plan, Tiles& t, const KeyTile& tile, float* dk, float* dv) {
    const std::int64_t dkp = plan.dkp, dvp = plan.dvp;
    if (const Bfloat16Copies* c = plan.bfloat16) {
        to_bfloat16_rows({t.dp, kTile, kTile, kTile}, {t.ds_rows, kTile, kTile, kTile});
        to_bfloat16_pairs({t.dp, kTile, kTile, kTile}, {t.ds_pairs, kTile, kTile, 2 * kTile});
        to_bfloat16_rows({t.p, kTile, kTile, kTile}, {t.p_rows, kTile, kTile, kTile});
        gemm_bfloat16(Layout::kTransposed, kTile, dkp, kTile, t.ds_pairs, 2 * kTile, c->key_pairs_at(tile.g, tile.j0),
                      2 * dkp, t.dacc, dkp, true);
        gemm_bfloat16(Layout::kAsStored, kTile, dkp, kTile, t.ds_rows, kTile, t.q_pairs, 2 * dkp, dk, dkp, true);
        gemm_bfloat16(Layout::kAsStored, kTile, dvp, kTile, t.p_rows, kTile, t.do_pairs, 2 * dvp, dv, dvp, true);
        return;
    }
    gemm(Layout::kTransposed, kTile, dkp, kTile, t.dp, kTile, tile.keys.data, tile.keys.ld, t.dacc, dkp, true);
    gemm(Layout::kAsStored, kTile, dkp, kTile, t.dp, kTile, t.q_rows, dkp, dk, dkp, true);
    gemm(Layout::kAsStored, kTile, dvp, kTile, t.p, kTile, t.do_rows, dvp, dv, dvp, true);
}

// The tile's raw products k·qᵀ into t.s and its softmax inputs into `scores` (which may be t.s):
// the first half of every tile step, forward and backward.
inline __attribute__((always_inline)) void score_tile(const Plan& plan, Tiles& t, const KeyTile& tile, std::int64_t i0,
                                                      std::int64_t i1, std::int64_t count, RowKind active,
                                                      float* scores) {
    const std::int64_t g = tile.g, j0 = tile.j0;
    scores_product(plan, t, tile);
    const bool full = active != RowKind::kFallback && plan.masks.block_full(i0, i1, j0, j0 + count);
    nng::simd::run_widest<TileScores>(&plan, g, i0, j0, full, static_cast<const float*>(t.s), scores,
                                      static_cast<const RowKind*>(t.kind), active);
}

// The online softmax of one score tile down its columns (a column is a query row): the tile's
// maxima update m, its exponentials replace the scores (times the keep factors with dropout), l
// gains their sums, and rescale[r] is the factor for row r's earlier sums and outputs. Inactive
// columns keep m and l (rescale 1) and get zero probabilities.
template <int kBytes>
struct OnlineSoftmaxTile {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    using VI = typename nng::simd::Vectors<kBytes>::Int;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;
    static constexpr int kChains = 4;  // vectors side by side: independent chains for the maxima and sums

    static inline __attribute__((always_inline)) void run(Tiles* tiles, float* rescale, bool dropout) {
        Tiles& t = *tiles;
        for (int q0 = 0; q0 < kTile; q0 += kChains * kLanes) {
            VI computed[kChains];
            V tile_max[kChains], shift[kChains], sum[kChains];
            for (int q = 0; q < kChains; ++q) {
                computed[q] = load<VI>(t.active + q0 + kLanes * q);
                tile_max[q] = V{} + kMinusInfinity;
                sum[q] = V{};
            }
            for (std::int64_t c = 0; c < kTile; ++c) {
                for (int q = 0; q < kChains; ++q) {
                    const V y = load<V>(t.s + c * kTile + q0 + kLanes * q);
                    tile_max[q] = y > tile_max[q] ? y : tile_max[q];
                }
            }
            for (int q = 0; q < kChains; ++q) {
                const int at = q0 + kLanes * q;
                const V m_old = load<V>(t.m + at);
                const V m_new = select_lanes(computed[q], tile_max[q] > m_old ? tile_max[q] : m_old, m_old);
                // A column without any finite score so far has probabilities 0 (exp(-inf - 0)); one
                // that had none before scales its (zero) sums by exp(-inf) = 0.
                shift[q] = m_new == kMinusInfinity ? V{} : m_new;
                store(t.m + at, m_new);
                store(rescale + at, select_lanes(computed[q], vexp(m_old - shift[q]), V{} + 1.0f));
            }
            for (std::int64_t c = 0; c < kTile; ++c) {
                for (int q = 0; q < kChains; ++q) {
                    float* x = t.s + c * kTile + q0 + kLanes * q;
                    V e = select_lanes(computed[q], vexp(load<V>(x) - shift[q]));
                    sum[q] += e;
                    if (dropout) e = select_lanes(computed[q], e * load<V>(t.keep + c * kTile + q0 + kLanes * q));
                    store(x, e);
                }
            }
            for (int q = 0; q < kChains; ++q) {
                const int at = q0 + kLanes * q;
                store(t.l + at, load<V>(t.l + at) * load<V>(rescale + at) + sum[q]);
            }
        }
    }
};

// ---- forward ----

// One query tile's pass over its key tiles for the rows of kind `active` (their m, l and acc rows
// start from scratch).
void forward_rows(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t i0, RowKind active) {
    const Problem& p = plan.p;
    const std::int64_t i1 = std::min(p.tq, i0 + kTile);
    t.mark_active(active);
    for (std::int64_t r = 0; r < kTile; ++r) {
        if (t.kind[r] != active) continue;
        t.m[r] = kMinusInfinity;
        t.l[r] = 0.0f;
        std::memset(t.acc + r * plan.dvp, 0, sizeof(float) * plan.dvp);
    }
    alignas(64) float rescale[kTile];
    for (std::int64_t kt = 0; kt < plan.k_tiles; ++kt) {
        if (!visit(plan, g, i0, i1, kt, active)) continue;
        const std::int64_t j0 = kt * kTile, count = std::min(kTile, p.tv - j0);
        const KeyTile tile = key_tile(plan, t, g, j0, count);
        score_tile(plan, t, tile, i0, i1, count, active, t.s);
        if (p.dropout) keep_tile(plan, t, g, i0, j0);
        nng::simd::run_widest<OnlineSoftmaxTile>(&t, rescale, p.dropout);
        for (std::int64_t r = 0; r < kTile; ++r) {
            if (rescale[r] == 1.0f) continue;
            float* a = t.acc + r * plan.dvp;
            for (std::int64_t e = 0; e < plan.dvp; ++e) a[e] *= rescale[r];
        }
        output_product(plan, t, tile, t.s);
    }
}

void forward_tile(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t qt, const float* value_mean, float* stats) {
    const Problem& p = plan.p;
    const std::int64_t i0 = qt * kTile, rows = std::min(kTile, p.tq - i0), b = plan.masks.batch_of_group(g);
    const bool replace = p.style == MaskStyle::kReplace;
    bool any_normal = false;
    for (std::int64_t r = 0; r < kTile; ++r) {
        if (r >= rows)
            t.kind[r] = RowKind::kSkip;
        else if (plan.masks.query_kept(b, i0 + r))
            t.kind[r] = RowKind::kNormal;
        else
            t.kind[r] = replace && !p.zero_masked ? RowKind::kUniform : RowKind::kSkip;
        any_normal |= t.kind[r] == RowKind::kNormal;
    }
    if (any_normal) {
        pack_query_tile(plan, t, g, i0, rows, nullptr);
        forward_rows(plan, t, g, i0, RowKind::kNormal);
        bool any_fallback = false;
        for (std::int64_t r = 0; r < rows; ++r) {
            if (t.kind[r] != RowKind::kNormal || t.m[r] >= kFullyMaskedBelow) continue;
            if (replace)
                t.kind[r] = p.zero_masked ? RowKind::kSkip : RowKind::kUniform;
            else
                t.kind[r] = RowKind::kFallback, any_fallback = true;
        }
        if (any_fallback) forward_rows(plan, t, g, i0, RowKind::kFallback);
    }
    float* out = static_cast<float*>(p.out.data) + g * p.out.strides[0];
    for (std::int64_t r = 0; r < rows; ++r) {
        float* o = out + (i0 + r) * p.out.strides[1];
        float m = kMinusInfinity, inv_l = 0.0f;
        switch (t.kind[r]) {
            case RowKind::kSkip:
                std::fill(o, o + p.dv, 0.0f);
                break;
            case RowKind::kUniform:
                std::copy(value_mean + g * p.dv, value_mean + (g + 1) * p.dv, o);
                break;
            default:
                m = t.m[r];
                inv_l = 1.0f / t.l[r];
                for (std::int64_t e = 0; e < p.dv; ++e) o[e] = t.acc[r * plan.dvp + e] * inv_l;
        }
        if (stats) {
            stats[(g * p.tq + i0 + r) * 2] = m;
            stats[(g * p.tq + i0 + r) * 2 + 1] = inv_l;
        }
    }
}

// ---- shared set-up ----

// Whether the op's mask style can give uniform rows at all (which sizes the buffers for them), and
// whether this call's masks can.
bool uniform_rows_possible(const Problem& p) { return p.style == MaskStyle::kReplace && !p.zero_masked; }
bool may_have_uniform_rows(const Problem& p) { return uniform_rows_possible(p) && p.has_masks(); }

// The mean of each group's value rows (G, dv) into `mean`: the output of a uniform row.
float* value_means(const Problem& p, float* mean) {
    if (!may_have_uniform_rows(p)) return nullptr;
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < p.groups(); ++g) {
        const Rows v = rows_of(p.v, g);
        float* m = mean + g * p.dv;
        std::fill(m, m + p.dv, 0.0f);
        for (std::int64_t j = 0; j < p.tv; ++j)
            for (std::int64_t e = 0; e < p.dv; ++e) m[e] += v.row(j)[e];
        for (std::int64_t e = 0; e < p.dv; ++e) m[e] /= static_cast<float>(p.tv);
    }
    return mean;
}

constexpr int kMaxThreads = 256;

// Zeroes the (rows, d) rows of a (G, T, d) view (absent: nothing).
void zero_rows(const onednn::View& v, std::int64_t rows, std::int64_t d) {
    if (!v.present()) return;
    const std::int64_t t = v.dims[1];
    for (std::int64_t r = 0; r < rows; ++r) {
        float* row = static_cast<float*>(v.data) + (r / t) * v.strides[0] + (r % t) * v.strides[1];
        std::fill(row, row + d, 0.0f);
    }
}

void check_views(const Problem& p) {
    for (const onednn::View* v : {&p.q, &p.k, &p.v, &p.out}) {
        if (v->rank != 3 || v->strides[2] != 1)
            throw std::logic_error("attention blockwise core: views need contiguous rows, got " + v->describe());
    }
}

// ---- backward ----

// A thread's key and value gradient sums, (k_tiles·64, dkp) and (k_tiles·64, dvp) per group: for
// every group (group_stride 1: threads share groups, summed afterwards) or for the one group the
// thread is working on (group_stride 0).
struct Accumulators {
    float* dk;
    float* dv;
    std::int64_t group_stride;
    double d_alpha = 0.0;
    double* d_spans;  // per head

    // With groups to spare, a thread takes whole groups and writes their key and value gradients
    // itself; with few (one long sequence), threads share a group's query tiles and sum their
    // own full-size accumulators at the end.
    static bool by_group(const Problem& p, int threads) { return p.groups() >= 4 * threads; }
    // Floats of one thread's accumulators: dk, dv and the span gradients (doubles).
    static std::int64_t floats(const Problem& p, int threads) {
        const std::int64_t rows = (by_group(p, threads) ? 1 : p.groups()) * nng::round_up(p.tv, kTile);
        return rows * (round16(p.dk) + round16(p.dv)) + 2 * p.heads;
    }
};

// P from the saved statistics (m, 1/l) and dS = P ⊙ (dP - D) · ds_scale, the gradient of the
// scores after masks and log weights, over one tile: dS into t.dp, P̃ (P after dropout) into t.p.
// Inactive columns get zeros.
template <int kBytes>
struct ScoreGradientTile {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    using VI = typename nng::simd::Vectors<kBytes>::Int;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(Tiles* tiles, bool dropout, float ds_scale) {
        Tiles& t = *tiles;
        for (int q = 0; q < kTile; q += kLanes) {
            const VI computed = load<VI>(t.active + q);
            const V m = load<V>(t.m + q), inv_l = load<V>(t.l + q), d = load<V>(t.d + q);
            for (std::int64_t c = 0; c < kTile; ++c) {
                float* prob = t.p + c * kTile + q;
                float* dprob = t.dp + c * kTile + q;
                const float* keep = t.keep + c * kTile + q;
                V pr = vexp(load<V>(prob) - m) * inv_l;
                V dpr = load<V>(dprob);
                if (dropout) dpr *= load<V>(keep);
                store(dprob, select_lanes(computed, pr * (dpr - d) * ds_scale));
                if (dropout) pr *= load<V>(keep);
                store(prob, select_lanes(computed, pr));
            }
        }
    }
};

// One query tile's backward pass over its key tiles for rows of kind `active`.
void backward_rows(const Plan& plan, Tiles& t, Accumulators& acc, std::int64_t g, std::int64_t i0, RowKind active,
                   bool want_dalpha) {
    const Problem& p = plan.p;
    const std::int64_t i1 = std::min(p.tq, i0 + kTile);
    const std::int64_t tv_padded = plan.k_tiles * kTile;
    float* dk_group = acc.dk + acc.group_stride * g * tv_padded * plan.dkp;
    float* dv_group = acc.dv + acc.group_stride * g * tv_padded * plan.dvp;
    const bool adaptive = plan.pattern().adaptive();
    const float z = adaptive ? plan.masks.span(g) : 0.0f, ramp = static_cast<float>(plan.pattern().ramp);
    const bool z_moves =
        adaptive && p.spans[g % p.heads] > 0.0f && p.spans[g % p.heads] < static_cast<float>(plan.pattern().max_span);
    double d_span = 0.0;
    // dS goes into t.dp times α at once, unless the sums below need it unscaled first.
    const bool sums_need_ds = want_dalpha || z_moves;
    const float ds_scale = sums_need_ds ? 1.0f : p.alpha;
    t.mark_active(active);
    for (std::int64_t kt = 0; kt < plan.k_tiles; ++kt) {
        if (!visit(plan, g, i0, i1, kt, active)) continue;
        const std::int64_t j0 = kt * kTile, count = std::min(kTile, p.tv - j0);
        const KeyTile tile = key_tile(plan, t, g, j0, count);
        score_tile(plan, t, tile, i0, i1, count, active, t.p);  // raw k·qᵀ stays in t.s
        probability_gradient_product(plan, t, tile);
        if (p.dropout) keep_tile(plan, t, g, i0, j0);
        nng::simd::run_widest<ScoreGradientTile>(&t, p.dropout, ds_scale);
        if (want_dalpha) {
            for (std::int64_t r = 0; r < kTile; ++r) {
                if (t.kind[r] != active) continue;
                double sum = 0.0;
                for (std::int64_t c = 0; c < count; ++c)
                    sum += double(t.dp[c * kTile + r]) * double(t.s[c * kTile + r]);
                acc.d_alpha += sum;
            }
        }
        if (z_moves) {
            // d log m / dz = 1 / (R + z - x) inside the ramp (0 < m < 1), else 0.
            for (std::int64_t r = 0; r < kTile; ++r) {
                if (t.kind[r] != active) continue;
                const std::int64_t i = i0 + r;
                for (std::int64_t c = 0; c < count; ++c) {
                    const float x = static_cast<float>(std::abs(i - (j0 + c)));
                    if (x > z && x < ramp + z && (!p.causal || j0 + c <= i))
                        d_span += double(t.dp[c * kTile + r]) / double(ramp + z - x);
                }
            }
        }
        if (sums_need_ds) {
            for (std::int64_t e = 0; e < kTile * kTile; ++e) t.dp[e] *= p.alpha;
        }
        gradient_products(plan, t, tile, dk_group + j0 * plan.dkp, dv_group + j0 * plan.dvp);
    }
    if (adaptive) acc.d_spans[g % p.heads] += d_span;
}

void backward_tile(const Plan& plan, Tiles& t, Accumulators& acc, std::int64_t g, std::int64_t qt, const float* stats,
                   const onednn::View& dout, const onednn::View& dq, bool want_dalpha) {
    const Problem& p = plan.p;
    const std::int64_t i0 = qt * kTile, rows = std::min(kTile, p.tq - i0), b = plan.masks.batch_of_group(g);
    const bool replace = p.style == MaskStyle::kReplace;
    bool any[4] = {};
    for (std::int64_t r = 0; r < kTile; ++r) {
        RowKind kind = RowKind::kSkip;
        if (r < rows) {
            const float m = stats[(g * p.tq + i0 + r) * 2];
            t.m[r] = m;
            t.l[r] = stats[(g * p.tq + i0 + r) * 2 + 1];
            if (!plan.masks.query_kept(b, i0 + r))
                kind = replace && !p.zero_masked ? RowKind::kUniform : RowKind::kSkip;
            else if (m >= kFullyMaskedBelow)
                kind = RowKind::kNormal;
            else if (replace)
                kind = p.zero_masked ? RowKind::kSkip : RowKind::kUniform;
            else
                kind = RowKind::kFallback;
        }
        t.kind[r] = kind;
        any[static_cast<int>(kind)] = true;
    }
    // A tile without normal or fallback rows still goes on to the end: its dq rows must be written
    // (zeros), since the caller's dq holds whatever its memory held before.
    const Rows dO = rows_of(dout, g), out = rows_of(p.out, g);
    pack_query_tile(plan, t, g, i0, rows, &dout);
    for (std::int64_t r = 0; r < rows; ++r) {
        double d = 0.0;
        for (std::int64_t e = 0; e < p.dv; ++e) d += double(dO.row(i0 + r)[e]) * double(out.row(i0 + r)[e]);
        t.d[r] = static_cast<float>(d);
    }
    std::memset(t.dacc, 0, sizeof(float) * kTile * plan.dkp);
    if (any[static_cast<int>(RowKind::kNormal)]) backward_rows(plan, t, acc, g, i0, RowKind::kNormal, want_dalpha);
    if (any[static_cast<int>(RowKind::kFallback)]) backward_rows(plan, t, acc, g, i0, RowKind::kFallback, want_dalpha);
    if (dq.present()) {
        float* d = static_cast<float*>(dq.data) + g * dq.strides[0];
        for (std::int64_t r = 0; r < rows; ++r) {
            float* row = d + (i0 + r) * dq.strides[1];
            if (t.kind[r] == RowKind::kNormal || t.kind[r] == RowKind::kFallback) {
                std::copy(t.dacc + r * plan.dkp, t.dacc + r * plan.dkp + p.dk, row);
            } else {
                std::fill(row, row + p.dk, 0.0f);
            }
        }
    }
}

// Rows of groups [g0, g1) of dst (G, tv, d) = Σ over `count` accumulators (+ dst when
// accumulating); accumulator group g starts at (g - g0) · tv_padded rows.
void reduce_into(const onednn::View& dst, float* const* parts, int count, std::int64_t tv_padded, std::int64_t ld,
                 bool accumulate, std::int64_t tv, std::int64_t d, std::int64_t g0, std::int64_t g1) {
    if (!dst.present()) return;
    const std::int64_t rows = (g1 - g0) * tv;
#pragma omp parallel for if (count > 1) schedule(static)
    for (std::int64_t row = 0; row < rows; ++row) {
        const std::int64_t g = g0 + row / tv, j = row % tv;
        float* o = static_cast<float*>(dst.data) + g * dst.strides[0] + j * dst.strides[1];
        const std::int64_t at = ((g - g0) * tv_padded + j) * ld;
        for (std::int64_t e = 0; e < d; ++e) {
            float sum = accumulate ? o[e] : 0.0f;
            for (int t = 0; t < count; ++t) sum += parts[t][at + e];
            o[e] = sum;
        }
    }
}

}  // namespace

struct BlockwiseCore::Ids {
    BufferId stats;                                // saved in training, or every call's
    BufferId key_mask;                             // both directions
    BufferId value_means;                          // forward
    BufferId tiles, accumulators, uniform_totals;  // per thread
    // mixed_bfloat16: Bfloat16Copies, k's rows in both directions, the others in one.
    BufferId key_rows, value_pairs, key_pairs, value_rows;
};

BlockwiseCore::Ids BlockwiseCore::declare(const Problem& p, bool training, BufferList& list) const {
    Ids ids;
    if (statistics_ == Statistics::kEveryCall)
        ids.stats = list.floats("attention.row_statistics", Lifetime::kCall, p.groups() * p.tq * 2);
    else if (training)
        ids.stats = list.floats("attention.row_statistics", Lifetime::kSaved, p.heads * p.tq * 2);
    ids.key_mask = list.bytes("attention.key_mask", Lifetime::kCall, Masks::combined_bytes(p));
    if (uniform_rows_possible(p))
        ids.value_means = list.floats("attention.value_means", Lifetime::kForward, p.groups() * p.dv);
    ids.tiles = list.floats("attention.tiles", Lifetime::kThread, Tiles::floats(p));
    ids.accumulators =
        list.floats("attention.key_value_gradients", Lifetime::kThread, Accumulators::floats(p, omp_get_max_threads()));
    if (uniform_rows_possible(p))
        ids.uniform_totals = list.floats("attention.uniform_row_gradients", Lifetime::kThread, p.dv);
    if (p.bfloat16) {
        const auto bf16 = [&](const char* name, Lifetime lifetime, std::int64_t count) {
            return list.bytes(name, lifetime, 2 * count);
        };
        ids.key_rows = bf16("attention.bfloat16_keys", Lifetime::kCall, Bfloat16Copies::rows_count(p, p.dk));
        ids.value_pairs =
            bf16("attention.bfloat16_value_pairs", Lifetime::kForward, Bfloat16Copies::pairs_count(p, p.dv));
        ids.key_pairs = bf16("attention.bfloat16_key_pairs", Lifetime::kBackward, Bfloat16Copies::pairs_count(p, p.dk));
        ids.value_rows = bf16("attention.bfloat16_values", Lifetime::kBackward, Bfloat16Copies::rows_count(p, p.dv));
    }
    return ids;
}

float* BlockwiseCore::statistics(const Problem& p, const Buffers& buffers) const {
    return buffers.floats(ids(p, buffers).stats);
}

CoreWork BlockwiseCore::work(const Problem& p, bool /*training*/) const {
    // Every (query tile, key tile) pair the pattern and causality leave, at the whole tile's
    // size: forward k·qᵀ, the online softmax (6 a score) and P·v; backward recomputes k·qᵀ, then
    // dout·vᵀ, P and dS (5 a score), dv, dq and dk: five products. An adaptive span counts at its
    // widest. Inputs are read once per visited tile, outputs written once per query row.
    Problem shapes = p;
    const std::vector<float> widest(static_cast<std::size_t>(std::max<std::int64_t>(p.heads, 1)),
                                    static_cast<float>(pattern_.max_span));
    shapes.spans = widest.data();
    shapes.key_masks[0] = shapes.key_masks[1] = nullptr;
    const Masks masks(shapes, pattern_, nullptr);
    const std::int64_t q_tiles = nng::ceil_div(p.tq, kTile), k_tiles = nng::ceil_div(p.tv, kTile);
    std::int64_t visited = 0;
    for (std::int64_t qt = 0; qt < q_tiles; ++qt)
        for (std::int64_t kt = 0; kt < k_tiles; ++kt)
            visited += masks.block_candidate(0, qt * kTile, std::min(p.tq, (qt + 1) * kTile), kt * kTile,
                                             std::min(p.tv, (kt + 1) * kTile));
    const std::int64_t tiles = p.groups() * visited, tile_scores = tiles * kTile * kTile;
    const nng::Work product{2 * tile_scores * p.dk, 4 * tiles * kTile * p.dk};
    const nng::Work weighted_sum{2 * tile_scores * p.dv, 4 * tiles * kTile * p.dv};
    const nng::Work rows = nng::elementwise_work(p.groups() * p.tq, 0, p.dk + p.dv);
    return {product + nng::elementwise_work(tile_scores, 6, 0) + weighted_sum + rows,
            2 * product + 3 * weighted_sum + nng::elementwise_work(tile_scores, 5, 0) + 2 * rows};
}

const DeclaredBuffers<BufferShape, BlockwiseCore::Ids>::Entry& BlockwiseCore::declared(const Problem& p,
                                                                                       bool training) const {
    return declared_.get(BufferShape(p, training), [&](BufferList& list) { return declare(p, training, list); });
}

BlockwiseCore::Ids BlockwiseCore::ids(const Problem& p, const Buffers& buffers) const {
    return declared(p, buffers.training()).ids;
}

const BufferList& BlockwiseCore::buffers(const Problem& p, bool training) const { return declared(p, training).list; }

void BlockwiseCore::forward(const Problem& p, const Buffers& buffers) const {
    check_views(p);
    const Ids ids = this->ids(p, buffers);
    const Masks masks(p, pattern_, buffers.bytes(ids.key_mask));
    Bfloat16Copies copies(p);
    if (p.bfloat16) {
        copies.key_rows = static_cast<std::uint16_t*>(buffers.get(ids.key_rows));
        copies.value_pairs = static_cast<std::uint16_t*>(buffers.get(ids.value_pairs));
        copies.fill(p);
    }
    const Plan plan(p, masks, p.bfloat16 ? &copies : nullptr);
    const float* mean = value_means(p, buffers.floats(ids.value_means));
    float* stats = buffers.floats(ids.stats);
    const std::int64_t items = p.groups() * plan.q_tiles;
#pragma omp parallel
    {
        nng::Carver carver = buffers.thread_carver(ids.tiles);
        Tiles t(plan.p, carver);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t item = 0; item < items; ++item)
            forward_tile(plan, t, item / plan.q_tiles, item % plan.q_tiles, mean, stats);
    }
}

void BlockwiseCore::backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                             const CoreGradients& grads) const {
    check_views(p);
    const bool dk_wanted = grads.dk.present();
    if (!dout.present()) {
        zero_rows(grads.dq, p.groups() * p.tq, p.dk);
        if (!grads.dv_accumulates) zero_rows(grads.dv, p.groups() * p.tv, p.dv);
        if (!grads.dk_accumulates) zero_rows(grads.dk, p.groups() * p.tv, p.dk);
        if (grads.d_alpha_product) *grads.d_alpha_product = 0.0;
        if (grads.d_spans) std::fill(grads.d_spans, grads.d_spans + p.heads, 0.0f);
        return;
    }
    if (omp_get_max_threads() > kMaxThreads) throw std::runtime_error("attention blockwise core: at most 256 threads");
    const Ids ids = this->ids(p, buffers);
    const float* stats = buffers.floats(ids.stats);
    if (!stats) throw std::logic_error("attention blockwise core: backward without the forward's row statistics");
    const Masks masks(p, pattern_, buffers.bytes(ids.key_mask));
    Bfloat16Copies copies(p);
    if (p.bfloat16) {
        copies.key_rows = static_cast<std::uint16_t*>(buffers.get(ids.key_rows));
        copies.key_pairs = static_cast<std::uint16_t*>(buffers.get(ids.key_pairs));
        copies.value_rows = static_cast<std::uint16_t*>(buffers.get(ids.value_rows));
        copies.fill(p);
    }
    const Plan plan(p, masks, p.bfloat16 ? &copies : nullptr);
    const std::int64_t items = p.groups() * plan.q_tiles, tv_padded = plan.k_tiles * kTile;
    const std::int64_t heads = p.heads;
    float* dk_parts[kMaxThreads] = {};
    float* dv_parts[kMaxThreads] = {};
    double d_alpha[kMaxThreads] = {};
    double* span_parts[kMaxThreads] = {};
    int used = 0;
    const bool want_dalpha = grads.d_alpha_product != nullptr;
    const bool by_group = Accumulators::by_group(p, omp_get_max_threads());
    const std::int64_t acc_k = (by_group ? 1 : p.groups()) * tv_padded * plan.dkp,
                       acc_v = (by_group ? 1 : p.groups()) * tv_padded * plan.dvp;
#pragma omp parallel
    {
        const int id = omp_get_thread_num();
#pragma omp single
        used = omp_get_num_threads();
        nng::Carver carver = buffers.thread_carver(ids.tiles);
        Tiles t(plan.p, carver);
        const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(acc_k + acc_v + 2 * heads);
        float* memory = buffers.thread_floats(ids.accumulators);
        Accumulators acc{memory, memory + acc_k, by_group ? 0 : 1, 0.0,
                         reinterpret_cast<double*>(memory + acc_k + acc_v)};
        std::memset(memory, 0, bytes);
        dk_parts[id] = acc.dk;
        dv_parts[id] = acc.dv;
        span_parts[id] = acc.d_spans;
        if (by_group) {
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t g = 0; g < p.groups(); ++g) {
                std::memset(memory, 0, sizeof(float) * static_cast<std::size_t>(acc_k + acc_v));
                for (std::int64_t qt = 0; qt < plan.q_tiles; ++qt)
                    backward_tile(plan, t, acc, g, qt, stats, dout, grads.dq, want_dalpha);
                reduce_into(grads.dv, &acc.dv, 1, tv_padded, plan.dvp, grads.dv_accumulates, p.tv, p.dv, g, g + 1);
                if (dk_wanted)
                    reduce_into(grads.dk, &acc.dk, 1, tv_padded, plan.dkp, grads.dk_accumulates, p.tv, p.dk, g, g + 1);
            }
        } else {
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t item = 0; item < items; ++item) {
                backward_tile(plan, t, acc, item / plan.q_tiles, item % plan.q_tiles, stats, dout, grads.dq,
                              want_dalpha);
            }
        }
        d_alpha[id] = acc.d_alpha;
    }
    if (!by_group) {
        reduce_into(grads.dv, dv_parts, used, tv_padded, plan.dvp, grads.dv_accumulates, p.tv, p.dv, 0, p.groups());
        if (dk_wanted)
            reduce_into(grads.dk, dk_parts, used, tv_padded, plan.dkp, grads.dk_accumulates, p.tv, p.dk, 0, p.groups());
    }
    if (want_dalpha) {
        double sum = 0.0;
        for (int t = 0; t < used; ++t) sum += d_alpha[t];
        *grads.d_alpha_product = sum;
    }
    if (grads.d_spans) {
        for (std::int64_t h = 0; h < heads; ++h) {
            double sum = 0.0;
            for (int t = 0; t < used; ++t) sum += span_parts[t][h];
            grads.d_spans[h] = static_cast<float>(sum);
        }
    }
    // Uniform rows (MultiHeadAttention's fully masked rows): every value row receives dO / Tv.
    if (may_have_uniform_rows(p) && grads.dv.present()) {
#pragma omp parallel for schedule(static)
        for (std::int64_t g = 0; g < p.groups(); ++g) {
            const std::int64_t b = masks.batch_of_group(g);
            float* total = buffers.thread_floats(ids.uniform_totals);
            std::fill(total, total + p.dv, 0.0f);
            bool any = false;
            const Rows dO = rows_of(dout, g);
            for (std::int64_t i = 0; i < p.tq; ++i) {
                const bool uniform = !masks.query_kept(b, i) || stats[(g * p.tq + i) * 2] == kMinusInfinity;
                if (!uniform) continue;
                any = true;
                for (std::int64_t e = 0; e < p.dv; ++e) total[e] += dO.row(i)[e];
            }
            if (!any) continue;
            float* dv = static_cast<float*>(grads.dv.data) + g * grads.dv.strides[0];
            for (std::int64_t j = 0; j < p.tv; ++j)
                for (std::int64_t e = 0; e < p.dv; ++e)
                    dv[j * grads.dv.strides[1] + e] += total[e] / static_cast<float>(p.total_tv());
        }
    }
}

}  // namespace nngraph_attention
