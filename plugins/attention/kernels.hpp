// The blockwise core's vector kernels: 64-byte vectors of GCC's vector extension (AVX-512 in the
// x86-64-v4 clones of the functions that use them, a portable fallback elsewhere), an exponential,
// and register-blocked products of tiles. A oneDNN matmul call per 64 x 64 tile costs more in
// dispatch than the tile's arithmetic, hence products of our own.
#pragma once

#include <cstdint>
#include <cstring>

// The vector type below never crosses a library boundary, so its calling convention does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nngraph_attention::kernels {

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

// x[c] = e^(x[c] - shift) for c < n (a multiple of 16); returns the lane-wise sums of the results.
inline __attribute__((always_inline)) v16 exponentiate(float* x, std::int64_t n, float shift) {
    v16 sums{};
    for (std::int64_t c = 0; c < n; c += 16) {
        const v16 e = vexp(load(x + c) - shift);
        store(x + c, e);
        sums += e;
    }
    return sums;
}

// The sum of v's 16 lanes, in lane order.
inline __attribute__((always_inline)) float lane_sum(v16 v) {
    float sum = 0.0f;
    for (int lane = 0; lane < 16; ++lane) sum += v[lane];
    return sum;
}

// Each of `rows` rows (`n` floats, `stride` apart) replaced by its softmax, e^(x - max) / sum, in
// three sweeps over the row while it sits in L1. A row of -inf only gives NaN, as the formula does.
void softmax_rows(float* x, std::int64_t rows, std::int64_t n, std::int64_t stride);

// How a product reads its left operand A: as stored (row r, column k at A[r·lda + k]) or
// transposed (at A[k·lda + r]), which spares copying a tile into its transpose first.
enum class Layout : bool { kAsStored, kTransposed };

// C (M x N) (+)= op(A) (M x K) · B (K x N); M a multiple of 4, N of 16; op(A) is A or, with
// kTransposed, the transpose of the (K x M) A; row strides lda, ldb, ldc.
void gemm(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate);

// ---- bfloat16 tiles (mixed_bfloat16) ----

// The bits of bf16(x) in the upper half of x's bits, the lower half zero, for one float's bits or a
// vector of them: round to nearest even as oneDNN's conversion does; a NaN stays a quiet NaN.
template <class Bits>
inline __attribute__((always_inline)) Bits bfloat16_bits(Bits bits) {
    const Bits rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
    const Bits quiet_nan = (bits | 0x400000u) & 0xffff0000u;
    const Bits nan = 0u - ((0x7f800000u - (bits & 0x7fffffffu)) >> 31);  // all ones where |x| is past infinity
    return (quiet_nan & nan) | (rounded & ~nan);
}
inline std::uint16_t to_bfloat16(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return static_cast<std::uint16_t>(bfloat16_bits(bits) >> 16);
}
inline float from_bfloat16(std::uint16_t h) {
    const std::uint32_t bits = std::uint32_t{h} << 16;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

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
// Whether gemm_bfloat16 runs on vdpbf16ps on this CPU.
bool has_bfloat16_dot_product();

}  // namespace nngraph_attention::kernels
