// 8 x 8 tiles of floats, one 8-lane vector a row: loaded, stored and transposed in registers, for
// the dense core's mirror images of square matrices.
#pragma once

#include <cstdint>

#include "nngraph/vector_math.hpp"

namespace nngraph_attention {

// An 8 x 8 tile of floats, one vector a row.
using TileRow = nng::simd::Vectors<32>::Float;

// The tile transposed in place: rows interleaved in pairs, then in pairs of pairs, then halves.
inline __attribute__((always_inline)) void transpose_tile(TileRow r[8]) {
    TileRow t[8], u[8];
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
}

// The 8 x 8 tile whose first row is at `at`, rows `stride` floats apart.
inline __attribute__((always_inline)) void load_tile(const float* at, std::int64_t stride, TileRow tile[8]) {
    for (int r = 0; r < 8; ++r) tile[r] = nng::simd::load<TileRow>(at + r * stride);
}
inline __attribute__((always_inline)) void store_tile(float* at, std::int64_t stride, const TileRow tile[8]) {
    for (int r = 0; r < 8; ++r) nng::simd::store(at + r * stride, tile[r]);
}

}  // namespace nngraph_attention
