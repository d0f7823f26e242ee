#include "kernels.hpp"
#include "nngraph/cpu.hpp"

#include <immintrin.h>

#include <algorithm>

namespace nngraph_attention::kernels {
namespace {

// C (4 rows x NC vectors) (+)= A (4 rows x K, leading dimension lda) · B (K x NC vectors, row
// stride ldb), on vectors V. Always inlined, so that it is built inside each width's build.
template <typename V, int NC, Layout kA>
inline __attribute__((always_inline)) void kernel_4xn(std::int64_t K, const float* A, std::int64_t lda, const float* B,
                                                      std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
    constexpr int kLanes = nng::simd::kLanes<V>;
    V c[4][NC];
    for (int r = 0; r < 4; ++r)
        for (int n = 0; n < NC; ++n) c[r][n] = accumulate ? load<V>(C + r * ldc + kLanes * n) : V{};
    for (std::int64_t k = 0; k < K; ++k) {
        V b[NC];
        for (int n = 0; n < NC; ++n) b[n] = load<V>(B + k * ldb + kLanes * n);
        for (int r = 0; r < 4; ++r) {
            const float a = kA == Layout::kTransposed ? A[k * lda + r] : A[r * lda + k];
            for (int n = 0; n < NC; ++n) c[r][n] += a * b[n];
        }
    }
    for (int r = 0; r < 4; ++r)
        for (int n = 0; n < NC; ++n) store(C + r * ldc + kLanes * n, c[r][n]);
}

// The product at one vector width. A row of the register block is 4 vectors of 16 lanes (AVX-512:
// 16 accumulators in 32 registers) or 3 of 8 or 4 lanes (AVX2, the baseline: 12 of 16 registers).
template <int kBytes>
struct Gemm {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr int kLanes = nng::simd::Vectors<kBytes>::kLanes;
    static constexpr int kMostVectors = kBytes == 64 ? 4 : 3;

    template <Layout kA>
    static inline __attribute__((always_inline)) void as(std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                                                         std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                                                         std::int64_t ldc, bool accumulate) {
        for (std::int64_t i = 0; i < M; i += 4) {
            for (std::int64_t n0 = 0; n0 < N; n0 += kMostVectors * kLanes) {
                const float* a = kA == Layout::kTransposed ? A + i : A + i * lda;
                const float* b = B + n0;
                float* c = C + i * ldc + n0;
                switch (std::min<std::int64_t>(kMostVectors, (N - n0) / kLanes)) {
                    case 4:
                        if constexpr (kMostVectors >= 4) kernel_4xn<V, 4, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                        break;
                    case 3:
                        kernel_4xn<V, 3, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                        break;
                    case 2:
                        kernel_4xn<V, 2, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                        break;
                    default:
                        kernel_4xn<V, 1, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                        break;
                }
            }
        }
    }

    static inline __attribute__((always_inline)) void run(Layout a_layout, std::int64_t M, std::int64_t N,
                                                          std::int64_t K, const float* A, std::int64_t lda,
                                                          const float* B, std::int64_t ldb, float* C, std::int64_t ldc,
                                                          bool accumulate) {
        if (a_layout == Layout::kTransposed)
            as<Layout::kTransposed>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
        else
            as<Layout::kAsStored>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    }
};

}  // namespace

// Not inlined into the tile loops, so that its accumulators own the vector registers.
__attribute__((noinline)) void gemm(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                                    std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc,
                                    bool accumulate) {
    nng::simd::run_widest<Gemm>(a_layout, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// ---- bfloat16 ----

namespace {

typedef std::uint32_t v16w __attribute__((vector_size(64)));
typedef std::uint16_t v16h __attribute__((vector_size(32)));
typedef std::uint32_t v16wu __attribute__((vector_size(64), aligned(4), may_alias));
typedef std::uint16_t v16hu __attribute__((vector_size(32), aligned(2), may_alias));

// 16 floats (a may-alias load) rounded to bf16, in the upper halves of 16 words.
inline __attribute__((always_inline)) v16w rounded_words(const float* x) {
    return bfloat16_bits(*reinterpret_cast<const v16wu*>(x));
}
inline __attribute__((always_inline)) void store_words(std::uint16_t* p, v16w w) { *reinterpret_cast<v16wu*>(p) = w; }

// Zeros in the stored elements of dst outside the first `rows` stored rows and `columns` stored
// elements of each: the padding. For a matrix in pairs, a stored row is a row of pairs.
void zero_outside(const Bfloat16Matrix& dst, bool pairs, std::int64_t rows, std::int64_t columns) {
    const std::int64_t stored_rows = pairs ? dst.rows / 2 : dst.rows,
                       stored_columns = pairs ? 2 * dst.columns : dst.columns;
    for (std::int64_t r = 0; r < stored_rows; ++r) {
        std::uint16_t* row = dst.data + r * dst.stride;
        std::fill(row + (r < rows ? columns : 0), row + stored_columns, std::uint16_t{0});
    }
}

}  // namespace

NNG_V16_CLONES void to_bfloat16_rows(const FloatMatrix& src, const Bfloat16Matrix& dst) {
    const std::int64_t whole = src.columns / 16 * 16;
    for (std::int64_t r = 0; r < src.rows; ++r) {
        const float* in = src.data + r * src.stride;
        std::uint16_t* out = dst.data + r * dst.stride;
        for (std::int64_t c = 0; c < whole; c += 16)
            *reinterpret_cast<v16hu*>(out + c) = __builtin_convertvector(rounded_words(in + c) >> 16, v16h);
        for (std::int64_t c = whole; c < src.columns; ++c) out[c] = to_bfloat16(in[c]);
    }
    zero_outside(dst, false, src.rows, src.columns);
}

NNG_V16_CLONES void to_bfloat16_pairs(const FloatMatrix& src, const Bfloat16Matrix& dst) {
    const std::int64_t whole = src.columns / 16 * 16;
    for (std::int64_t r = 0; r < src.rows; r += 2) {
        const float* even = src.data + r * src.stride;
        const float* odd = r + 1 < src.rows ? even + src.stride : nullptr;
        std::uint16_t* out = dst.data + (r / 2) * dst.stride;
        for (std::int64_t c = 0; c < whole; c += 16) {
            const v16w low = rounded_words(even + c) >> 16;
            store_words(out + 2 * c, odd ? low | rounded_words(odd + c) : low);
        }
        for (std::int64_t c = whole; c < src.columns; ++c) {
            out[2 * c] = to_bfloat16(even[c]);
            out[2 * c + 1] = odd ? to_bfloat16(odd[c]) : 0;
        }
    }
    zero_outside(dst, true, nng::ceil_div(src.rows, 2), 2 * src.columns);
}

NNG_V16_CLONES void to_bfloat16_pairs_transposed(const FloatMatrix& src, const Bfloat16Matrix& dst) {
    // Row r of src, rounded, is column r of dst: its words (pairs of neighbours) go down the rows
    // of pairs, 32 columns of src (16 words) at a time.
    for (std::int64_t r = 0; r < src.rows; ++r) {
        const float* in = src.data + r * src.stride;
        for (std::int64_t c0 = 0; c0 < src.columns; c0 += 32) {
            alignas(64) std::uint16_t rounded[32];
            const std::int64_t count = std::min<std::int64_t>(32, src.columns - c0);
            if (count == 32) {
                *reinterpret_cast<v16hu*>(rounded) = __builtin_convertvector(rounded_words(in + c0) >> 16, v16h);
                *reinterpret_cast<v16hu*>(rounded + 16) =
                    __builtin_convertvector(rounded_words(in + c0 + 16) >> 16, v16h);
            } else {
                for (std::int64_t c = 0; c < 32; ++c) rounded[c] = c < count ? to_bfloat16(in[c0 + c]) : 0;
            }
            for (std::int64_t w = 0; w < nng::ceil_div(count, 2); ++w)
                std::memcpy(dst.data + (c0 / 2 + w) * dst.stride + 2 * r, rounded + 2 * w, sizeof(std::uint32_t));
        }
    }
    zero_outside(dst, true, nng::ceil_div(src.columns, 2), 2 * src.rows);
}

namespace {

// The pair k2 of row r of op(A), the lower k in the lower half.
template <Layout kA>
inline __attribute__((always_inline)) std::uint32_t pair_of(const std::uint16_t* A, std::int64_t lda, std::int64_t r,
                                                            std::int64_t k2) {
    std::uint32_t word;
    std::memcpy(&word, kA == Layout::kTransposed ? A + k2 * lda + 2 * r : A + r * lda + 2 * k2, sizeof word);
    return word;
}

// c += a's two products with b's 16 columns of pairs: vdpbf16ps. Not always_inline (the kernels
// below are built for any CPU); the flattened entry point built for AVX512_BF16 inlines it.
struct DotProductInstruction {
    __attribute__((target("arch=x86-64-v4,avx512bf16"))) static inline void add(v16& c, std::uint32_t a,
                                                                                const v16i& b) {
        c = (v16)_mm512_dpbf16_ps((__m512)c, (__m512bh)_mm512_set1_epi32(static_cast<int>(a)), (__m512bh)b);
    }
};
// The same in f32: a bf16 is the upper half of its float, so a word's odd element is the word with
// its lower half cleared and the even one the word shifted up.
struct FloatArithmetic {
    static inline __attribute__((always_inline)) void add(v16& c, std::uint32_t a, const v16i& b) {
        const std::uint32_t a_odd_bits = a & 0xffff0000u, a_even_bits = a << 16;
        float a_odd, a_even;
        std::memcpy(&a_odd, &a_odd_bits, sizeof a_odd);
        std::memcpy(&a_even, &a_even_bits, sizeof a_even);
        const v16w words = (v16w)b;
        c += a_odd * (v16)(words & 0xffff0000u);
        c += a_even * (v16)(words << 16);
    }
};

// C (R rows x NC·16) (+)= op(A) (R rows x K) · B (K x NC·16, in pairs).
template <int R, int NC, Layout kA, class Arithmetic>
inline __attribute__((always_inline)) void kernel_bf16(std::int64_t K, const std::uint16_t* A, std::int64_t lda,
                                                       const std::uint16_t* B, std::int64_t ldb, float* C,
                                                       std::int64_t ldc, bool accumulate) {
    v16 c[R][NC];
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NC; ++n) c[r][n] = accumulate ? load(C + r * ldc + 16 * n) : v16{};
    for (std::int64_t k2 = 0; k2 < K / 2; ++k2) {
        v16i b[NC];
        for (int n = 0; n < NC; ++n) b[n] = load(reinterpret_cast<const std::int32_t*>(B + k2 * ldb + 32 * n));
        for (int r = 0; r < R; ++r) {
            const std::uint32_t a = pair_of<kA>(A, lda, r, k2);
            for (int n = 0; n < NC; ++n) Arithmetic::add(c[r][n], a, b[n]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NC; ++n) store(C + r * ldc + 16 * n, c[r][n]);
}

template <int R, Layout kA, class Arithmetic>
inline __attribute__((always_inline)) void row_block_bf16(std::int64_t vectors, std::int64_t K, const std::uint16_t* A,
                                                          std::int64_t lda, const std::uint16_t* B, std::int64_t ldb,
                                                          float* C, std::int64_t ldc, bool accumulate) {
    switch (std::min<std::int64_t>(4, vectors)) {
        case 4:
            kernel_bf16<R, 4, kA, Arithmetic>(K, A, lda, B, ldb, C, ldc, accumulate);
            break;
        case 3:
            kernel_bf16<R, 3, kA, Arithmetic>(K, A, lda, B, ldb, C, ldc, accumulate);
            break;
        case 2:
            kernel_bf16<R, 2, kA, Arithmetic>(K, A, lda, B, ldb, C, ldc, accumulate);
            break;
        default:
            kernel_bf16<R, 1, kA, Arithmetic>(K, A, lda, B, ldb, C, ldc, accumulate);
            break;
    }
}

template <Layout kA, class Arithmetic>
inline __attribute__((always_inline)) void gemm_bf16_as(std::int64_t M, std::int64_t N, std::int64_t K,
                                                        const std::uint16_t* A, std::int64_t lda,
                                                        const std::uint16_t* B, std::int64_t ldb, float* C,
                                                        std::int64_t ldc, bool accumulate) {
    for (std::int64_t i = 0; i < M; i += 4) {
        const std::uint16_t* a = kA == Layout::kTransposed ? A + 2 * i : A + i * lda;
        for (std::int64_t n0 = 0; n0 < N; n0 += 64) {
            const std::int64_t vectors = (N - n0) / 16;
            const std::uint16_t* b = B + 2 * n0;
            float* c = C + i * ldc + n0;
            switch (std::min<std::int64_t>(4, M - i)) {
                case 4:
                    row_block_bf16<4, kA, Arithmetic>(vectors, K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                case 3:
                    row_block_bf16<3, kA, Arithmetic>(vectors, K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                case 2:
                    row_block_bf16<2, kA, Arithmetic>(vectors, K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                default:
                    row_block_bf16<1, kA, Arithmetic>(vectors, K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
            }
        }
    }
}

template <class Arithmetic>
inline __attribute__((always_inline)) void gemm_bf16(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K,
                                                     const std::uint16_t* A, std::int64_t lda, const std::uint16_t* B,
                                                     std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
    if (a_layout == Layout::kTransposed)
        gemm_bf16_as<Layout::kTransposed, Arithmetic>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else
        gemm_bf16_as<Layout::kAsStored, Arithmetic>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// Flattened: everything below inlined, DotProductInstruction::add included.
__attribute__((target("arch=x86-64-v4,avx512bf16"), flatten, noinline)) void gemm_bfloat16_instruction(
    Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A, std::int64_t lda,
    const std::uint16_t* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
    gemm_bf16<DotProductInstruction>(a_layout, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace

NNG_V16_CLONES __attribute__((noinline)) void gemm_bfloat16_portable(Layout a_layout, std::int64_t M, std::int64_t N,
                                                                     std::int64_t K, const std::uint16_t* A,
                                                                     std::int64_t lda, const std::uint16_t* B,
                                                                     std::int64_t ldb, float* C, std::int64_t ldc,
                                                                     bool accumulate) {
    gemm_bf16<FloatArithmetic>(a_layout, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm_bfloat16(Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
                   std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float* C, std::int64_t ldc,
                   bool accumulate) {
    if (nng::cpu::has_bfloat16_dot_product())
        gemm_bfloat16_instruction(a_layout, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else
        gemm_bfloat16_portable(a_layout, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace nngraph_attention::kernels
