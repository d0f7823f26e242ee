// symmetric_softmax (see symmetric_softmax.hpp): the exponentials and the copy across the diagonal
// in one pass over strips of 8 x 8 tiles, the division by rows, each on the widest vectors; and
// its backward with dS + dSᵀ in one pass over tiles and their mirror images.
#include "symmetric_softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "nngraph/cpu.hpp"
#include "nngraph/vector_math.hpp"
#include "tiles.hpp"

namespace nngraph_attention {
namespace {

// The largest diagonal taken without a shift: e^60 is about 1e26, so that 10^12 of them still sum
// below float's largest, and e^-60 is a normal float. Every entry is then within it too
// (|s_ij| <= sqrt(s_ii·s_jj)), and so within vexp_within's bound.
constexpr float kLargestDiagonal = 60.0f;
static_assert(kLargestDiagonal <= nng::simd::kExpWithinBound);

// The rows and columns in whole 8 x 8 tiles.
constexpr std::int64_t whole_tiles(std::int64_t n) { return n / 8 * 8; }

// r[0] + ... + r[7] as a tree, three additions deep where a running sum is a chain of eight.
template <typename V>
inline __attribute__((always_inline)) V sum_of_eight(const V r[8]) {
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
}

// The exponentials of the whole tiles left of and on the diagonal, each written with its mirror
// image, and their rows' sums into sums (zeroed first): a strip of tiles at a time, so that a
// tile's copy across is made from registers and each row's sum comes from the transposed tile,
// with no reduction across lanes. Strips of two tiles on AVX-512, where the exponentials run on
// 16 lanes, else one.
template <int kBytes>
struct MirroredExponentials {
    static constexpr int kWide = kBytes == 64 ? 2 : 1;

    // The strip of kTiles tiles whose top left entry is s[i0][j0], i0 a multiple of 8: its
    // exponentials in place, and, off the diagonal, in the mirror tiles at s[j0][i0]. Adds its
    // rows' sums into sums; returns its columns' sums off the diagonal, which are the mirror rows'.
    template <int kTiles>
    static inline __attribute__((always_inline)) StripRow<kTiles> strip(float* s, std::int64_t n, std::int64_t i0,
                                                                        std::int64_t j0, float* sums) {
        using V = StripRow<kTiles>;
        V rows[8];
        for (int r = 0; r < 8; ++r) {
            float* at = s + (i0 + r) * n + j0;
            rows[r] = nng::simd::vexp_within(nng::simd::load<V>(at));
            nng::simd::store(at, rows[r]);
        }
        const V column_sums = sum_of_eight(rows);
        transpose_tiles(rows);
        const V row_sums = sum_of_eight(rows);
        TileRow own = tile_of<0>(row_sums);
        if constexpr (kTiles == 2) own += tile_of<1>(row_sums);
        nng::simd::store(sums + i0, nng::simd::load<TileRow>(sums + i0) + own);
        if (i0 == j0) return V{};
        for (int r = 0; r < 8; ++r) {
            nng::simd::store(s + (j0 + r) * n + i0, tile_of<0>(rows[r]));
            if constexpr (kTiles == 2) nng::simd::store(s + (j0 + 8 + r) * n + i0, tile_of<1>(rows[r]));
        }
        return column_sums;
    }

    // The band of kTiles tile columns from column j0 below its own rows: strip after strip down to
    // the last whole tile, the columns' sums kept in a register until the band ends.
    template <int kTiles>
    static inline __attribute__((always_inline)) void down_band(float* s, std::int64_t n, std::int64_t j0,
                                                                std::int64_t whole, float* sums) {
        StripRow<kTiles> columns{};
        for (std::int64_t i0 = j0 + 8 * kTiles; i0 < whole; i0 += 8) columns += strip<kTiles>(s, n, i0, j0, sums);
        nng::simd::store(sums + j0, nng::simd::load<StripRow<kTiles>>(sums + j0) + columns);
    }

    // Band by band of columns, each from its diagonal down: the mirror tiles then fill the band's
    // rows in order, line after line, where going along the rows would scatter each strip's
    // mirror over as many rows as the strip is wide.
    static inline __attribute__((always_inline)) void run(float* s, std::int64_t n, float* sums) {
        const std::int64_t whole = whole_tiles(n);
        for (std::int64_t i = 0; i < whole; ++i) sums[i] = 0.0f;
        for (std::int64_t j0 = 0; j0 < whole; j0 += 8 * kWide) {
            const std::int64_t width = std::min<std::int64_t>(8 * kWide, whole - j0);
            for (std::int64_t i0 = j0; i0 < j0 + width; i0 += 8) {  // the band's own rows, a tile at a time
                for (std::int64_t j = j0; j < i0; j += 8) {
                    const TileRow columns = strip<1>(s, n, i0, j, sums);
                    nng::simd::store(sums + j, nng::simd::load<TileRow>(sums + j) + columns);
                }
                strip<1>(s, n, i0, i0, sums);
            }
            if (width == 8 * kWide)
                down_band<kWide>(s, n, j0, whole, sums);
            else
                down_band<1>(s, n, j0, whole, sums);
        }
    }
};

// The rows past the last whole tile, given in full: their exponentials in place and sums into
// sums, then copied across into the columns past the last whole tile, adding to those rows' sums.
template <int kBytes>
struct ExponentialsPastTiles {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(float* s, std::int64_t n, float* sums) {
        const std::int64_t whole = whole_tiles(n), vectors = n / kLanes * kLanes, tail = n - vectors;
        for (std::int64_t i = whole; i < n; ++i) {
            float* row = s + i * n;
            V total = nng::simd::exponentiate<V, nng::simd::ExpRange::kWithinBound>(row, row, vectors, 0.0f);
            if (tail > 0) {  // padded with -inf, whose exponentials add nothing
                const V last = nng::simd::vexp(
                    nng::simd::load_first<V>(row + vectors, tail, -std::numeric_limits<float>::infinity()));
                nng::simd::store_first(row + vectors, last, tail);
                total += last;
            }
            sums[i] = nng::simd::lane_sum(total);
            for (std::int64_t j = 0; j < whole; ++j) {
                s[j * n + i] = row[j];
                sums[j] += row[j];
            }
        }
    }
};

// Each row divided by its sum, or 1 / the sum into inverse_sums.
template <int kBytes>
struct Division {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(float* s, std::int64_t n, const float* sums,
                                                          float* inverse_sums) {
        if (inverse_sums) {
            for (std::int64_t i = 0; i < n; ++i) inverse_sums[i] = 1.0f / sums[i];
            return;
        }
        const std::int64_t whole = n / kLanes * kLanes, tail = n - whole;
        for (std::int64_t i = 0; i < n; ++i) {
            float* row = s + i * n;
            const float inverse = 1.0f / sums[i];
            for (std::int64_t c = 0; c < whole; c += kLanes)
                nng::simd::store(row + c, nng::simd::load<V>(row + c) * inverse);
            if (tail > 0)
                nng::simd::store_first(row + whole, nng::simd::load_first<V>(row + whole, tail) * inverse, tail);
        }
    }
};

}  // namespace

// 8 x 8 tiles paired with their mirror images, so that dS is never stored apart; the rows and
// columns past the last whole tile one by one. One tile at a time, not strips of two as forward
// takes: the pass waits on e, which comes from memory, not on its arithmetic.
NNG_LOOP_CLONES void symmetrized_softmax_backward(const float* e, float* d, const float* terms, std::int64_t n) {
    const std::int64_t whole = whole_tiles(n);
    const auto tile_of_ds = [&](std::int64_t i0, std::int64_t j0, TileRow t[8]) {
        TileRow probs[8];
        load_tile(d + i0 * n + j0, n, t);
        load_tile(e + i0 * n + j0, n, probs);
        for (int r = 0; r < 8; ++r) t[r] = probs[r] * (t[r] - terms[i0 + r]);
    };
    for (std::int64_t i0 = 0; i0 < whole; i0 += 8) {
        for (std::int64_t j0 = 0; j0 <= i0; j0 += 8) {
            TileRow own[8], mirror[8];
            tile_of_ds(i0, j0, own);
            tile_of_ds(j0, i0, mirror);
            transpose_tiles(mirror);
            for (int r = 0; r < 8; ++r) own[r] += mirror[r];
            store_tile(d + i0 * n + j0, n, own);
            transpose_tiles(own);
            store_tile(d + j0 * n + i0, n, own);
        }
    }
    const auto ds = [&](std::int64_t i, std::int64_t j) { return e[i * n + j] * (d[i * n + j] - terms[i]); };
    for (std::int64_t i = whole; i < n; ++i) {
        for (std::int64_t j = 0; j <= i; ++j) d[i * n + j] = d[j * n + i] = ds(i, j) + ds(j, i);
    }
}

std::int64_t symmetric_softmax_scratch(std::int64_t n) { return n; }

bool symmetric_softmax(float* s, std::int64_t n, float* inverse_sums, float* scratch) {
    for (std::int64_t i = 0; i < n; ++i) {
        if (!(std::fabs(s[i * n + i]) <= kLargestDiagonal)) return false;  // also for a NaN
    }
    nng::simd::run_widest<MirroredExponentials>(s, n, scratch);
    nng::simd::run_widest<ExponentialsPastTiles>(s, n, scratch);
    nng::simd::run_widest<Division>(s, n, static_cast<const float*>(scratch), inverse_sums);
    return true;
}

}  // namespace nngraph_attention
