// 8 x 8 tiles of floats in registers, one or two side by side in a strip, one vector a row:
// loaded, stored and transposed, for the dense core's mirror images of square matrices.
#pragma once

#include <cstdint>

#include "nngraph/vector_math.hpp"

namespace nngraph_attention {

// A row of a strip of kTiles 8 x 8 tiles side by side: tile t in lanes 8t to 8t + 7.
template <int kTiles>
using StripRow = typename nng::simd::Vectors<32 * kTiles>::Float;
// A row of one 8 x 8 tile.
using TileRow = StripRow<1>;

// Each tile of the strip transposed in place: rows interleaved in pairs, then in pairs of pairs,
// then halves, each step within every tile's own lanes.
template <typename V>
inline __attribute__((always_inline)) void transpose_tiles(V r[8]) {
    static_assert(nng::simd::kLanes<V> == 8 || nng::simd::kLanes<V> == 16, "strips of one or two tiles");
    V t[8], u[8];
    if constexpr (nng::simd::kLanes<V> == 8) {
        for (int i = 0; i < 8; i += 2) {
            t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
            t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
        }
        for (int i = 0; i < 8; i += 4) {
            for (int k = 0; k < 2; ++k) {
                u[i + 2 * k] = __builtin_shufflevector(t[i + k], t[i + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                u[i + 2 * k + 1] = __builtin_shufflevector(t[i + k], t[i + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
            }
        }
        for (int i = 0; i < 4; ++i) {
            r[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
            r[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        }
    } else {
        for (int i = 0; i < 8; i += 2) {
            t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
            t[i + 1] =
                __builtin_shufflevector(r[i], r[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
        }
        for (int i = 0; i < 8; i += 4) {
            for (int k = 0; k < 2; ++k) {
                u[i + 2 * k] = __builtin_shufflevector(t[i + k], t[i + k + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25,
                                                       12, 13, 28, 29);
                u[i + 2 * k + 1] = __builtin_shufflevector(t[i + k], t[i + k + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11,
                                                           26, 27, 14, 15, 30, 31);
            }
        }
        for (int i = 0; i < 4; ++i) {
            r[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
            r[i + 4] =
                __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        }
    }
}

// Tile t of a strip row: its 8 lanes.
template <int kTile, typename V>
inline __attribute__((always_inline)) TileRow tile_of(V row) {
    if constexpr (nng::simd::kLanes<V> == 8)
        return row;
    else if constexpr (kTile == 0)
        return __builtin_shufflevector(row, row, 0, 1, 2, 3, 4, 5, 6, 7);
    else
        return __builtin_shufflevector(row, row, 8, 9, 10, 11, 12, 13, 14, 15);
}

// The 8 rows of vectors whose first is at `at`, rows `stride` floats apart.
template <typename V>
inline __attribute__((always_inline)) void load_tile(const float* at, std::int64_t stride, V tile[8]) {
    for (int r = 0; r < 8; ++r) tile[r] = nng::simd::load<V>(at + r * stride);
}
template <typename V>
inline __attribute__((always_inline)) void store_tile(float* at, std::int64_t stride, const V tile[8]) {
    for (int r = 0; r < 8; ++r) nng::simd::store(at + r * stride, tile[r]);
}

}  // namespace nngraph_attention
