// The executor: memory planning, reverse mode over graphs (gradients summed where a tensor feeds
// several inputs), plans per batch size, and no allocation in a steady-state step.
#include <doctest/doctest.h>


#include "allocation_counter.hpp"
#include "exec/executor.hpp"
#include "exec/memory_planner.hpp"
#include "exec/weights.hpp"
#include "graph_gradcheck.hpp"
#include "train/losses.hpp"
#include "train/optimizers.hpp"

using namespace nngraph;
using namespace nngraph::testing;

TEST_CASE("the arena planner shares memory between buffers whose lifetimes do not overlap") {
    // a [0,1] and b [2,3] can share; c [1,2] overlaps both.
    const std::vector<BufferRequest> requests{{1000, 0, 1}, {1000, 2, 3}, {500, 1, 2}};
    const ArenaLayout layout = plan_arena(requests);
    CHECK(layout.offsets[0] == layout.offsets[1]);
    const auto overlaps = [&](std::size_t a, std::size_t b) {
        const std::size_t a_end = layout.offsets[a] + requests[a].bytes, b_end = layout.offsets[b] + requests[b].bytes;
        return layout.offsets[a] < b_end && layout.offsets[b] < a_end;
    };
    CHECK_FALSE(overlaps(2, 0));
    CHECK_FALSE(overlaps(2, 1));
    CHECK(layout.arena_bytes < layout.requested_bytes);
    for (std::size_t offset : layout.offsets) CHECK(offset % kTensorAlignment == 0);
}

TEST_CASE("gradients through a whole graph match finite differences, summed where a tensor is read twice") {
    const std::vector<GraphGradCase> cases{
        {"chain", R"(input: {shape: [5]}
layers:
  - {op: Dense, units: 4, activation: tanh}
  - {op: Dense, units: 3, activation: softmax}
training: {loss: categorical_crossentropy}
)"},
        {"tensor read twice by one node", R"(inputs: [{name: x, shape: [4]}]
nodes:
  - {name: d, op: Dense, inputs: [x], units: 3, activation: tanh}
  - {name: square, op: Multiply, inputs: [d, d]}
  - {name: out, op: Dense, inputs: [square], units: 1, activation: sigmoid}
outputs: [out]
training: {loss: binary_crossentropy}
)"},
        {"diamond", R"(inputs: [{name: x, shape: [3]}]
nodes:
  - {name: a, op: Dense, inputs: [x], units: 4, activation: relu}
  - {name: left, op: Dense, inputs: [a], units: 4}
  - {name: right, op: Dense, inputs: [a], units: 4, activation: sigmoid}
  - {name: joined, op: Concatenate, inputs: [left, right, a]}
  - {name: out, op: Dense, inputs: [joined], units: 2}
outputs: [out]
training: {loss: mse}
)"},
        {"sigmoid then a separate Activation feeding BCE from logits", R"(input: {shape: [3]}
layers:
  - {op: Dense, units: 2}
  - {op: Activation, activation: sigmoid}
training: {loss: binary_crossentropy}
)"},
    };
    for (const GraphGradCase& c : cases) {
        CAPTURE(c.label);
        const GradResult result = check_graph_gradients(c);
        INFO(result.report);
        CHECK(result.checked > 0);
        CHECK(result.ok);
    }
}

namespace {

const char* kModel = R"(input: {shape: [6]}
layers:
  - {op: Dense, units: 16, activation: relu}
  - {op: Dense, units: 8, activation: tanh}
  - {op: Dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy}
)";

struct Fixture {
    std::shared_ptr<const Graph> graph = Graph::from_spec(parse_model(kModel, "model.yaml", "."));
    Executor executor{graph, {1, 7}};
    Tensor x{DType::F32, {10, 6}}, y{DType::F32, {10, 1}};
    Fixture() {
        initialize_weights(*graph, 7, executor.weights());
        executor.set_loss(make_loss("binary_crossentropy"));
        fill_uniform(x, -1, 1, 1);
        fill_uniform(y, 0, 2, 2);
        for (float& v : y.values<float>()) v = v >= 1.0f ? 1.0f : 0.0f;
    }
    BatchRef batch(std::span<const std::int64_t> rows) const { return {{&x}, {&y}, rows}; }
};

}  // namespace

TEST_CASE("each batch size gets one plan, the smaller last batch included") {
    Fixture f;
    const std::int64_t first[] = {0, 1, 2, 3, 4, 5, 6, 7}, last[] = {8, 9};
    f.executor.run(f.batch(first), StepKind::Train);
    f.executor.run(f.batch(last), StepKind::Train);
    CHECK(f.executor.stats().plans_built == 2);
    f.executor.run(f.batch(first), StepKind::Train);
    f.executor.run(f.batch(last), StepKind::Train);
    CHECK(f.executor.stats().plans_built == 2);
    const TensorView out = f.executor.output(0);
    CHECK(Shape(out.shape.begin(), out.shape.end()) == Shape{2, 1});
    f.executor.run(f.batch(first), StepKind::Infer);
    CHECK(f.executor.stats().plans_built == 3);
}

TEST_CASE("a steady-state training step allocates nothing in the engine") {
    // Plain C++ ops only, so every allocation counted is the engine's own (plans, arena, losses,
    // optimiser, gradient accumulation of the tensor read twice).
    PluginSearch search;
    search.command_line.push_back(std::string(NNGRAPH_FIXTURE_DIR) + "/plain");
    auto graph = Graph::from_spec(parse_model(R"(inputs: [{name: x, shape: [6]}]
nodes:
  - {name: a, op: Scale, inputs: [x]}
  - {name: b, op: Multiply, inputs: [a, a]}
  - {name: c, op: Scale, inputs: [b]}
outputs: [c]
training: {loss: mse}
)", "model.yaml", "."), search);
    Executor executor(graph, {1, 3});
    initialize_weights(*graph, 3, executor.weights());
    executor.set_loss(make_loss("mse"));
    auto optimizer = make_optimizer({"adam"}, executor.weights(), executor.weight_grads());
    Tensor x(DType::F32, {10, 6}), y(DType::F32, {10, 6});
    fill_uniform(x, -1, 1, 1);
    fill_uniform(y, -1, 1, 2);
    const std::int64_t rows[] = {3, 1, 4, 0, 5, 9, 2, 6};
    const BatchRef batch{{&x}, {&y}, rows};
    executor.run(batch, StepKind::Train);  // plans and the arena are made here
    optimizer->apply(executor.weights(), executor.weight_grads());
    if (!allocation_counting_available()) {
        MESSAGE("skipped: allocations are not counted under AddressSanitizer");
        return;
    }
    start_counting_allocations();
    const double loss = executor.run(batch, StepKind::Train);
    optimizer->apply(executor.weights(), executor.weight_grads());
    const AllocationCount count = stop_counting_allocations();
    CHECK(loss > 0.0);
    CHECK(count.calls == 0);
}

TEST_CASE("a steady-state training step through oneDNN ops allocates no buffer") {
    // oneDNN 2.6's primitive::execute builds a small std::unordered_map of its arguments on every
    // call; nothing else may allocate, and nothing of buffer size.
    Fixture f;
    auto optimizer = make_optimizer({"adam"}, f.executor.weights(), f.executor.weight_grads());
    const std::int64_t rows[] = {3, 1, 4, 0, 5, 9, 2, 6};
    const BatchRef batch = f.batch(rows);
    f.executor.run(batch, StepKind::Train);
    optimizer->apply(f.executor.weights(), f.executor.weight_grads());
    if (!allocation_counting_available()) {
        MESSAGE("skipped: allocations are not counted under AddressSanitizer");
        return;
    }
    start_counting_allocations();
    f.executor.run(batch, StepKind::Train);
    optimizer->apply(f.executor.weights(), f.executor.weight_grads());
    const AllocationCount count = stop_counting_allocations();
    MESSAGE("small allocations in one step (inside oneDNN's execute): " << count.calls << ", largest " << count.largest << " bytes");
    CHECK(count.largest < 1024);
}

TEST_CASE("training steps lower the loss; the plan's arena is smaller than its buffers laid end to end") {
    Fixture f;
    auto optimizer = make_optimizer({"adam", 0.05}, f.executor.weights(), f.executor.weight_grads());
    const BatchRef batch = f.batch({});
    const double before = f.executor.run(batch, StepKind::Evaluate);
    for (int i = 0; i < 200; ++i) {
        f.executor.run(batch, StepKind::Train);
        optimizer->apply(f.executor.weights(), f.executor.weight_grads());
    }
    const double after = f.executor.run(batch, StepKind::Evaluate);
    CHECK(after < 0.2 * before);
    CHECK(f.executor.stats().last_plan_arena <= f.executor.stats().last_plan_requested);
}

TEST_CASE("batches that do not fit the model are refused with both shapes") {
    Fixture f;
    Tensor wrong(DType::F32, {4, 5});
    CHECK_THROWS_WITH_AS(f.executor.run({{&wrong}, {}, {}}, StepKind::Infer),
                         "input 'input' is F32 (4, 5); the model expects F32 (None, 6)", InputError);
    Tensor ints(DType::I32, {4, 6});
    CHECK_THROWS_AS(f.executor.run({{&ints}, {}, {}}, StepKind::Infer), InputError);
    const std::int64_t outside[] = {0, 12};
    CHECK_THROWS_WITH_AS(f.executor.run(f.batch(outside), StepKind::Train), doctest::Contains("row 12 is outside the 10 rows"), RunError);
}
