// LayerNormalization: forward and backward against loops in double for every center/scale
// combination and axis set, Keras's weights and defaults, the mask passing through, attribute
// errors, and finite-difference checks of the gradient.
#include <doctest/doctest.h>

#include <cmath>

#include "gradcheck_table.hpp"
#include "nngraph/error.hpp"

// Sanitizer builds: the two-thread runs leave OpenMP workers holding thread-local storage of the
// plugin, which is dlclose'd at exit; LeakSanitizer crashes scanning that stale storage (its
// limitation, not a leak), so this binary's leak check skips TLS roots.
extern "C" __attribute__((used, visibility("default"))) const char* __lsan_default_options() { return "use_tls=0"; }

using namespace nngraph;
using namespace nngraph::testing;

namespace {

// Keras's layer normalization in double over rows of `columns` values, and its gradient for dy:
// dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, dgamma = sum(dy * xhat),
// dbeta = sum(dy).
struct Reference {
    std::vector<double> y, dx, dgamma, dbeta;

    Reference(const float* x, const float* gamma, const float* beta, const float* dy, std::int64_t rows,
              std::int64_t columns, double epsilon)
        : y(static_cast<std::size_t>(rows * columns)),
          dx(y.size()),
          dgamma(static_cast<std::size_t>(columns)),
          dbeta(dgamma.size()) {
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* xr = x + r * columns;
            double mean = 0, variance = 0;
            for (std::int64_t c = 0; c < columns; ++c) mean += xr[c];
            mean /= static_cast<double>(columns);
            for (std::int64_t c = 0; c < columns; ++c) variance += (xr[c] - mean) * (xr[c] - mean);
            variance /= static_cast<double>(columns);
            const double inv = 1.0 / std::sqrt(variance + epsilon);
            double mean_g = 0, mean_gx = 0;
            for (std::int64_t c = 0; c < columns; ++c) {
                const double xhat = (xr[c] - mean) * inv;
                const std::size_t i = static_cast<std::size_t>(r * columns + c);
                y[i] = xhat * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0);
                const double g = dy[i] * (gamma ? gamma[c] : 1.0);
                mean_g += g;
                mean_gx += g * xhat;
                dgamma[static_cast<std::size_t>(c)] += dy[i] * xhat;
                dbeta[static_cast<std::size_t>(c)] += dy[i];
            }
            mean_g /= static_cast<double>(columns);
            mean_gx /= static_cast<double>(columns);
            for (std::int64_t c = 0; c < columns; ++c) {
                const double xhat = (xr[c] - mean) * inv;
                const std::size_t i = static_cast<std::size_t>(r * columns + c);
                dx[i] = inv * (dy[i] * (gamma ? gamma[c] : 1.0) - mean_g - xhat * mean_gx);
            }
        }
    }
};

void check_close(const std::vector<double>& expected, const float* actual, double tolerance) {
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        REQUIRE(std::abs(expected[i] - actual[i]) <= tolerance * (1.0 + std::abs(expected[i])));
    }
}

}  // namespace

TEST_CASE("LayerNormalization forward and backward agree with loops in double") {
    struct Row {
        std::string attributes;
        Shape shape;
        std::int64_t columns;
    };
    const std::vector<Row> rows = {
        {"{}", {4, 8}, 8},
        {"{}", {3, 5, 16}, 16},
        {"{epsilon: 0.1}", {2, 7, 5}, 5},
        {"{center: false}", {3, 4, 6}, 6},
        {"{scale: false}", {3, 4, 6}, 6},
        {"{center: false, scale: false}", {3, 4, 6}, 6},
        {"{axis: [-2, -1]}", {2, 3, 4}, 12},
        {"{axis: [2, 1]}", {2, 3, 4}, 12},
        {"{axis: 3}", {2, 2, 3, 5}, 5},
        {"{axis: [1, 2, 3]}", {2, 2, 3, 5}, 30},
        {"{}", {64, 200, 32}, 32},
    };
    for (const Row& row : rows) {
        CAPTURE(row.attributes);
        CAPTURE(shape_to_string(row.shape));
        OpRunner runner("LayerNormalization", row.attributes, {{DType::F32, row.shape}});
        fill_uniform(runner.inputs()[0], -2, 3, 1);
        const bool scale = row.attributes.find("scale: false") == std::string::npos;
        const bool center = row.attributes.find("center: false") == std::string::npos;
        REQUIRE(runner.weights().size() == static_cast<std::size_t>(scale + center));
        for (std::size_t k = 0; k < runner.weights().size(); ++k) fill_uniform(runner.weights()[k], -1.5, 1.5, 10 + k);
        const float* gamma = scale ? runner.weights()[0].data<float>() : nullptr;
        const float* beta = center ? runner.weights()[scale ? 1 : 0].data<float>() : nullptr;
        Tensor dy(DType::F32, row.shape);
        fill_uniform(dy, -1, 1, 3);
        const double epsilon = row.attributes.find("0.1") != std::string::npos ? 0.1 : 1e-3;
        const std::int64_t n = shape_numel(row.shape);
        const Reference ref(runner.inputs()[0].data<float>(), gamma, beta, dy.data<float>(), n / row.columns,
                            row.columns, epsilon);

        runner.forward(false);
        check_close(ref.y, runner.outputs()[0].data<float>(), 2e-5);
        runner.forward(true);
        check_close(ref.y, runner.outputs()[0].data<float>(), 2e-5);
        runner.backward({dy});
        check_close(ref.dx, runner.grad_inputs()[0].data<float>(), 1e-4);
        if (scale) check_close(ref.dgamma, runner.grad_weights()[0].data<float>(), 1e-4);
        if (center) check_close(ref.dbeta, runner.grad_weights()[scale ? 1 : 0].data<float>(), 1e-4);
    }
}

TEST_CASE("LayerNormalization gives the same on one thread and on two at the IMDB shapes") {
    OpRunner runner("LayerNormalization", "{}", {{DType::F32, {64, 200, 32}}});
    fill_uniform(runner.inputs()[0], -2, 3, 1);
    Tensor dy(DType::F32, {64, 200, 32});
    fill_uniform(dy, -1, 1, 3);
    std::vector<Tensor> results;
    for (const int threads : {1, 2}) {
        runner.forward(true, 1, false, threads);
        runner.backward({dy}, 1, {}, threads);
        results.push_back(runner.outputs()[0]);
        results.push_back(runner.grad_inputs()[0]);
        results.push_back(runner.grad_weights()[0]);
    }
    // gamma's gradient sums 12800 rows: another split between threads rounds differently.
    for (std::size_t k = 0; k < 3; ++k) {
        CAPTURE(k);
        const double tolerance = k == 2 ? 1e-4 : 1e-5;
        for (std::int64_t i = 0; i < results[k].numel(); ++i) {
            REQUIRE(results[k].data<float>()[i] == doctest::Approx(results[k + 3].data<float>()[i]).epsilon(tolerance));
        }
    }
}

TEST_CASE("LayerNormalization declares Keras's weights, defaults and saved statistics") {
    OpRunner runner("LayerNormalization", "{}", {{DType::F32, {4, 5, 6}}});
    const auto& w = runner.shapes().weights;
    REQUIRE(w.size() == 2);
    CHECK(w[0].name == "gamma");
    CHECK(w[0].shape == Shape{6});
    CHECK(w[0].initializer == NNG_INIT_ONES);
    CHECK(w[1].name == "beta");
    CHECK(w[1].shape == Shape{6});
    CHECK(w[1].initializer == NNG_INIT_ZEROS);
    CHECK(runner.buffer_bytes("mean") == 20 * sizeof(float));  // per row
    CHECK(runner.buffer_bytes("variance") == 20 * sizeof(float));
    CHECK(runner.shapes().backward_needs == NNG_NEEDS_INPUT(0));

    OpRunner two("LayerNormalization", "{axis: [-2, -1], gamma_initializer: zeros, beta_initializer: ones}",
                 {{DType::F32, {4, 5, 6}}});
    CHECK(two.shapes().weights[0].shape == Shape{5, 6});
    CHECK(two.shapes().weights[0].initializer == NNG_INIT_ZEROS);
    CHECK(two.shapes().weights[1].initializer == NNG_INIT_ONES);
    OpRunner inference("LayerNormalization", "{center: false}", {{DType::F32, {4, 6}}}, {}, false);
    CHECK(inference.buffer_bytes("mean") == 0);
    REQUIRE(inference.shapes().weights.size() == 1);
    CHECK(inference.shapes().weights[0].name == "gamma");

    // With gamma = 1 and beta = 0 (the defaults) a row of 1, 2, 3 becomes (-1, 0, 1) * sqrt(3/2) / sqrt(1 + 1.5e-3).
    OpRunner plain("LayerNormalization", "{}", {{DType::F32, {1, 3}}});
    plain.inputs()[0].data<float>()[0] = 1;
    plain.inputs()[0].data<float>()[1] = 2;
    plain.inputs()[0].data<float>()[2] = 3;
    plain.forward(false);
    const double expected = 1.0 / std::sqrt(2.0 / 3.0 + 1e-3);
    CHECK(plain.outputs()[0].data<float>()[0] == doctest::Approx(-expected).epsilon(1e-6));
    CHECK(plain.outputs()[0].data<float>()[1] == doctest::Approx(0.0).epsilon(1e-6));
    CHECK(plain.outputs()[0].data<float>()[2] == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("LayerNormalization passes the input's mask through") {
    OpRunner runner("LayerNormalization", "{}", {{DType::F32, {2, 3, 4}}}, {true});
    CHECK(runner.shapes().outputs[0].mask_rule == NNG_MASK_FROM_INPUT);
    CHECK(runner.shapes().outputs[0].mask_source == 0);
}

TEST_CASE("LayerNormalization refuses axes it cannot normalize, naming the attribute") {
    struct Refusal {
        const char* attributes;
        Shape shape;
        const char* message;
    };
    const Refusal refusals[] = {
        {"{axis: 1}", {2, 3, 4}, "only the trailing axes"},
        {"{axis: [1, 3]}", {2, 3, 4, 5}, "got axis (1, 3) for a rank-4 input"},
        {"{axis: 0}", {2, 3}, "axis 0 is not a non-batch axis"},
        {"{axis: 3}", {2, 3, 4}, "axis 3 is not a non-batch axis"},
        {"{axis: [-1, 2]}", {2, 3, 4}, "axis names an axis twice"},
        {"{axis: []}", {2, 3, 4}, "'axis'"},
        {"{epsilon: -1}", {2, 3}, "'epsilon'"},
        {"{beta_initializer: nope}", {2, 3}, "beta_initializer"},
        {"{}", {6}, "rank 2 or more"},
    };
    for (const Refusal& r : refusals) {
        INFO(r.attributes);
        CHECK_THROWS_WITH_AS(OpRunner("LayerNormalization", r.attributes, {{DType::F32, r.shape}}),
                             doctest::Contains(r.message), InputError);
    }
}

TEST_CASE("LayerNormalization backward matches finite differences") {
    const std::vector<GradCase> cases = {
        {"default (3, 8)", "LayerNormalization", "{}", {{{3, 8}, DType::F32, -2, 2}}},
        {"default (2, 3, 6)", "LayerNormalization", "{}", {{{2, 3, 6}, DType::F32, -2, 2}}},
        {"center false", "LayerNormalization", "{center: false}", {{{3, 5}, DType::F32, -2, 2}}},
        {"scale false", "LayerNormalization", "{scale: false}", {{{3, 5}, DType::F32, -2, 2}}},
        {"center and scale false",
         "LayerNormalization",
         "{center: false, scale: false}",
         {{{3, 5}, DType::F32, -2, 2}}},
        {"axis [-2, -1]", "LayerNormalization", "{axis: [-2, -1]}", {{{2, 3, 4}, DType::F32, -2, 2}}},
        {"epsilon 0.5, rank 4", "LayerNormalization", "{epsilon: 0.5}", {{{2, 2, 2, 5}, DType::F32, -2, 2}}},
        {"with a mask", "LayerNormalization", "{}", {{{2, 4, 3}, DType::F32, -2, 2, true}}},
    };
    nngraph::testing::check_gradient_table(cases);
}
