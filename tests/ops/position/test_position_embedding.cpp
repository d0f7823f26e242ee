// PositionEmbedding (keras_hub): the output is the table's first `steps` rows broadcast over the
// batch; the table's gradient sums the output gradient over the batch; the input's is zero.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "gradcheck_table.hpp"
#include "nngraph/error.hpp"

using nngraph::DType;
using nngraph::Shape;
using nngraph::Tensor;
using nngraph::testing::check_gradient_table;
using nngraph::testing::fill_uniform;
using nngraph::testing::GradInput;
using nngraph::testing::OpRunner;

TEST_CASE("PositionEmbedding broadcasts its first rows over the batch, and sums the gradient back") {
    const std::int64_t B = 3, T = 5, D = 4, L = 7;
    OpRunner r("PositionEmbedding", "{sequence_length: 7}", {{DType::F32, {B, T, D}}});
    REQUIRE(r.shapes().weights.size() == 1);
    CHECK(r.shapes().weights[0].name == "embeddings");
    CHECK(r.shapes().weights[0].shape == Shape{L, D});
    CHECK(r.shapes().outputs[0].tensor.shape == Shape{B, T, D});
    CHECK(r.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
    fill_uniform(r.inputs()[0], -1.0, 1.0, 1);
    fill_uniform(r.weights()[0], -1.0, 1.0, 2);
    r.forward(true);
    const float* table = r.weights()[0].data<float>();
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t d = 0; d < D; ++d)
                CHECK(r.outputs()[0].data<float>()[(b * T + t) * D + d] == table[t * D + d]);
    Tensor dy(DType::F32, {B, T, D});
    fill_uniform(dy, -1.0, 1.0, 3);
    r.backward({dy});
    const float* dw = r.grad_weights()[0].data<float>();
    for (std::int64_t t = 0; t < L; ++t) {
        for (std::int64_t d = 0; d < D; ++d) {
            double want = 0.0;
            for (std::int64_t b = 0; b < B && t < T; ++b) want += dy.data<float>()[(b * T + t) * D + d];
            CHECK(dw[t * D + d] == doctest::Approx(want).epsilon(1e-6));
        }
    }
    for (float g : r.grad_inputs()[0].values<float>()) CHECK(g == 0.0f);
}

TEST_CASE("PositionEmbedding's initializer is glorot_uniform over (sequence_length, features)") {
    OpRunner r("PositionEmbedding", "{sequence_length: 300}", {{DType::F32, {2, 300, 20}}});
    r.initialize_weights(9);
    const double limit = std::sqrt(6.0 / (300 + 20));
    double largest = 0.0;
    for (float w : r.weights()[0].values<float>()) largest = std::max(largest, double(std::abs(w)));
    CHECK(largest <= limit);
    CHECK(largest > 0.9 * limit);
}

TEST_CASE("PositionEmbedding refuses more steps than sequence_length") {
    std::string message = "no error";
    try {
        OpRunner r("PositionEmbedding", "{sequence_length: 4}", {{DType::F32, {2, 5, 3}}});
    } catch (const nngraph::Error& e) {
        message = e.what();
    }
    CHECK_MESSAGE(message.find("sequence_length") != std::string::npos, message);
    CHECK_MESSAGE(message.find("(2, 5, 3)") != std::string::npos, message);
}

TEST_CASE("PositionEmbedding backward matches finite differences") {
    GradInput x;
    x.shape = {2, 4, 3};
    x.differentiable = false;
    GradInput wide;
    wide.shape = {2, 2, 3, 5};
    wide.differentiable = false;
    check_gradient_table({
        {"shorter than the table", "PositionEmbedding", "{sequence_length: 6}", {x}},
        {"rank 4", "PositionEmbedding", "{sequence_length: 3}", {wide}},
    });
}
