// Inference in slices of the batch: when every op allows it, a large batch runs slice by slice
// with the same outputs, masks and work as the whole; ops that are slower on slices or do not
// say keep the batch whole.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>

#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "gradcheck.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

// Every op free to slice: Embedding with masks, Attention, a Dense over 80 steps, pooling, and a
// small Dense head (slower on slices, but a negligible share of the work).
const char* kSliceable = R"(inputs: [{name: tokens, shape: [80], dtype: int32}]
nodes:
  - {name: embedding, op: Embedding, inputs: [tokens], input_dim: 50, output_dim: 8, mask_zero: true}
  - {name: attention, op: Attention, inputs: [embedding, embedding]}
  - {name: features, op: Dense, inputs: [attention], units: 4, activation: relu}
  - {name: pool, op: GlobalAveragePooling1D, inputs: [features]}
  - {name: head, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [features, head]
)";

Tensor random_tokens(std::int64_t rows, std::int64_t steps) {
    Tensor tokens(DType::I32, {rows, steps});
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> id(1, 49), length(5, static_cast<int>(steps));
    auto* t = tokens.data<std::int32_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
        const int kept = length(rng);  // the rest is padding, masked
        for (std::int64_t s = 0; s < steps; ++s) t[r * steps + s] = s < kept ? id(rng) : 0;
    }
    return tokens;
}

ExecutorOptions with_slice_bytes(std::int64_t bytes) {
    ExecutorOptions options;
    options.threads = 2;
    options.seed = 5;
    options.slice_bytes = bytes;
    return options;
}

}  // namespace

TEST_CASE("an inference batch in slices gives every sample the outputs, masks and work of the whole batch") {
    const auto graph = Graph::from_spec(parse_model(kSliceable, "model.yaml", "."));
    Executor whole(graph, with_slice_bytes(-1)), sliced(graph, with_slice_bytes(1));
    initialize_weights(*graph, 9, whole.weights());
    sliced.weights() = whole.weights();
    const std::int64_t rows = 71;  // slices of 15 samples, the last of 11
    const Tensor tokens = random_tokens(rows, 80);
    for (int step = 0; step < 2; ++step) {
        whole.run({{&tokens}, {}, {}}, StepKind::Infer);
        sliced.run({{&tokens}, {}, {}}, StepKind::Infer);
        CHECK(whole.stats().last_run_slices == 1);
        CHECK(sliced.stats().last_run_slices == 5);
        CHECK(sliced.inference_slice_rows(rows) == 15);
        for (std::size_t i = 0; i < 2; ++i) {
            CAPTURE(i);
            const TensorView a = whole.output(i), b = sliced.output(i);
            REQUIRE(Shape(b.shape.begin(), b.shape.end()) == Shape(a.shape.begin(), a.shape.end()));
            CHECK(b.shape[0] == rows);
            double worst = 0.0;
            for (std::int64_t k = 0; k < a.numel(); ++k)
                worst = std::max(worst, std::abs(double(a.as<float>()[k]) - double(b.as<float>()[k])));
            CHECK(worst <= 1e-6);
            const auto mask_a = whole.output_mask(i), mask_b = sliced.output_mask(i);
            CHECK(std::vector<std::uint8_t>(mask_a.begin(), mask_a.end()) ==
                  std::vector<std::uint8_t>(mask_b.begin(), mask_b.end()));
        }
        CHECK_FALSE(whole.output_mask(0).empty());  // the features carry the tokens' mask
        const auto work_a = whole.last_plan_work(), work_b = sliced.last_plan_work();
        for (std::size_t n = 0; n < work_a.size(); ++n) {
            CAPTURE(n);
            CHECK(work_b[n].forward_flops == work_a[n].forward_flops);
            CHECK(work_b[n].forward_bytes >= work_a[n].forward_bytes);  // each slice reads the weights
        }
    }
    // Rows picked from a larger set slice the same way.
    std::vector<std::int64_t> picked(static_cast<std::size_t>(rows));
    for (std::size_t r = 0; r < picked.size(); ++r) picked[r] = static_cast<std::int64_t>(picked.size() - 1 - r);
    sliced.run({{&tokens}, {}, picked}, StepKind::Infer);
    whole.run({{&tokens}, {}, picked}, StepKind::Infer);
    const TensorView a = whole.output(1), b = sliced.output(1);
    for (std::int64_t k = 0; k < rows; ++k) CHECK(b.as<float>()[k] == doctest::Approx(a.as<float>()[k]).epsilon(1e-6));
    // A small batch stays whole.
    const std::int64_t few[] = {0, 1, 2, 3};
    sliced.run({{&tokens}, {}, few}, StepKind::Infer);
    CHECK(sliced.stats().last_run_slices == 1);
}

TEST_CASE("an inference batch stays whole when an op is slower on slices or does not say") {
    const std::string recurrent = R"(inputs: [{name: x, shape: [80, 4]}]
nodes:
  - {name: lstm, op: LSTM, inputs: [x], units: 8}
  - {name: head, op: Dense, inputs: [lstm], units: 1}
outputs: [head]
)";
    const std::string plain = R"(inputs: [{name: x, shape: [80, 4]}]
nodes:
  - {name: scaled, op: Scale, inputs: [x]}
  - {name: head, op: Dense, inputs: [scaled], units: 2}
outputs: [head]
)";
    const PluginSearch with_plain{{std::filesystem::path(NNGRAPH_FIXTURE_DIR) / "plain"}, {}};
    for (const auto& [label, graph] :
         {std::pair{std::string("LSTM"), Graph::from_spec(parse_model(recurrent, "model.yaml", "."))},
          std::pair{std::string("an op that does not say"),
                    Graph::from_spec(parse_model(plain, "model.yaml", "."), with_plain)}}) {
        CAPTURE(label);
        Executor executor(graph, with_slice_bytes(1));
        initialize_weights(*graph, 3, executor.weights());
        Tensor x(DType::F32, {64, 80, 4});
        fill_uniform(x, -1, 1, 4);
        executor.run({{&x}, {}, {}}, StepKind::Infer);
        CHECK(executor.stats().last_run_slices == 1);
        CHECK(executor.inference_slice_rows(64) == 64);
    }
}
