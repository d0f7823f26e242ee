// Finite-difference gradient checks of Attention and MultiHeadAttention: every input and weight,
// one row per attribute set, mask combination and shape.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "exec/weights.hpp"
#include "gradcheck_table.hpp"
#include "graph_gradcheck.hpp"
#include "train/losses.hpp"

using nngraph::DType;
using nngraph::testing::check_gradient_table;
using nngraph::testing::GradCase;
using nngraph::testing::sequence_input;

TEST_CASE("Attention backward matches finite differences") {
    check_gradient_table({
        {"two inputs", "Attention", "{}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"three inputs",
         "Attention",
         "{}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 4), sequence_input(2, 5, 3)}},
        {"Tq != Tv, dv != dim",
         "Attention",
         "{}",
         {sequence_input(2, 3, 4), sequence_input(2, 6, 2), sequence_input(2, 6, 4)}},
        {"score_mode concat", "Attention", "{score_mode: concat}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"concat, use_scale, three inputs",
         "Attention",
         "{score_mode: concat, use_scale: true}",
         {sequence_input(2, 3, 3), sequence_input(2, 4, 2), sequence_input(2, 4, 3)}},
        {"use_scale", "Attention", "{use_scale: true}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"use_scale, three inputs",
         "Attention",
         "{use_scale: true, scale: 0.5}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"constant scale",
         "Attention",
         "{scale: 0.57735}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"use_causal_mask", "Attention", "{use_causal_mask: true}", {sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"value mask",
         "Attention",
         "{}",
         {sequence_input(2, 4, 3), sequence_input(2, 6, 3, true), sequence_input(2, 6, 3)}},
        {"query mask", "Attention", "{}", {sequence_input(2, 5, 3, true), sequence_input(2, 4, 3)}},
        {"both masks, causal",
         "Attention",
         "{use_causal_mask: true}",
         {sequence_input(3, 5, 3, true), sequence_input(3, 5, 3, true)}},
        {"dropout, fixed seed",
         "Attention",
         "{dropout: 0.4, seed: 7}",
         {sequence_input(2, 5, 3), sequence_input(2, 6, 3)}},
        {"dropout with masks and use_scale",
         "Attention",
         "{dropout: 0.3, use_scale: true}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 9, 3, true)}},
        // Rows of 16 keys or more: the softmax leaves its division to P·v's rows, and backward
        // scales dL/dout by it.
        {"17 keys, the division deferred", "Attention", "{}", {sequence_input(2, 5, 3), sequence_input(2, 17, 3)}},
        {"17 keys deferred, values of 17",
         "Attention",
         "{}",
         {sequence_input(2, 3, 3), sequence_input(2, 17, 17), sequence_input(2, 17, 3)}},
        {"18 keys deferred, dropout with masks and use_scale",
         "Attention",
         "{dropout: 0.3, use_scale: true, seed: 3}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 18, 3, true)}},
        {"17 keys deferred, causal",
         "Attention",
         "{use_causal_mask: true}",
         {sequence_input(2, 17, 3), sequence_input(2, 17, 3)}},
        {"17 keys deferred, concat",
         "Attention",
         "{score_mode: concat}",
         {sequence_input(2, 3, 3), sequence_input(2, 17, 3)}},
    });
}

TEST_CASE("MultiHeadAttention backward matches finite differences") {
    check_gradient_table({
        {"self-attention", "MultiHeadAttention", "{num_heads: 2, key_dim: 3}", {sequence_input(2, 4, 5)}},
        {"cross, [query, value]",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 3}",
         {sequence_input(2, 4, 5), sequence_input(2, 6, 3)}},
        {"cross, [query, value, key]",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2}",
         {sequence_input(2, 3, 4), sequence_input(2, 5, 3), sequence_input(2, 5, 2)}},
        {"value_dim != key_dim",
         "MultiHeadAttention",
         "{num_heads: 3, key_dim: 2, value_dim: 4}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"output_shape",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, output_shape: [2, 3]}",
         {sequence_input(2, 3, 4), sequence_input(2, 4, 4)}},
        {"without bias",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 3, use_bias: false}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 4)}},
        {"masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 5, 3, true), sequence_input(2, 5, 2, true)}},
        {"self-attention, mask, causal",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, use_causal_mask: true}",
         {sequence_input(2, 5, 3, true)}},
        {"causal, cross",
         "MultiHeadAttention",
         "{num_heads: 1, key_dim: 3, use_causal_mask: true}",
         {sequence_input(2, 4, 3), sequence_input(2, 6, 3)}},
        {"dropout, masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, dropout: 0.3, seed: 5}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 5, 3)}},
        {"17 keys, the division deferred: dropout, masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, dropout: 0.3, seed: 5}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 17, 3, true)}},
        {"17 steps deferred, self-attention, causal",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, use_causal_mask: true}",
         {sequence_input(2, 17, 3, true)}},
    });
}

TEST_CASE("Attention on one tensor as several inputs: gradients through the executor") {
    // The ops write a tensor's gradient as several inputs into the first input's slot. With one
    // tensor as query and key the dense core adds the key's gradient into the query's as one
    // product of dS + dSᵀ, and makes q·qᵀ from its first 16 rows up to column 16 and its last 11 in
    // full. 27 steps: whole 8 x 8 tiles and remainders.
    const std::string head = R"(inputs: [{name: x, shape: [27, 3]}]
nodes:
  - {name: d, op: Dense, inputs: [x], units: 4, activation: tanh}
  - {name: v, op: Dense, inputs: [x], units: 5}
  - {name: k, op: Dense, inputs: [x], units: 4}
)";
    const std::string tail = R"(  - {name: pool, op: GlobalAveragePooling1D, inputs: [a]}
  - {name: out, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [out]
training: {loss: binary_crossentropy}
)";
    const std::vector<std::pair<std::string, std::string>> attentions = {
        {"[d, d]", "  - {name: a, op: Attention, inputs: [d, d]}\n"},
        {"[d, v, d]: the key's own slot gets nothing", "  - {name: a, op: Attention, inputs: [d, v, d]}\n"},
        // The host gives a repeated input no slot: its gradient adds onto the first input's.
        {"[d, d, k]: the value's gradient in the query's slot", "  - {name: a, op: Attention, inputs: [d, d, k]}\n"},
        {"[d, k, k]: the key's gradient in the value's slot", "  - {name: a, op: Attention, inputs: [d, k, k]}\n"},
        {"[d, d, d]", "  - {name: a, op: Attention, inputs: [d, d, d], use_scale: true}\n"},
        {"MultiHeadAttention [d, d]",
         "  - {name: a, op: MultiHeadAttention, inputs: [d, d], num_heads: 2, key_dim: 2}\n"},
        {"MultiHeadAttention [d, v, v]",
         "  - {name: a, op: MultiHeadAttention, inputs: [d, v, v], num_heads: 2, key_dim: 2}\n"},
        {"MultiHeadAttention [d, d, v]",
         "  - {name: a, op: MultiHeadAttention, inputs: [d, d, v], num_heads: 2, key_dim: 2}\n"},
        {"[d, d], causal, use_scale",
         "  - {name: a, op: Attention, inputs: [d, d], use_causal_mask: true, "
         "use_scale: true}\n"},
    };
    for (const auto& [label, attention] : attentions) {
        nngraph::testing::GraphGradCase c;
        c.label = label;
        c.model_yaml = head + attention + tail;
        c.batch = 3;
        c.atol = 1e-5;  // the scale's gradient is of the order of 1e-3
        const auto result = nngraph::testing::check_graph_gradients(c);
        CAPTURE(label);
        INFO(result.report);
        CHECK(result.checked > 0);
        CHECK(result.ok);
    }
}

TEST_CASE("Attention on one tensor as query and key counts the products it makes") {
    constexpr std::int64_t batch = 2, steps = 16, width = 8;
    // The work the executor's plan records for Attention on `inputs`.
    const auto work = [&](const std::string& inputs) {
        const std::string model = R"(inputs: [{name: x, shape: [16, 8]}]
nodes:
  - {name: d, op: Dense, inputs: [x], units: 8}
  - {name: e, op: Dense, inputs: [x], units: 8}
  - {name: a, op: Attention, inputs: )" +
                                  inputs + R"(}
  - {name: pool, op: GlobalAveragePooling1D, inputs: [a]}
  - {name: out, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [out]
training: {loss: binary_crossentropy}
)";
        auto graph = nngraph::Graph::from_spec(nngraph::parse_model(model, "model.yaml", "."));
        nngraph::Executor executor(graph, {1, 3});
        nngraph::initialize_weights(*graph, 3, executor.weights());
        executor.set_loss(nngraph::make_loss("binary_crossentropy"));
        nngraph::Tensor x(DType::F32, {batch, steps, width}), y(DType::F32, {batch, 1});
        nngraph::testing::fill_uniform(x, -1, 1, 4);
        nngraph::BatchRef step;
        step.inputs.push_back(&x);
        step.targets.push_back(&y);
        executor.run(step, nngraph::StepKind::Gradient);
        const nngraph::NodeId a = graph->tensor(*graph->find_tensor("a")).producer;
        return executor.last_plan_work()[static_cast<std::size_t>(a)];
    };
    const auto apart = work("[d, e]"), one = work("[d, d]");
    const auto product = [](std::int64_t rows, std::int64_t cols) { return 2 * batch * rows * width * cols; };
    // Forward: q·qᵀ as its first 8 rows up to column 8 and its last 8 rows in full, the rest mirrored.
    CHECK(apart.forward_flops - one.forward_flops == product(steps, steps) - product(8, 8) - product(8, steps));
    // Backward: dq = dS·k and dk = dSᵀ·q, or dS + dSᵀ (an add a pair of scores) and one product.
    CHECK(apart.backward_flops - one.backward_flops == product(steps, steps) - batch * steps * steps / 2);
}

TEST_CASE("Attention on one tensor as query and key equals it on two tensors of the same values") {
    // One tensor read twice goes through the symmetric softmax where each part runs on one thread
    // (one exponential a pair of mirror scores), or through the plain one where the scores'
    // diagonal is too large for that; two inputs of the same values go through the plain one.
    // Shapes: a part on one thread (one sample, 27 steps), parts of samples on 2 threads (13
    // samples, 203 steps); neither in whole 8 x 8 tiles. Inference, and a training step's forward.
    const auto outputs = [](const std::string& attention_inputs, std::int64_t batch, std::int64_t steps, double range,
                            nngraph::StepKind kind, int threads) {
        const std::string model = "inputs: [{name: x, shape: [" + std::to_string(steps) + ", 4]}, {name: y, shape: [" +
                                  std::to_string(steps) +
                                  ", 4]}]\nnodes:\n  - {name: a, op: Attention, inputs: " + attention_inputs +
                                  "}\noutputs: [a]\ntraining: {loss: mse}\n";
        auto graph = nngraph::Graph::from_spec(nngraph::parse_model(model, "model.yaml", "."));
        nngraph::Executor executor(graph, {threads, 3});
        executor.set_loss(nngraph::make_loss("mse"));
        nngraph::Tensor x(DType::F32, {batch, steps, 4}), target(DType::F32, {batch, steps, 4});
        nngraph::testing::fill_uniform(x, -range, range, 8);
        nngraph::BatchRef step;
        step.inputs = {&x, &x};
        step.targets = {&target};
        executor.run(step, kind);
        const nngraph::TensorView out = executor.output(0);
        return std::vector<float>(out.as<float>(), out.as<float>() + out.numel());
    };
    struct Shape {
        std::int64_t batch, steps;
        int threads;
    };
    for (const Shape shape : {Shape{1, 27, 1}, Shape{1, 27, 2}, Shape{13, 203, 2}}) {
        // Inputs up to 1: a diagonal of at most 4, the symmetric softmax; up to 8: at most 256, the plain one.
        for (const double range : {1.0, 8.0}) {
            for (const nngraph::StepKind kind : {nngraph::StepKind::Infer, nngraph::StepKind::Gradient}) {
                CAPTURE(shape.batch);
                CAPTURE(shape.steps);
                CAPTURE(shape.threads);
                CAPTURE(range);
                CAPTURE(kind == nngraph::StepKind::Infer);
                const std::vector<float> one = outputs("[x, x]", shape.batch, shape.steps, range, kind, shape.threads);
                const std::vector<float> two = outputs("[x, y]", shape.batch, shape.steps, range, kind, shape.threads);
                REQUIRE(one.size() == two.size());
                // Apart from rounding (scores up to 4 or 256, products summed in another order);
                // a score, a row or a tile missed is off by the size of the values.
                double worst = 0.0;
                for (std::size_t i = 0; i < one.size(); ++i)
                    worst = std::max(worst, std::abs(double(one[i]) - double(two[i])));
                CHECK(worst < 2e-6 * range * range);
            }
        }
    }
}
