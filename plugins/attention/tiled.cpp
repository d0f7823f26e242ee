// TiledCore (see tiled.hpp). Work items are (group, query tile) pairs shared among the threads;
// each thread owns 64-row tiles of its own in the buffers the op declares, so nothing of size Tq x Tv
// exists. The products on tiles are this file's own register-blocked kernels (64-byte vectors of
// GCC's vector extension, built for AVX-512 with a portable fallback): a oneDNN matmul call per
// 64 x 64 tile costs more in dispatch than the tile's arithmetic (measured in the README).
//
// Rows are of four kinds (RowKind): skipped (output zero, no gradient: Attention's masked
// queries, MultiHeadAttention's fully masked rows when it zeroes them), uniform
// (MultiHeadAttention's fully masked rows without dropout: the mean of every value), normal, and
// fallback: an Attention row whose every key is masked, which the dense core softmaxes over all
// keys' score - 1e9; such rows are recomputed over every key tile, skipping none. Forward finds
// them from the maximum (below -5e8 when no unmasked key was seen) and so does backward, from the
// saved maximum.
#include "tiled.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

// The vector type below is internal to this file; its calling convention never crosses a library.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nngraph_attention {
namespace {

constexpr std::int64_t kTile = 64;  // query and key rows per tile; a kernel row is 4 vectors of 16
constexpr int kVectors = kTile / 16;  // vectors in a tile row
constexpr float kLargeNegative = -1.0e9f;
// A row maximum below this saw no unmasked key (unmasked scores are far above, masked ones at -1e9).
constexpr float kFullyMaskedBelow = -5.0e8f;
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef int v16iu __attribute__((vector_size(64), aligned(4), may_alias));

inline __attribute__((always_inline)) v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline __attribute__((always_inline)) v16i load(const std::int32_t* p) { return *reinterpret_cast<const v16iu*>(p); }
inline __attribute__((always_inline)) void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

// The lanes of `a` where `lanes` is all ones, else those of `b`. Bitwise: GCC 12 takes a vector
// comparison's result apart lane by lane once it is kept in a variable, and a NaN in an unused
// lane goes too.
inline __attribute__((always_inline)) v16 select_lanes(v16i lanes, v16 a, v16 b = v16{}) {
    return (v16)(((v16i)a & lanes) | ((v16i)b & ~lanes));
}

// e^x for 16 lanes: Cephes's polynomial on x - n·ln 2, exact to about 1 ulp; 0 below -87.3 (where
// float's e^x is subnormal) and for -inf.
inline __attribute__((always_inline)) v16 vexp(v16 in) {
    v16 x = in < -87.3f ? v16{} - 87.3f : in;
    x = x > 88.7f ? v16{} + 88.7f : x;
    const v16 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const v16 r = x - n * 0.693359375f - n * -2.12194440e-4f;
    v16 poly = v16{} + 1.9875691500e-4f;
    poly = poly * r + 1.3981999507e-3f;
    poly = poly * r + 8.3334519073e-3f;
    poly = poly * r + 4.1665795894e-2f;
    poly = poly * r + 1.6666665459e-1f;
    poly = poly * r + 5.0000001201e-1f;
    const v16 y = poly * r * r + r + 1.0f;
    const v16i exponent = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16 scale;
    std::memcpy(&scale, &exponent, sizeof scale);
    return in < -87.3f ? v16{} : y * scale;
}

// How a product reads its left operand A: as stored (row r, column k at A[r·lda + k]) or
// transposed (at A[k·lda + r]), which spares copying a tile into its transpose first.
enum class Layout : bool { kAsStored, kTransposed };

// C (4 rows x NC·16) (+)= A (4 rows x K, leading dimension lda) · B (K x NC·16, row stride ldb).
// Always inlined: an out-of-line copy would be built for the default target, where 64-byte
// vectors fall apart into 16-byte pieces (measured: 20 times slower than in the AVX-512 clone).
template <int NC, Layout kA>
inline __attribute__((always_inline)) void kernel_4xn(std::int64_t K, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                       std::int64_t ldc, bool accumulate) {
    v16 c[4][NC];
    for (int r = 0; r < 4; ++r)
        for (int n = 0; n < NC; ++n) c[r][n] = accumulate ? load(C + r * ldc + 16 * n) : v16{};
    for (std::int64_t k = 0; k < K; ++k) {
        v16 b[NC];
        for (int n = 0; n < NC; ++n) b[n] = load(B + k * ldb + 16 * n);
        for (int r = 0; r < 4; ++r) {
            const float a = kA == Layout::kTransposed ? A[k * lda + r] : A[r * lda + k];
            for (int n = 0; n < NC; ++n) c[r][n] += a * b[n];
        }
    }
    for (int r = 0; r < 4; ++r)
        for (int n = 0; n < NC; ++n) store(C + r * ldc + 16 * n, c[r][n]);
}

// C (M x N) (+)= op(A) (M x K) · B (K x N); M a multiple of 4, N of 16; op(A) is A or, with
// kA = kTransposed, the transpose of the (K x M) A; row strides lda, ldb, ldc.
// A function of its own (not inlined into the tile loops), so that its accumulators own the
// vector registers.
template <Layout kA>
__attribute__((target_clones("arch=x86-64-v4", "default"), noinline)) void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda, const float* B,
                 std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
    for (std::int64_t i = 0; i < M; i += 4) {
        for (std::int64_t n0 = 0; n0 < N; n0 += 64) {
            const float* a = kA == Layout::kTransposed ? A + i : A + i * lda;
            const float* b = B + n0;
            float* c = C + i * ldc + n0;
            switch (std::min<std::int64_t>(4, (N - n0) / 16)) {
                case 4: kernel_4xn<4, kA>(K, a, lda, b, ldb, c, ldc, accumulate); break;
                case 3: kernel_4xn<3, kA>(K, a, lda, b, ldb, c, ldc, accumulate); break;
                case 2: kernel_4xn<2, kA>(K, a, lda, b, ldb, c, ldc, accumulate); break;
                default: kernel_4xn<1, kA>(K, a, lda, b, ldb, c, ldc, accumulate); break;
            }
        }
    }
}

std::int64_t round16(std::int64_t n) { return (n + 15) / 16 * 16; }

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

// Everything one call shares: the problem, the pattern, masks and derived sizes.
struct Plan {
    const Problem& p;
    const Pattern& pattern;
    const std::uint8_t* keys = nullptr;  // (batch, tv) combined key masks, or null
    const std::uint8_t* tile_any = nullptr;  // (batch, key tiles): whether a tile keeps any key
    std::int64_t q_tiles, k_tiles, dkp, dvp;
    KeepStream stream;

    Plan(const Problem& problem, const Pattern& pat)
        : p(problem), pattern(pat), q_tiles((problem.tq + kTile - 1) / kTile), k_tiles((problem.tv + kTile - 1) / kTile),
          dkp(round16(problem.dk)), dvp(round16(problem.dv)), stream(problem) {}

    std::int64_t batch_of(std::int64_t g) const { return g / p.heads; }
    float span(std::int64_t g) const {
        return static_cast<float>(std::clamp<double>(pattern.spans[g % p.heads], 0.0, static_cast<double>(pattern.max_span)));
    }
    bool query_kept(std::int64_t b, std::int64_t i) const { return !p.query_mask || p.query_mask[b * p.tq + i]; }

    // The smallest distance between a query in [i0, i1) and a key in [j0, j1) that the pattern
    // counts (earlier keys only when causal; -1 when causal leaves none).
    std::int64_t min_distance(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
        if (p.causal) return j0 > i1 - 1 ? -1 : std::max<std::int64_t>(0, i0 - (j1 - 1));
        return std::max<std::int64_t>({0, j0 - (i1 - 1), i0 - (j1 - 1)});
    }
    // Whether the pattern may allow some pair of query tile [i0, i1) and key tile [j0, j1).
    bool tile_candidate(std::int64_t g, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
        const std::int64_t dist = min_distance(i0, i1, j0, j1);
        if (dist < 0) return false;
        if (pattern.window >= 0) return i0 < pattern.global || j0 < pattern.global || dist <= pattern.window;
        if (pattern.block > 0) {
            const std::int64_t B = pattern.block, bi0 = i0 / B, bi1 = (i1 - 1) / B, bj0 = j0 / B, bj1 = (j1 - 1) / B;
            if (std::max<std::int64_t>({0, bj0 - bi1, bi0 - bj1}) < pattern.local_blocks) return true;
            if (pattern.stride <= 0) return false;
            const std::int64_t S = pattern.stride;
            const std::int64_t first = (bj0 + 1 + S - 1) / S * S - 1;  // the first summary block >= bj0
            return first <= bj1 && (!p.causal || first * B <= i1 - 1);
        }
        if (pattern.adaptive()) return static_cast<double>(dist) < pattern.ramp + span(g);
        return true;
    }
    // Whether every pair of the tiles is allowed by causality and the pattern (no per-element pass).
    bool tile_full(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
        if (p.causal && j1 - 1 > i0) return false;
        if (pattern.adaptive()) return false;
        if (pattern.window >= 0) {
            if (i1 <= pattern.global || j1 <= pattern.global) return true;
            return std::max(i1 - 1 - j0, j1 - 1 - i0) <= pattern.window;
        }
        if (pattern.block > 0) return std::max(i1 - 1, j1 - 1) / pattern.block - std::min(i0, j0) / pattern.block < pattern.local_blocks;
        return true;
    }
};

// Per-thread tile memory (TiledMemory::tiles), carved in this order. Score-sized tiles are
// key-major: row c is key j0 + c, column r query i0 + r. Then every product reads its operands
// as they are stored or transposed (Layout), from the query tile's rows and columns packed once,
// and from the key tile's source rows; and the softmax runs along columns, 16 queries a vector.
struct Tiles {
    float *q_rows, *q_columns;    // the query tile, (64 x dkp) and (dk x 64)
    float *do_rows, *do_columns;  // backward: its dL/dout, (64 x dvp) and (dv x 64)
    float *k_rows, *v_rows;       // a key tile's rows, padded (64 x dkp, 64 x dvp), when needed
    float *s, *p, *dp, *keep;     // key-major: raw scores, probabilities, their gradients, dropout's factors
    float *acc, *dacc;
    float m[kTile], l[kTile], d[kTile];
    std::int32_t active[kTile];  // all ones for the query rows (tile columns) being computed, else 0
    RowKind kind[kTile];

    static std::int64_t floats(const Problem& p) {
        const std::int64_t dkp = round16(p.dk), dvp = round16(p.dv);
        return kTile * (dkp + p.dk + dvp + p.dv + dkp + dvp + 4 * kTile + dvp + dkp) + 64;
    }
    Tiles(const Plan& plan, float* f) {
        const auto take = [&f](std::int64_t n) {
            float* out = f;
            f += (n + 15) / 16 * 16;
            return out;
        };
        q_rows = take(kTile * plan.dkp);
        q_columns = take(plan.p.dk * kTile);
        do_rows = take(kTile * plan.dvp);
        do_columns = take(plan.p.dv * kTile);
        k_rows = take(kTile * plan.dkp);
        v_rows = take(kTile * plan.dvp);
        s = take(kTile * kTile);
        p = take(kTile * kTile);
        dp = take(kTile * kTile);
        keep = take(kTile * kTile);
        acc = take(kTile * plan.dvp);   // forward: the output accumulator
        dacc = take(kTile * plan.dkp);  // backward: the query gradient accumulator
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

// Which of the tile's columns (keys j0 + c, c < count) row i may see by causality and the pattern:
// allow[c] = keep[c] (the key mask as 0/1) where allowed, else 0; log_weight[c] is adaptive span's
// log m where it is below 0. Windows and spans are one range of columns (global tokens add a
// leading one); block-sparse rows decide per key block.
inline __attribute__((always_inline)) void row_allowed(const Plan& plan, std::int64_t i, std::int64_t j0, std::int64_t count, float z,
                                                       const float* keep, float* allow, float* log_weight) {
    const Pattern& pat = plan.pattern;
    std::fill(allow, allow + kTile, 0.0f);
    std::int64_t lo = 0, hi = count;
    const auto allow_range = [&](std::int64_t a, std::int64_t b) {
        for (std::int64_t c = std::max<std::int64_t>(a, 0); c < std::min(b, count); ++c) allow[c] = keep[c];
    };
    if (pat.window >= 0 && i >= pat.global) {
        lo = i - pat.window - j0;
        hi = i + pat.window + 1 - j0;
        allow_range(0, pat.global - j0);
    } else if (pat.adaptive()) {
        const double reach = pat.ramp + z;  // keys at distance below reach have m > 0
        lo = static_cast<std::int64_t>(std::floor(static_cast<double>(i) - reach)) + 1 - j0;
        hi = static_cast<std::int64_t>(std::ceil(static_cast<double>(i) + reach)) - j0;
    }
    if (plan.p.causal) hi = std::min(hi, i + 1 - j0);
    if (pat.block > 0) {
        const std::int64_t bi = i / pat.block;
        for (std::int64_t c = 0; c < std::min(hi, count);) {
            const std::int64_t bj = (j0 + c) / pat.block, end = std::min((bj + 1) * pat.block - j0, count);
            const bool ok = std::abs(bi - bj) < pat.local_blocks || (pat.stride > 0 && bj % pat.stride == pat.stride - 1);
            if (ok) allow_range(c, std::min(end, hi));
            c = end;
        }
        return;
    }
    allow_range(lo, hi);
    if (pat.adaptive()) {
        std::fill(log_weight, log_weight + kTile, 0.0f);
        const float ramp = static_cast<float>(pat.ramp);
        for (std::int64_t c = std::max<std::int64_t>(lo, 0); c < std::min(hi, count); ++c) {
            const float x = static_cast<float>(std::abs(i - (j0 + c)));
            if (x > z) log_weight[c] = std::log(std::clamp((ramp + z - x) / ramp, 0.0f, 1.0f));
        }
    }
}

// Scores of the key-major tile (keys j0.. as rows, queries i0.. as columns) from the raw products
// `raw`, written as the softmax's inputs into `x`: alpha·s, masked as the op's style masks, log
// weights added, and -inf for keys past the end. Columns of rows whose kind is not `active` hold
// anything afterwards (the softmax passes ignore them).
inline __attribute__((always_inline)) void tile_scores(const Plan& plan, std::int64_t g, std::int64_t i0, std::int64_t j0, bool full,
                                                       const float* raw, float* x, const RowKind* kind, RowKind active) {
    const Problem& p = plan.p;
    const std::int64_t b = plan.batch_of(g), count = std::min(kTile, p.tv - j0);
    const std::uint8_t* keys = plan.keys ? plan.keys + b * p.tv + j0 : nullptr;
    const float masked_add = p.style == MaskStyle::kSubtract ? kLargeNegative : 0.0f;
    const float masked_keep = p.style == MaskStyle::kSubtract ? 1.0f : 0.0f;  // kReplace: the score is dropped
    const float masked_set = p.style == MaskStyle::kSubtract ? 0.0f : kLargeNegative;
    const float z = plan.pattern.adaptive() ? plan.span(g) : 0.0f;
    alignas(64) float keep[kTile], allow[kTile], log_weight[kTile];
    for (std::int64_t c = 0; c < kTile; ++c) keep[c] = c < count && (!keys || keys[c]) ? 1.0f : 0.0f;
    std::fill(log_weight, log_weight + kTile, 0.0f);
    const float alpha = p.alpha;
    if (full) {
        // Every query sees every key the key mask keeps: whole rows at once.
        for (std::int64_t c = 0; c < count; ++c) {
            const float* s = raw + c * kTile;
            float* o = x + c * kTile;
            if (keep[c] != 0.0f) {
                for (int r = 0; r < kTile; r += 16) store(o + r, alpha * load(s + r));
            } else {
                for (int r = 0; r < kTile; r += 16) store(o + r, (alpha * load(s + r) + masked_add) * masked_keep + masked_set);
            }
        }
    } else {
        for (std::int64_t r = 0; r < kTile; ++r) {
            if (kind[r] != active) continue;
            row_allowed(plan, i0 + r, j0, count, z, keep, allow, log_weight);
            for (std::int64_t c = 0; c < count; ++c) {
                const float v = alpha * raw[c * kTile + r] + log_weight[c];
                x[c * kTile + r] = allow[c] != 0.0f ? v : (v + masked_add) * masked_keep + masked_set;
            }
        }
    }
    for (std::int64_t c = count; c < kTile; ++c)
        for (int r = 0; r < kTile; r += 16) store(x + c * kTile + r, v16{} + kMinusInfinity);
}

// Keep factors (0 or 1/(1-rate)) of the tile's row r into f[0..64).
void keep_factors(const Plan& plan, std::int64_t g, std::int64_t i, std::int64_t j0, float* f) {
    const std::uint64_t row = static_cast<std::uint64_t>(g * plan.p.tq + i);
    const std::int64_t count = std::min(kTile, plan.p.tv - j0);
    for (std::int64_t c = 0; c < count; c += 4) {
        const unsigned bits = plan.stream.nibble(row, static_cast<std::uint64_t>((j0 + c) / 4));
        for (int l = 0; l < 4; ++l) f[c + l] = (bits >> l) & 1u ? plan.p.keep_scale : 0.0f;
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
    if (plan.tile_any && !plan.tile_any[plan.batch_of(g) * plan.k_tiles + kt]) return false;
    return plan.tile_candidate(g, i0, i1, j0, j1);
}

// The tile's raw products k·qᵀ into t.s and its softmax inputs into `scores` (which may be t.s):
// the first half of every tile step, forward and backward.
inline __attribute__((always_inline)) void score_tile(const Plan& plan, Tiles& t, const Operand& keys, std::int64_t g, std::int64_t i0,
                                                      std::int64_t i1, std::int64_t j0, std::int64_t count, RowKind active, float* scores) {
    gemm<Layout::kAsStored>(kTile, kTile, plan.p.dk, keys.data, keys.ld, t.q_columns, kTile, t.s, kTile, false);
    tile_scores(plan, g, i0, j0, active != RowKind::kFallback && plan.tile_full(i0, i1, j0, j0 + count), t.s, scores, t.kind, active);
}

// ---- forward ----

// One query tile's pass over its key tiles for the rows of kind `active` (their m, l and acc rows
// start from scratch).
__attribute__((target_clones("arch=x86-64-v4", "default"))) void forward_rows(const Plan& plan, Tiles& t, std::int64_t g,
                                                                               std::int64_t i0, RowKind active) {
    const Problem& p = plan.p;
    const std::int64_t i1 = std::min(p.tq, i0 + kTile);
    const Rows k = rows_of(p.k, g), v = rows_of(p.v, g);
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
        const Operand keys = tile_rows(k, j0, count, p.dk, plan.dkp, t.k_rows);
        const Operand values = tile_rows(v, j0, count, p.dv, plan.dvp, t.v_rows);
        score_tile(plan, t, keys, g, i0, i1, j0, count, active, t.s);
        if (p.dropout) keep_tile(plan, t, g, i0, j0);
        // The online softmax down the columns, each tile row's 4 vectors side by side (independent
        // chains for the maximum and the sums). Inactive columns keep m and l (rescale 1, sum 0)
        // and get zero probabilities.
        v16i computed[kVectors];
        v16 tile_max[kVectors], shift[kVectors], sum[kVectors];
        for (int q = 0; q < kVectors; ++q) {
            computed[q] = load(t.active + 16 * q);
            tile_max[q] = v16{} + kMinusInfinity;
            sum[q] = v16{};
        }
        for (std::int64_t c = 0; c < kTile; ++c) {
            for (int q = 0; q < kVectors; ++q) {
                const v16 y = load(t.s + c * kTile + 16 * q);
                tile_max[q] = y > tile_max[q] ? y : tile_max[q];
            }
        }
        for (int q = 0; q < kVectors; ++q) {
            const v16 m_old = load(t.m + 16 * q);
            const v16 m_new = select_lanes(computed[q], tile_max[q] > m_old ? tile_max[q] : m_old, m_old);
            // A column without any finite score so far has probabilities 0 (exp(-inf - 0)); one
            // that had none before scales its (zero) sums by exp(-inf) = 0.
            shift[q] = m_new == kMinusInfinity ? v16{} : m_new;
            store(t.m + 16 * q, m_new);
            store(rescale + 16 * q, select_lanes(computed[q], vexp(m_old - shift[q]), v16{} + 1.0f));
        }
        for (std::int64_t c = 0; c < kTile; ++c) {
            for (int q = 0; q < kVectors; ++q) {
                float* x = t.s + c * kTile + 16 * q;
                v16 e = select_lanes(computed[q], vexp(load(x) - shift[q]));
                sum[q] += e;
                if (p.dropout) e = select_lanes(computed[q], e * load(t.keep + c * kTile + 16 * q));
                store(x, e);
            }
        }
        for (int q = 0; q < kVectors; ++q) store(t.l + 16 * q, load(t.l + 16 * q) * load(rescale + 16 * q) + sum[q]);
        for (std::int64_t r = 0; r < kTile; ++r) {
            if (rescale[r] == 1.0f) continue;
            float* a = t.acc + r * plan.dvp;
            for (std::int64_t e = 0; e < plan.dvp; e += 16) store(a + e, load(a + e) * rescale[r]);
        }
        gemm<Layout::kTransposed>(kTile, plan.dvp, kTile, t.s, kTile, values.data, values.ld, t.acc, plan.dvp, true);  // acc += P̃·v
    }
}

void forward_tile(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t qt, const float* value_mean, float* stats) {
    const Problem& p = plan.p;
    const std::int64_t i0 = qt * kTile, rows = std::min(kTile, p.tq - i0), b = plan.batch_of(g);
    const bool replace = p.style == MaskStyle::kReplace;
    bool any_normal = false;
    for (std::int64_t r = 0; r < kTile; ++r) {
        if (r >= rows) t.kind[r] = RowKind::kSkip;
        else if (plan.query_kept(b, i0 + r)) t.kind[r] = RowKind::kNormal;
        else t.kind[r] = replace && !p.zero_masked ? RowKind::kUniform : RowKind::kSkip;
        any_normal |= t.kind[r] == RowKind::kNormal;
    }
    if (any_normal) {
        pack_rows_transposed(rows_of(p.q, g), i0, rows, p.dk, t.q_columns);
        forward_rows(plan, t, g, i0, RowKind::kNormal);
        bool any_fallback = false;
        for (std::int64_t r = 0; r < rows; ++r) {
            if (t.kind[r] != RowKind::kNormal || t.m[r] >= kFullyMaskedBelow) continue;
            if (replace) t.kind[r] = p.zero_masked ? RowKind::kSkip : RowKind::kUniform;
            else t.kind[r] = RowKind::kFallback, any_fallback = true;
        }
        if (any_fallback) forward_rows(plan, t, g, i0, RowKind::kFallback);
    }
    float* out = static_cast<float*>(p.out.data) + g * p.out.strides[0];
    for (std::int64_t r = 0; r < rows; ++r) {
        float* o = out + (i0 + r) * p.out.strides[1];
        float m = kMinusInfinity, inv_l = 0.0f;
        switch (t.kind[r]) {
            case RowKind::kSkip: std::fill(o, o + p.dv, 0.0f); break;
            case RowKind::kUniform: std::copy(value_mean + g * p.dv, value_mean + (g + 1) * p.dv, o); break;
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

// Combined key masks and per-(sample, key tile) "keeps any key" flags, in TiledMemory::masks.
void prepare_masks(Plan& plan, const TiledMemory& m) {
    const Problem& p = plan.p;
    const bool two = p.key_masks[0] && p.key_masks[1];
    const std::int64_t mask_bytes = two ? p.batch * p.tv : 0, flag_bytes = p.batch * plan.k_tiles;
    if (!p.key_masks[0] && !p.key_masks[1]) return;
    if (m.exec->count(m.masks) < mask_bytes + flag_bytes) throw std::runtime_error("attention tiled core: mask memory too small");
    std::uint8_t* memory = m.exec->buffer(m.masks);
    std::uint8_t* combined = memory;
    std::uint8_t* flags = memory + mask_bytes;
    if (two) {
        for (std::int64_t e = 0; e < p.batch * p.tv; ++e) combined[e] = static_cast<std::uint8_t>(p.key_masks[0][e] && p.key_masks[1][e]);
        plan.keys = combined;
    } else {
        plan.keys = p.key_masks[0] ? p.key_masks[0] : p.key_masks[1];
    }
    for (std::int64_t b = 0; b < p.batch; ++b) {
        for (std::int64_t kt = 0; kt < plan.k_tiles; ++kt) {
            const std::uint8_t* k = plan.keys + b * p.tv + kt * kTile;
            const std::int64_t count = std::min(kTile, p.tv - kt * kTile);
            flags[b * plan.k_tiles + kt] = static_cast<std::uint8_t>(std::any_of(k, k + count, [](std::uint8_t x) { return x != 0; }));
        }
    }
    plan.tile_any = flags;
}

bool may_have_uniform_rows(const Problem& p) { return p.style == MaskStyle::kReplace && !p.zero_masked && p.has_masks(); }

// The mean of each group's value rows (G, dv): the output of a uniform row. TiledMemory::means.
float* value_means(const Problem& p, const TiledMemory& m) {
    if (!may_have_uniform_rows(p)) return nullptr;
    if (m.exec->count(m.means) < p.groups() * p.dv) throw std::runtime_error("attention tiled core: value means memory too small");
    float* mean = m.exec->buffer(m.means);
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
        if (v->rank != 3 || v->strides[2] != 1) throw std::logic_error("attention tiled core: views need contiguous rows, got " + v->describe());
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
};

// One query tile's backward pass over its key tiles for rows of kind `active`.
__attribute__((target_clones("arch=x86-64-v4", "default"))) void backward_rows(const Plan& plan, Tiles& t, Accumulators& acc,
                                                                                std::int64_t g, std::int64_t i0, RowKind active,
                                                                                bool want_dalpha) {
    const Problem& p = plan.p;
    const std::int64_t i1 = std::min(p.tq, i0 + kTile);
    const Rows k = rows_of(p.k, g), v = rows_of(p.v, g);
    const std::int64_t tv_padded = plan.k_tiles * kTile;
    float* dk_group = acc.dk + acc.group_stride * g * tv_padded * plan.dkp;
    float* dv_group = acc.dv + acc.group_stride * g * tv_padded * plan.dvp;
    const bool adaptive = plan.pattern.adaptive();
    const float z = adaptive ? plan.span(g) : 0.0f, ramp = static_cast<float>(plan.pattern.ramp);
    const bool z_moves = adaptive && plan.pattern.spans[g % p.heads] > 0.0f &&
                         plan.pattern.spans[g % p.heads] < static_cast<float>(plan.pattern.max_span);
    double d_span = 0.0;
    // dS goes into t.dp times α at once, unless the sums below need it unscaled first.
    const bool sums_need_ds = want_dalpha || z_moves;
    const float ds_scale = sums_need_ds ? 1.0f : p.alpha;
    t.mark_active(active);
    for (std::int64_t kt = 0; kt < plan.k_tiles; ++kt) {
        if (!visit(plan, g, i0, i1, kt, active)) continue;
        const std::int64_t j0 = kt * kTile, count = std::min(kTile, p.tv - j0);
        const Operand keys = tile_rows(k, j0, count, p.dk, plan.dkp, t.k_rows);
        const Operand values = tile_rows(v, j0, count, p.dv, plan.dvp, t.v_rows);
        score_tile(plan, t, keys, g, i0, i1, j0, count, active, t.p);  // raw k·qᵀ stays in t.s
        gemm<Layout::kAsStored>(kTile, kTile, p.dv, values.data, values.ld, t.do_columns, kTile, t.dp, kTile, false);  // dL/d(dropped P)
        if (p.dropout) keep_tile(plan, t, g, i0, j0);
        // P from the saved statistics; dS = P ⊙ (dP - D), dL/d(score after masks and log
        // weights), into t.dp; P̃ (P after dropout) into t.p. Inactive columns get zeros.
        for (int q = 0; q < kTile; q += 16) {
            const v16i computed = load(t.active + q);
            const v16 m = load(t.m + q), inv_l = load(t.l + q), d = load(t.d + q);
            for (std::int64_t c = 0; c < kTile; ++c) {
                float* prob = t.p + c * kTile + q;
                float* dprob = t.dp + c * kTile + q;
                const float* keep = t.keep + c * kTile + q;
                v16 pr = vexp(load(prob) - m) * inv_l;
                v16 dpr = load(dprob);
                if (p.dropout) dpr *= load(keep);
                store(dprob, select_lanes(computed, pr * (dpr - d) * ds_scale));
                if (p.dropout) pr *= load(keep);
                store(prob, select_lanes(computed, pr));
            }
        }
        if (want_dalpha) {
            for (std::int64_t r = 0; r < kTile; ++r) {
                if (t.kind[r] != active) continue;
                double sum = 0.0;
                for (std::int64_t c = 0; c < count; ++c) sum += double(t.dp[c * kTile + r]) * double(t.s[c * kTile + r]);
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
                    if (x > z && x < ramp + z && (!p.causal || j0 + c <= i)) d_span += double(t.dp[c * kTile + r]) / double(ramp + z - x);
                }
            }
        }
        if (sums_need_ds) {
            for (std::int64_t e = 0; e < kTile * kTile; e += 16) store(t.dp + e, load(t.dp + e) * p.alpha);
        }
        gemm<Layout::kTransposed>(kTile, plan.dkp, kTile, t.dp, kTile, keys.data, keys.ld, t.dacc, plan.dkp, true);  // dq += α dS·k
        gemm<Layout::kAsStored>(kTile, plan.dkp, kTile, t.dp, kTile, t.q_rows, plan.dkp, dk_group + j0 * plan.dkp, plan.dkp, true);  // dk += α dSᵀ·q
        gemm<Layout::kAsStored>(kTile, plan.dvp, kTile, t.p, kTile, t.do_rows, plan.dvp, dv_group + j0 * plan.dvp, plan.dvp, true);  // dv += P̃ᵀ·dO
    }
    if (adaptive) acc.d_spans[g % p.heads] += d_span;
}

void backward_tile(const Plan& plan, Tiles& t, Accumulators& acc, std::int64_t g, std::int64_t qt, const float* stats,
                   const onednn::View& dout, const onednn::View& dq, bool want_dalpha) {
    const Problem& p = plan.p;
    const std::int64_t i0 = qt * kTile, rows = std::min(kTile, p.tq - i0), b = plan.batch_of(g);
    const bool replace = p.style == MaskStyle::kReplace;
    bool any[4] = {};
    for (std::int64_t r = 0; r < kTile; ++r) {
        RowKind kind = RowKind::kSkip;
        if (r < rows) {
            const float m = stats[(g * p.tq + i0 + r) * 2];
            t.m[r] = m;
            t.l[r] = stats[(g * p.tq + i0 + r) * 2 + 1];
            if (!plan.query_kept(b, i0 + r)) kind = replace && !p.zero_masked ? RowKind::kUniform : RowKind::kSkip;
            else if (m >= kFullyMaskedBelow) kind = RowKind::kNormal;
            else if (replace) kind = p.zero_masked ? RowKind::kSkip : RowKind::kUniform;
            else kind = RowKind::kFallback;
        }
        t.kind[r] = kind;
        any[static_cast<int>(kind)] = true;
    }
    if (!any[static_cast<int>(RowKind::kNormal)] && !any[static_cast<int>(RowKind::kFallback)]) return;
    const Rows dO = rows_of(dout, g), out = rows_of(p.out, g);
    pack_rows(rows_of(p.q, g), i0, rows, p.dk, t.q_rows, plan.dkp);
    pack_rows_transposed(rows_of(p.q, g), i0, rows, p.dk, t.q_columns);
    pack_rows(dO, i0, rows, p.dv, t.do_rows, plan.dvp);
    pack_rows_transposed(dO, i0, rows, p.dv, t.do_columns);
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
void reduce_into(const onednn::View& dst, float* const* parts, int count, std::int64_t tv_padded, std::int64_t ld, bool accumulate,
                 std::int64_t tv, std::int64_t d, std::int64_t g0, std::int64_t g1) {
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

// Backward's accumulators per thread: whole groups' when there are groups to spare, else every
// group's (see TiledCore::backward).
bool backward_by_group(const Problem& p, int threads) { return p.groups() >= 4 * threads; }
std::int64_t accumulator_floats(const Problem& p, int threads) {
    const std::int64_t tv_padded = (p.tv + kTile - 1) / kTile * kTile;
    const std::int64_t groups = backward_by_group(p, threads) ? 1 : p.groups();
    return groups * tv_padded * (round16(p.dk) + round16(p.dv)) + 2 * p.heads;
}

void TiledMemory::declare(nng::InferContext& ctx, const Problem* p) {
    using nng::Lifetime;
    const bool core = p && p->batch > 0;
    const std::int64_t k_tiles = core ? (p->tv + kTile - 1) / kTile : 0;
    masks = ctx.buffer<std::uint8_t>("tiled key masks", core ? p->batch * (p->tv + k_tiles) : 0, Lifetime::PerCall);
    means = ctx.buffer<float>("tiled value means", core ? p->groups() * p->dv : 0, Lifetime::PerCall);
    tiles = ctx.buffer<float>("tiles", core ? Tiles::floats(*p) : 0, Lifetime::PerThread);
    accumulators = ctx.buffer<float>("tiled gradient accumulators",
                                     core && ctx.training() ? accumulator_floats(*p, ctx.num_threads()) : 0, Lifetime::PerThread);
    totals = ctx.buffer<float>("tiled uniform row totals", core && ctx.training() ? p->dv : 0, Lifetime::PerThread);
}

void TiledCore::forward(const Problem& p, const Pattern& pattern, float* stats, const TiledMemory& memory) {
    check_views(p);
    Plan plan(p, pattern);
    prepare_masks(plan, memory);
    const float* mean = value_means(p, memory);
    const std::int64_t items = p.groups() * plan.q_tiles;
    if (memory.exec->count(memory.tiles) < Tiles::floats(p)) throw std::runtime_error("attention tiled core: tile memory too small");
#pragma omp parallel
    {
        Tiles t(plan, memory.exec->buffer(memory.tiles, omp_get_thread_num()));
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t item = 0; item < items; ++item) forward_tile(plan, t, item / plan.q_tiles, item % plan.q_tiles, mean, stats);
    }
}

void TiledCore::backward(const Problem& p, const Pattern& pattern, const float* stats, const onednn::View& dout,
                         const TiledGradients& grads, const TiledMemory& memory) {
    check_views(p);
    const bool dk_wanted = grads.dk.present();
    if (!dout.present()) {
        zero_rows(grads.dq, p.groups() * p.tq, p.dk);
        zero_rows(grads.dv, p.groups() * p.tv, p.dv);
        if (!grads.dk_accumulates) zero_rows(grads.dk, p.groups() * p.tv, p.dk);
        if (grads.d_alpha_product) *grads.d_alpha_product = 0.0;
        if (grads.d_spans) std::fill(grads.d_spans, grads.d_spans + p.heads, 0.0f);
        return;
    }
    if (omp_get_max_threads() > kMaxThreads) throw std::runtime_error("attention tiled core: at most 256 threads");
    Plan plan(p, pattern);
    prepare_masks(plan, memory);
    const std::int64_t items = p.groups() * plan.q_tiles, tv_padded = plan.k_tiles * kTile;
    const std::int64_t heads = p.heads;
    float* dk_parts[kMaxThreads] = {};
    float* dv_parts[kMaxThreads] = {};
    double d_alpha[kMaxThreads] = {};
    double* span_parts[kMaxThreads] = {};
    int used = 0;
    const bool want_dalpha = grads.d_alpha_product != nullptr;
    // With groups to spare, a thread takes whole groups and writes their key and value gradients
    // itself; with few (one long sequence), threads share a group's query tiles and sum their
    // own full-size accumulators at the end.
    const bool by_group = backward_by_group(p, omp_get_max_threads());
    const std::int64_t acc_k = (by_group ? 1 : p.groups()) * tv_padded * plan.dkp, acc_v = (by_group ? 1 : p.groups()) * tv_padded * plan.dvp;
    if (memory.exec->count(memory.accumulators) < acc_k + acc_v + 2 * heads || memory.exec->count(memory.tiles) < Tiles::floats(p)) {
        throw std::runtime_error("attention tiled core: backward memory too small for " + std::to_string(omp_get_max_threads()) + " threads");
    }
    const TiledMemory& declared = memory;
#pragma omp parallel
    {
        const int id = omp_get_thread_num();
#pragma omp single
        used = omp_get_num_threads();
        Tiles t(plan, declared.exec->buffer(declared.tiles, id));
        const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(acc_k + acc_v + 2 * heads);
        float* memory = declared.exec->buffer(declared.accumulators, id);
        Accumulators acc{memory, memory + acc_k, by_group ? 0 : 1, 0.0, reinterpret_cast<double*>(memory + acc_k + acc_v)};
        std::memset(memory, 0, bytes);
        dk_parts[id] = acc.dk;
        dv_parts[id] = acc.dv;
        span_parts[id] = acc.d_spans;
        if (by_group) {
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t g = 0; g < p.groups(); ++g) {
                std::memset(memory, 0, sizeof(float) * static_cast<std::size_t>(acc_k + acc_v));
                for (std::int64_t qt = 0; qt < plan.q_tiles; ++qt) backward_tile(plan, t, acc, g, qt, stats, dout, grads.dq, want_dalpha);
                reduce_into(grads.dv, &acc.dv, 1, tv_padded, plan.dvp, false, p.tv, p.dv, g, g + 1);
                if (dk_wanted) reduce_into(grads.dk, &acc.dk, 1, tv_padded, plan.dkp, grads.dk_accumulates, p.tv, p.dk, g, g + 1);
            }
        } else {
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t item = 0; item < items; ++item) {
                backward_tile(plan, t, acc, item / plan.q_tiles, item % plan.q_tiles, stats, dout, grads.dq, want_dalpha);
            }
        }
        d_alpha[id] = acc.d_alpha;
    }
    if (!by_group) {
        reduce_into(grads.dv, dv_parts, used, tv_padded, plan.dvp, false, p.tv, p.dv, 0, p.groups());
        if (dk_wanted) reduce_into(grads.dk, dk_parts, used, tv_padded, plan.dkp, grads.dk_accumulates, p.tv, p.dk, 0, p.groups());
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
        Plan& pl = plan;
#pragma omp parallel for schedule(static)
        for (std::int64_t g = 0; g < p.groups(); ++g) {
            const std::int64_t b = pl.batch_of(g);
            float* total = declared.exec->buffer(declared.totals, omp_get_thread_num());
            std::fill(total, total + p.dv, 0.0f);
            bool any = false;
            const Rows dO = rows_of(dout, g);
            for (std::int64_t i = 0; i < p.tq; ++i) {
                const bool uniform = !pl.query_kept(b, i) || stats[(g * p.tq + i) * 2] == kMinusInfinity;
                if (!uniform) continue;
                any = true;
                for (std::int64_t e = 0; e < p.dv; ++e) total[e] += dO.row(i)[e];
            }
            if (!any) continue;
            float* dv = static_cast<float*>(grads.dv.data) + g * grads.dv.strides[0];
            for (std::int64_t j = 0; j < p.tv; ++j)
                for (std::int64_t e = 0; e < p.dv; ++e) dv[j * grads.dv.strides[1] + e] += total[e] / static_cast<float>(p.tv);
        }
    }
}

}  // namespace nngraph_attention
