// The blockwise core's bf16 tile products (kernels.hpp): rounding to nearest even, the layouts the
// products read, and products that equal a double reference of the rounded operands to f32
// accumulation error, on shapes that are not multiples of the register block.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/onednn.hpp"

namespace kernels = nngraph_attention::kernels;
using kernels::Layout;

namespace {

std::uint32_t bits_of(float x) {
    std::uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

// The nearest bf16 to a finite x by value, the even one on a tie.
std::uint16_t nearest_bfloat16(float x) {
    const std::uint32_t below = bits_of(x) & 0xffff0000u;
    const std::uint16_t low = static_cast<std::uint16_t>(below >> 16), high = static_cast<std::uint16_t>(low + 1);
    const double to_low = std::abs(double(x) - double(kernels::from_bfloat16(low)));
    const double to_high = std::abs(double(kernels::from_bfloat16(high)) - double(x));
    if (to_low != to_high) return to_low < to_high ? low : high;
    return low % 2 == 0 ? low : high;
}

std::vector<float> uniform(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
}

double rounded(float x) { return kernels::from_bfloat16(kernels::to_bfloat16(x)); }

}  // namespace

TEST_CASE("to_bfloat16 rounds to the nearest bf16, ties to even, and keeps infinities and NaNs") {
    CHECK(kernels::to_bfloat16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);      // a tie: down to the even 1
    CHECK(kernels::to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);  // a tie: up to the even neighbour
    CHECK(kernels::to_bfloat16(std::numeric_limits<float>::infinity()) == 0x7f80);
    CHECK(kernels::to_bfloat16(-std::numeric_limits<float>::max()) == 0xff80);  // past the largest bf16
    CHECK(std::isnan(kernels::from_bfloat16(kernels::to_bfloat16(std::nanf("")))));
    std::mt19937 rng(3);
    std::uniform_int_distribution<std::uint32_t> any_bits;
    for (int i = 0; i < 100000; ++i) {
        std::uint32_t b = any_bits(rng);
        float x;
        std::memcpy(&x, &b, sizeof x);
        if (!std::isfinite(x) || std::abs(x) >= 3.38e38f) continue;
        CAPTURE(b);
        REQUIRE(kernels::to_bfloat16(x) == nearest_bfloat16(x));
    }
}

TEST_CASE("to_bfloat16 rounds normal floats as oneDNN's conversion (the dense core's) does") {
    // Normal floats of every exponent a product meets (oneDNN may flush subnormals on this CPU).
    std::mt19937 rng(4);
    std::uniform_int_distribution<std::uint32_t> mantissa(0, (1u << 23) - 1), exponent(1, 254), sign(0, 1);
    std::vector<float> x(4096);
    for (float& v : x) {
        const std::uint32_t bits = sign(rng) << 31 | exponent(rng) << 23 | mantissa(rng);
        std::memcpy(&v, &bits, sizeof v);
    }
    std::vector<std::uint16_t> ours(x.size()), onednn(x.size());
    nng::onednn::to_bfloat16(nng::onednn::view(x.data(), nng::onednn::DataType::f32, {std::int64_t(x.size())}),
                             onednn.data());
    kernels::to_bfloat16_rows({x.data(), 1, std::int64_t(x.size()), std::int64_t(x.size())},
                              {ours.data(), 1, std::int64_t(x.size()), std::int64_t(x.size())});
    for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x[i]);
        REQUIRE(ours[i] == onednn[i]);
    }
}

TEST_CASE("the bf16 layouts: rows, pairs and pairs of the transpose, zero-padded") {
    const std::int64_t rows = 5, columns = 19;
    const std::vector<float> x = uniform(rows * columns, 5);
    const kernels::FloatMatrix src{x.data(), rows, columns, columns};
    std::vector<std::uint16_t> out(8 * 64, 0xffff);
    kernels::to_bfloat16_rows(src, {out.data(), 6, 24, 24});
    for (std::int64_t r = 0; r < 6; ++r)
        for (std::int64_t c = 0; c < 24; ++c)
            CHECK(out[r * 24 + c] == (r < rows && c < columns ? kernels::to_bfloat16(x[r * columns + c]) : 0));
    std::fill(out.begin(), out.end(), 0xffff);
    kernels::to_bfloat16_pairs(src, {out.data(), 6, 32, 64});  // (k, n) at (k / 2)·64 + 2n + k % 2
    for (std::int64_t k = 0; k < 6; ++k)
        for (std::int64_t n = 0; n < 32; ++n)
            CHECK(out[(k / 2) * 64 + 2 * n + k % 2] ==
                  (k < rows && n < columns ? kernels::to_bfloat16(x[k * columns + n]) : 0));
    std::fill(out.begin(), out.end(), 0xffff);
    kernels::to_bfloat16_pairs_transposed(src, {out.data(), 20, 16, 32});  // (k, n) = x[n][k]
    for (std::int64_t k = 0; k < 20; ++k)
        for (std::int64_t n = 0; n < 16; ++n)
            CHECK(out[(k / 2) * 32 + 2 * n + k % 2] ==
                  (k < columns && n < rows ? kernels::to_bfloat16(x[n * columns + k]) : 0));
}

TEST_CASE("gemm_bfloat16 equals a double reference of the rounded operands, to f32 accumulation error") {
    // M, N and K off the 4-row, 64-column register block (N a multiple of the 16-lane vector).
    struct Shape {
        std::int64_t M, N, K;
    };
    for (const Shape s : {Shape{13, 48, 38}, Shape{6, 80, 70}, Shape{1, 16, 2}}) {
        for (const Layout layout : {Layout::kAsStored, Layout::kTransposed}) {
            for (const bool accumulate : {false, true}) {
                CAPTURE(s.M);
                CAPTURE(s.N);
                CAPTURE(s.K);
                CAPTURE(static_cast<int>(layout));
                CAPTURE(accumulate);
                // op(A)[m][k] = a[m·K + k]; B[k][n] = b[k·N + n].
                const std::vector<float> a = uniform(s.M * s.K, 11), b = uniform(s.K * s.N, 12),
                                         c0 = uniform(s.M * s.N, 13);
                std::vector<std::uint16_t> A, B((s.K / 2) * 2 * s.N);
                std::int64_t lda = 0;
                if (layout == Layout::kAsStored) {
                    lda = s.K + 2;  // a row stride past K: nothing there is read
                    A.assign(s.M * lda, 0x7fc0);
                    kernels::to_bfloat16_rows({a.data(), s.M, s.K, s.K}, {A.data(), s.M, s.K, lda});
                } else {
                    lda = 2 * s.M;
                    A.resize((s.K / 2) * lda);
                    kernels::to_bfloat16_pairs_transposed({a.data(), s.M, s.K, s.K}, {A.data(), s.K, s.M, lda});
                }
                kernels::to_bfloat16_pairs({b.data(), s.K, s.N, s.N}, {B.data(), s.K, s.N, 2 * s.N});
                std::vector<float> c = c0;
                kernels::gemm_bfloat16(layout, s.M, s.N, s.K, A.data(), lda, B.data(), 2 * s.N, c.data(), s.N,
                                       accumulate);
                for (std::int64_t m = 0; m < s.M; ++m) {
                    for (std::int64_t n = 0; n < s.N; ++n) {
                        double exact = accumulate ? c0[m * s.N + n] : 0.0, magnitude = std::abs(exact);
                        for (std::int64_t k = 0; k < s.K; ++k) {
                            const double term = rounded(a[m * s.K + k]) * rounded(b[k * s.N + n]);
                            exact += term;
                            magnitude += std::abs(term);
                        }
                        // K roundings of an f32 sum, each at most half an ulp of the running magnitude.
                        const double bound = double(s.K) * std::ldexp(1.0, -24) * magnitude;
                        REQUIRE(std::abs(double(c[m * s.N + n]) - exact) <= bound);
                    }
                }
                // The portable arithmetic gives the very same floats.
                std::vector<float> portable = c0;
                kernels::gemm_bfloat16_portable(layout, s.M, s.N, s.K, A.data(), lda, B.data(), 2 * s.N,
                                                portable.data(), s.N, accumulate);
                CHECK(std::memcmp(portable.data(), c.data(), sizeof(float) * c.size()) == 0);
            }
        }
    }
    if (!nng::cpu::has_bfloat16_dot_product())
        MESSAGE("this CPU has no AVX512_BF16: both products above ran the portable arithmetic");
}
