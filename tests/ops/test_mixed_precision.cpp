// Dense under mixed_bfloat16: forward and backward within bfloat16's tolerance of float32, with the
// same weights, and visibly not float32 (the bf16 path ran).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "gradcheck.hpp"
#include "graph/precision.hpp"
#include "op_runner.hpp"

using nngraph::DType;
using nngraph::Tensor;
using nngraph::testing::OpRunner;

namespace {

// The largest |a - b| over the elements, and the largest |b|, for a tolerance relative to b's scale.
struct Difference {
    double largest = 0.0, scale = 0.0;
};
Difference difference(const Tensor& a, const Tensor& b) {
    Difference d;
    const float* x = a.data<float>();
    const float* y = b.data<float>();
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        d.largest = std::max(d.largest, std::abs(double(x[i]) - double(y[i])));
        d.scale = std::max(d.scale, std::abs(double(y[i])));
    }
    return d;
}

// bf16 keeps 8 significant bits (relative rounding 2^-9); a dot product of K terms rounded once
// each side has a relative error of about 2^-8 · sqrt(K) of its scale at most, here well under 2%.
void check_close(const Tensor& bf16, const Tensor& f32, const char* what) {
    INFO(what);
    const Difference d = difference(bf16, f32);
    CHECK(d.largest <= 0.02 * d.scale);
    CHECK(d.largest > 0.0);  // rounded to bf16 somewhere: the mixed path ran
}

}  // namespace

TEST_CASE("Dense under mixed_bfloat16 is within bfloat16 tolerance of float32, forward and backward") {
    if (!nngraph::cpu_has_bfloat16()) {
        MESSAGE("this CPU has no AVX512_BF16: mixed_bfloat16 is refused here, nothing to compare");
        return;
    }
    for (const char* activation : {"linear", "relu", "sigmoid"}) {
        CAPTURE(activation);
        const std::string attributes = std::string("{units: 24, activation: ") + activation + "}";
        const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {16, 40}}};
        OpRunner f32("Dense", attributes, inputs);
        OpRunner bf16("Dense", attributes, inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
        nngraph::testing::fill_uniform(f32.inputs()[0], -1, 1, 7);
        nngraph::testing::fill_uniform(f32.weights()[1], -0.5, 0.5, 8);  // a bias that is not zero
        bf16.inputs()[0] = f32.inputs()[0];
        for (std::size_t k = 0; k < f32.weights().size(); ++k) bf16.weights()[k] = f32.weights()[k];

        f32.forward(true);
        bf16.forward(true);
        check_close(bf16.outputs()[0], f32.outputs()[0], "output");

        Tensor dy(DType::F32, {16, 24});
        nngraph::testing::fill_uniform(dy, -1, 1, 9);
        f32.backward({dy});
        bf16.backward({dy});
        check_close(bf16.grad_inputs()[0], f32.grad_inputs()[0], "input gradient");
        check_close(bf16.grad_weights()[0], f32.grad_weights()[0], "kernel gradient");
        // The bias gradient sums dz in f32 in both.
        const Difference bias = difference(bf16.grad_weights()[1], f32.grad_weights()[1]);
        CHECK(bias.largest <= 0.02 * bias.scale);
    }
}

TEST_CASE("Dense under mixed_bfloat16 declares its bf16 copies in the arena, none in float32") {
    const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {8, 12}}};
    OpRunner bf16("Dense", "{units: 5}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(bf16.buffer_bytes("bfloat16 kernel") == 2 * 12 * 5);
    CHECK(bf16.buffer_bytes("bfloat16 input") == 2 * 8 * 12);
    CHECK(bf16.buffer_bytes("bfloat16 pre-activation gradient") == 2 * 8 * 5);
    OpRunner f32("Dense", "{units: 5}", inputs);
    CHECK(f32.buffer_bytes("bfloat16 kernel") == 0);
    CHECK(f32.buffer_bytes("bfloat16 input") == 0);
}
