// The shared oneDNN helper against plain loops in double: matmul, softmax, eltwise, sum over rows,
// reorders, the primitive cache and its counters, and the absence of allocations after warm-up.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nngraph/bfloat16.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/onednn.hpp"

namespace dn = nng::onednn;
using dn::DataType;
using dn::View;

namespace {

// Memory the test owns for a layout a primitive picked, 64-byte aligned as an op's declared
// buffers are.
void* aligned_scratch(std::vector<float>& storage, std::size_t bytes) {
    storage.assign(bytes / sizeof(float) + 16, 0.0f);
    const auto misalignment = reinterpret_cast<std::uintptr_t>(storage.data()) % 64;
    return storage.data() + (misalignment ? (64 - misalignment) / sizeof(float) : 0);
}

std::vector<float> random_values(std::size_t n, unsigned seed, float low = -1.0f, float high = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(low, high);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// The element of `v` at a multi-index; axes of size 1 broadcast.
double at(const View& v, const std::vector<std::int64_t>& index) {
    std::int64_t offset = 0;
    const std::size_t skip = index.size() - v.rank;  // missing leading axes broadcast
    for (int i = 0; i < v.rank; ++i) {
        if (v.dims[i] != 1) offset += index[skip + i] * v.strides[i];
    }
    return static_cast<const float*>(v.data)[offset];
}

// Calls body(index) for every multi-index of `dims`.
void for_each_index(const std::vector<std::int64_t>& dims,
                    const std::function<void(const std::vector<std::int64_t>&)>& body) {
    std::vector<std::int64_t> index(dims.size(), 0);
    const std::int64_t total = std::accumulate(dims.begin(), dims.end(), std::int64_t{1}, std::multiplies<>());
    for (std::int64_t n = 0; n < total; ++n) {
        body(index);
        for (std::size_t axis = dims.size(); axis-- > 0;) {
            if (++index[axis] < dims[axis]) break;
            index[axis] = 0;
        }
    }
}

std::vector<std::int64_t> dims_of(const View& v) { return {v.dims.begin(), v.dims.begin() + v.rank}; }

// |got - want| within 1e-5 of the magnitude of the terms that made `want` (plus a tiny floor):
// the fp32 rounding of a sum is bounded by that, whatever cancels.
void check_close(double got, double want, double magnitude, const std::string& where) {
    INFO(where << ": got " << got << ", want " << want);
    CHECK(std::abs(got - want) <= 1e-5 * magnitude + 1e-7);
}

// ---- Matmul against a triple loop ----------------------------------------------------------------

struct MatmulCase {
    std::vector<std::int64_t> a_batch, b_batch;  // leading axes of A and B (may broadcast or be absent)
    std::int64_t m, k, n;
    bool transpose_a = false, transpose_b = false;
    bool bias = false;
    float alpha = 1.0f, beta = 0.0f;
    dn::Eltwise post = {};
    bool bias_as_row = false;  // the bias carried in the product, through rooms of its own
};

// A (batch..., rows, cols) matrix in memory, viewed transposed when stored the other way round.
struct Operand {
    std::vector<float> values;
    View view;
};

Operand make_operand(std::vector<std::int64_t> batch, std::int64_t rows, std::int64_t cols, bool stored_transposed,
                     unsigned seed) {
    std::vector<std::int64_t> dims = batch;
    dims.push_back(stored_transposed ? cols : rows);
    dims.push_back(stored_transposed ? rows : cols);
    const auto count = std::accumulate(dims.begin(), dims.end(), std::int64_t{1}, std::multiplies<>());
    Operand op{random_values(count, seed), {}};
    op.view = dn::view(op.values.data(), DataType::f32, dims);
    if (stored_transposed) op.view = op.view.transposed();
    return op;
}

double apply_post(const dn::Eltwise& f, double x) {
    if (f.identity()) return x;
    REQUIRE(f.algorithm == dnnl::algorithm::eltwise_relu);
    return x > 0 ? x : f.alpha * x;
}

void check_matmul(const MatmulCase& t) {
    Operand a = make_operand(t.a_batch, t.m, t.k, t.transpose_a, 1);
    Operand b = make_operand(t.b_batch, t.k, t.n, t.transpose_b, 2);
    std::vector<std::int64_t> batch = t.a_batch.size() >= t.b_batch.size() ? t.a_batch : t.b_batch;
    for (std::size_t i = 0; i < batch.size(); ++i) {  // C's batch: the larger of A's and B's
        const auto pick = [&](const std::vector<std::int64_t>& d) {
            const std::size_t skip = batch.size() - d.size();
            return i >= skip ? d[i - skip] : 1;
        };
        batch[i] = std::max(pick(t.a_batch), pick(t.b_batch));
    }
    Operand c = make_operand(batch, t.m, t.n, false, 3);
    const std::vector<float> c_before = c.values;
    std::vector<float> bias_values = random_values(t.n, 4);
    const View bias = t.bias ? dn::view(bias_values.data(), DataType::f32, {t.n}) : View{};

    // The reference, from the views, before C is overwritten.
    std::vector<double> want(c.values.size()), magnitude(c.values.size());
    const View c_old = dn::view(const_cast<float*>(c_before.data()), DataType::f32, dims_of(c.view));
    std::size_t flat = 0;
    for_each_index(dims_of(c.view), [&](const std::vector<std::int64_t>& index) {
        std::vector<std::int64_t> ia = index, ib = index;
        double sum = 0, size = 0;
        for (std::int64_t kk = 0; kk < t.k; ++kk) {
            ia.back() = kk;
            ib[ib.size() - 2] = kk;
            const double term = at(a.view, ia) * at(b.view, ib);
            sum += term;
            size += std::abs(term);
        }
        const double bias_term = t.bias ? bias_values[index.back()] : 0.0;
        const double old = at(c_old, index);
        want[flat] = apply_post(t.post, t.alpha * (sum + bias_term) + t.beta * old);
        magnitude[flat] = std::abs(t.alpha) * (size + std::abs(bias_term)) + std::abs(t.beta * old);
        ++flat;
    });

    std::vector<float> a_room(t.bias_as_row ? t.m * (t.k + 1) : 0), b_room(t.bias_as_row ? (t.k + 1) * t.n : 0);
    const dn::BiasRowRooms rooms{t.bias_as_row ? a_room.data() : nullptr, t.bias_as_row ? b_room.data() : nullptr};
    dn::matmul(a.view, b.view, c.view,
               {.alpha = t.alpha, .beta = t.beta, .bias = bias, .post = t.post, .bias_rows = rooms});
    for (std::size_t i = 0; i < want.size(); ++i) {
        check_close(c.values[i], want[i], magnitude[i], "C[" + std::to_string(i) + "]");
    }
}

}  // namespace

TEST_CASE("matmul matches a triple loop") {
    const dn::Eltwise relu = dn::activation("relu");
    const MatmulCase cases[] = {
        {{}, {}, 1, 1, 1},
        {{}, {}, 7, 5, 3},
        {{}, {}, 64, 32, 100},
        {{}, {}, 33, 70, 17, true, false},
        {{}, {}, 33, 70, 17, false, true},
        {{}, {}, 33, 70, 17, true, true},
        {{4}, {4}, 20, 8, 20},                                       // batched, like attention scores
        {{4}, {4}, 20, 8, 12, false, true},                          // Q K^T
        {{2, 3}, {2, 3}, 5, 6, 7, true, false},                      // two batch axes
        {{4}, {}, 10, 6, 9},                                         // B shared by the whole batch (Dense on 3D input)
        {{4}, {1}, 10, 6, 9},                                        // ... or broadcast from 1
        {{1}, {4}, 10, 6, 9},                                        // A broadcast
        {{}, {}, 16, 12, 10, false, false, true},                    // bias
        {{}, {}, 16, 12, 10, false, false, true, 1.0f, 0.0f, relu},  // Dense with relu
        {{}, {}, 16, 12, 10, false, true, false, 0.25f},             // alpha
        {{}, {}, 16, 12, 10, true, false, false, 1.0f, 1.0f},        // accumulate (a weight gradient)
        {{3}, {3}, 9, 4, 5, false, false, true, 0.5f, -2.0f},        // everything together
        // The bias as B's last row: plain, A and B read through their strides, with the options.
        {{}, {}, 16, 12, 10, false, false, true, 1.0f, 0.0f, {}, true},
        {{}, {}, 33, 70, 17, true, true, true, 1.0f, 0.0f, {}, true},
        {{}, {}, 16, 12, 10, false, false, true, 0.5f, -2.0f, relu, true},
        // 8192 columns or more: on AVX-512 the bias-free, post-free ones run on sgemm.
        {{}, {}, 3, 5, 8200},
        {{}, {}, 4, 6, 8193, true, false, false, 0.5f, 1.0f},  // a weight gradient, accumulated
        {{}, {}, 3, 7, 8192, false, true, false, 1.0f, -2.0f},
        {{}, {}, 3, 5, 8200, false, false, true},                        // a bias: in oneDNN's primitive
        {{}, {}, 3, 5, 8200, false, false, true, 1.0f, 0.0f, {}, true},  // a bias as B's last row: on sgemm
        {{}, {}, 3, 5, 8200, false, false, false, 1.0f, 0.0f, relu},     // a post-op: in oneDNN's primitive
        {{2}, {2}, 3, 5, 8200},                                          // batched: in oneDNN's primitive
    };
    for (const MatmulCase& t : cases) {
        CAPTURE(t.m);
        CAPTURE(t.k);
        CAPTURE(t.n);
        CAPTURE(t.transpose_a);
        CAPTURE(t.transpose_b);
        check_matmul(t);
    }
}

TEST_CASE("matmul reads a block of a larger matrix through its strides") {
    // A is the 5x3 block at row 2, column 1 of a 9x8 matrix.
    std::vector<float> big = random_values(9 * 8, 5), b = random_values(3 * 4, 6), c(5 * 4);
    const View a = dn::view(big.data() + 2 * 8 + 1, DataType::f32, {5, 3}, {8, 1});
    dn::matmul(a, dn::view(b.data(), DataType::f32, {3, 4}), dn::view(c.data(), DataType::f32, {5, 4}));
    for (int i = 0; i < 5; ++i) {
        for (int j = 0; j < 4; ++j) {
            double want = 0, size = 0;
            for (int k = 0; k < 3; ++k) {
                want += double(big[(2 + i) * 8 + 1 + k]) * b[k * 4 + j];
                size += std::abs(double(big[(2 + i) * 8 + 1 + k]) * b[k * 4 + j]);
            }
            check_close(c[i * 4 + j], want, size, "C");
        }
    }
}

TEST_CASE("sgemm_each_group equals matmul for plain and transposed operands, and declines what suits it not") {
    const std::int64_t groups = 3, m = 13, k = 9, n = 11;
    std::vector<float> a = random_values(groups * m * k, 21), b = random_values(groups * k * n, 22);
    std::vector<float> at = random_values(groups * k * m, 23), bt = random_values(groups * n * k, 24);
    const View a_plain = dn::view(a.data(), DataType::f32, {groups, m, k});
    const View a_transposed = dn::view(at.data(), DataType::f32, {groups, k, m}).transposed();
    const View b_plain = dn::view(b.data(), DataType::f32, {groups, k, n});
    const View b_transposed = dn::view(bt.data(), DataType::f32, {groups, n, k}).transposed();
    for (const View& left : {a_plain, a_transposed}) {
        for (const View& right : {b_plain, b_transposed}) {
            for (const float beta : {0.0f, 1.0f}) {
                CAPTURE(beta);
                std::vector<float> want = random_values(groups * m * n, 25), got = want;
                const View c_want = dn::view(want.data(), DataType::f32, {groups, m, n});
                const View c_got = dn::view(got.data(), DataType::f32, {groups, m, n});
                dn::matmul(left, right, c_want, {.alpha = 0.5f, .beta = beta});
                REQUIRE(dn::sgemm_each_group(left, right, c_got, 0.5f, beta));
                for (std::size_t i = 0; i < want.size(); ++i) check_close(got[i], want[i], 4.0 * k, "C");
            }
        }
    }
    // Axes of one element (a single query row, a key width of one), in plain and transposed views.
    for (const auto& [rows, inner, cols] :
         {std::array<std::int64_t, 3>{1, 9, 11}, {13, 1, 11}, {13, 9, 1}, std::array<std::int64_t, 3>{1, 1, 1}}) {
        CAPTURE(rows);
        CAPTURE(inner);
        CAPTURE(cols);
        std::vector<float> x = random_values(groups * rows * inner, 26), y = random_values(groups * inner * cols, 27);
        for (const bool transposed : {false, true}) {
            const View left = transposed ? dn::view(x.data(), DataType::f32, {groups, inner, rows}).transposed()
                                         : dn::view(x.data(), DataType::f32, {groups, rows, inner});
            const View right = transposed ? dn::view(y.data(), DataType::f32, {groups, cols, inner}).transposed()
                                          : dn::view(y.data(), DataType::f32, {groups, inner, cols});
            std::vector<float> want(groups * rows * cols), got(want.size());
            dn::matmul(left, right, dn::view(want.data(), DataType::f32, {groups, rows, cols}));
            REQUIRE(dn::sgemm_each_group(left, right, dn::view(got.data(), DataType::f32, {groups, rows, cols})));
            for (std::size_t i = 0; i < want.size(); ++i) check_close(got[i], want[i], 4.0 * inner, "C");
        }
    }
    // Neither of B's last two axes contiguous, or bf16: left to matmul.
    const View b_strided = dn::view(b.data(), DataType::f32, {groups, k / 2, n / 2}, {k * n, 2 * n, 2});
    std::vector<float> c(groups * m * n);
    CHECK_FALSE(dn::sgemm_each_group(a_plain, b_strided, dn::view(c.data(), DataType::f32, {groups, m, n / 2})));
    std::vector<std::uint16_t> half(groups * m * k);
    CHECK_FALSE(dn::sgemm_each_group(dn::view(half.data(), DataType::bf16, {groups, m, k}), b_plain,
                                     dn::view(c.data(), DataType::f32, {groups, m, n})));
    CHECK_THROWS_AS(dn::sgemm_each_group(a_plain, b_plain, dn::view(c.data(), DataType::f32, {groups, m + 1, n})),
                    std::runtime_error);
}

TEST_CASE("on AVX-512 a product of 8192 columns or more without bias or post-op needs no primitive") {
    if (!nng::cpu::has_avx512()) return;  // below AVX-512 every product is a gemm primitive
    const auto primitives_for = [](std::int64_t cols, const dn::MatmulOptions& options) {
        std::vector<float> a = random_values(2 * 3, 31), b = random_values(3 * cols, 32), c(2 * cols);
        std::vector<float> bias = random_values(cols, 33);
        dn::MatmulOptions with = options;
        if (with.bias.present()) with.bias = dn::view(bias.data(), DataType::f32, {cols});
        const std::int64_t before = dn::stats().primitives_created;
        dn::matmul(dn::view(a.data(), DataType::f32, {2, 3}), dn::view(b.data(), DataType::f32, {3, cols}),
                   dn::view(c.data(), DataType::f32, {2, cols}), with);
        return dn::stats().primitives_created - before;
    };
    dn::clear_cache();
    CHECK(primitives_for(8192, {}) == 0);
    CHECK(primitives_for(8192, {.alpha = 2.0f, .beta = 1.0f}) == 0);
    CHECK(primitives_for(8191, {}) == 1);
    std::vector<float> placeholder(1);
    CHECK(primitives_for(8192, {.bias = dn::view(placeholder.data(), DataType::f32, {1})}) == 1);
    CHECK(primitives_for(8192, {.post = dn::activation("relu")}) == 1);
}

TEST_CASE("matmul names the shapes that do not fit") {
    std::vector<float> a(4 * 5), b(6 * 2), c(4 * 2);
    try {
        dn::matmul(dn::view(a.data(), DataType::f32, {4, 5}), dn::view(b.data(), DataType::f32, {6, 2}),
                   dn::view(c.data(), DataType::f32, {4, 2}));
        FAIL("no exception");
    } catch (const std::runtime_error& e) {
        const std::string message = e.what();
        CHECK(message.find("matmul") != std::string::npos);
        CHECK(message.find("(4, 5)") != std::string::npos);
        CHECK(message.find("(6, 2)") != std::string::npos);
    }
    CHECK_THROWS_AS(
        dn::matmul(View{}, dn::view(b.data(), DataType::f32, {6, 2}), dn::view(c.data(), DataType::f32, {4, 2})),
        std::runtime_error);
}

TEST_CASE("the bias rides in the product only where C is large and the copies a quarter of it at most") {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    const auto carried = [](dn::BiasRowFloats f) { return f.a > 0 && f.b > 0; };
    // Sizes a hostile model file could give: refused without overflowing, on every CPU.
    for (const auto& [rows, inner, cols] : {std::array<std::int64_t, 3>{kMax, 2, 2},
                                            {2, kMax, 2},
                                            {2, kMax - 1, 2},
                                            {kMax / 2, 1, 3},
                                            {1 << 30, 1 << 30, 1 << 30},
                                            {0, 4, 4},
                                            {-1, 4, 4}}) {
        CAPTURE(rows);
        CAPTURE(inner);
        CAPTURE(cols);
        CHECK_FALSE(carried(dn::bias_row_floats(rows, inner, cols)));
    }
    // The translation model's output layer, on sgemm on every CPU: C of 12.8M floats, copies of
    // 0.33M and 2.57M.
    const dn::BiasRowFloats output = dn::bias_row_floats(1280, 256, 10000);
    CHECK(output.a == 1280 * 257);
    CHECK(output.b == 257 * 10000);
    CHECK_FALSE(carried(dn::bias_row_floats(100, 10, 10000)));  // C under 2^20 floats: still cached
    if (nng::cpu::has_avx512()) {  // narrower products run on brgemm, which adds the bias in cache
        CHECK_FALSE(carried(dn::bias_row_floats(2048, 255, 2048)));
        CHECK_FALSE(carried(dn::bias_row_floats(4096, 16, 8191)));
        CHECK(carried(dn::bias_row_floats(4096, 16, 8192)));
        return;
    }
    CHECK_FALSE(carried(dn::bias_row_floats(1000, 10, 1000)));
    // C of 4M floats: copies of exactly a quarter (2 x 2048 x 256 floats) are carried, one more
    // column of A and row of B are not.
    CHECK(carried(dn::bias_row_floats(2048, 255, 2048)));
    CHECK_FALSE(carried(dn::bias_row_floats(2048, 256, 2048)));
}

// ---- Softmax -------------------------------------------------------------------------------------

TEST_CASE("softmax forward and backward over the last axis") {
    // Rows of 13 go to oneDNN's softmax; of 40 and 401 to softmax_rows, on one thread and on several.
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{6, 13}, {6, 40}, {90, 401}}) {
        CAPTURE(cols);
        std::vector<float> x = random_values(rows * cols, 7, -4.0f, 4.0f), y(x.size()), dy = random_values(x.size(), 8),
                           dx(x.size());
        const nng::Dims shape{2, rows / 2, cols};
        const View vx = dn::view(x.data(), DataType::f32, shape), vy = dn::view(y.data(), DataType::f32, shape);
        dn::softmax_forward(vx, vy);
        dn::softmax_backward(vy, dn::view(dy.data(), DataType::f32, shape), dn::view(dx.data(), DataType::f32, shape));
        for (std::int64_t r = 0; r < rows; ++r) {
            const auto row = [&](const std::vector<float>& v, std::int64_t c) { return double(v[r * cols + c]); };
            double max = -INFINITY, total = 0;
            for (std::int64_t c = 0; c < cols; ++c) max = std::max(max, row(x, c));
            for (std::int64_t c = 0; c < cols; ++c) total += std::exp(row(x, c) - max);
            double dot = 0;  // sum(dy * y), with the reference y
            for (std::int64_t c = 0; c < cols; ++c) dot += row(dy, c) * std::exp(row(x, c) - max) / total;
            for (std::int64_t c = 0; c < cols; ++c) {
                const double want_y = std::exp(row(x, c) - max) / total;
                check_close(row(y, c), want_y, want_y, "softmax");
                check_close(row(dx, c), want_y * (row(dy, c) - dot), want_y * (std::abs(row(dy, c)) + std::abs(dot)),
                            "softmax grad");
            }
        }
        // In place.
        std::vector<float> z = x;
        dn::softmax_forward(dn::view(z.data(), DataType::f32, {rows, cols}),
                            dn::view(z.data(), DataType::f32, {rows, cols}));
        for (std::size_t i = 0; i < z.size(); ++i) check_close(z[i], y[i], std::abs(y[i]), "in place");
    }
}

// ---- Eltwise -------------------------------------------------------------------------------------

namespace {

struct Activation {
    const char* name;
    std::function<double(double)> f, df;  // the function and its derivative, in double
    // The size of the terms that make f(x), when larger than f(x): gelu's 0.5 x (1 + erf(x / sqrt 2))
    // cancels for negative x, leaving an fp32 error of the order of eps * |x|.
    std::function<double(double)> terms = nullptr;
};

double erf_gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

const Activation kActivations[] = {
    {"linear", [](double x) { return x; }, [](double) { return 1.0; }},
    {"relu", [](double x) { return x > 0 ? x : 0.0; }, [](double x) { return x > 0 ? 1.0 : 0.0; }},
    {"sigmoid", sigmoid, [](double x) { return sigmoid(x) * (1 - sigmoid(x)); }},
    {"tanh", [](double x) { return std::tanh(x); }, [](double x) { return 1 - std::tanh(x) * std::tanh(x); }},
    {"gelu", erf_gelu,
     [](double x) { return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * M_PI); },
     [](double x) { return std::abs(x); }},
    {"elu", [](double x) { return x > 0 ? x : std::expm1(x); }, [](double x) { return x > 0 ? 1.0 : std::exp(x); }},
    {"softplus", [](double x) { return std::log1p(std::exp(x)); }, sigmoid},
    {"swish", [](double x) { return x * sigmoid(x); },
     [](double x) { return sigmoid(x) * (1 + x * (1 - sigmoid(x))); }},
    {"exponential", [](double x) { return std::exp(x); }, [](double x) { return std::exp(x); }},
};

}  // namespace

TEST_CASE("the analytic derivatives the eltwise tests use agree with finite differences") {
    for (const Activation& a : kActivations) {
        for (const double x : {-2.3, -0.7, 0.4, 1.9}) {
            const double h = 1e-6, numeric = (a.f(x + h) - a.f(x - h)) / (2 * h);
            INFO(std::string(a.name) << " at " << x);
            CHECK(std::abs(numeric - a.df(x)) <= 1e-7 * std::max(1.0, std::abs(numeric)));
        }
    }
}

TEST_CASE("eltwise forward and backward, from the input and from the output") {
    const std::size_t count = 2 * 50;
    // Away from 0, where relu's derivative jumps.
    std::vector<float> x = random_values(count, 9, -3.0f, 3.0f), dy = random_values(count, 10);
    for (float& v : x) v += v >= 0 ? 0.01f : -0.01f;
    for (const Activation& a : kActivations) {
        INFO(std::string(a.name));
        const dn::Eltwise f = dn::activation(a.name);
        std::vector<float> y(count), dx(count), dx_from_y(count);
        const auto v = [](std::vector<float>& values) { return dn::view(values.data(), DataType::f32, {2, 50}); };
        dn::eltwise_forward(f, v(x), v(y));
        dn::eltwise_backward(f, v(x), v(dy), v(dx));
        for (std::size_t i = 0; i < count; ++i) {
            const double want = a.f(x[i]), want_dx = a.df(x[i]) * dy[i];
            check_close(y[i], want, a.terms ? a.terms(x[i]) : std::abs(want), "forward");
            check_close(dx[i], want_dx, std::abs(want_dx), "backward");
        }
        if (dn::has_backward_from_dst(f)) {
            dn::eltwise_backward_from_dst(f, v(y), v(dy), v(dx_from_y));
            for (std::size_t i = 0; i < count; ++i) {
                const double want_dx = a.df(x[i]) * dy[i];
                check_close(dx_from_y[i], want_dx, std::abs(want_dx), "backward from dst");
            }
        } else {
            CHECK_THROWS_AS(dn::eltwise_backward_from_dst(f, v(y), v(dy), v(dx_from_y)), std::runtime_error);
        }
    }
    CHECK(dn::has_backward_from_dst(dn::activation("relu")));
    CHECK(dn::has_backward_from_dst(dn::activation("sigmoid")));
    CHECK(dn::has_backward_from_dst(dn::activation("tanh")));
    CHECK_FALSE(dn::has_backward_from_dst(dn::activation("gelu")));
}

TEST_CASE("activation names are Keras's") {
    CHECK(dn::activation("linear").identity());
    CHECK(dn::activation("sigmoid").algorithm == dnnl::algorithm::eltwise_logistic);
    CHECK(dn::activation("gelu").algorithm == dnnl::algorithm::eltwise_gelu_erf);
    try {
        dn::activation("softmax");
        FAIL("no exception");
    } catch (const nng::OpError& e) {
        CHECK(e.attribute() == "activation");
    }
    CHECK_THROWS_AS(dn::activation("relu6x"), nng::OpError);
}

// ---- Sum over rows -------------------------------------------------------------------------------

TEST_CASE("sum over rows, overwriting and accumulating") {
    // 4100 columns take several blocks of columns, the last one narrower.
    for (const auto& [rows, cols] :
         {std::pair<std::int64_t, std::int64_t>{1, 35}, {7, 35}, {640, 35}, {7, 4100}, {640, 4100}}) {
        CAPTURE(rows);
        CAPTURE(cols);
        std::vector<float> x = random_values(rows * cols, 11);
        std::vector<float> out = random_values(cols, 12), old = out;
        const View vx = dn::view(x.data(), DataType::f32, {rows, cols});
        dn::sum_rows(vx, dn::view(out.data(), DataType::f32, {cols}));
        std::vector<float> acc = old;
        dn::sum_rows(vx, dn::view(acc.data(), DataType::f32, {1, cols}), 1.0f);
        for (std::int64_t c = 0; c < cols; ++c) {
            double want = 0, size = 0;
            for (std::int64_t r = 0; r < rows; ++r) {
                want += x[r * cols + c];
                size += std::abs(x[r * cols + c]);
            }
            const auto i = c;
            check_close(out[i], want, size, "sum");
            check_close(acc[i], want + old[i], size + std::abs(old[i]), "accumulated sum");
        }
    }
}

TEST_CASE("a row rounded to bf16 is what a reorder to bf16 makes, at every length") {
    std::vector<float> x = random_values(40, 16, -3.0f, 3.0f);
    x[3] = std::numeric_limits<float>::infinity();
    x[5] = -1.0f - std::ldexp(1.0f, -8);  // a tie, to the even neighbour
    x[7] = std::nanf("");
    for (std::int64_t n = 0; n <= 40; ++n) {
        CAPTURE(n);
        std::vector<std::uint16_t> row(41, 0xabcd), reordered(41, 0xabcd);
        nng::to_bfloat16(x.data(), row.data(), n);
        if (n > 0) dn::to_bfloat16(dn::view(x.data(), DataType::f32, {n}), reordered.data());
        for (std::int64_t i = 0; i < n; ++i) {
            if (std::isnan(x[i]))
                CHECK((row[i] & 0x7fc0) == 0x7fc0);  // a quiet NaN
            else
                CHECK(row[i] == reordered[i]);
        }
        CHECK(row[n] == 0xabcd);  // nothing past the row
    }
}

TEST_CASE("a row rounded to bf16 with streaming stores is the plainly stored row, at every length and alignment") {
    const std::vector<float> x = random_values(80, 17, -3.0f, 3.0f);
    alignas(64) std::uint16_t streamed[96], stored[96];
    for (std::int64_t first = 0; first < 16; ++first) {  // dst 2 * first bytes past a 64-byte line
        for (std::int64_t n = 0; n <= 80 - first; ++n) {
            CAPTURE(first);
            CAPTURE(n);
            std::fill(std::begin(streamed), std::end(streamed), 0xabcd);
            std::fill(std::begin(stored), std::end(stored), 0xabcd);
            nng::to_bfloat16_streaming(x.data(), streamed + first, n);
            nng::to_bfloat16(x.data(), stored + first, n);
            CHECK(std::equal(std::begin(streamed), std::end(streamed), std::begin(stored)));
        }
    }
}

TEST_CASE("sum over rows with a bf16 copy: the same sums, and the copy a reorder to bf16 makes") {
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{7, 35}, {640, 4100}}) {
        CAPTURE(rows);
        CAPTURE(cols);
        std::vector<float> x = random_values(rows * cols, 14);
        const View vx = dn::view(x.data(), DataType::f32, {rows, cols});
        std::vector<float> plain(cols), summed(cols);
        dn::sum_rows(vx, dn::view(plain.data(), DataType::f32, {cols}));
        std::vector<std::uint16_t> copy(rows * cols), reordered(rows * cols);
        const View got = dn::sum_rows(vx, dn::view(summed.data(), DataType::f32, {cols}), 0.0f, copy.data());
        dn::to_bfloat16(vx, reordered.data());
        CHECK(got.data == copy.data());
        CHECK(got.type == DataType::bf16);
        CHECK(got.dims[0] == rows);
        CHECK(got.dims[1] == cols);
        CHECK(summed == plain);
        CHECK(copy == reordered);
    }
    // A transposed x (columns not contiguous) takes the copy in a pass of its own.
    std::vector<float> x = random_values(6 * 5, 15), sums(6);
    std::vector<std::uint16_t> copy(30), reordered(30);
    const View transposed = dn::view(x.data(), DataType::f32, {5, 6}).transposed();
    dn::sum_rows(transposed, dn::view(sums.data(), DataType::f32, {5}), 0.0f, copy.data());
    dn::to_bfloat16(transposed, reordered.data());
    CHECK(copy == reordered);
    CHECK(!dn::sum_rows(transposed, dn::view(sums.data(), DataType::f32, {5})).present());
}

TEST_CASE("a wide bf16 product copies a transposed left operand into plain rows, and only that one") {
    CHECK(dn::transposed_left_values(DataType::bf16, 4, 6, 8192) == 24);
    CHECK(dn::transposed_left_values(DataType::bf16, 4, 6, 8191) == 0);
    CHECK(dn::transposed_left_values(DataType::f32, 4, 6, 8192) == 0);
    if (!nng::cpu::has_bfloat16_dot_product()) return;  // oneDNN has no bf16 product to run here
    const std::int64_t rows = 4, inner = 6, cols = 8192;
    std::vector<float> a = random_values(inner * rows, 34), b = random_values(inner * cols, 35);
    std::vector<std::uint16_t> a16(a.size()), b16(b.size());
    // A stored (inner, rows), read transposed as (rows, inner).
    const View at = dn::to_bfloat16(dn::view(a.data(), DataType::f32, {inner, rows}), a16.data()).transposed();
    const View b_view = dn::to_bfloat16(dn::view(b.data(), DataType::f32, {inner, cols}), b16.data());
    std::vector<float> in_place(rows * cols), copied(rows * cols);
    std::vector<std::uint16_t> room(rows * inner, 0);
    dn::matmul(at, b_view, dn::view(in_place.data(), DataType::f32, {rows, cols}));
    dn::matmul(at, b_view, dn::view(copied.data(), DataType::f32, {rows, cols}), {.plain_left = room.data()});
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t k = 0; k < inner; ++k) CHECK(room[r * inner + k] == a16[k * rows + r]);
    for (std::size_t i = 0; i < copied.size(); ++i) CHECK(copied[i] == doctest::Approx(in_place[i]).epsilon(1e-5));
    // A narrower product leaves the room alone.
    std::fill(room.begin(), room.end(), std::uint16_t{0});
    const View b_narrow = dn::view(b16.data(), DataType::bf16, {inner, cols - 1}, {cols, 1});
    std::vector<float> narrow(rows * (cols - 1));
    dn::matmul(at, b_narrow, dn::view(narrow.data(), DataType::f32, {rows, cols - 1}), {.plain_left = room.data()});
    CHECK(std::all_of(room.begin(), room.end(), [](std::uint16_t v) { return v == 0; }));
}

TEST_CASE("a product with its right operand packed equals the plain one, at any number of rows") {
    const std::int64_t K = 44, N = 100, packed_rows = 32;
    std::vector<DataType> types = {DataType::f32};
    if (nng::cpu::has_bfloat16_dot_product()) types.push_back(DataType::bf16);
    for (const DataType type : types) {
        CAPTURE(static_cast<int>(type));
        std::vector<float> b = random_values(N * K, 41), bias = random_values(N, 42);
        // B given transposed: stored (N, K), read as (K, N).
        const View b_view = dn::view(b.data(), DataType::f32, {N, K}).transposed();
        std::vector<std::byte> room(dn::packed_right_bytes(type, packed_rows, K, N));
        const dn::PackedRight packed = dn::pack_right(b_view, type, packed_rows, room.data());
        std::vector<std::uint16_t> b16(K * N);
        const View b_plain = type == DataType::bf16 ? dn::to_bfloat16(b_view, b16.data()) : b_view;
        for (const std::int64_t rows : {packed_rows, std::int64_t{7}}) {
            CAPTURE(rows);
            std::vector<float> a = random_values(rows * K, 43);
            std::vector<std::uint16_t> a16(a.size());
            const View a_f32 = dn::view(a.data(), DataType::f32, {rows, K});
            const View a_view = type == DataType::bf16 ? dn::to_bfloat16(a_f32, a16.data()) : a_f32;
            std::vector<float> want = random_values(rows * N, 44), got = want;
            const dn::MatmulOptions options{.beta = 1.0f, .bias = dn::view(bias.data(), DataType::f32, {1, N})};
            dn::matmul(a_view, b_plain, dn::view(want.data(), DataType::f32, {rows, N}), options);
            dn::matmul(a_view, packed, dn::view(got.data(), DataType::f32, {rows, N}), options);
            for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
        }
    }
}

TEST_CASE("linear_backward: dw, db and dx (added onto or not) in f32, and in bf16 from the rounded operands") {
    const std::int64_t M = 9, K = 6, N = 5;
    const std::vector<float> x = random_values(M * K, 51), w = random_values(K * N, 52), dy = random_values(M * N, 53),
                             dx_before = random_values(M * K, 54);
    // The reference in double from operands given as floats (rounded to bf16 first for the mixed path).
    struct Gradients {
        std::vector<float> dw, db, dx;
    };
    const auto reference = [&](const std::vector<float>& xs, const std::vector<float>& ws,
                               const std::vector<float>& dys, float dx_beta) {
        Gradients g{std::vector<float>(K * N), std::vector<float>(N), std::vector<float>(M * K)};
        for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t n = 0; n < N; ++n) {
                double sum = 0.0;
                for (std::int64_t m = 0; m < M; ++m) sum += double(xs[m * K + k]) * dys[m * N + n];
                g.dw[k * N + n] = static_cast<float>(sum);
            }
        for (std::int64_t n = 0; n < N; ++n) {
            double sum = 0.0;
            for (std::int64_t m = 0; m < M; ++m) sum += dy[m * N + n];  // the bias always sums f32 dy
            g.db[n] = static_cast<float>(sum);
        }
        for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t k = 0; k < K; ++k) {
                double sum = dx_beta * double(dx_before[m * K + k]);
                for (std::int64_t n = 0; n < N; ++n) sum += double(dys[m * N + n]) * ws[k * N + n];
                g.dx[m * K + k] = static_cast<float>(sum);
            }
        return g;
    };
    const auto rounded = [](const std::vector<float>& v) {
        std::vector<float> r(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) r[i] = nng::from_bfloat16(nng::to_bfloat16(v[i]));
        return r;
    };
    const bool bf16_runs = nng::cpu::has_bfloat16_dot_product();
    for (const bool bf16 : {false, true}) {
        if (bf16 && !bf16_runs) break;  // oneDNN has no bf16 product to run here
        for (const float dx_beta : {0.0f, 1.0f}) {
            CAPTURE(bf16);
            CAPTURE(dx_beta);
            Gradients got{std::vector<float>(K * N), std::vector<float>(N), dx_before};
            std::vector<std::uint16_t> room(M * N + M * K + K * N);
            dn::Bfloat16Rooms rooms;
            if (bf16) rooms = {room.data(), room.data() + M * N, room.data() + M * N + M * K};
            dn::linear_backward(
                dn::view(const_cast<float*>(x.data()), DataType::f32, {M, K}),
                dn::view(const_cast<float*>(w.data()), DataType::f32, {K, N}),
                dn::view(const_cast<float*>(dy.data()), DataType::f32, {M, N}),
                {dn::view(got.dw.data(), DataType::f32, {K, N}), dn::view(got.db.data(), DataType::f32, {N}),
                 dn::view(got.dx.data(), DataType::f32, {M, K}), dx_beta},
                rooms);
            const Gradients want =
                bf16 ? reference(rounded(x), rounded(w), rounded(dy), dx_beta) : reference(x, w, dy, dx_beta);
            for (std::size_t i = 0; i < want.dw.size(); ++i)
                CHECK(got.dw[i] == doctest::Approx(want.dw[i]).epsilon(1e-5));
            for (std::size_t i = 0; i < want.db.size(); ++i)
                CHECK(got.db[i] == doctest::Approx(want.db[i]).epsilon(1e-6));
            for (std::size_t i = 0; i < want.dx.size(); ++i)
                CHECK(got.dx[i] == doctest::Approx(want.dx[i]).epsilon(1e-5));
        }
    }
    if (!bf16_runs) return;
    // An f32 operand under bf16 needs its room; only dy's given: refused, naming x.
    std::vector<float> dw(K * N);
    std::vector<std::uint16_t> dy_room(M * N);
    CHECK_THROWS_WITH_AS(dn::linear_backward(dn::view(const_cast<float*>(x.data()), DataType::f32, {M, K}),
                                             dn::view(const_cast<float*>(w.data()), DataType::f32, {K, N}),
                                             dn::view(const_cast<float*>(dy.data()), DataType::f32, {M, N}),
                                             {dn::view(dw.data(), DataType::f32, {K, N})}, {dy_room.data()}),
                         doctest::Contains("x"), std::runtime_error);
}

TEST_CASE("sum over rows rounds the exact sum once, whichever rows it is given") {
    // A sequence-parallel job sums each rank's rows and then the ranks' sums; one process sums
    // every row. The two agree to a float's rounding only when each sum is the exact one rounded.
    const std::int64_t rows = 20000, cols = 70;
    std::vector<float> x = random_values(rows * cols, 13, -10.0f, 10.0f);
    for (const auto& [first, count] :
         {std::pair<std::int64_t, std::int64_t>{0, rows}, {0, rows / 2}, {rows / 2, rows / 2}}) {
        std::vector<float> sums(cols);
        dn::sum_rows(dn::view(x.data() + first * cols, DataType::f32, {count, cols}),
                     dn::view(sums.data(), DataType::f32, {cols}));
        for (std::int64_t c = 0; c < cols; ++c) {
            double exact = 0;
            for (std::int64_t r = first; r < first + count; ++r) exact += x[r * cols + c];
            INFO("rows " << first << " to " << first + count << ", column " << c << ": got " << sums[c] << ", exact "
                         << exact);
            CHECK(std::abs(sums[c] - exact) <= std::max(1.0, std::abs(exact)) * 6e-8);
        }
    }
}

// ---- Views and memory ----------------------------------------------------------------------------

TEST_CASE("views of call tensors") {
    std::vector<float> data(2 * 3 * 4);
    nng_tensor t{sizeof(nng_tensor), NNG_F32, nng::to_shape({2, 3, 4}), data.data()};
    const nng::TensorRef ref(&t);

    const View v = dn::view(ref);
    CHECK(v.rank == 3);
    CHECK(v.strides[0] == 12);
    CHECK(v.contiguous());
    CHECK(dn::desc_of(ref) == dn::desc_of(v));  // the plain format tag and row-major strides agree
    CHECK(dn::memory_of(ref).get_data_handle() == data.data());

    const View flat = dn::view(ref, {6, 4});
    CHECK(flat.dims[0] == 6);
    CHECK_THROWS_AS(dn::view(ref, {5, 4}), std::runtime_error);

    const View heads = dn::view(ref, {2, 3, 2, 2}).permuted({0, 2, 1, 3});  // (B, T, H, D) as (B, H, T, D)
    CHECK(heads.dims[1] == 2);
    CHECK(heads.strides[1] == 2);
    CHECK(heads.strides[2] == 4);
    CHECK_FALSE(heads.contiguous());
    CHECK(heads.describe() == "f32 (2, 2, 3, 2) strides (12, 2, 4, 1)");

    std::vector<std::int64_t> ids(4);
    nng_tensor t64{sizeof(nng_tensor), NNG_I64, nng::to_shape({4}), ids.data()};
    CHECK_THROWS_AS(dn::view(nng::TensorRef(&t64)), std::runtime_error);
    std::vector<std::int32_t> ints(4);
    nng_tensor t32{sizeof(nng_tensor), NNG_I32, nng::to_shape({4}), ints.data()};
    CHECK(dn::view(nng::TensorRef(&t32)).type == DataType::s32);

    nng_tensor scalar{sizeof(nng_tensor), NNG_F32, nng::to_shape({}), data.data()};
    CHECK(dn::view(nng::TensorRef(&scalar)).rank == 1);

    // Absent tensors (no gradient wanted, no mask) give absent views.
    nng_tensor no_data{sizeof(nng_tensor), NNG_F32, nng::to_shape({2, 3}), nullptr};
    CHECK_FALSE(dn::view(nng::TensorRef(&no_data)).present());
    CHECK_FALSE(dn::view(nng::TensorRef(), {2, 3}).present());
    CHECK_THROWS_AS(dn::desc_of(nng::TensorRef()), std::runtime_error);
}

TEST_CASE("reorder round trips") {
    const std::int64_t rows = 37, cols = 45;
    const std::vector<float> x = random_values(rows * cols, 13);
    std::vector<float> xt(x.size()), back(x.size());
    const View plain = dn::view(const_cast<float*>(x.data()), DataType::f32, {rows, cols});

    SUBCASE("between strided views (a transpose)") {
        dn::reorder(plain, dn::view(xt.data(), DataType::f32, {cols, rows}).transposed());
        CHECK(xt[1] == x[cols]);  // xt holds x^T row-major
        dn::reorder(dn::view(xt.data(), DataType::f32, {cols, rows}).transposed(),
                    dn::view(back.data(), DataType::f32, {rows, cols}));
        CHECK(back == x);
    }
    SUBCASE("through a blocked layout, as for weights a primitive picked") {
        const dnnl::memory user = dn::memory_of(plain);
        const dnnl::memory::desc blocked({rows, cols}, DataType::f32, dnnl::memory::format_tag::AB16b16a);
        CHECK(dn::reorder_if_needed(user, dn::desc_of(plain), nullptr).get_data_handle() == user.get_data_handle());

        std::vector<float> storage[2];
        const dnnl::memory in_blocked =
            dn::reorder_if_needed(user, blocked, aligned_scratch(storage[0], blocked.get_size()));
        CHECK(in_blocked.get_data_handle() != user.get_data_handle());
        const dnnl::memory out_user = dn::memory_of(dn::view(back.data(), DataType::f32, {rows, cols}));
        const dnnl::memory produced = dn::output_in(out_user, blocked, aligned_scratch(storage[1], blocked.get_size()));
        CHECK(produced.get_data_handle() != out_user.get_data_handle());
        dn::reorder(in_blocked, produced);  // stands for a primitive writing its gradient
        dn::write_back(produced, out_user);
        CHECK(back == x);
        CHECK(dn::output_in(out_user, out_user.get_desc(), nullptr).get_data_handle() == back.data());
    }
}

// ---- Cache, counters, allocations, threads -------------------------------------------------------

TEST_CASE("the cache creates each primitive once per key") {
    dn::clear_cache();
    const auto run = [](std::int64_t batch) {
        std::vector<float> x(batch * 24, 1.0f), w(24 * 10, 1.0f), y(batch * 10);
        dn::matmul(dn::view(x.data(), DataType::f32, {batch, 24}), dn::view(w.data(), DataType::f32, {24, 10}),
                   dn::view(y.data(), DataType::f32, {batch, 10}));
        CHECK(y[0] == 24.0f);
    };
    const dn::Stats start = dn::stats();
    run(64);
    CHECK(dn::stats().primitives_created == start.primitives_created + 1);
    run(64);
    CHECK(dn::stats().primitives_created == start.primitives_created + 1);
    CHECK(dn::stats().cache_hits == start.cache_hits + 1);
    run(40);  // a smaller last batch is another primitive
    CHECK(dn::stats().primitives_created == start.primitives_created + 2);
    run(40);
    CHECK(dn::stats().primitives_created == start.primitives_created + 2);

    // Keys: the tag, then integers; different lengths or tags never compare equal.
    constexpr dn::Tag kA{"test.a"}, kB{"test.b"};
    CHECK(dn::Key(kA).add(1, 2) == dn::Key(kA).add(1, 2));
    CHECK_FALSE(dn::Key(kA).add(1, 2) == dn::Key(kB).add(1, 2));
    CHECK_FALSE(dn::Key(kA).add(1, 2) == dn::Key(kA).add(1, 2, 0));
    CHECK_FALSE(dn::Key(kA).add(1.0f) == dn::Key(kA).add(2.0f));
    std::vector<float> buffer(6);
    const View v23 = dn::view(buffer.data(), DataType::f32, {2, 3}),
               v32 = dn::view(buffer.data(), DataType::f32, {3, 2});
    CHECK_FALSE(dn::Key(kA).add(v23) == dn::Key(kA).add(v32));
    CHECK_FALSE(dn::Key(kA).add(v32) == dn::Key(kA).add(v23.transposed()));  // same dims, other strides
}

TEST_CASE("counters for the plugin table") {
    nng_counter out[8];
    CHECK(dn::counters(out, 8) == 4);
    CHECK(std::string(out[0].name) == "onednn.primitives_created");
    CHECK(out[0].value == dn::stats().primitives_created);
    CHECK(std::string(out[1].name) == "onednn.cache_hits");
    CHECK(dn::counters(out, 2) == 2);
    CHECK(dn::counters(out, 0) == 0);
}

TEST_CASE("after warm-up, nothing is allocated or created") {
    // One training step of a small Dense + attention, as the ops will call it.
    const std::int64_t batch = 16, steps = 20, dim = 32, units = 48;
    std::vector<float> x = random_values(batch * steps * dim, 15), w = random_values(dim * units, 16);
    std::vector<float> b(units), y(batch * steps * units), dy = random_values(y.size(), 17);
    std::vector<float> dx(x.size()), dw(w.size()), db(b.size()), s(batch * steps * steps), ds(s.size());
    const auto f32 = [](std::vector<float>& v, std::initializer_list<std::int64_t> dims) {
        return dn::view(v.data(), DataType::f32, dims);
    };
    const dn::Eltwise relu = dn::activation("relu");
    const auto step = [&] {
        dn::matmul(f32(x, {batch * steps, dim}), f32(w, {dim, units}), f32(y, {batch * steps, units}),
                   {.bias = f32(b, {units}), .post = relu});
        dn::eltwise_backward_from_dst(relu, f32(y, {batch * steps, units}), f32(dy, {batch * steps, units}),
                                      f32(dy, {batch * steps, units}));
        dn::matmul(f32(dy, {batch * steps, units}), f32(w, {dim, units}).transposed(), f32(dx, {batch * steps, dim}));
        dn::matmul(f32(x, {batch * steps, dim}).transposed(), f32(dy, {batch * steps, units}), f32(dw, {dim, units}),
                   {.beta = 1.0f});
        dn::sum_rows(f32(dy, {batch * steps, units}), f32(db, {units}));
        const View q = f32(x, {batch, steps, dim});
        dn::matmul(q, q.transposed(), f32(s, {batch, steps, steps}), {.alpha = 0.125f});
        dn::softmax_forward(f32(s, {batch, steps, steps}), f32(s, {batch, steps, steps}));
        dn::softmax_backward(f32(s, {batch, steps, steps}), f32(s, {batch, steps, steps}),
                             f32(ds, {batch, steps, steps}));
        dn::reorder(q, dn::view(dx.data(), DataType::f32, {batch, steps, dim}));
    };
    step();
    const dn::Stats warm = dn::stats();
    for (int i = 0; i < 3; ++i) step();
    const dn::Stats after = dn::stats();
    CHECK(after.primitives_created == warm.primitives_created);
    CHECK(after.buffer_allocations == warm.buffer_allocations);
    CHECK(after.scratchpad_bytes == warm.scratchpad_bytes);
    // sum_rows, and the softmax's forward and backward over rows of 16 or more, run no primitive.
    CHECK(after.cache_hits == warm.cache_hits + 3 * 6);
}

TEST_CASE("the thread count follows the context and is part of the key") {
    const int initial = omp_get_max_threads();
    std::vector<float> a(8 * 8, 1.0f), c(8 * 8);
    const auto run = [&] {
        dn::matmul(dn::view(a.data(), DataType::f32, {8, 8}), dn::view(a.data(), DataType::f32, {8, 8}),
                   dn::view(c.data(), DataType::f32, {8, 8}));
    };
    run();
    const std::int64_t created = dn::stats().primitives_created;
    dn::set_num_threads(0);  // "not given": unchanged
    CHECK(omp_get_max_threads() == initial);
    dn::set_num_threads(initial + 1);
    CHECK(omp_get_max_threads() == initial + 1);
    run();
    CHECK(dn::stats().primitives_created == created + 1);
    dn::set_num_threads(initial);
    run();
    CHECK(dn::stats().primitives_created == created + 1);
    CHECK(c[0] == 8.0f);
}

TEST_CASE("a primitive of an op's own, cached, with its weights in the layout it picked (an LSTM)") {
    // The plumbing the LSTM plugin needs: Keras's kernel (input, 4 * units) is ldigo as it stands,
    // the primitive picks its own weights layout, the cache keeps the primitive.
    const std::int64_t steps = 4, batch = 3, input = 5, units = 6, gates = 4 * units;
    std::vector<float> x = random_values(steps * batch * input, 20);
    std::vector<float> kernel = random_values(input * gates, 21);
    std::vector<float> recurrent = random_values(units * gates, 22);
    std::vector<float> bias = random_values(gates, 23);
    std::vector<float> h(steps * batch * units);
    using tag = dnnl::memory::format_tag;
    const auto md = [](dnnl::memory::dims d, tag t) { return dnnl::memory::desc(d, DataType::f32, t); };

    static constexpr dn::Tag kLstm{"test.lstm_forward"};
    std::vector<float> storage[3];
    const auto run = [&] {
        const dn::Cached& lstm = dn::cached<dnnl::lstm_forward>(dn::Key(kLstm).add(steps, batch, input, units), [&] {
            const dnnl::lstm_forward::desc desc(
                dnnl::prop_kind::forward_training, dnnl::rnn_direction::unidirectional_left2right,
                md({steps, batch, input}, tag::tnc), {}, {}, md({1, 1, input, 4, units}, tag::any),
                md({1, 1, units, 4, units}, tag::any), md({1, 1, 4, units}, tag::ldgo),
                md({steps, batch, units}, tag::tnc), {}, {});
            return dnnl::lstm_forward::primitive_desc(desc, dn::attributes(), dn::engine());
        });
        const auto weights = [&](std::vector<float>& values, std::int64_t rows, int index, int slot) {
            const dnnl::memory user = dn::memory_of(dn::view(values.data(), DataType::f32, {1, 1, rows, 4, units}));
            const dnnl::memory::desc picked = lstm.pd.weights_desc(index);
            return dn::reorder_if_needed(user, picked, aligned_scratch(storage[slot], picked.get_size()));
        };
        const dnnl::memory::desc workspace = lstm.pd.workspace_desc();
        const dnnl::memory kernel_theirs = weights(kernel, input, 0, 0);
        dn::execute(
            lstm, {{DNNL_ARG_SRC_LAYER, dn::memory_of(dn::view(x.data(), DataType::f32, {steps, batch, input}))},
                   {DNNL_ARG_WEIGHTS_LAYER, kernel_theirs},
                   {DNNL_ARG_WEIGHTS_ITER, weights(recurrent, units, 1, 1)},
                   {DNNL_ARG_BIAS, dn::memory_of(dn::view(bias.data(), DataType::f32, {1, 1, 4, units}))},
                   {DNNL_ARG_DST_LAYER, dn::memory_of(dn::view(h.data(), DataType::f32, {steps, batch, units}))},
                   {DNNL_ARG_WORKSPACE, dn::memory_of(workspace, aligned_scratch(storage[2], workspace.get_size()))}});
        // And back, as a weight gradient in the picked layout would go.
        std::vector<float> kernel_back(kernel.size());
        dn::write_back(kernel_theirs,
                       dn::memory_of(dn::view(kernel_back.data(), DataType::f32, {1, 1, input, 4, units})));
        CHECK(kernel_back == kernel);
    };
    const dn::Stats start = dn::stats();
    run();
    run();
    CHECK(dn::stats().primitives_created <= start.primitives_created + 5);  // the LSTM and at most four reorders
    const dn::Stats warm = dn::stats();
    run();
    CHECK(dn::stats().primitives_created == warm.primitives_created);

    // Keras's LSTM, gates i, f, c, o, in double.
    const auto sigmoid = [](double z) { return 1 / (1 + std::exp(-z)); };
    std::vector<double> hs(batch * units), cs(hs.size());
    for (std::int64_t t = 0; t < steps; ++t) {
        std::vector<double> next_h(hs.size());
        for (std::int64_t b = 0; b < batch; ++b) {
            std::vector<double> z(gates);
            for (std::int64_t g = 0; g < gates; ++g) {
                double sum = bias[g];
                for (std::int64_t c = 0; c < input; ++c)
                    sum += x[(t * batch + b) * input + c] * double(kernel[c * gates + g]);
                for (std::int64_t v = 0; v < units; ++v) sum += hs[b * units + v] * recurrent[v * gates + g];
                z[g] = sum;
            }
            for (std::int64_t u = 0; u < units; ++u) {
                const auto gate = [&](int k) { return z[k * units + u]; };
                double& c = cs[b * units + u];
                c = sigmoid(gate(1)) * c + sigmoid(gate(0)) * std::tanh(gate(2));
                next_h[b * units + u] = sigmoid(gate(3)) * std::tanh(c);
            }
        }
        hs = next_h;
        for (std::size_t i = 0; i < hs.size(); ++i) {
            check_close(h[t * batch * units + i], hs[i], 1.0, "h");
        }
    }
}

TEST_CASE("calls from two threads at once") {
    const auto work = [](unsigned seed, bool& ok) {
        const std::int64_t m = 48, k = 40, n = 24;
        const std::vector<float> a = random_values(m * k, seed), b = random_values(k * n, seed + 1);
        std::vector<float> c(m * n), first;
        ok = true;
        for (int i = 0; i < 50; ++i) {
            dn::matmul(dn::view(const_cast<float*>(a.data()), DataType::f32, {m, k}),
                       dn::view(const_cast<float*>(b.data()), DataType::f32, {k, n}),
                       dn::view(c.data(), DataType::f32, {m, n}), {.post = dn::activation("tanh")});
            if (i == 0) first = c;
            ok = ok && c == first;
        }
    };
    bool ok1 = false, ok2 = false;
    std::thread t1(work, 30u, std::ref(ok1)), t2(work, 40u, std::ref(ok2));
    t1.join();
    t2.join();
    CHECK(ok1);
    CHECK(ok2);
}

TEST_CASE("run_in_parts runs every part once, on single-threaded primitives") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(2);
    for (const std::int64_t parts : {1, 2, 3, 7, 64, 1001}) {
        CAPTURE(parts);
        std::vector<std::atomic<int>> runs(static_cast<std::size_t>(parts));
        std::atomic<int> threaded_primitives{0};
        dn::run_in_parts(parts, [&](std::int64_t p) {
            runs[static_cast<std::size_t>(p)].fetch_add(1);
            if (omp_get_max_threads() != 1) threaded_primitives.fetch_add(1);
        });
        CHECK(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& n) { return n.load() == 1; }));
        CHECK(threaded_primitives.load() == 0);
    }
    CHECK(omp_get_max_threads() == 2);
    dn::set_num_threads(initial);
}

TEST_CASE("run_in_parts with more threads than the runs it keeps on the stack") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(80);
    constexpr std::int64_t kParts = 500;
    std::vector<std::atomic<int>> runs(static_cast<std::size_t>(kParts));
    dn::run_in_parts(kParts, [&](std::int64_t p) { runs[static_cast<std::size_t>(p)].fetch_add(1); });
    CHECK(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& n) { return n.load() == 1; }));
    dn::set_num_threads(initial);
}

TEST_CASE("run_in_parts inside a parallel region: a team of one takes every run") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(2);
    for (const std::int64_t parts : {2, 9}) {  // as many parts as threads (none move), and more
        CAPTURE(parts);
        std::array<std::vector<std::atomic<int>>, 2> runs;
        for (auto& of_outer : runs) of_outer = std::vector<std::atomic<int>>(static_cast<std::size_t>(parts));
            // Nested regions are off, so each outer thread's inner region has a team of one.
#pragma omp parallel num_threads(2)
        {
            const int outer = omp_get_thread_num();
            dn::set_num_threads(2);
            dn::run_in_parts(parts, [&](std::int64_t p) { runs[outer][static_cast<std::size_t>(p)].fetch_add(1); });
        }
        for (const auto& of_outer : runs)
            CHECK(
                std::all_of(of_outer.begin(), of_outer.end(), [](const std::atomic<int>& n) { return n.load() == 1; }));
    }
    dn::set_num_threads(initial);
}

// The first part to start holds its thread until every other part has run (or a few seconds have
// passed): the rest of that thread's run can then only have run on the other thread.
TEST_CASE("run_in_parts: a thread whose run is done takes the last parts of another's") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(2);
    constexpr std::int64_t kParts = 8;
    std::array<std::atomic<int>, kParts> ran_on;
    std::atomic<bool> holding{false};
    std::atomic<std::int64_t> holder{-1};
    std::atomic<int> done{0};
    dn::run_in_parts(kParts, [&](std::int64_t p) {
        ran_on[static_cast<std::size_t>(p)] = omp_get_thread_num();
        if (!holding.exchange(true)) {
            holder = p;
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            while (done.load() < kParts - 1 && std::chrono::steady_clock::now() < give_up)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        done.fetch_add(1);
    });
    CHECK(done.load() == kParts);
    const int held = ran_on[static_cast<std::size_t>(holder.load())].load();
    for (std::int64_t p = 0; p < kParts; ++p) {
        CAPTURE(p);
        if (p != holder.load()) CHECK(ran_on[static_cast<std::size_t>(p)].load() != held);
    }
    dn::set_num_threads(initial);
}

TEST_CASE("run_in_parts: with no more parts than threads, part t stays on thread t, and failures surface") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(2);
    std::array<std::atomic<int>, 2> ran_on{-1, -1};
    dn::run_in_parts(2, [&](std::int64_t p) { ran_on[static_cast<std::size_t>(p)] = omp_get_thread_num(); });
    CHECK(ran_on[0].load() == 0);
    CHECK(ran_on[1].load() == 1);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH_AS(dn::run_in_parts(5,
                                          [&](std::int64_t p) {
                                              ran.fetch_add(1);
                                              if (p == 2) throw std::runtime_error("part 2 failed");
                                          }),
                         "part 2 failed", std::runtime_error);
    CHECK(ran.load() == 5);
    dn::set_num_threads(initial);
}

TEST_CASE("run_in_parts takes a thread's own run in the order asked, and others' parts from the far end") {
    const int initial = omp_get_max_threads();
    dn::set_num_threads(2);
    constexpr std::int64_t kParts = 64;
    for (const dn::PartOrder order : {dn::PartOrder::kFirstFirst, dn::PartOrder::kLastFirst}) {
        const bool first_first = order == dn::PartOrder::kFirstFirst;
        CAPTURE(first_first);
        std::array<std::vector<std::int64_t>, 2> taken;  // each thread's parts in the order it ran them
        dn::run_in_parts(
            kParts, [&](std::int64_t p) { taken[static_cast<std::size_t>(omp_get_thread_num())].push_back(p); }, order);
        CHECK(taken[0].size() + taken[1].size() == kParts);
        for (int t = 0; t < 2; ++t) {
            CAPTURE(t);
            const std::int64_t begin = nng::split_point(kParts, 2, t), end = nng::split_point(kParts, 2, t + 1);
            std::vector<std::int64_t> own, others;
            for (const std::int64_t p : taken[static_cast<std::size_t>(t)])
                (p >= begin && p < end ? own : others).push_back(p);
            // Its own run first, then the other's.
            CHECK(std::equal(own.begin(), own.end(), taken[static_cast<std::size_t>(t)].begin()));
            const auto ascending = [](const std::vector<std::int64_t>& v) {
                return std::is_sorted(v.begin(), v.end());
            };
            const auto descending = [](const std::vector<std::int64_t>& v) {
                return std::is_sorted(v.rbegin(), v.rend());
            };
            CHECK((first_first ? ascending(own) : descending(own)));
            CHECK((first_first ? descending(others) : ascending(others)));
        }
    }
    dn::set_num_threads(initial);
}
