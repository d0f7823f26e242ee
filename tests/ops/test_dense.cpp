// Dense's forward where its output is too large for oneDNN's own bias pass to find it in cache:
// below AVX-512 the bias then rides in the product as one more inner step, and the result is the
// same as the plain formula's.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "nngraph/cpu.hpp"
#include "op_runner.hpp"

using nngraph::DType;
using nngraph::Tensor;
using nngraph::testing::OpRunner;

TEST_CASE("Dense with a large output carries its bias in the product and matches the formula") {
    constexpr std::int64_t rows = 1024, in = 8, units = 1024;  // an output of 4 MB
    const bool carried = !nng::cpu::has_avx512();
    for (const char* activation : {"linear", "relu", "softmax"}) {
        for (const bool training : {true, false}) {
            CAPTURE(activation);
            CAPTURE(training);
            OpRunner dense("Dense", std::string("{units: 1024, activation: ") + activation + "}",
                           {{DType::F32, {rows, in}}}, {}, training);
            dense.initialize_weights(3);
            nngraph::testing::fill_uniform(dense.inputs()[0], -1, 1, 5);
            nngraph::testing::fill_uniform(dense.weights()[1], -1, 1, 6);  // a bias that shows
            dense.forward(training, 1, false, 2);
            CHECK((dense.buffer_bytes("kernel with the bias as a row") > 0) == carried);
            CHECK((dense.buffer_bytes("input with a column of ones") > 0) == carried);

            const float* x = dense.inputs()[0].data<float>();
            const float* kernel = dense.weights()[0].data<float>();
            const float* bias = dense.weights()[1].data<float>();
            const float* y = dense.outputs()[0].data<float>();
            std::vector<double> z(units);
            double worst = 0.0;
            for (std::int64_t r = 0; r < rows; ++r) {
                double top = -INFINITY, sum = 0.0;
                for (std::int64_t u = 0; u < units; ++u) {
                    z[u] = bias[u];
                    for (std::int64_t k = 0; k < in; ++k) z[u] += double(x[r * in + k]) * kernel[k * units + u];
                    top = std::max(top, z[u]);
                }
                const std::string f = activation;
                if (f == "softmax") {
                    for (double& v : z) sum += v = std::exp(v - top);
                    for (double& v : z) v /= sum;
                } else if (f == "relu") {
                    for (double& v : z) v = std::max(v, 0.0);
                }
                for (std::int64_t u = 0; u < units; ++u)
                    worst = std::max(worst, std::abs(y[r * units + u] - z[u]) / (1.0 + std::abs(z[u])));
            }
            CHECK(worst < 1e-5);
        }
    }
}
