// The blockwise core's vector kernels: register-blocked products of tiles at the CPU's vector
// width (nngraph/vector_math.hpp), and bf16 conversions. A oneDNN matmul call per 64 x 64 tile
// costs more in dispatch than the tile's arithmetic, hence products of our own.
#pragma once

#include <cstdint>
#include <cstring>

#include "nngraph/arithmetic.hpp"
#include "nngraph/bfloat16.hpp"
#include "nngraph/vector_math.hpp"

namespace nngraph_attention::kernels {

using nng::bfloat16_bits;
using nng::from_bfloat16;
using nng::to_bfloat16;
using nng::simd::exponentiate;
using nng::simd::lane_sum;
using nng::simd::load;
using nng::simd::select_lanes;
using nng::simd::store;
using nng::simd::v16;
using nng::simd::v16i;
using nng::simd::vexp;

// How a product reads its left operand A: as stored (row r, column k at A[r·lda + k]) or
// transposed (at A[k·lda + r]), which spares copying a tile into its transpose first.
enum class Layout : bool { kAsStored, kTransposed };

// A width padded to whole 16-lane vectors, as the tiles store rows; and to whole pairs, as bf16
// operands in pairs need.
inline std::int64_t round16(std::int64_t n) { return nng::round_up(n, 16); }
inline std::int64_t round2(std::int64_t n) { return nng::round_up(n, 2); }

// C (M x N) (+)= op(A) (M x K) · B (K x N); M a multiple of 4, N of 16; op(A) is A or, with
// kTransposed, the transpose of the (K x M) A; row strides lda, ldb, ldc.
void gemm(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate);

// ---- bfloat16 tiles (mixed_bfloat16) ----

// The bf16 products read operands as rows (row-major) or "in pairs", the layout AVX512_BF16's
// vdpbf16ps multiplies: a (K x N) matrix X in pairs holds X[k][n] at [(k / 2)·stride + 2n + k % 2],
// two consecutive k of one column side by side; `stride` (of a row of pairs) is at least 2N.
//
// A row-major f32 matrix to convert.
struct FloatMatrix {
    const float* data;
    std::int64_t rows, columns, stride;
};
// Where it goes: a (rows x columns) bf16 matrix, as rows (row stride `stride`) or in pairs
// (`stride` between rows of pairs, rows even); at least as large as the source (or its transpose),
// zero outside it.
struct Bfloat16Matrix {
    std::uint16_t* data;
    std::int64_t rows, columns, stride;
};
void to_bfloat16_rows(const FloatMatrix& src, const Bfloat16Matrix& dst);
// dst in pairs = src: rows 2i and 2i + 1 interleaved (dst.rows even).
void to_bfloat16_pairs(const FloatMatrix& src, const Bfloat16Matrix& dst);
// dst in pairs = srcᵀ: src's rows become columns, so that a row's neighbours are pairs (dst.rows even).
void to_bfloat16_pairs_transposed(const FloatMatrix& src, const Bfloat16Matrix& dst);

// gemm on bf16 operands, accumulating in f32: C (M x N) (+)= op(A) (M x K) · B (K x N), any M,
// N a multiple of 16, K even. B is in pairs (row stride ldb of a row of pairs). A as stored is
// row-major (row r, column k at A[r·lda + k], lda even: the pairs along K adjacent); transposed,
// A is the (K x M) matrix in pairs. Each pair's two products are added to the f32 sum, the odd
// one first, each rounded once: vdpbf16ps on CPUs with AVX512_BF16, the same arithmetic in f32
// elsewhere (products of bf16 are exact in f32).
void gemm_bfloat16(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
                   std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float* C, std::int64_t ldc,
                   bool accumulate);
// The f32 arithmetic gemm_bfloat16 takes without AVX512_BF16, callable anywhere so that tests can
// hold the two to the same results (they differ only where vdpbf16ps flushes subnormals to zero).
void gemm_bfloat16_portable(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
                            std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float* C, std::int64_t ldc,
                            bool accumulate);

}  // namespace nngraph_attention::kernels
