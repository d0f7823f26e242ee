// The executor: memory planning, reverse mode over graphs (gradients summed where a tensor feeds
// several inputs), plans per batch size, and no allocation in a steady-state step.
#include <doctest/doctest.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>

#include "allocation_counter.hpp"
#include "exec/executor.hpp"
#include "exec/memory_planner.hpp"
#include "exec/weights.hpp"
#include "graph_gradcheck.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/sdk.hpp"
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

TEST_CASE("a tensor read twice by an op that sums its gradients takes one gradient slot") {
    // Attention sums a tensor's gradients over the inputs it is given as
    // (nng_infer_io.sums_repeated_gradients): the plan gives the second input no slot and adds
    // nothing after the call. Multiply does not: its second input's gradient goes to a temporary.
    const auto contributions = [](const std::string& node) {
        auto graph = Graph::from_spec(parse_model(R"(inputs: [{name: x, shape: [5, 3]}]
nodes:
  - {name: d, op: Dense, inputs: [x], units: 4, activation: tanh}
)" + node + R"(
  - {name: pool, op: GlobalAveragePooling1D, inputs: [a]}
  - {name: out, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [out]
training: {loss: binary_crossentropy}
)",
                                                  "model.yaml", "."));
        Executor executor(graph, {1, 3});
        initialize_weights(*graph, 3, executor.weights());
        executor.set_loss(make_loss("binary_crossentropy"));
        Tensor x(DType::F32, {2, 5, 3}), y(DType::F32, {2, 1});
        fill_uniform(x, -1, 1, 4);
        executor.run(BatchRef{{&x}, {&y}, {}}, StepKind::Gradient);
        int count = 0;
        for (const Executor::PlannedBuffer& b : executor.last_plan_buffers())
            count += b.name == "gradient contribution to d" ? 1 : 0;
        return count;
    };
    CHECK(contributions("  - {name: a, op: Attention, inputs: [d, d]}") == 0);
    CHECK(contributions("  - {name: a, op: MultiHeadAttention, inputs: [d, d, d], num_heads: 1, key_dim: 2}") == 0);
    CHECK(contributions("  - {name: a, op: Multiply, inputs: [d, d]}") == 1);
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

TEST_CASE("a step runs on the executor's threads and hands the caller's OpenMP count back") {
    // Dense runs a product this small on one thread, setting OpenMP's count to 1 inside the step.
    const int caller = omp_get_max_threads();
    omp_set_num_threads(3);
    auto graph = Graph::from_spec(parse_model(kModel, "model.yaml", "."));
    Executor by_default(graph, {0, 7});  // 0: OpenMP's count when the executor is made
    CHECK(by_default.options().threads == 3);
    Executor one_thread(graph, {1, 7});
    Tensor x{DType::F32, {4, 6}};
    fill_uniform(x, -1, 1, 1);
    for (Executor* executor : {&by_default, &one_thread, &by_default}) {
        initialize_weights(*graph, 7, executor->weights());
        executor->run({{&x}, {}, {}}, StepKind::Infer);
        CHECK(omp_get_max_threads() == 3);
    }
    CHECK(by_default.options().threads == 3);
    omp_set_num_threads(caller);
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
)",
                                              "model.yaml", "."),
                                  search);
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
    MESSAGE("small allocations in one step (inside oneDNN's execute): " << count.calls << ", largest " << count.largest
                                                                        << " bytes");
    CHECK(count.largest < 1024);
    // Below AVX-512 (avx512_core) oneDNN 2.6's matmul runs its own sgemm, which allocates and
    // frees packing buffers within each call; above it, its brgemm matmul uses the arena's scratchpad.
    if (nng::cpu::has_avx512())
        CHECK(count.aligned_calls == 0);  // no buffer of oneDNN's own beside the arena
    else
        MESSAGE("no AVX-512 here: oneDNN's sgemm allocated " << count.aligned_calls << " packing buffers");
}

namespace {
void* volatile escaped = nullptr;  // keeps the compiler from pairing away an allocation and its free
}  // namespace

TEST_CASE("the allocation counter counts aligned blocks, as oneDNN allocates its own buffers") {
    if (!allocation_counting_available()) {
        MESSAGE("skipped: allocations are not counted under AddressSanitizer");
        return;
    }
    start_counting_allocations();
    void* block = nullptr;
    REQUIRE(posix_memalign(&block, 64, 1000) == 0);
    escaped = block;
    std::free(escaped);
    escaped = std::aligned_alloc(4096, 8192);
    std::free(escaped);
    const AllocationCount count = stop_counting_allocations();
    CHECK(count.aligned_calls == 2);
    CHECK(count.aligned_bytes == 9192);
    CHECK(count.calls == 0);
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

TEST_CASE("inference skips Dropout: its output is its input's buffer, alive as long as either is read") {
    // Dropout on a graph input, a chain of two, one read again late (by `sum`, after b and c), and
    // one a graph output; against the same graph with copying linear Activations in their place.
    const std::string model = R"(inputs: [{name: x, shape: [6]}]
nodes:
  - {name: drop_in, op: IDENTITY, inputs: [x]RATE}
  - {name: a, op: Dense, inputs: [drop_in], units: 5, activation: tanh}
  - {name: d1, op: IDENTITY, inputs: [a]RATE}
  - {name: d2, op: IDENTITY, inputs: [d1]RATE}
  - {name: b, op: Dense, inputs: [d2], units: 5, activation: relu}
  - {name: c, op: Dense, inputs: [b], units: 5}
  - {name: sum, op: Add, inputs: [d1, c]}
outputs: [sum, d2]
)";
    const auto with = [&](const std::string& op, const std::string& rate) {
        std::string text = model;
        for (std::size_t at; (at = text.find("IDENTITY")) != std::string::npos;) text.replace(at, 8, op);
        for (std::size_t at; (at = text.find("RATE")) != std::string::npos;) text.replace(at, 4, rate);
        return Graph::from_spec(parse_model(text, "model.yaml", "."));
    };
    const auto dropout = with("Dropout", ", rate: 0.5"), copies = with("Activation", ", activation: linear");
    Executor skipping(dropout, {1, 5}), copying(copies, {1, 5});
    initialize_weights(*dropout, 5, skipping.weights());
    REQUIRE(skipping.weights().size() == copying.weights().size());
    for (std::size_t w = 0; w < skipping.weights().size(); ++w) {
        std::memcpy(copying.weights()[w].raw(), skipping.weights()[w].raw(), skipping.weights()[w].nbytes());
    }
    Tensor x(DType::F32, {64, 6});
    fill_uniform(x, -1, 1, 3);
    for (const std::int64_t rows : {64, 7}) {
        CAPTURE(rows);
        std::vector<std::int64_t> picked(static_cast<std::size_t>(rows));
        std::iota(picked.begin(), picked.end(), std::int64_t{0});
        const BatchRef batch{{&x}, {}, picked};
        skipping.run(batch, StepKind::Infer);
        copying.run(batch, StepKind::Infer);
        for (std::size_t out = 0; out < 2; ++out) {
            const TensorView a = skipping.output(out), b = copying.output(out);
            REQUIRE(a.numel() == b.numel());
            CHECK(std::memcmp(a.data, b.data, static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0);
        }
        // The three identities' outputs take no buffer of their own: (6 + 5 + 5) floats a row.
        CHECK(copying.stats().last_plan_requested - skipping.stats().last_plan_requested >=
              static_cast<std::size_t>(16 * rows * 4));
    }
    // Training still runs Dropout: its output differs from its input.
    skipping.set_loss(make_loss("mse"));
    Tensor targets_sum(DType::F32, {64, 5}), targets_d2(DType::F32, {64, 5});
    const std::int64_t rows[] = {0, 1, 2, 3};
    skipping.run({{&x}, {&targets_sum, &targets_d2}, rows}, StepKind::Train);
    const TensorView trained = skipping.output(1);
    copying.run({{&x}, {}, rows}, StepKind::Infer);
    CHECK(std::memcmp(trained.data, copying.output(1).data,
                      static_cast<std::size_t>(trained.numel()) * sizeof(float)) != 0);
}

TEST_CASE("batches that do not fit the model are refused with both shapes") {
    Fixture f;
    Tensor wrong(DType::F32, {4, 5});
    CHECK_THROWS_WITH_AS(f.executor.run({{&wrong}, {}, {}}, StepKind::Infer),
                         "input 'input' is F32 (4, 5); the model expects F32 (None, 6)", InputError);
    Tensor ints(DType::I32, {4, 6});
    CHECK_THROWS_AS(f.executor.run({{&ints}, {}, {}}, StepKind::Infer), InputError);
    const std::int64_t outside[] = {0, 12};
    CHECK_THROWS_WITH_AS(f.executor.run(f.batch(outside), StepKind::Train),
                         doctest::Contains("row 12 is outside the 10 rows"), RunError);
}

namespace {

// A graph of Probe ops (tests/plugins/fixtures/plain_ops.cpp), whose buffers check themselves.
struct ProbeGraph {
    std::shared_ptr<const Graph> graph;
    Executor executor;
    Tensor x{DType::F32, {8, 6}}, y{DType::F32, {8, 6}};

    explicit ProbeGraph(const char* nodes, int threads = 2) : graph(load(nodes)), executor(graph, {threads, 5}) {
        initialize_weights(*graph, 5, executor.weights());
        executor.set_loss(make_loss("mse"));
        fill_uniform(x, -1, 1, 1);
        fill_uniform(y, -1, 1, 2);
    }
    static std::shared_ptr<const Graph> load(const char* nodes) {
        PluginSearch search;
        search.command_line.push_back(std::string(NNGRAPH_FIXTURE_DIR) + "/plain");
        return Graph::from_spec(parse_model(std::string("inputs: [{name: x, shape: [6]}]\nnodes:\n") + nodes +
                                                "outputs: [c]\ntraining: {loss: mse}\n",
                                            "model.yaml", "."),
                                search);
    }
    double run(std::int64_t rows, StepKind kind) {
        std::vector<std::int64_t> picked(static_cast<std::size_t>(rows));
        std::iota(picked.begin(), picked.end(), std::int64_t{0});
        return executor.run(BatchRef{{&x}, {&y}, picked}, kind);
    }
    Executor::PlannedBuffer planned(const std::string& name) const {
        for (const Executor::PlannedBuffer& b : executor.last_plan_buffers()) {
            if (b.name == name) return b;
        }
        FAIL("no planned buffer named " << name);
        return {};
    }
};

// The Scale first, so that the probes' backward runs: the gradient goes through them to it.
constexpr const char* kProbes = R"(  - {name: s, op: Scale, inputs: [x]}
  - {name: a, op: Probe, inputs: [s], scratch_floats: 100000}
  - {name: b, op: Probe, inputs: [a], scratch_floats: 100000}
  - {name: c, op: Scale, inputs: [b]}
)";

}  // namespace

TEST_CASE("buffers ops declare are planned in the arena and counted in the memory report") {
    ProbeGraph p(kProbes);
    p.run(8, StepKind::Train);
    const auto scratch = p.planned("buffer 'scratch' of a forward");
    CHECK(scratch.bytes == 100000 * sizeof(float));
    CHECK(scratch.first_step == scratch.last_step);
    CHECK(p.planned("buffer 'copy of x' of b").bytes == 8 * 6 * sizeof(float));
    CHECK(p.executor.stats().last_plan_requested >= 4 * 100000 * sizeof(float));
    // The scratch is the largest buffer: the peak step is one of its steps, and the report names it.
    CHECK(p.executor.last_plan_memory_report().find("scratch' of") != std::string::npos);
}

TEST_CASE("per-thread slices of a declared buffer do not overlap") {
    for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        ProbeGraph p(kProbes, threads);
        CHECK_NOTHROW(p.run(8, StepKind::Train));  // every slice is marked, then checked
        const auto slices = p.planned("buffer 'per thread' of a forward");
        CHECK(slices.bytes == static_cast<std::size_t>(threads) * kTensorAlignment);  // 6 floats, aligned, per thread
    }
}

TEST_CASE("per-call scratch of two steps shares memory while saved buffers live until backward") {
    ProbeGraph p(kProbes);
    CHECK_NOTHROW(p.run(8, StepKind::Train));  // backward compares its saved copy of x with x
    const auto a = p.planned("buffer 'scratch' of a forward");
    const auto b = p.planned("buffer 'scratch' of b forward");
    const auto b_back = p.planned("buffer 'scratch' of b backward");
    CHECK(a.offset == b.offset);
    CHECK(b.offset == b_back.offset);
    const auto saved = p.planned("buffer 'copy of x' of a");
    CHECK(saved.first_step == a.first_step);
    CHECK(saved.last_step == p.planned("buffer 'scratch' of a backward").first_step);
    // The saved copy does not share memory with any scratch, which is written while it lives.
    for (const auto& s : {a, b, b_back}) {
        CHECK((saved.offset + saved.bytes <= s.offset || s.offset + s.bytes <= saved.offset));
    }
}

TEST_CASE("buffer handles stay right with a training plan and inference plans alive together") {
    ProbeGraph p(kProbes);
    for (int round = 0; round < 2; ++round) {
        CHECK_NOTHROW(p.run(8, StepKind::Train));
        CHECK_NOTHROW(p.run(3, StepKind::Infer));  // no saved buffers: the op checks theirs is absent
        CHECK_NOTHROW(p.run(8, StepKind::Infer));
        CHECK_NOTHROW(p.run(5, StepKind::Train));
    }
    CHECK(p.executor.stats().plans_built == 4);
}

TEST_CASE("an op that declares different buffers in different plans is refused by name") {
    ProbeGraph p(R"(  - {name: s, op: Scale, inputs: [x]}
  - {name: a, op: Probe, inputs: [s], unstable: true}
  - {name: c, op: Scale, inputs: [a]}
)");
    CHECK_THROWS_WITH_AS(
        p.run(4, StepKind::Train),
        doctest::Contains("node 'a' (Probe) declared the buffers ('scratch', 'per thread') at load but "
                          "('scratch', 'copy of x', 'per thread') at batch 4"),
        RunError);
}

// Sizes that overflow 64 bits are refused where they are computed, naming what they were for,
// instead of wrapping into a small buffer that is then overrun.
TEST_CASE("the SDK's element count refuses a product that overflows 64 bits") {
    CHECK(nng::product({3, 4, 5}) == 60);
    CHECK(nng::product({3, 4, 5}, 1) == 20);
    CHECK_THROWS_WITH_AS(nng::product({4294967296, 4294967296}),
                         "the element count of shape (4294967296, 4294967296) overflows 64 bits", nng::OpError);
    // Only the counted range matters: the batch dimension is left out here.
    CHECK(nng::product({4294967296, 4294967296, 2}, 1) == 8589934592);
}

TEST_CASE("the arena planner refuses buffers whose sizes add up past 2^62 bytes") {
    const std::size_t half = std::size_t{1} << 63;
    CHECK_THROWS_WITH_AS(plan_arena({{half, 0, 1}, {half, 2, 3}}),
                         doctest::Contains("takes the buffers of one plan past 2^62 bytes"), RunError);
    const std::size_t quarter = std::size_t{1} << 61;
    CHECK_THROWS_AS(plan_arena({{quarter, 0, 1}, {quarter, 2, 3}, {quarter, 4, 5}}), RunError);
    CHECK(plan_arena({{quarter, 0, 1}, {1000, 2, 3}}).requested_bytes == quarter + 1024);
}

TEST_CASE("a declared buffer too large to plan is refused with its op, name and size") {
    // 2^62 floats: the byte count wraps to 0 unless the SDK checks it. Found at load, by shape inference.
    const auto probe = [](const char* scratch_floats) {
        ProbeGraph p((std::string("  - {name: s, op: Scale, inputs: [x]}\n  - {name: a, op: Probe, inputs: [s], "
                                  "scratch_floats: ") +
                      scratch_floats + "}\n  - {name: c, op: Scale, inputs: [a]}\n")
                         .c_str());
        p.run(8, StepKind::Train);
    };
    CHECK_THROWS_WITH_AS(
        probe("4611686018427387904"),
        doctest::Contains("buffer 'scratch' of 4611686018427387904 elements of 4 bytes overflows 64 bits"), Error);
    // 2^60 + 16 floats: 2^62 + 64 bytes, which fits in 64 bits but not in any arena.
    CHECK_THROWS_WITH_AS(probe("1152921504606846992"),
                         "buffer 'scratch' of a forward at batch 8 needs 4611686018427387968 bytes; at most 2^62 "
                         "bytes can be planned",
                         RunError);
}
