// The row softmax (onednn::softmax_rows) and its backward against double references: row lengths around the
// 16-lane vector, masked (-inf and very negative) keys, large scores, row strides wider than the
// row, in place and into another buffer.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "nngraph/onednn.hpp"
#include "nngraph/vector_math.hpp"

namespace dn = nng::onednn;

namespace {

std::vector<double> reference_softmax(const float* row, std::int64_t n) {
    double highest = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < n; ++j) highest = std::max(highest, double(row[j]));
    std::vector<double> out(static_cast<std::size_t>(n));
    double sum = 0.0;
    for (std::int64_t j = 0; j < n; ++j) sum += out[j] = std::exp(double(row[j]) - highest);
    for (double& x : out) x /= sum;
    return out;
}

enum class Exp { kClamped, kWithin, kNormal };  // vexp, vexp_within, vexp_normal

// e^x over n floats on the widest vectors run_widest picks (or those NNGRAPH_MAX_VECTOR_BYTES allows),
// through the exponential `kExp` names.
template <Exp kExp>
struct Exponentials {
    template <int kBytes>
    struct Row {
        using V = typename nng::simd::Vectors<kBytes>::Float;
        static __attribute__((always_inline)) void run(const float* x, float* out, std::int64_t n) {
            for (std::int64_t i = 0; i < n; i += nng::simd::Vectors<kBytes>::kLanes) {
                const V in = nng::simd::load<V>(x + i);
                nng::simd::store(out + i, kExp == Exp::kClamped  ? nng::simd::vexp(in)
                                          : kExp == Exp::kWithin ? nng::simd::vexp_within(in)
                                                                 : nng::simd::vexp_normal(in));
            }
        }
    };
};

// A tail of `count` floats moved through load_first (padded with -1) and store_first on the
// widest vectors, each lane doubled on the way, so that a lane read or written too many shows.
struct DoubledTail {
    template <int kBytes>
    struct Row {
        using V = typename nng::simd::Vectors<kBytes>::Float;
        static __attribute__((always_inline)) void run(const float* in, float* out, float* loaded, std::int64_t count) {
            const V v = nng::simd::load_first<V>(in, count, -1.0f);
            nng::simd::store(loaded, v);
            nng::simd::store_first(out, v * 2.0f, count);
        }
    };
};

}  // namespace

TEST_CASE("the exponential without clamping (simd::vexp_within) equals vexp bit for bit within its bound") {
    std::vector<float> x;
    const float bound = nng::simd::kExpWithinBound;
    for (float v = -bound; v <= bound; v += 0.00731f) x.push_back(v);
    x.push_back(-bound);
    x.push_back(bound);
    x.push_back(0.0f);
    x.push_back(-0.0f);
    while (x.size() % 16 != 0) x.push_back(1.0f);
    std::vector<float> clamped(x.size()), bounded(x.size());
    const auto* in = static_cast<const float*>(x.data());
    const auto n = static_cast<std::int64_t>(x.size());
    nng::simd::run_widest<Exponentials<Exp::kClamped>::Row>(in, clamped.data(), n);
    nng::simd::run_widest<Exponentials<Exp::kWithin>::Row>(in, bounded.data(), n);
    std::size_t differing = 0;
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        differing += clamped[i] != bounded[i] ? 1 : 0;
        const double exact = std::exp(double(x[i]));
        worst = std::max(worst, std::abs(bounded[i] - exact) / exact);
    }
    CHECK(differing == 0);
    CHECK(worst < 2.4e-7);
}

TEST_CASE("a row's tail is read padded and written up to its end, on every vector width") {
    const std::int64_t lanes = nng::simd::widest_vector_bytes() / 4;
    for (std::int64_t count = 0; count < lanes; ++count) {
        CAPTURE(count);
        std::vector<float> in(32), out(32, 7.0f), loaded(16, 0.0f);
        for (std::size_t i = 0; i < in.size(); ++i) in[i] = float(i) + 1.0f;
        nng::simd::run_widest<DoubledTail::Row>(static_cast<const float*>(in.data()), out.data(), loaded.data(), count);
        for (std::int64_t i = 0; i < lanes; ++i) CHECK(loaded[i] == (i < count ? in[i] : -1.0f));
        for (std::int64_t i = 0; i < 32; ++i) CHECK(out[i] == (i < count ? 2.0f * in[i] : 7.0f));
    }
}

TEST_CASE("softmax's exponential (simd::vexp) is within 2 ulp of e^x, 0 at the bottom of the range, NaN for NaN") {
    std::vector<float> x;
    for (float v = -87.3f; v <= 88.0f; v += 0.01337f) x.push_back(v);
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> zeros = {-inf, -1e30f, -1000.0f, -88.0f, -87.7f};
    x.insert(x.end(), zeros.begin(), zeros.end());
    x.push_back(std::numeric_limits<float>::quiet_NaN());
    while (x.size() % 16 != 0) x.push_back(0.0f);
    std::vector<float> out(x.size());
    nng::simd::run_widest<Exponentials<Exp::kClamped>::Row>(static_cast<const float*>(x.data()), out.data(),
                                                            std::int64_t(x.size()));
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x[i]);
        if (std::isnan(x[i])) {
            CHECK(std::isnan(out[i]));
        } else if (x[i] <= -87.7f) {
            CHECK(out[i] == 0.0f);
        } else {
            const double exact = std::exp(double(x[i]));
            worst = std::max(worst, std::abs(out[i] - exact) / exact);
        }
    }
    CHECK(worst < 2.4e-7);  // 2 ulp of float
}

TEST_CASE("the sigmoid's exponential (simd::vexp_normal) is vexp's value above its floor, and normal below it") {
    std::vector<float> x;
    const float lowest = nng::simd::kExpNormalLowest;
    for (float v = lowest; v <= 89.0f; v += 0.00917f) x.push_back(v);
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> outside = {-inf,   -1e30f, -1000.0f, -88.0f, -87.7f, std::nextafter(lowest, -inf),
                                        88.72f, 89.5f,  100.0f,   1e30f,  inf};
    x.insert(x.end(), outside.begin(), outside.end());
    x.push_back(std::numeric_limits<float>::quiet_NaN());
    while (x.size() % 16 != 0) x.push_back(0.0f);
    const auto n = std::int64_t(x.size());
    std::vector<float> clamped(x.size()), normal(x.size());
    nng::simd::run_widest<Exponentials<Exp::kClamped>::Row>(static_cast<const float*>(x.data()), clamped.data(), n);
    nng::simd::run_widest<Exponentials<Exp::kNormal>::Row>(static_cast<const float*>(x.data()), normal.data(), n);
    std::size_t differing = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x[i]);
        if (std::isnan(x[i])) {
            CHECK(std::isnan(normal[i]));
        } else if (x[i] < lowest) {
            // Where vexp gives 0 (or a subnormal), e^lowest: 1 + either is 1.
            CHECK(std::fpclassify(normal[i]) == FP_NORMAL);
            CHECK(normal[i] < 1e-37f);
            CHECK(1.0f + normal[i] == 1.0f);
        } else if (x[i] < 88.3f) {
            CHECK(std::fpclassify(normal[i]) == FP_NORMAL);
            differing += normal[i] != clamped[i] ? 1 : 0;
        } else if (std::isinf(normal[i])) {
            // Only where e^x overflows, or from 88.37 where vexp's 2^n does (vectors narrower than AVX-512).
            CHECK(x[i] > 88.37f);
        } else {
            CHECK(x[i] < 88.73f);
            CHECK(std::abs(normal[i] - std::exp(double(x[i]))) / std::exp(double(x[i])) < 2.4e-7);
        }
    }
    CHECK(differing == 0);
}

TEST_CASE("softmax_rows equals a double softmax for every row length, stride and mask") {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> scores(-12.0f, 12.0f);
    std::bernoulli_distribution masked(0.3);
    for (const std::int64_t n : {1, 2, 7, 15, 16, 17, 31, 32, 33, 200, 257}) {
        for (const std::int64_t padding : {0, 5}) {
            const std::int64_t rows = 6, stride = n + padding;
            std::vector<float> x(static_cast<std::size_t>(rows * stride), 77.0f);
            for (std::int64_t r = 0; r < rows; ++r) {
                for (std::int64_t j = 0; j < n; ++j) {
                    float& v = x[r * stride + j];
                    v = scores(rng) + (r == 1 ? 500.0f : 0.0f);  // row 1: scores far above exp's range
                    if (r >= 2 && j > 0 && masked(rng)) v = r == 2 ? -std::numeric_limits<float>::infinity() : -1e9f;
                }
            }
            const std::vector<float> original = x;
            // Into another buffer with a stride of its own, then in place.
            const std::int64_t out_stride = n + 3;
            std::vector<float> y(static_cast<std::size_t>(rows * out_stride), 55.0f);
            dn::softmax_rows(original.data(), stride, y.data(), out_stride, rows, n);
            dn::softmax_rows(x.data(), stride, x.data(), stride, rows, n);
            for (std::int64_t r = 0; r < rows; ++r) {
                CAPTURE(n);
                CAPTURE(padding);
                CAPTURE(r);
                const std::vector<double> expected = reference_softmax(original.data() + r * stride, n);
                double sum = 0.0;
                for (std::int64_t j = 0; j < n; ++j) {
                    const float got = x[r * stride + j];
                    sum += got;
                    CHECK(std::abs(double(got) - expected[j]) <= 2e-6 * expected[j] + 1e-37);
                    CHECK(y[r * out_stride + j] == got);
                }
                CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
                for (std::int64_t j = n; j < stride; ++j) CHECK(x[r * stride + j] == 77.0f);  // untouched
                for (std::int64_t j = n; j < out_stride; ++j) CHECK(y[r * out_stride + j] == 55.0f);
            }
        }
    }
}

TEST_CASE("softmax_rows of equal scores is uniform, and of a row of -inf is NaN as the formula is") {
    std::vector<float> x(40, 3.5f);
    dn::softmax_rows(x.data(), 20, x.data(), 20, 2, 20);
    for (const float v : x) CHECK(v == doctest::Approx(0.05).epsilon(1e-6));
    std::vector<float> empty(20, -std::numeric_limits<float>::infinity());
    dn::softmax_rows(empty.data(), 20, empty.data(), 20, 1, 20);
    for (const float v : empty) CHECK(std::isnan(v));
}

TEST_CASE("softmax_rows with the division deferred leaves e^(x - max) and 1 / sum, whose product is the softmax") {
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> scores(-12.0f, 12.0f);
    for (const std::int64_t n : {16, 17, 31, 200, 257}) {
        CAPTURE(n);
        const std::int64_t rows = 5, stride = n + 2;
        std::vector<float> x(static_cast<std::size_t>(rows * stride), 77.0f);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t j = 0; j < n; ++j) x[r * stride + j] = scores(rng);
        std::vector<float> probabilities(x.size()), exponentials(x.size(), 55.0f), inverse_sums(rows, 0.0f);
        dn::softmax_rows(x.data(), stride, probabilities.data(), stride, rows, n);
        dn::softmax_rows(x.data(), stride, exponentials.data(), stride, rows, n, inverse_sums.data());
        for (std::int64_t r = 0; r < rows; ++r) {
            CAPTURE(r);
            double highest = -1e30, sum = 0.0;
            for (std::int64_t j = 0; j < n; ++j) highest = std::max(highest, double(x[r * stride + j]));
            for (std::int64_t j = 0; j < n; ++j) {
                const std::size_t i = static_cast<std::size_t>(r * stride + j);
                const double expected = std::exp(double(x[i]) - highest);
                CHECK(std::abs(double(exponentials[i]) - expected) <= 2e-6 * expected + 1e-37);
                CHECK(exponentials[i] * inverse_sums[r] == probabilities[i]);
                sum += expected;
            }
            CHECK(inverse_sums[r] == doctest::Approx(1.0 / sum).epsilon(1e-6));
            CHECK(exponentials[r * stride + n] == 55.0f);  // past the row: untouched
        }
    }
    // Rows softmax_rows does not take (shorter than 16) go to oneDNN, which cannot defer it.
    std::vector<float> short_rows(30, 1.0f), inverse_sums(3);
    const dn::View v = dn::view(short_rows.data(), dn::DataType::f32, {3, 10});
    CHECK_FALSE(dn::softmax_defers_division(v));
    CHECK_THROWS(dn::softmax_forward(v, v, inverse_sums.data()));
    const dn::View long_rows = dn::view(short_rows.data(), dn::DataType::f32, {1, 30});
    CHECK(dn::softmax_defers_division(long_rows));
}

TEST_CASE("softmax_backward_rows equals y (dy - <y, dy>) in double for every row length, in place and not") {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> scores(-6.0f, 6.0f), gradients(-2.0f, 2.0f);
    for (const std::int64_t n : {1, 7, 15, 16, 17, 33, 200, 257}) {
        CAPTURE(n);
        const std::int64_t rows = 5;
        std::vector<float> y(static_cast<std::size_t>(rows * n)), dy(y.size());
        for (std::int64_t r = 0; r < rows; ++r) {
            for (std::int64_t j = 0; j < n; ++j) y[r * n + j] = scores(rng);
            dn::softmax_rows(y.data() + r * n, n, y.data() + r * n, n, 1, n);
        }
        for (float& g : dy) g = gradients(rng);
        std::vector<float> dx(y.size(), 9.0f), in_place = dy;
        dn::softmax_backward_rows(y.data(), dy.data(), dx.data(), rows, n);
        dn::softmax_backward_rows(y.data(), in_place.data(), in_place.data(), rows, n);
        for (std::int64_t r = 0; r < rows; ++r) {
            double dot = 0.0;
            for (std::int64_t j = 0; j < n; ++j) dot += double(y[r * n + j]) * double(dy[r * n + j]);
            for (std::int64_t j = 0; j < n; ++j) {
                const std::size_t i = static_cast<std::size_t>(r * n + j);
                const double expected = double(y[i]) * (double(dy[i]) - dot);
                CHECK(std::abs(double(dx[i]) - expected) <= 1e-6 * (std::abs(expected) + double(y[i])));
                CHECK(in_place[i] == dx[i]);
            }
        }
    }
}

TEST_CASE("softmax_backward with given row terms computes y (dy - term) for every row length, in place") {
    // Terms that are not the rows' sums show that the given ones are used; short rows, which
    // otherwise go to oneDNN, take them too.
    std::mt19937 rng(8);
    std::uniform_real_distribution<float> values(-2.0f, 2.0f);
    for (const std::int64_t n : {1, 7, 16, 17, 200}) {
        CAPTURE(n);
        const std::int64_t rows = 40;
        std::vector<float> y(static_cast<std::size_t>(rows * n)), dy(y.size()), terms(rows);
        for (float& x : y) x = values(rng);
        for (float& x : dy) x = values(rng);
        for (float& t : terms) t = values(rng);
        std::vector<float> dx = dy;
        const auto matrix = [&](std::vector<float>& data) {
            return dn::view(data.data(), dn::DataType::f32, {rows, n});
        };
        dn::softmax_backward(matrix(y), matrix(dx), matrix(dx), terms.data());
        for (std::int64_t r = 0; r < rows; ++r) {
            for (std::int64_t j = 0; j < n; ++j) {
                const std::size_t i = static_cast<std::size_t>(r * n + j);
                const double expected = double(y[i]) * (double(dy[i]) - double(terms[r]));
                CHECK(std::abs(double(dx[i]) - expected) <= 1e-6 * (std::abs(expected) + 1.0));
            }
        }
    }
    // Rows that are not laid end to end have no kernel to take the terms.
    std::vector<float> data(64, 1.0f), terms(4, 0.0f);
    const dn::View strided = dn::view(data.data(), dn::DataType::f32, nng::Dims{4, 8}, nng::Dims{16, 1});
    CHECK_THROWS_WITH_AS(dn::softmax_backward(strided, strided, strided, terms.data()),
                         doctest::Contains("laid end to end"), std::runtime_error);
}
