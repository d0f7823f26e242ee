// symmetric_softmax (see symmetric_softmax.hpp): the row passes on the widest vectors, the copy
// across the diagonal in 8 x 8 tiles.
#include "symmetric_softmax.hpp"

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

// Which entries of the matrix are given (symmetric_softmax.hpp).
struct Given {
    std::int64_t n, whole;  // whole: the rows and columns in whole 8 x 8 tiles

    explicit Given(std::int64_t size) : n(size), whole(size / 8 * 8) {}
    // The end of row i's given entries.
    std::int64_t end(std::int64_t i) const { return i < whole ? (i / 8 + 1) * 8 : n; }
};

// The row passes at one vector width.
template <int kBytes>
struct RowPasses {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = nng::simd::Vectors<kBytes>::kLanes;

    // e^(s_ij) over row i's given entries, in place, their sum into sums[i].
    static inline __attribute__((always_inline)) void exponentials(float* s, const Given& g, float* sums) {
        for (std::int64_t i = 0; i < g.n; ++i) {
            float* row = s + i * g.n;
            const std::int64_t end = g.end(i), whole = end / kLanes * kLanes, tail = end - whole;
            V total = nng::simd::exponentiate<V, nng::simd::ExpRange::kWithinBound>(row, row, whole, 0.0f);
            if (tail > 0) {  // padded with -inf, whose exponentials add nothing
                const V last = nng::simd::vexp(
                    nng::simd::load_first<V>(row + whole, tail, -std::numeric_limits<float>::infinity()));
                nng::simd::store_first(row + whole, last, tail);
                total += last;
            }
            sums[i] = nng::simd::lane_sum(total);
        }
    }

    // Each row divided by its sum, or 1 / the sum into inverse_sums.
    static inline __attribute__((always_inline)) void divide(float* s, const Given& g, const float* sums,
                                                             float* inverse_sums) {
        if (inverse_sums) {
            for (std::int64_t i = 0; i < g.n; ++i) inverse_sums[i] = 1.0f / sums[i];
            return;
        }
        const std::int64_t whole = g.n / kLanes * kLanes, tail = g.n - whole;
        for (std::int64_t i = 0; i < g.n; ++i) {
            float* row = s + i * g.n;
            const float inverse = 1.0f / sums[i];
            for (std::int64_t c = 0; c < whole; c += kLanes)
                nng::simd::store(row + c, nng::simd::load<V>(row + c) * inverse);
            if (tail > 0)
                nng::simd::store_first(row + whole, nng::simd::load_first<V>(row + whole, tail) * inverse, tail);
        }
    }
};

template <int kBytes>
struct Exponentials {
    static inline __attribute__((always_inline)) void run(float* s, const Given* g, float* sums) {
        RowPasses<kBytes>::exponentials(s, *g, sums);
    }
};
template <int kBytes>
struct Division {
    static inline __attribute__((always_inline)) void run(float* s, const Given* g, const float* sums,
                                                          float* inverse_sums) {
        RowPasses<kBytes>::divide(s, *g, sums, inverse_sums);
    }
};

// The entries not given, s[j][i] = s[i][j], added to their rows' sums: the tiles below the
// diagonal ones into their mirror images, then the rows past the last whole tile one by one.
NNG_LOOP_CLONES void copy_across(float* s, const Given& g, float* sums) {
    const std::int64_t n = g.n;
    for (std::int64_t j0 = 0; j0 < g.whole; j0 += 8) {
        TileRow totals[8] = {};
        for (std::int64_t i0 = j0 + 8; i0 < g.whole; i0 += 8) {
            TileRow t[8];
            load_tile(s + i0 * n + j0, n, t);
            transpose_tile(t);
            store_tile(s + j0 * n + i0, n, t);
            for (int k = 0; k < 8; ++k) totals[k] += t[k];
        }
        for (int k = 0; k < 8; ++k) sums[j0 + k] += nng::simd::lane_sum(totals[k]);
    }
    for (std::int64_t i = g.whole; i < n; ++i) {
        for (std::int64_t j = 0; j < g.whole; ++j) {
            s[j * n + i] = s[i * n + j];
            sums[j] += s[i * n + j];
        }
    }
}

}  // namespace

std::int64_t symmetric_softmax_scratch(std::int64_t n) { return n; }

bool symmetric_softmax(float* s, std::int64_t n, float* inverse_sums, float* scratch) {
    for (std::int64_t i = 0; i < n; ++i) {
        if (!(std::fabs(s[i * n + i]) <= kLargestDiagonal)) return false;  // also for a NaN
    }
    const Given g(n);
    nng::simd::run_widest<Exponentials>(s, &g, scratch);
    copy_across(s, g, scratch);
    nng::simd::run_widest<Division>(s, &g, static_cast<const float*>(scratch), inverse_sums);
    return true;
}

}  // namespace nngraph_attention
