#include "kernels.hpp"

#include <algorithm>

namespace nngraph_attention::kernels {
namespace {

// C (4 rows x NC·16) (+)= A (4 rows x K, leading dimension lda) · B (K x NC·16, row stride ldb).
// Always inlined: an out-of-line copy would be built for the default target, where 64-byte
// vectors fall apart into 16-byte pieces.
template <int NC, Layout kA>
inline __attribute__((always_inline)) void kernel_4xn(std::int64_t K, const float* A, std::int64_t lda, const float* B,
                                                      std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
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

template <Layout kA>
inline __attribute__((always_inline)) void gemm_as(std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                                                   std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                                                   std::int64_t ldc, bool accumulate) {
    for (std::int64_t i = 0; i < M; i += 4) {
        for (std::int64_t n0 = 0; n0 < N; n0 += 64) {
            const float* a = kA == Layout::kTransposed ? A + i : A + i * lda;
            const float* b = B + n0;
            float* c = C + i * ldc + n0;
            switch (std::min<std::int64_t>(4, (N - n0) / 16)) {
                case 4:
                    kernel_4xn<4, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                case 3:
                    kernel_4xn<3, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                case 2:
                    kernel_4xn<2, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
                default:
                    kernel_4xn<1, kA>(K, a, lda, b, ldb, c, ldc, accumulate);
                    break;
            }
        }
    }
}

}  // namespace

// Out of line and not inlined into the tile loops, so that its accumulators own the vector registers.
__attribute__((target_clones("arch=x86-64-v4", "default"), noinline)) void gemm(
    Layout a_layout, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda, const float* B,
    std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
    if (a_layout == Layout::kTransposed)
        gemm_as<Layout::kTransposed>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else
        gemm_as<Layout::kAsStored>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace nngraph_attention::kernels
