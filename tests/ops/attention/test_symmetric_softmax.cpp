// symmetric_softmax against a double softmax of the whole matrix: sizes in and out of whole 8 x 8
// tiles, the entries it must not read poisoned, the division done or left to the caller, and the
// matrices it leaves to the plain softmax untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "symmetric_softmax.hpp"

using nngraph_attention::symmetric_softmax;
using nngraph_attention::symmetric_softmax_scratch;

namespace {

// alpha·x·xᵀ for n random rows of `width` values in [-range, range].
std::vector<float> gram(std::int64_t n, std::int64_t width, float range, float alpha, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-range, range);
    std::vector<float> x(static_cast<std::size_t>(n * width));
    for (float& v : x) v = value(rng);
    std::vector<float> s(static_cast<std::size_t>(n * n));
    for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
            double dot = 0.0;
            for (std::int64_t k = 0; k < width; ++k) dot += double(x[i * width + k]) * double(x[j * width + k]);
            s[static_cast<std::size_t>(i * n + j)] = static_cast<float>(alpha * dot);
        }
    }
    return s;
}

// NaN in every entry symmetric_softmax may not read (the header's contract).
void poison_unread(std::vector<float>& s, std::int64_t n) {
    const std::int64_t whole = n / 8 * 8;
    for (std::int64_t i = 0; i < whole; ++i)
        for (std::int64_t j = (i / 8 + 1) * 8; j < n; ++j)
            s[static_cast<std::size_t>(i * n + j)] = std::numeric_limits<float>::quiet_NaN();
}

}  // namespace

TEST_CASE("symmetric_softmax equals a double softmax of the whole matrix, reading only its lower tiles") {
    for (const std::int64_t n : {1, 7, 8, 9, 16, 23, 24, 40, 203}) {
        for (const bool deferred : {false, true}) {
            CAPTURE(n);
            CAPTURE(deferred);
            const std::vector<float> full = gram(n, 5, 1.5f, -0.8f, static_cast<unsigned>(n));
            std::vector<float> s = full, inverse_sums(static_cast<std::size_t>(n), 0.0f);
            poison_unread(s, n);
            std::vector<float> scratch(static_cast<std::size_t>(symmetric_softmax_scratch(n)));
            REQUIRE(symmetric_softmax(s.data(), n, deferred ? inverse_sums.data() : nullptr, scratch.data()));
            double worst = 0.0;
            for (std::int64_t i = 0; i < n; ++i) {
                double highest = -1e300, sum = 0.0;
                for (std::int64_t j = 0; j < n; ++j) highest = std::max(highest, double(full[i * n + j]));
                for (std::int64_t j = 0; j < n; ++j) sum += std::exp(double(full[i * n + j]) - highest);
                for (std::int64_t j = 0; j < n; ++j) {
                    const double expected = std::exp(double(full[i * n + j]) - highest) / sum;
                    const double got = deferred ? double(s[i * n + j]) * inverse_sums[i] : double(s[i * n + j]);
                    worst = std::max(worst, std::abs(got - expected) / expected);
                }
            }
            CHECK(worst < 1e-6);
        }
    }
}

TEST_CASE("symmetric_softmax leaves a matrix with a large or NaN diagonal untouched, for the plain softmax") {
    const std::int64_t n = 24;
    std::vector<float> scratch(static_cast<std::size_t>(symmetric_softmax_scratch(n)));
    std::vector<float> large = gram(n, 4, 1.0f, 1.0f, 2);  // a diagonal of at most 4
    large[5 * n + 5] = 61.0f;                              // one row past the limit is enough
    const std::vector<float> before = large;
    CHECK_FALSE(symmetric_softmax(large.data(), n, nullptr, scratch.data()));
    CHECK(large == before);
    std::vector<float> nan = gram(n, 4, 1.0f, 1.0f, 3);
    nan[7 * n + 7] = std::numeric_limits<float>::quiet_NaN();
    CHECK_FALSE(symmetric_softmax(nan.data(), n, nullptr, scratch.data()));
    // A diagonal of 59 and -59 (a negative alpha) is taken.
    std::vector<float> edge = gram(n, 4, 1.0f, 1.0f, 4);
    edge[0] = 59.0f;
    edge[n + 1] = -59.0f;
    CHECK(symmetric_softmax(edge.data(), n, nullptr, scratch.data()));
}

TEST_CASE("symmetrized_softmax_backward equals e (d - term) plus its transpose in double") {
    // Sizes: one tile, strips of two tiles and one beside them, rows and columns past the tiles.
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (const std::int64_t n : {5, 8, 16, 24, 27, 40, 203}) {
        CAPTURE(n);
        const std::size_t count = static_cast<std::size_t>(n * n);
        std::vector<float> e(count), d(count), terms(static_cast<std::size_t>(n));
        for (float& x : e) x = value(rng) + 1.0f;
        for (float& x : d) x = value(rng);
        for (float& t : terms) t = value(rng);
        std::vector<float> out = d;
        nngraph_attention::symmetrized_softmax_backward(e.data(), out.data(), terms.data(), n);
        const auto ds = [&](std::int64_t i, std::int64_t j) {
            const std::size_t at = static_cast<std::size_t>(i * n + j);
            return double(e[at]) * (double(d[at]) - double(terms[static_cast<std::size_t>(i)]));
        };
        int wrong = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            for (std::int64_t j = 0; j < n; ++j) {
                const double expected = ds(i, j) + ds(j, i);
                if (std::abs(double(out[static_cast<std::size_t>(i * n + j)]) - expected) > 1e-5) ++wrong;
            }
        }
        CHECK(wrong == 0);
    }
}
