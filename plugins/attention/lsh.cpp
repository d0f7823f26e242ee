// LshCore (see lsh.hpp). One call goes round by round: hash every position (products with the
// head's rotation, 64 rows at a time), counting-sort each group by (bucket, position), then attend
// chunk by chunk. Work items are (group, chunk) pairs shared among the threads, each thread with
// tiles of its own. Within a round every query belongs to one chunk, so forward merges a round
// into its queries' running (m, l, output) without races; backward's key and value gradients
// reach a chunk and the one before it, so chunks go in three phases (even, odd, and the last when
// the count is odd) in which no two chunks touch the same rows, which also keeps every sum in the
// same order on any number of threads.
#include "lsh.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels.hpp"
#include "lsh_hashing.hpp"
#include "masks.hpp"

namespace nngraph_attention {
namespace {

using namespace kernels;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
constexpr std::int64_t kHashRows = 64;  // positions hashed per product

// The sizes of one call. A window is a chunk's keys: the chunk before it, then its own.
struct Geometry {
    std::int64_t steps, chunk, chunks, buckets, half, halfp, dkp, dvp, cp, windowp;

    Geometry(const Problem& p, std::int64_t bucket_size)
        : steps(p.tq),
          chunk(std::max<std::int64_t>(1, std::min(bucket_size, p.tq))),
          chunks(nng::ceil_div(p.tq, chunk)),
          buckets(lsh::bucket_count(p.tq, bucket_size)),
          half(buckets / 2),
          halfp(round16(half)),
          dkp(round16(p.dk)),
          dvp(round16(p.dv)),
          cp(round16(chunk)),
          windowp(round16(chunks > 1 ? 2 * chunk : chunk)) {}

    // Sorted positions [first, end) of chunk k.
    std::int64_t first(std::int64_t k) const { return k * chunk; }
    std::int64_t end(std::int64_t k) const { return std::min(steps, (k + 1) * chunk); }
    std::int64_t previous(std::int64_t k) const { return (k + chunks - 1) % chunks; }
    // Backward's phase of chunk k: chunks of one phase share no key rows.
    int phase(std::int64_t k) const { return chunks > 1 && chunks % 2 == 1 && k == chunks - 1 ? 2 : int(k % 2); }
};

// One thread's tiles, carved in this order. Rows of score-sized tiles are the chunk's queries,
// columns its window's keys.
struct Tiles {
    float *q_rows, *k_rows, *k_columns, *v_rows, *v_columns, *do_rows;
    float *raw, *score, *dscore, *acc, *dq, *dk, *dv;
    // Per score, 1 or 0 (0 past the window's keys): whether its gradient passes (it is not
    // replaced by a constant: allowed and not itself, or masked in Attention's style, score - 1e9),
    // and whether its probability counts in the output (MultiHeadAttention's zero_masked zeroes
    // masked ones after the softmax).
    float *differentiable, *kept;
    float *hash_rows, *hash_products;
    std::int32_t *query_at, *key_at, *counts;
    // mixed_bfloat16: the chunk's operands rounded to bf16 as the products read them (kernels.hpp):
    // q's and dout's rows, the pairs of the unit keys' and the values' transposes (q·kᵀ, dout·vᵀ),
    // the pairs of the keys, values, queries and dout (dS·k, P·v, dSᵀ·q, Pᵀ·dout), and P and dS
    // as rows and in pairs.
    std::uint16_t *q16 = nullptr, *do16 = nullptr, *k_transposed16 = nullptr, *v_transposed16 = nullptr;
    std::uint16_t *k_pairs16 = nullptr, *v_pairs16 = nullptr, *q_pairs16 = nullptr, *do_pairs16 = nullptr;
    std::uint16_t *p_rows16 = nullptr, *p_pairs16 = nullptr, *ds_rows16 = nullptr, *ds_pairs16 = nullptr;

    static std::int64_t floats(const Problem& p, const Geometry& g) {
        nng::Carver counter;
        [[maybe_unused]] const Tiles sized(p, g, counter);
        return counter.floats();
    }
    // Carves the tiles from `carver` (a counting one sizes them: floats()).
    Tiles(const Problem& p, const Geometry& g, nng::Carver& carver) {
        const auto take = [&carver](std::int64_t n) { return carver.take<float>(n); };
        const std::int64_t w = g.windowp;
        q_rows = take(g.cp * g.dkp);
        k_rows = take(w * g.dkp);
        k_columns = take(p.dk * w);
        v_rows = take(w * g.dvp);
        v_columns = take(p.dv * w);
        do_rows = take(g.cp * g.dvp);
        raw = take(g.cp * w);
        score = take(g.cp * w);
        dscore = take(g.cp * w);
        differentiable = take(g.cp * w);
        kept = take(g.cp * w);
        acc = take(g.cp * g.dvp);
        dq = take(g.cp * g.dkp);
        dk = take(w * g.dkp);
        dv = take(w * g.dvp);
        hash_rows = take(kHashRows * g.dkp);
        hash_products = take(kHashRows * g.halfp);
        query_at = carver.take<std::int32_t>(g.cp);
        key_at = carver.take<std::int32_t>(w);
        counts = carver.take<std::int32_t>(g.buckets + 1);
        if (!p.bfloat16) return;
        const auto take_bf16 = [&carver](std::int64_t n) { return carver.take<std::uint16_t>(n); };
        q16 = take_bf16(g.cp * round2(p.dk));
        do16 = take_bf16(g.cp * round2(p.dv));
        k_transposed16 = take_bf16(round2(p.dk) * w);
        v_transposed16 = take_bf16(round2(p.dv) * w);
        k_pairs16 = take_bf16(w * g.dkp);
        v_pairs16 = take_bf16(w * g.dvp);
        q_pairs16 = take_bf16(g.cp * g.dkp);
        do_pairs16 = take_bf16(g.cp * g.dvp);
        p_rows16 = take_bf16(g.cp * w);
        p_pairs16 = take_bf16(g.cp * w);
        ds_rows16 = take_bf16(g.cp * w);
        ds_pairs16 = take_bf16(g.cp * w);
    }
};

float* row_of(const onednn::View& v, std::int64_t g, std::int64_t i) {
    return static_cast<float*>(v.data) + g * v.strides[0] + i * v.strides[1];
}

// Copies a row of n floats into a tile. Rows are one head wide, too short to pay for a call to memmove.
inline __attribute__((always_inline)) void copy_row(const float* from, std::int64_t n, float* to) {
    for (std::int64_t e = 0; e < n; ++e) to[e] = from[e];
}

void zero_rows(const onednn::View& v, std::int64_t groups, std::int64_t steps, std::int64_t d) {
    if (!v.present()) return;
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t g = 0; g < groups; ++g)
        for (std::int64_t i = 0; i < steps; ++i) std::fill_n(row_of(v, g, i), d, 0.0f);
}

// Everything a call shares.
struct Plan {
    const Problem& p;
    const Geometry& geo;
    const Masks& masks;
    const float* inverse_norms;  // (G, T): 1 / the length of each query, its key's scale
    const std::int32_t* order;   // (G, rounds, T): sorted position -> position
    std::int64_t rounds;

    const std::int32_t* order_of(std::int64_t g, std::int64_t round) const {
        return order + (g * rounds + round) * geo.steps;
    }
    // Whether query i of group g gives a zero row (Attention's masked queries).
    bool skipped(std::int64_t g, std::int64_t i) const {
        return p.style == MaskStyle::kSubtract && !masks.query_kept(masks.batch_of_group(g), i);
    }
};

// ---- the chunk products: f32, or under mixed_bfloat16 on bf16 operands (f32 sums either way) ----

// c (cp x w) = a (cp x d) · bᵀ, b (w x d) the window's rows, also given as columns for f32; `a16`
// and `bt16` hold the bf16 roundings of a and of bᵀ in pairs under mixed_bfloat16.
struct TransposedProduct {
    const float *a_rows, *b_rows, *b_columns;
    std::int64_t d, dp;
    std::uint16_t *a16, *bt16;
    float* c;
};
void times_transposed(const Problem& p, const Geometry& geo, const TransposedProduct& x) {
    const std::int64_t w = geo.windowp;
    if (!p.bfloat16) {
        gemm(Layout::kAsStored, geo.cp, w, x.d, x.a_rows, x.dp, x.b_columns, w, x.c, w, false);
        return;
    }
    const std::int64_t d2 = round2(x.d);
    to_bfloat16_rows({x.a_rows, geo.cp, x.d, x.dp}, {x.a16, geo.cp, d2, d2});
    to_bfloat16_pairs_transposed({x.b_rows, w, x.d, x.dp}, {x.bt16, d2, w, 2 * w});
    gemm_bfloat16(Layout::kAsStored, geo.cp, w, d2, x.a16, d2, x.bt16, 2 * w, x.c, w, false);
}

// t.raw = q·kᵀ over the chunk's queries and its window's unit keys.
void scores_product(const Problem& p, const Geometry& geo, Tiles& t) {
    times_transposed(p, geo, {t.q_rows, t.k_rows, t.k_columns, p.dk, geo.dkp, t.q16, t.k_transposed16, t.raw});
}

// t.acc = P·v, P in t.score.
void output_product(const Problem& p, const Geometry& geo, Tiles& t) {
    const std::int64_t w = geo.windowp;
    if (!p.bfloat16) {
        gemm(Layout::kAsStored, geo.cp, geo.dvp, w, t.score, w, t.v_rows, geo.dvp, t.acc, geo.dvp, false);
        return;
    }
    to_bfloat16_rows({t.score, geo.cp, w, w}, {t.p_rows16, geo.cp, w, w});
    to_bfloat16_pairs({t.v_rows, w, p.dv, geo.dvp}, {t.v_pairs16, w, geo.dvp, 2 * geo.dvp});
    gemm_bfloat16(Layout::kAsStored, geo.cp, geo.dvp, w, t.p_rows16, w, t.v_pairs16, 2 * geo.dvp, t.acc, geo.dvp,
                  false);
}

// t.dscore = dout·vᵀ.
void probability_gradient_product(const Problem& p, const Geometry& geo, Tiles& t) {
    times_transposed(p, geo, {t.do_rows, t.v_rows, t.v_columns, p.dv, geo.dvp, t.do16, t.v_transposed16, t.dscore});
}

// t.dq = dS·k and t.dk = dSᵀ·q, dS (times alpha) in t.dscore.
void query_key_gradient_products(const Problem& p, const Geometry& geo, Tiles& t) {
    const std::int64_t w = geo.windowp;
    if (!p.bfloat16) {
        gemm(Layout::kAsStored, geo.cp, geo.dkp, w, t.dscore, w, t.k_rows, geo.dkp, t.dq, geo.dkp, false);
        gemm(Layout::kTransposed, w, geo.dkp, geo.cp, t.dscore, w, t.q_rows, geo.dkp, t.dk, geo.dkp, false);
        return;
    }
    to_bfloat16_rows({t.dscore, geo.cp, w, w}, {t.ds_rows16, geo.cp, w, w});
    to_bfloat16_pairs({t.k_rows, w, p.dk, geo.dkp}, {t.k_pairs16, w, geo.dkp, 2 * geo.dkp});
    gemm_bfloat16(Layout::kAsStored, geo.cp, geo.dkp, w, t.ds_rows16, w, t.k_pairs16, 2 * geo.dkp, t.dq, geo.dkp,
                  false);
    to_bfloat16_pairs({t.dscore, geo.cp, w, w}, {t.ds_pairs16, geo.cp, w, 2 * w});
    to_bfloat16_pairs({t.q_rows, geo.cp, p.dk, geo.dkp}, {t.q_pairs16, geo.cp, geo.dkp, 2 * geo.dkp});
    gemm_bfloat16(Layout::kTransposed, w, geo.dkp, geo.cp, t.ds_pairs16, 2 * w, t.q_pairs16, 2 * geo.dkp, t.dk, geo.dkp,
                  false);
}

// t.dv = Pᵀ·dout, P in t.score.
void value_gradient_product(const Problem& p, const Geometry& geo, Tiles& t) {
    const std::int64_t w = geo.windowp;
    if (!p.bfloat16) {
        gemm(Layout::kTransposed, w, geo.dvp, geo.cp, t.score, w, t.do_rows, geo.dvp, t.dv, geo.dvp, false);
        return;
    }
    to_bfloat16_pairs({t.score, geo.cp, w, w}, {t.p_pairs16, geo.cp, w, 2 * w});
    to_bfloat16_pairs({t.do_rows, geo.cp, p.dv, geo.dvp}, {t.do_pairs16, geo.cp, geo.dvp, 2 * geo.dvp});
    gemm_bfloat16(Layout::kTransposed, w, geo.dvp, geo.cp, t.p_pairs16, 2 * w, t.do_pairs16, 2 * geo.dvp, t.dv, geo.dvp,
                  false);
}

// Packs chunk k of `round` into the thread's tiles: positions, query rows, the window's unit keys
// (rows and columns) and value rows (and columns when `value_columns`), the raw products q·k into
// t.raw, the scores, masked and with the self rule, into t.score (-inf past the window), and each
// score's flags into t.differentiable and t.kept. Returns (queries, keys).
NNG_LOOP_CLONES std::pair<std::int64_t, std::int64_t> load_chunk(const Plan& plan, Tiles& t, std::int64_t g,
                                                                 std::int64_t round, std::int64_t k,
                                                                 bool value_columns) {
    const Problem& p = plan.p;
    const Geometry& geo = plan.geo;
    const std::int32_t* order = plan.order_of(g, round);
    const std::int64_t queries = geo.end(k) - geo.first(k), w = geo.windowp;
    std::int64_t keys = 0;
    if (geo.chunks > 1) {
        const std::int64_t prev = geo.previous(k);
        for (std::int64_t s = geo.first(prev); s < geo.end(prev); ++s) t.key_at[keys++] = order[s];
    }
    for (std::int64_t s = geo.first(k); s < geo.end(k); ++s) t.key_at[keys++] = order[s];
    for (std::int64_t r = 0; r < queries; ++r) t.query_at[r] = order[geo.first(k) + r];

    std::memset(t.q_rows, 0, sizeof(float) * geo.cp * geo.dkp);
    for (std::int64_t r = 0; r < queries; ++r) copy_row(row_of(p.q, g, t.query_at[r]), p.dk, t.q_rows + r * geo.dkp);
    std::memset(t.k_rows, 0, sizeof(float) * w * geo.dkp);
    std::memset(t.k_columns, 0, sizeof(float) * p.dk * w);
    std::memset(t.v_rows, 0, sizeof(float) * w * geo.dvp);
    if (value_columns) std::memset(t.v_columns, 0, sizeof(float) * p.dv * w);
    for (std::int64_t c = 0; c < keys; ++c) {
        const std::int64_t j = t.key_at[c];
        const float* q = row_of(p.q, g, j);
        const float scale = plan.inverse_norms[g * geo.steps + j];
        for (std::int64_t e = 0; e < p.dk; ++e) {
            t.k_rows[c * geo.dkp + e] = q[e] * scale;
            t.k_columns[e * w + c] = q[e] * scale;
        }
        const float* v = row_of(p.v, g, j);
        copy_row(v, p.dv, t.v_rows + c * geo.dvp);
        if (value_columns)
            for (std::int64_t e = 0; e < p.dv; ++e) t.v_columns[e * w + c] = v[e];
    }
    scores_product(p, geo, t);

    const std::int64_t b = plan.masks.batch_of_group(g);
    const std::uint8_t* key_mask = plan.masks.keys(b);
    const MaskedScore masked = plan.masks.masked_score();
    const bool subtracted = p.style == MaskStyle::kSubtract;
    for (std::int64_t r = 0; r < geo.cp; ++r) {
        float* x = t.score + r * w;
        float* differentiable = t.differentiable + r * w;
        float* kept = t.kept + r * w;
        if (r >= queries) {
            std::fill_n(x, w, kMinusInfinity);
            std::fill_n(differentiable, w, 0.0f);
            std::fill_n(kept, w, 0.0f);
            continue;
        }
        const std::int64_t i = t.query_at[r];
        const bool query_kept = plan.masks.query_kept(b, i);
        const bool query_masked = p.style == MaskStyle::kReplace && !query_kept;
        for (std::int64_t c = 0; c < keys; ++c) {
            const std::int64_t j = t.key_at[c];
            const float v = p.alpha * t.raw[r * w + c];
            const bool visible = (!key_mask || key_mask[j]) && !(p.causal && j > i);
            const bool allowed = !query_masked && visible;
            x[c] = !allowed ? masked(v) : j == i ? lsh::kSelfScore : v;
            differentiable[c] = (allowed ? j != i : subtracted) ? 1.0f : 0.0f;
            kept[c] = !p.zero_masked || (query_kept && visible) ? 1.0f : 0.0f;
        }
        std::fill(x + keys, x + w, kMinusInfinity);
        std::fill(differentiable + keys, differentiable + w, 0.0f);
        std::fill(kept + keys, kept + w, 0.0f);
    }
    return {queries, keys};
}

// ---- hashing ----

// Buckets of group g's positions [j0, j0 + 64) in `round` into buckets[j].
void hash_rows(const Plan& plan, Tiles& t, const float* rotations, std::int64_t g, std::int64_t round, std::int64_t j0,
               std::int32_t* buckets) {
    const Problem& p = plan.p;
    const Geometry& geo = plan.geo;
    const std::int64_t count = std::min(kHashRows, geo.steps - j0);
    std::memset(t.hash_rows, 0, sizeof(float) * kHashRows * geo.dkp);
    for (std::int64_t r = 0; r < count; ++r) std::copy_n(row_of(p.q, g, j0 + r), p.dk, t.hash_rows + r * geo.dkp);
    const float* rotation = rotations + ((g % p.heads) * plan.rounds + round) * p.dk * geo.halfp;
    gemm(Layout::kAsStored, kHashRows, geo.halfp, p.dk, t.hash_rows, geo.dkp, rotation, geo.halfp, t.hash_products,
         geo.halfp, false);
    for (std::int64_t r = 0; r < count; ++r)
        buckets[j0 + r] = static_cast<std::int32_t>(lsh::bucket_of(t.hash_products + r * geo.halfp, geo.half));
}

// Group g's positions sorted by (bucket, position): a stable counting sort.
void sort_by_bucket(const Geometry& geo, Tiles& t, const std::int32_t* buckets, std::int32_t* order) {
    std::fill_n(t.counts, geo.buckets + 1, 0);
    for (std::int64_t j = 0; j < geo.steps; ++j) ++t.counts[buckets[j] + 1];
    for (std::int64_t c = 0; c < geo.buckets; ++c) t.counts[c + 1] += t.counts[c];
    for (std::int64_t j = 0; j < geo.steps; ++j) order[t.counts[buckets[j]]++] = static_cast<std::int32_t>(j);
}

// The sorted orders of every group and round (the identity with one bucket).
void hash_and_sort(const Plan& plan, const Buffers& buffers, BufferId chunk_tiles, const float* rotations,
                   std::int32_t* buckets, std::int32_t* order) {
    const Problem& p = plan.p;
    const Geometry& geo = plan.geo;
    const std::int64_t groups = p.groups(), tiles = nng::ceil_div(geo.steps, kHashRows);
    for (std::int64_t round = 0; round < plan.rounds; ++round) {
#pragma omp parallel
        {
            nng::Carver carver = buffers.thread_carver(chunk_tiles);
            Tiles t(p, geo, carver);
            if (geo.buckets == 1) {
#pragma omp for schedule(static)
                for (std::int64_t g = 0; g < groups; ++g) {
                    std::int32_t* o = order + (g * plan.rounds + round) * geo.steps;
                    for (std::int64_t j = 0; j < geo.steps; ++j) o[j] = static_cast<std::int32_t>(j);
                }
            } else {
#pragma omp for schedule(dynamic, 1)
                for (std::int64_t item = 0; item < groups * tiles; ++item) {
                    const std::int64_t g = item / tiles;
                    hash_rows(plan, t, rotations, g, round, (item % tiles) * kHashRows, buckets + g * geo.steps);
                }
#pragma omp for schedule(static)
                for (std::int64_t g = 0; g < groups; ++g)
                    sort_by_bucket(geo, t, buckets + g * geo.steps, order + (g * plan.rounds + round) * geo.steps);
            }
        }
    }
}

// Every head's and round's rotation, (dk, halfp) each with zero padding columns.
void draw_rotations(const Problem& p, const Geometry& geo, std::int64_t rounds, float* rotations) {
    if (geo.buckets == 1) return;
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t h = 0; h < p.heads; ++h) {
        for (std::int64_t round = 0; round < rounds; ++round) {
            float* r = rotations + (h * rounds + round) * p.dk * geo.halfp;
            for (std::int64_t e = 0; e < p.dk; ++e)
                for (std::int64_t c = 0; c < geo.halfp; ++c)
                    r[e * geo.halfp + c] =
                        c < geo.half ? lsh::rotation(p.hash_seed, h, round, rounds, p.dk, geo.half, e, c) : 0.0f;
        }
    }
}

void compute_inverse_norms(const Problem& p, float* inverse_norms) {
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t g = 0; g < p.groups(); ++g) {
        for (std::int64_t j = 0; j < p.tq; ++j) {
            const float* q = row_of(p.q, g, j);
            double sum = 0.0;
            for (std::int64_t e = 0; e < p.dk; ++e) sum += double(q[e]) * q[e];
            inverse_norms[g * p.tq + j] = static_cast<float>(1.0 / std::sqrt(sum + lsh::kNormEpsilon));
        }
    }
}

// ---- forward ----

// A row of scores into probabilities' numerators in place: x[c] = e^(x[c] - shift) for c < w (a
// multiple of 16), then times kept[c] when kept is given; *sum gets the sum before `kept`.
template <int kBytes>
struct ExponentiateRow {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(float* x, std::int64_t w, float shift, const float* kept,
                                                          float* sum) {
        *sum = lane_sum(exponentiate<V>(x, x, w, shift));
        if (kept) {
            for (std::int64_t c = 0; c < w; c += kLanes) store(x + c, load<V>(x + c) * load<V>(kept + c));
        }
    }
};

// One query row's backward over its window (w a multiple of 16): the probability from the saved
// statistics (m, 1/l); ds = P (dP - delta) where differentiable, in place; x becomes P, times
// kept[c] when kept is given.
template <int kBytes>
struct ScoreGradientRow {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(float* x, float* ds, const float* differentiable,
                                                          const float* kept, std::int64_t w, float m, float inv_l,
                                                          float delta) {
        for (std::int64_t c = 0; c < w; c += kLanes) {
            const V probability = vexp(load<V>(x + c) - m) * inv_l;
            store(ds + c, probability * (load<V>(ds + c) - delta) * load<V>(differentiable + c));
            store(x + c, kept ? probability * load<V>(kept + c) : probability);
        }
    }
};

// Chunk k of `round`: its softmax over the window merged into its queries' running maximum m,
// sum l and unnormalised output (stats holds (m, l) per query).
void forward_chunk(const Plan& plan, Tiles& t, std::int64_t g, std::int64_t round, std::int64_t k, float* stats) {
    const Problem& p = plan.p;
    const Geometry& geo = plan.geo;
    const auto [queries, keys] = load_chunk(plan, t, g, round, k, false);
    const std::int64_t w = geo.windowp;
    float* old_scale = t.dscore;  // per query row: the factor on its running sum and output
    for (std::int64_t r = 0; r < geo.cp; ++r) {
        float* x = t.score + r * w;
        if (r >= queries || plan.skipped(g, t.query_at[r])) {
            std::fill_n(x, w, 0.0f);
            old_scale[r] = 1.0f;
            continue;
        }
        const std::int64_t i = t.query_at[r];
        float* st = stats + (g * geo.steps + i) * 2;
        float row_max = kMinusInfinity;
        for (std::int64_t c = 0; c < keys; ++c) row_max = std::max(row_max, x[c]);
        const float m_old = st[0], m_new = std::max(m_old, row_max);
        float l = 0.0f;
        nng::simd::run_widest<ExponentiateRow>(x, w, m_new,
                                               p.zero_masked ? static_cast<const float*>(t.kept + r * w) : nullptr, &l);
        old_scale[r] = m_old == kMinusInfinity ? 0.0f : std::exp(m_old - m_new);
        st[0] = m_new;
        st[1] = st[1] * old_scale[r] + l;
    }
    output_product(p, geo, t);
    for (std::int64_t r = 0; r < queries; ++r) {
        const std::int64_t i = t.query_at[r];
        if (plan.skipped(g, i)) continue;
        float* o = row_of(p.out, g, i);
        for (std::int64_t e = 0; e < p.dv; ++e) o[e] = o[e] * old_scale[r] + t.acc[r * geo.dvp + e];
    }
}

// ---- backward ----

struct Gradients {
    const onednn::View &dq, &dv;
    float* key_gradients;  // (G, T, dk): dL/d(unit key)
    double d_alpha = 0.0;
    bool want_dalpha;
};

void backward_chunk(const Plan& plan, Tiles& t, Gradients& grads, const onednn::View& dout, const float* stats,
                    std::int64_t g, std::int64_t round, std::int64_t k) {
    const Problem& p = plan.p;
    const Geometry& geo = plan.geo;
    const auto [queries, keys] = load_chunk(plan, t, g, round, k, true);
    const std::int64_t w = geo.windowp;
    std::memset(t.do_rows, 0, sizeof(float) * geo.cp * geo.dvp);
    for (std::int64_t r = 0; r < queries; ++r) copy_row(row_of(dout, g, t.query_at[r]), p.dv, t.do_rows + r * geo.dvp);
    probability_gradient_product(p, geo, t);
    double d_alpha = 0.0;
    for (std::int64_t r = 0; r < geo.cp; ++r) {
        float* x = t.score + r * w;
        float* ds = t.dscore + r * w;
        if (r >= queries || plan.skipped(g, t.query_at[r])) {
            std::fill_n(x, w, 0.0f);
            std::fill_n(ds, w, 0.0f);
            continue;
        }
        const std::int64_t i = t.query_at[r];
        const float* st = stats + (g * geo.steps + i) * 2;
        const float* o = row_of(p.out, g, i);
        double delta = 0.0;  // dO·O
        for (std::int64_t e = 0; e < p.dv; ++e) delta += double(t.do_rows[r * geo.dvp + e]) * o[e];
        const float m = st[0], inv_l = st[1], dlt = static_cast<float>(delta);
        const float* differentiable = t.differentiable + r * w;
        const float* kept = t.kept + r * w;
        // Past the window's keys the probabilities are e^-inf = 0 and the flags 0.
        nng::simd::run_widest<ScoreGradientRow>(x, ds, differentiable, p.zero_masked ? kept : nullptr, w, m, inv_l,
                                                dlt);
        if (grads.want_dalpha)
            for (std::int64_t c = 0; c < keys; ++c) d_alpha += double(ds[c]) * t.raw[r * w + c];
        for (std::int64_t c = 0; c < w; ++c) ds[c] *= p.alpha;
    }
    grads.d_alpha += d_alpha;
    if (grads.dq.present()) {
        query_key_gradient_products(p, geo, t);
        for (std::int64_t r = 0; r < queries; ++r) {
            float* d = row_of(grads.dq, g, t.query_at[r]);
            for (std::int64_t e = 0; e < p.dk; ++e) d[e] += t.dq[r * geo.dkp + e];
        }
        for (std::int64_t c = 0; c < keys; ++c) {
            float* d = grads.key_gradients + (g * geo.steps + t.key_at[c]) * p.dk;
            for (std::int64_t e = 0; e < p.dk; ++e) d[e] += t.dk[c * geo.dkp + e];
        }
    }
    if (grads.dv.present()) {
        value_gradient_product(p, geo, t);
        for (std::int64_t c = 0; c < keys; ++c) {
            float* d = row_of(grads.dv, g, t.key_at[c]);
            for (std::int64_t e = 0; e < p.dv; ++e) d[e] += t.dv[c * geo.dvp + e];
        }
    }
}

// dq += the unit keys' gradient through k = q / sqrt(|q|² + ε): (dk - k (k·dk)) / sqrt(|q|² + ε).
void add_key_gradients(const Problem& p, const float* inverse_norms, const float* key_gradients,
                       const onednn::View& dq) {
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t g = 0; g < p.groups(); ++g) {
        for (std::int64_t j = 0; j < p.tq; ++j) {
            const float* q = row_of(p.q, g, j);
            const float* dk = key_gradients + (g * p.tq + j) * p.dk;
            const double s = inverse_norms[g * p.tq + j];
            double dot = 0.0;
            for (std::int64_t e = 0; e < p.dk; ++e) dot += double(q[e]) * dk[e];
            float* d = row_of(dq, g, j);
            for (std::int64_t e = 0; e < p.dk; ++e) d[e] += static_cast<float>(s * dk[e] - s * s * s * q[e] * dot);
        }
    }
}

void check_problem(const Problem& p) {
    if (p.tq != p.tv)
        throw std::logic_error("attention lsh core: shared query-keys need as many keys as queries, got " +
                               std::to_string(p.tq) + " queries and " + std::to_string(p.tv) + " keys");
    if (p.may_drop) throw std::logic_error("attention lsh core: no dropout on LSH attention");
}

}  // namespace

struct LshCore::Ids {
    BufferId order, stats;             // saved in training: sorted orders per round, (m, 1/l) per query
    BufferId inverse_norms, key_mask;  // both directions
    BufferId rotations, buckets;       // forward
    BufferId key_gradients;            // backward
    BufferId tiles;                    // per thread
};

LshCore::Ids LshCore::declare(const Problem& p, bool training, BufferList& list) const {
    const Geometry geo(p, bucket_size_);
    const Lifetime kept = training ? Lifetime::kSaved : Lifetime::kForward;
    const std::int64_t per = training ? p.heads : p.groups();  // saved buffers count per batch element
    Ids ids;
    ids.order = list.add("attention.lsh_sorted_order", kept, NNG_I32, per * hashes_ * p.tq, 1, 1);
    ids.stats = list.floats("attention.row_statistics", kept, per * p.tq * 2);
    ids.inverse_norms = list.floats("attention.lsh_inverse_norms", Lifetime::kCall, p.groups() * p.tq);
    ids.key_mask = list.bytes("attention.key_mask", Lifetime::kCall, Masks::combined_bytes(p));
    ids.rotations = list.floats("attention.lsh_rotations", Lifetime::kForward,
                                geo.buckets > 1 ? p.heads * hashes_ * p.dk * geo.halfp : 0);
    ids.buckets =
        list.add("attention.lsh_buckets", Lifetime::kForward, NNG_I32, geo.buckets > 1 ? p.groups() * p.tq : 0, 1, 1);
    ids.key_gradients = list.floats("attention.lsh_key_gradients", Lifetime::kBackward, p.groups() * p.tq * p.dk);
    ids.tiles = list.floats("attention.lsh_tiles", Lifetime::kThread, Tiles::floats(p, geo));
    return ids;
}

CoreWork LshCore::work(const Problem& p, bool /*training*/) const {
    // Per round: hashing (the queries times a dk x buckets/2 rotation), then each query against its
    // window of keys: q·kᵀ, the softmax (6 a score) and P·v; backward recomputes q·kᵀ and makes
    // four more products (5 a score), as the blockwise core does. Rows are read once a round.
    const Geometry geo(p, bucket_size_);
    const std::int64_t window = geo.chunks > 1 ? 2 * geo.chunk : geo.chunk, G = p.groups();
    const std::int64_t scores = hashes_ * G * p.tq * window;
    const nng::Work hashing = hashes_ * nng::matmul_work(G, p.tq, p.dk, geo.half);
    const nng::Work product{2 * scores * p.dk, 4 * hashes_ * G * p.tq * p.dk};
    const nng::Work weighted_sum{2 * scores * p.dv, 4 * hashes_ * G * p.tq * p.dv};
    return {hashing + product + nng::elementwise_work(scores, 6, 0) + weighted_sum,
            2 * product + 3 * weighted_sum + nng::elementwise_work(scores, 5, 0)};
}

const DeclaredBuffers<BufferShape, LshCore::Ids>::Entry& LshCore::declared(const Problem& p, bool training) const {
    return declared_.get(BufferShape(p, training), [&](BufferList& list) { return declare(p, training, list); });
}

LshCore::Ids LshCore::ids(const Problem& p, const Buffers& buffers) const {
    return declared(p, buffers.training()).ids;
}

const BufferList& LshCore::buffers(const Problem& p, bool training) const { return declared(p, training).list; }

void LshCore::forward(const Problem& p, const Buffers& buffers) const {
    check_problem(p);
    const Ids ids = this->ids(p, buffers);
    const Geometry geo(p, bucket_size_);
    const Pattern everything;
    const Masks masks(p, everything, buffers.bytes(ids.key_mask));
    auto* order = static_cast<std::int32_t*>(buffers.get(ids.order));
    float* stats = buffers.floats(ids.stats);
    float* inverse_norms = buffers.floats(ids.inverse_norms);
    const Plan plan{p, geo, masks, inverse_norms, order, hashes_};
    compute_inverse_norms(p, inverse_norms);
    draw_rotations(p, geo, hashes_, buffers.floats(ids.rotations));
    hash_and_sort(plan, buffers, ids.tiles, buffers.floats(ids.rotations),
                  static_cast<std::int32_t*>(buffers.get(ids.buckets)), order);
    const std::int64_t groups = p.groups(), items = groups * geo.chunks;
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t g = 0; g < groups; ++g) {
        for (std::int64_t i = 0; i < geo.steps; ++i) {
            std::fill_n(row_of(p.out, g, i), p.dv, 0.0f);
            stats[(g * geo.steps + i) * 2] = kMinusInfinity;
            stats[(g * geo.steps + i) * 2 + 1] = 0.0f;
        }
    }
#pragma omp parallel
    {
        nng::Carver carver = buffers.thread_carver(ids.tiles);
        Tiles t(p, geo, carver);
        for (std::int64_t round = 0; round < hashes_; ++round) {
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t item = 0; item < items; ++item)
                forward_chunk(plan, t, item / geo.chunks, round, item % geo.chunks, stats);
        }
    }
    // Normalise, and keep 1 / l for backward (skipped rows: m = -inf, 1 / l = 0).
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t g = 0; g < groups; ++g) {
        for (std::int64_t i = 0; i < geo.steps; ++i) {
            float* st = stats + (g * geo.steps + i) * 2;
            const float inv_l = st[1] > 0.0f ? 1.0f / st[1] : 0.0f;
            st[1] = inv_l;
            float* o = row_of(p.out, g, i);
            for (std::int64_t e = 0; e < p.dv; ++e) o[e] *= inv_l;
        }
    }
}

void LshCore::backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                       const CoreGradients& grads) const {
    check_problem(p);
    zero_rows(grads.dq, p.groups(), p.tq, p.dk);
    zero_rows(grads.dv, p.groups(), p.tv, p.dv);
    if (grads.dk.present() && !grads.dk_accumulates) zero_rows(grads.dk, p.groups(), p.tv, p.dk);
    if (grads.d_alpha_product) *grads.d_alpha_product = 0.0;
    if (grads.d_spans) std::fill(grads.d_spans, grads.d_spans + p.heads, 0.0f);
    if (!dout.present()) return;
    const Ids ids = this->ids(p, buffers);
    const auto* order = static_cast<const std::int32_t*>(buffers.get(ids.order));
    const float* stats = buffers.floats(ids.stats);
    if (!order || !stats) throw std::logic_error("attention lsh core: backward without the forward's saved buffers");
    const Geometry geo(p, bucket_size_);
    const Pattern everything;
    const Masks masks(p, everything, buffers.bytes(ids.key_mask));
    float* inverse_norms = buffers.floats(ids.inverse_norms);
    const Plan plan{p, geo, masks, inverse_norms, order, hashes_};
    compute_inverse_norms(p, inverse_norms);
    float* key_gradients = buffers.floats(ids.key_gradients);
    std::fill_n(key_gradients, p.groups() * p.tq * p.dk, 0.0f);
    const std::int64_t items = p.groups() * geo.chunks;
    double d_alpha = 0.0;
#pragma omp parallel reduction(+ : d_alpha)
    {
        nng::Carver carver = buffers.thread_carver(ids.tiles);
        Tiles t(p, geo, carver);
        Gradients mine{grads.dq, grads.dv, key_gradients, 0.0, grads.d_alpha_product != nullptr};
        for (std::int64_t round = 0; round < hashes_; ++round) {
            for (int phase = 0; phase < 3; ++phase) {
#pragma omp for schedule(dynamic, 1)
                for (std::int64_t item = 0; item < items; ++item) {
                    const std::int64_t k = item % geo.chunks;
                    if (geo.phase(k) == phase) backward_chunk(plan, t, mine, dout, stats, item / geo.chunks, round, k);
                }
            }
        }
        d_alpha += mine.d_alpha;
    }
    if (grads.dq.present()) add_key_gradients(p, inverse_norms, key_gradients, grads.dq);
    if (grads.d_alpha_product) *grads.d_alpha_product = d_alpha;
}

}  // namespace nngraph_attention
