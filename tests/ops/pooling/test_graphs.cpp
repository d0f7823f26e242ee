// Embedding, Dropout, the poolings and LayerNormalization inside whole graphs: the padding mask of
// Embedding(mask_zero) flows through Dropout into GlobalAveragePooling1D (forward through
// `nngraph predict`, backward through `nngraph grad`), and a training step at the IMDB shapes
// gives the same result on one thread as on two and allocates no buffer once planned.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "cli_runner.hpp"
#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "gradcheck.hpp"
#include "graph/model_file.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"
#include "train/losses.hpp"

// Counts heap allocations of at least 1 KiB while `counting` is set (this test binary's own
// operator new): oneDNN's per-call argument maps are small; a buffer is not.
namespace {
std::atomic<bool> counting{false};
std::atomic<long> big_allocations{0};
}  // namespace

// GCC pairs its built-in view of operator new with free() and warns; the pair here is malloc/free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
    if (size >= 1024 && counting.load(std::memory_order_relaxed))
        big_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
// The nothrow forms too, so that no allocation of one kind is freed by the other (AddressSanitizer
// replaces every form it is not given).
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    if (size >= 1024 && counting.load(std::memory_order_relaxed))
        big_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size ? size : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

// In sanitizer builds: the two-thread training step leaves OpenMP workers holding thread-local
// storage of plugins that are dlclose'd at exit, and LeakSanitizer's scan of that stale storage
// crashes (a sanitizer limitation, not a leak). This binary's leak check therefore skips TLS roots;
// the nngraph processes it starts keep the defaults.
extern "C" __attribute__((used, visibility("default"))) const char* __lsan_default_options() { return "use_tls=0"; }

using namespace nngraph;
using namespace nngraph::testing;

namespace {

// Row 0 (padding) is far from the others, so averaging it in would show.
const char* kMaskFlowModel = R"(name: mask_flow
inputs:
  - {name: tokens, shape: [4], dtype: int32}
nodes:
  - {name: embedding, op: Embedding, inputs: [tokens], input_dim: 5, output_dim: 2, mask_zero: MASK_ZERO,
     weights: {embeddings: [[100, -100], [1, 2], [3, 4], [5, 6], [7, 8]]}}
  - {name: dropout, op: Dropout, inputs: [embedding], rate: 0.5}
  - {name: pool, op: GlobalAveragePooling1D, inputs: [dropout]}
outputs: [pool]
training: {loss: mse}
)";

std::string mask_flow_model(bool mask_zero) {
    std::string text = kMaskFlowModel;
    text.replace(text.find("MASK_ZERO"), 9, mask_zero ? "true" : "false");
    return text;
}

std::vector<float> values_of(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

}  // namespace

TEST_CASE("the mask of Embedding(mask_zero) flows through Dropout: GlobalAveragePooling1D averages only real tokens") {
    TempDir dir;
    TensorFile inputs;
    const std::vector<std::int32_t> tokens = {0, 0, 1, 2, 3, 0, 4, 0, 1, 2, 3, 4};
    inputs.tensors["tokens"] = Tensor::from<std::int32_t>({3, 4}, tokens);
    write_safetensors(dir / "x.safetensors", inputs);

    for (const bool mask_zero : {true, false}) {
        CAPTURE(mask_zero);
        write_bytes(dir / "m.yaml", mask_flow_model(mask_zero));
        const CliResult r = run_nngraph({"predict", (dir / "m.yaml").string(), "--inputs",
                                         (dir / "x.safetensors").string(), "--out", (dir / "y.safetensors").string()});
        INFO(r.err);
        REQUIRE(r.status == 0);
        const Tensor y = read_safetensors(dir / "y.safetensors").tensors.at("pool");
        REQUIRE(y.shape() == Shape{3, 2});
        if (mask_zero)
            CHECK(values_of(y) == std::vector<float>{2, 3, 6, 7, 4, 5});
        else
            CHECK(values_of(y) == std::vector<float>{51, -48.5f, 53, -46.5f, 4, 5});  // padding averaged in
    }

    // Backward: the padding row gets no gradient. Keras's mse over targets 0: dL/dpool = pool / 3,
    // shared by the unmasked steps of each sample.
    write_bytes(dir / "m.yaml", mask_flow_model(true));
    TensorFile targets;
    targets.tensors["targets"] = Tensor(DType::F32, {3, 2});
    std::fill(targets.tensors["targets"].data<float>(), targets.tensors["targets"].data<float>() + 6, 0.0f);
    write_safetensors(dir / "t.safetensors", targets);
    const CliResult g =
        run_nngraph({"grad", (dir / "m.yaml").string(), "--inputs", (dir / "x.safetensors").string(), "--targets",
                     (dir / "t.safetensors").string(), "--out", (dir / "g.safetensors").string()});
    INFO(g.err);
    REQUIRE(g.status == 0);
    const TensorFile grads = read_safetensors(dir / "g.safetensors");
    CHECK(grads.tensors.at("loss").data<float>()[0] == doctest::Approx(69.5 / 3));
    const std::vector<double> expected = {0,         0,       2.0 / 3,   11.0 / 12, 2.0 / 3,
                                          11.0 / 12, 4.0 / 3, 19.0 / 12, 4.0 / 3,   19.0 / 12};
    const std::vector<float> actual = values_of(grads.tensors.at("embedding.embeddings"));
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) CHECK(actual[i] == doctest::Approx(expected[i]).epsilon(1e-6));
}

namespace {

// The IMDB attention model's shapes with these ops on every path (and Dense at the end).
const char* kImdbShapesModel = R"(name: imdb_shapes
inputs: [{name: tokens, shape: [200], dtype: int32}]
nodes:
  - {name: embedding, op: Embedding, inputs: [tokens], input_dim: 5000, output_dim: 32, mask_zero: true}
  - {name: dropout, op: Dropout, inputs: [embedding], rate: 0.5}
  - {name: norm, op: LayerNormalization, inputs: [dropout]}
  - {name: mean, op: GlobalAveragePooling1D, inputs: [norm]}
  - {name: window_max, op: MaxPooling1D, inputs: [norm], pool_size: 4, padding: same}
  - {name: window_mean, op: AveragePooling1D, inputs: [window_max], pool_size: 3, strides: 2}
  - {name: max, op: GlobalMaxPooling1D, inputs: [window_mean]}
  - {name: joined, op: Concatenate, inputs: [mean, max]}
  - {name: dropout_1, op: Dropout, inputs: [joined], rate: 0.5, noise_shape: [null, 64]}
  - {name: dense, op: Dense, inputs: [dropout_1], units: 1, activation: sigmoid}
outputs: [dense]
training: {loss: binary_crossentropy}
)";

struct TrainResult {
    double loss;
    std::vector<Tensor> grads;
    long big_allocations;
};

TrainResult train_step(int threads) {
    const auto graph = Graph::from_spec(parse_model(kImdbShapesModel, "imdb_shapes.yaml", "."));
    Executor executor(graph, {threads, 5});
    initialize_weights(*graph, 5, executor.weights());
    executor.set_loss(make_loss("binary_crossentropy"));
    Tensor tokens(DType::I32, {64, 200}), labels(DType::F32, {64, 1});
    fill_uniform(tokens, 1, 5000, 1);
    for (std::int64_t b = 0; b < 64; ++b) {  // front padding, as pad_sequences writes it
        for (std::int64_t s = 0; s < b * 3; ++s) tokens.data<std::int32_t>()[b * 200 + s] = 0;
    }
    fill_uniform(labels, 0, 2, 2);
    const BatchRef batch{{&tokens}, {&labels}, {}};
    executor.run(batch, StepKind::Train);  // plans, arena and primitives are made here
    executor.set_step_count(0);            // the same seeds again
    big_allocations = 0;
    counting = true;
    const double loss = executor.run(batch, StepKind::Train);
    counting = false;
    return {loss, executor.weight_grads(), big_allocations.load()};
}

}  // namespace

TEST_CASE("a training step at the IMDB shapes is the same on one thread and two, and allocates no buffer") {
    const TrainResult one = train_step(1), two = train_step(2);
    CHECK(one.big_allocations == 0);
    CHECK(two.big_allocations == 0);
    CHECK(one.loss == doctest::Approx(two.loss).epsilon(1e-6));
    REQUIRE(one.grads.size() == two.grads.size());
    for (std::size_t w = 0; w < one.grads.size(); ++w) {
        CAPTURE(w);
        REQUIRE(one.grads[w].numel() == two.grads[w].numel());
        double norm = 0, worst = 0;
        for (std::int64_t i = 0; i < one.grads[w].numel(); ++i) {
            norm = std::max(norm, static_cast<double>(std::abs(one.grads[w].data<float>()[i])));
            worst = std::max(
                worst, static_cast<double>(std::abs(one.grads[w].data<float>()[i] - two.grads[w].data<float>()[i])));
        }
        CHECK(norm > 0);
        CHECK(worst <= 1e-5 * norm);
    }
}
