// Keras 3's LSTM through the plugin ABI: outputs against an independent double-precision reference
// (lstm_reference.hpp), gradients against finite differences (gradcheck.hpp), Keras's input
// dropout, shape and attribute errors, and the steady state (no new primitives or buffers).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcheck_table.hpp"
#include "graph_gradcheck.hpp"
#include "lstm_reference.hpp"
#include "nngraph/error.hpp"

using nngraph::DType;
using nngraph::Shape;
using nngraph::Tensor;
using nngraph::testing::check_gradients;
using nngraph::testing::fill_uniform;
using nngraph::testing::GradCase;
using nngraph::testing::GradInput;
using nngraph::testing::OpRunner;

namespace {

// ---- Helpers ------------------------------------------------------------------------------------

// kFused: use_cudnn: true, oneDNN's fused LSTM; without it f32 takes the stepwise loop.
enum Flag : unsigned { kSequences = 1, kState = 2, kBackwards = 4, kNoBias = 8, kMasked = 16, kFused = 32 };

struct Config {
    std::string label;
    unsigned flags = 0;
    std::int64_t batch = 3, steps = 5, features = 4, units = 6;
    std::string activation = "tanh", recurrent_activation = "sigmoid";

    bool has(unsigned flag) const { return (flags & flag) != 0; }
};

std::string attributes_of(const Config& c) {
    std::string a = "{units: " + std::to_string(c.units);
    if (c.has(kSequences)) a += ", return_sequences: true";
    if (c.has(kState)) a += ", return_state: true";
    if (c.has(kBackwards)) a += ", go_backwards: true";
    if (c.has(kNoBias)) a += ", use_bias: false";
    if (c.activation != "tanh") a += ", activation: " + c.activation;
    if (c.recurrent_activation != "sigmoid") a += ", recurrent_activation: " + c.recurrent_activation;
    if (c.has(kFused)) a += ", use_cudnn: true";
    return a + "}";
}

// Random input, weights (Keras's initializers, then moved off their special values) and mask. The
// mask mixes patterns: left padding as pad_sequences makes, a hole in the middle, a fully masked
// row, and random rows.
void randomize(OpRunner& runner, std::uint64_t seed) {
    fill_uniform(runner.inputs()[0], -1.0, 1.0, seed);
    runner.initialize_weights(seed + 1);
    for (std::size_t k = 0; k < runner.weights().size(); ++k) {
        Tensor noise(DType::F32, runner.weights()[k].shape());
        fill_uniform(noise, -0.3, 0.3, seed + 10 + k);
        for (std::int64_t e = 0; e < noise.numel(); ++e) runner.weights()[k].data<float>()[e] += noise.data<float>()[e];
    }
    Tensor& mask = runner.input_masks()[0];
    if (mask.empty()) return;
    const std::int64_t N = mask.dim(0), T = mask.dim(1);
    fill_uniform(mask, 0.0, 1.7, seed + 20);
    std::uint8_t* m = mask.data<std::uint8_t>();
    for (std::int64_t t = 0; t < T; ++t) m[t] = t >= T / 2 ? 1 : 0;  // row 0: left padded
    if (N > 1) {
        for (std::int64_t t = 0; t < T; ++t) m[T + t] = (t == T / 2) ? 0 : 1;  // row 1: one hole
    }
    if (N > 2) std::fill(m + 2 * T, m + 3 * T, 0);  // row 2: nothing kept
}

// Every element of b within 1e-5 of a's, relative where |a| > 1.
void check_close(const Tensor& a, const Tensor& b, const std::string& what) {
    CAPTURE(what);
    REQUIRE(a.numel() == b.numel());
    double worst = 0.0;
    for (std::int64_t e = 0; e < a.numel(); ++e) {
        worst = std::max(worst, double(std::abs(a.data<float>()[e] - b.data<float>()[e])) /
                                    std::max(1.0, double(std::abs(a.data<float>()[e]))));
    }
    CHECK(worst < 1e-5);
}

double max_error(const Tensor& actual, const std::vector<double>& expected) {
    REQUIRE(static_cast<std::size_t>(actual.numel()) == expected.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        worst = std::max(worst, std::abs(double(actual.data<float>()[i]) - expected[i]));
    }
    return worst;
}

// The reference's answer for the runner's current input, weights and mask.
lstm_reference::Result reference(OpRunner& runner, const Config& c) {
    const Tensor& x = runner.inputs()[0];
    const Tensor& mask = runner.input_masks()[0];
    lstm_reference::Options o;
    o.units = c.units;
    o.go_backwards = c.has(kBackwards);
    o.activation = c.activation;
    o.recurrent_activation = c.recurrent_activation;
    return lstm_reference::run(x.data<float>(), c.batch, c.steps, c.features, runner.weights()[0].data<float>(),
                               runner.weights()[1].data<float>(),
                               c.has(kNoBias) ? nullptr : runner.weights()[2].data<float>(),
                               mask.empty() ? nullptr : mask.data<std::uint8_t>(), o);
}

std::vector<double> last_outputs(const lstm_reference::Result& r, const Config& c) {
    std::vector<double> last(static_cast<std::size_t>(c.batch * c.units));
    for (std::int64_t n = 0; n < c.batch; ++n) {
        for (std::int64_t u = 0; u < c.units; ++u) {
            last[static_cast<std::size_t>(n * c.units + u)] =
                r.sequence[static_cast<std::size_t>((n * c.steps + c.steps - 1) * c.units + u)];
        }
    }
    return last;
}

// Runs the op in inference and in training mode and compares every output with the reference.
void check_against_reference(const Config& c) {
    CAPTURE(c.label);
    for (const bool training : {false, true}) {
        CAPTURE(training);
        OpRunner runner("LSTM", attributes_of(c), {{DType::F32, {c.batch, c.steps, c.features}}}, {c.has(kMasked)},
                        training);
        randomize(runner, 7);
        runner.forward(training);
        const lstm_reference::Result r = reference(runner, c);
        const auto& out = runner.outputs();
        REQUIRE(out.size() == (c.has(kState) ? 3u : 1u));
        CHECK(max_error(out[0], c.has(kSequences) ? r.sequence : last_outputs(r, c)) < 1e-5);
        if (c.has(kState)) {
            CHECK(max_error(out[1], r.h) < 1e-5);
            CHECK(max_error(out[2], r.c) < 1e-5);
        }
    }
}

// The cases with use_cudnn: true added to their attributes.
std::vector<GradCase> with_fused(std::vector<GradCase> cases) {
    for (GradCase& c : cases) c.attributes.insert(c.attributes.size() - 1, ", use_cudnn: true");
    return cases;
}

std::string error_of(const std::string& attributes, const Shape& input, DType dtype = DType::F32) {
    try {
        OpRunner runner("LSTM", attributes, {{dtype, input}});
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

// ---- Forward against the reference -------------------------------------------------------------

TEST_CASE("LSTM outputs match Keras's equations without a mask (both paths)") {
    const Config configs[] = {
        {"last output"},
        {"return_sequences", kSequences},
        {"return_sequences and return_state", kSequences | kState},
        {"return_state only", kState},
        {"go_backwards, sequence and state", kBackwards | kSequences | kState},
        {"without bias, batch 2, 7 steps, 3 features, 5 units", kNoBias | kSequences, 2, 7, 3, 5},
        {"go_backwards last output, one step", kBackwards, 4, 1, 3, 2},
        // A batch of 16 or more: stepwise inference projects each step from the input in place.
        {"batch 20, go_backwards, sequence and state", kBackwards | kSequences | kState, 20, 6, 3, 5},
        {"batch 17, last output", 0, 17, 4, 3, 2},
        // Gate rows of whole vectors and of a vector and a part, at every vector width.
        {"16 units, sequence and state", kSequences | kState, 3, 4, 3, 16},
        {"21 units, sequence and state", kSequences | kState, 3, 4, 3, 21},
    };
    for (Config c : configs) {
        check_against_reference(c);  // the stepwise loop
        c.flags |= kFused;
        check_against_reference(c);  // oneDNN's
    }
}

TEST_CASE("LSTM outputs match Keras's equations with a mask (stepwise path)") {
    const Config configs[] = {
        {"masked last output", kMasked, 4, 6},
        {"masked sequence and state", kMasked | kSequences | kState, 4, 6},
        {"masked go_backwards", kMasked | kSequences | kState | kBackwards, 4, 6},
        {"masked without bias", kMasked | kSequences | kState | kNoBias, 4, 6},
        {"masked go_backwards, batch 18", kMasked | kSequences | kState | kBackwards, 18, 6},
    };
    for (const Config& c : configs) check_against_reference(c);
}

TEST_CASE("LSTM with other activations runs Keras's equations (stepwise path)") {
    const std::pair<const char*, const char*> pairs[] = {
        {"relu", "hard_sigmoid"}, {"linear", "sigmoid"}, {"softsign", "relu6"}, {"tanh", "linear"}};
    for (const auto& [activation, recurrent] : pairs) {
        for (const unsigned flags : {kSequences | kState, kSequences | kState | kMasked | kBackwards}) {
            Config c{std::string(activation) + " / " + recurrent, flags};
            c.activation = activation;
            c.recurrent_activation = recurrent;
            check_against_reference(c);
        }
    }
}

TEST_CASE(
    "LSTM: a masked step repeats the previous output, and a sequence reversed by go_backwards comes out reversed") {
    // Hand-checkable facts of Keras's semantics, on top of the reference comparison.
    const Config c{"masked", kMasked | kSequences};
    OpRunner runner("LSTM", attributes_of(c), {{DType::F32, {c.batch, c.steps, c.features}}}, {true}, false);
    randomize(runner, 3);
    runner.forward(false);
    const float* y = runner.outputs()[0].data<float>();
    const std::uint8_t* m = runner.input_masks()[0].data<std::uint8_t>();
    const std::int64_t T = c.steps, U = c.units;
    for (std::int64_t n = 0; n < c.batch; ++n) {
        for (std::int64_t t = 0; t < T; ++t) {
            if (m[n * T + t]) continue;
            for (std::int64_t u = 0; u < U; ++u) {
                const float previous = t == 0 ? 0.0f : y[(n * T + t - 1) * U + u];
                CHECK(y[(n * T + t) * U + u] == previous);
            }
        }
    }

    // go_backwards on the time-reversed input gives exactly the forward run's sequence.
    const Config f{"forward", kSequences}, b{"backward", kSequences | kBackwards};
    OpRunner forward("LSTM", attributes_of(f), {{DType::F32, {f.batch, f.steps, f.features}}}, {}, false);
    OpRunner backward("LSTM", attributes_of(b), {{DType::F32, {b.batch, b.steps, b.features}}}, {}, false);
    randomize(forward, 5);
    randomize(backward, 5);
    const std::int64_t F = f.features;
    for (std::int64_t n = 0; n < f.batch; ++n) {
        for (std::int64_t t = 0; t < T; ++t) {
            std::memcpy(backward.inputs()[0].data<float>() + (n * T + t) * F,
                        forward.inputs()[0].data<float>() + (n * T + T - 1 - t) * F,
                        static_cast<std::size_t>(F) * sizeof(float));
        }
    }
    forward.forward(false);
    backward.forward(false);
    // Processing order is kept: step k of go_backwards on the reversed input is step k of the forward run.
    for (std::int64_t i = 0; i < forward.outputs()[0].numel(); ++i) {
        CHECK(backward.outputs()[0].data<float>()[i] ==
              doctest::Approx(forward.outputs()[0].data<float>()[i]).epsilon(1e-6));
    }
}

// ---- Gradients ----------------------------------------------------------------------------------

TEST_CASE("LSTM backward matches finite differences (oneDNN path, use_cudnn: true)") {
    const Shape a{3, 5, 4}, b{2, 7, 3};
    nngraph::testing::check_gradient_table(with_fused({
        {"plain (3, 5, 4) -> 6", "LSTM", "{units: 6}", {{a}}},
        {"plain (2, 7, 3) -> 5", "LSTM", "{units: 5}", {{b}}},
        {"return_sequences", "LSTM", "{units: 6, return_sequences: true}", {{a}}},
        {"return_sequences (2, 7, 3) -> 5", "LSTM", "{units: 5, return_sequences: true}", {{b}}},
        {"return_state: h and c", "LSTM", "{units: 6, return_state: true}", {{a}}},
        {"return_sequences and return_state", "LSTM", "{units: 5, return_sequences: true, return_state: true}", {{b}}},
        {"go_backwards", "LSTM", "{units: 6, go_backwards: true}", {{a}}},
        {"go_backwards sequence and state",
         "LSTM",
         "{units: 5, go_backwards: true, return_sequences: true, return_state: true}",
         {{b}}},
        {"without bias", "LSTM", "{units: 6, use_bias: false}", {{a}}},
        {"without bias, sequence", "LSTM", "{units: 5, use_bias: false, return_sequences: true}", {{b}}},
        {"input dropout (one mask per sequence)", "LSTM", "{units: 5, dropout: 0.4, return_sequences: true}", {{b}}},
    }));
}

TEST_CASE("LSTM backward matches finite differences with masks and other activations (stepwise path)") {
    const Shape a{3, 5, 4}, b{2, 7, 3};
    GradInput ma{a}, mb{b};
    ma.mask = mb.mask = true;
    nngraph::testing::check_gradient_table({
        {"masked", "LSTM", "{units: 6}", {ma}},
        {"masked (2, 7, 3) -> 5", "LSTM", "{units: 5}", {mb}},
        {"masked return_sequences", "LSTM", "{units: 6, return_sequences: true}", {ma}},
        {"masked return_state", "LSTM", "{units: 5, return_state: true}", {mb}},
        {"masked go_backwards sequence and state",
         "LSTM",
         "{units: 6, go_backwards: true, return_sequences: true, return_state: true}",
         {ma}},
        {"masked without bias", "LSTM", "{units: 5, use_bias: false, return_sequences: true}", {mb}},
        {"masked with input dropout", "LSTM", "{units: 5, dropout: 0.3, return_state: true}", {mb}},
        {"hard_sigmoid gates, relu cell",
         "LSTM",
         "{units: 5, activation: relu, recurrent_activation: hard_sigmoid, return_sequences: true}",
         {{b}},
         3e-4},
        {"softsign cell, relu6 gates, masked",
         "LSTM",
         "{units: 6, activation: softsign, recurrent_activation: relu6, return_state: true}",
         {ma},
         1e-3},
        {"linear cell (null), go_backwards",
         "LSTM",
         "{units: 5, activation: null, go_backwards: true, return_state: true}",
         {{b}}},
    });
}

TEST_CASE("LSTM: the oneDNN path and the stepwise path agree on outputs and every gradient") {
    // use_cudnn: true takes oneDNN's path; an all-ones mask the stepwise one through the same computation.
    for (const std::string attributes :
         {"units: 6, return_sequences: true, return_state: true", "units: 5, go_backwards: true",
          "units: 7, use_bias: false, return_state: true"}) {
        CAPTURE(attributes);
        const Shape shape{3, 6, 4};
        OpRunner fused("LSTM", "{" + attributes + ", use_cudnn: true}", {{DType::F32, shape}}, {false}, true);
        OpRunner stepwise("LSTM", "{" + attributes + "}", {{DType::F32, shape}}, {true}, true);
        randomize(fused, 31);
        randomize(stepwise, 31);
        std::fill_n(stepwise.input_masks()[0].data<std::uint8_t>(), stepwise.input_masks()[0].numel(), std::uint8_t{1});
        fused.forward(true);
        stepwise.forward(true);
        std::vector<Tensor> dy;
        for (std::size_t j = 0; j < fused.outputs().size(); ++j) {
            const Tensor& out = fused.outputs()[j];
            for (std::int64_t e = 0; e < out.numel(); ++e) {
                REQUIRE(out.data<float>()[e] == doctest::Approx(stepwise.outputs()[j].data<float>()[e]).epsilon(1e-5));
            }
            dy.emplace_back(DType::F32, out.shape());
            fill_uniform(dy.back(), -1, 1, 40 + j);
        }
        fused.backward(dy);
        stepwise.backward(dy);
        check_close(fused.grad_inputs()[0], stepwise.grad_inputs()[0], "input");
        const char* names[] = {"kernel", "recurrent_kernel", "bias"};
        for (std::size_t k = 0; k < fused.grad_weights().size(); ++k)
            check_close(fused.grad_weights()[k], stepwise.grad_weights()[k], names[k]);
    }
}

TEST_CASE("LSTM: the stepwise path's joint step products and blocks of gradient rows agree with oneDNN's path") {
    // 40 sequences are enough to project each step in one product with the recurrent one, reading
    // the input in place in inference and its time-major copy in training. 61 steps make 2440
    // time-major rows: the stepwise backward takes its weight, bias and input gradients in three
    // blocks of rows (814, 814 and 812), shared between two threads, with and without the input's
    // gradient.
    const Shape shape{40, 61, 4};
    for (const auto& [attributes, want_input] : {std::pair<std::string, bool>{"units: 5, return_sequences: true", true},
                                                 {"units: 5, return_sequences: true", false},
                                                 {"units: 7, use_bias: false, go_backwards: true", true}}) {
        CAPTURE(attributes);
        CAPTURE(want_input);
        OpRunner fused("LSTM", "{" + attributes + ", use_cudnn: true}", {{DType::F32, shape}}, {false}, true);
        OpRunner stepwise("LSTM", "{" + attributes + "}", {{DType::F32, shape}}, {false}, true);
        randomize(fused, 71);
        randomize(stepwise, 71);
        fused.forward(false, 1, false, 1);
        stepwise.forward(false, 1, false, 2);
        check_close(fused.outputs()[0], stepwise.outputs()[0], "inference output");
        fused.forward(true, 1, false, 1);
        stepwise.forward(true, 1, false, 2);
        check_close(fused.outputs()[0], stepwise.outputs()[0], "training output");
        Tensor dy(DType::F32, fused.outputs()[0].shape());
        fill_uniform(dy, -1, 1, 72);
        fused.backward({dy}, 1, {want_input}, 1);
        stepwise.backward({dy}, 1, {want_input}, 2);
        if (want_input) check_close(fused.grad_inputs()[0], stepwise.grad_inputs()[0], "input");
        const char* names[] = {"kernel", "recurrent_kernel", "bias"};
        for (std::size_t k = 0; k < fused.grad_weights().size(); ++k)
            check_close(fused.grad_weights()[k], stepwise.grad_weights()[k], names[k]);
    }
}

namespace {

// One LSTM call on `threads` threads against the same call on one: outputs (inference and
// training) and every gradient; a second step on the same shape creates nothing.
void check_batch_split(const nngraph::OpRegistry& registry, const std::string& attributes, std::int64_t batch,
                       int threads, bool masked) {
    const Shape shape{batch, 9, 4};
    OpRunner one("LSTM", attributes, {{DType::F32, shape}}, {masked}, true);
    OpRunner split("LSTM", attributes, {{DType::F32, shape}}, {masked}, true);
    randomize(one, 51);
    randomize(split, 51);
    std::vector<Tensor> dy;
    for (const bool training : {false, true}) {
        one.forward(training, 3, false, 1);
        split.forward(training, 3, false, threads);
        for (std::size_t j = 0; j < one.outputs().size(); ++j)
            check_close(one.outputs()[j], split.outputs()[j], "output " + std::to_string(j));
    }
    for (std::size_t j = 0; j < one.outputs().size(); ++j) {
        dy.emplace_back(DType::F32, one.outputs()[j].shape());
        fill_uniform(dy.back(), -1, 1, 60 + j);
    }
    one.backward(dy, 3, {}, 1);
    split.backward(dy, 3, {}, threads);
    check_close(one.grad_inputs()[0], split.grad_inputs()[0], "input gradient");
    const char* names[] = {"kernel", "recurrent_kernel", "bias"};
    for (std::size_t k = 0; k < one.grad_weights().size(); ++k)
        check_close(one.grad_weights()[k], split.grad_weights()[k], names[k]);
    // A second step on the same shape creates nothing.
    const auto before = registry.counters();
    split.forward(true, 4, false, threads);
    split.backward(dy, 4, {}, threads);
    const auto after = registry.counters();
    CHECK(after.at("onednn.primitives_created") == before.at("onednn.primitives_created"));
    CHECK(after.at("onednn.buffer_allocations") == before.at("onednn.buffer_allocations"));
}

}  // namespace

TEST_CASE("LSTM: a batch split over threads equals one thread, outputs and every gradient, on both paths") {
    const auto& registry = nngraph::testing::built_plugins();
    // (batch, threads): 2 parts of 20; 3 uneven parts (16, 17, 17); too small to split (1 part).
    const std::pair<std::int64_t, int> splits[] = {{40, 2}, {50, 3}, {24, 2}};
    struct Path {
        const char* attributes;
        bool masked;  // padded, holed and empty rows in the first part
    };
    const Path paths[] = {{", use_cudnn: true", false}, {"", false}, {"", true}};
    for (const Path& path : paths) {
        for (const std::string attributes :
             {"units: 6, return_sequences: true, return_state: true",
              "units: 5, go_backwards: true, dropout: 0.3, seed: 4", "units: 7, use_bias: false, return_state: true"}) {
            for (const auto& [batch, threads] : splits) {
                const std::string all = "{" + attributes + path.attributes + "}";
                CAPTURE(all);
                CAPTURE(path.masked);
                CAPTURE(batch);
                CAPTURE(threads);
                check_batch_split(registry, all, batch, threads, path.masked);
            }
        }
    }
}

TEST_CASE("LSTM in a graph: weight gradients through the executor") {
    nngraph::testing::GraphGradCase c;
    c.label = "LSTM(5, return_sequences) -> LSTM(4) -> Dense(1, sigmoid)";
    c.model_yaml = R"(input: {shape: [6, 3]}
layers:
  - {op: LSTM, units: 5, return_sequences: true}
  - {op: LSTM, units: 4, go_backwards: true}
  - {op: Dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy}
)";
    c.batch = 3;
    const auto result = nngraph::testing::check_graph_gradients(c);
    INFO(result.report);
    CHECK(result.checked > 0);
    CHECK(result.ok);
}

TEST_CASE("LSTM in a graph: Embedding's padding mask flows through LSTM into pooling") {
    // Token 0 pads (mask_zero): the LSTM takes the stepwise path and passes the mask on with its
    // sequence; pooling then averages the unmasked steps only.
    nngraph::testing::GraphGradCase c;
    c.label = "Embedding(mask_zero) -> LSTM(return_sequences, go_backwards) -> GlobalAveragePooling1D -> Dense";
    c.model_yaml = R"(input: {shape: [7], dtype: int32}
layers:
  - {op: Embedding, input_dim: 6, output_dim: 3, mask_zero: true}
  - {op: LSTM, units: 4, return_sequences: true, go_backwards: true}
  - {op: GlobalAveragePooling1D}
  - {op: Dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy}
)";
    c.batch = 4;
    c.input_low = 0;
    c.input_high = 6;
    const auto& registry = nngraph::testing::built_plugins();
    const std::int64_t stepwise_before = registry.counters().at("lstm.stepwise_calls");
    const auto result = nngraph::testing::check_graph_gradients(c);
    INFO(result.report);
    CHECK(result.checked > 0);
    CHECK(result.ok);
    CHECK(registry.counters().at("lstm.stepwise_calls") > stepwise_before);  // the mask arrived
}

TEST_CASE(
    "LSTM backward overwrites its gradients, skips an unwanted input gradient, and treats missing output gradients as "
    "zero") {
    for (const bool masked : {false, true}) {
        CAPTURE(masked);
        const Shape shape{3, 5, 4};
        OpRunner runner("LSTM", "{units: 6, return_state: true}", {{DType::F32, shape}}, {masked}, true);
        randomize(runner, 11);
        runner.forward(true);
        std::vector<Tensor> dy;
        for (const Tensor& out : runner.outputs()) {
            dy.emplace_back(DType::F32, out.shape());
            fill_uniform(dy.back(), -1, 1, 12);
        }
        runner.backward(dy);
        const std::vector<Tensor> first = runner.grad_weights();
        const Tensor first_dx = runner.grad_inputs()[0];
        // oneDNN accumulates into weight gradients: the op must not. (A backward consumes oneDNN's
        // workspace, so each backward follows its forward, as in a training step.)
        runner.forward(true);
        runner.backward(dy);
        for (std::size_t k = 0; k < first.size(); ++k) {
            for (std::int64_t e = 0; e < first[k].numel(); ++e) {
                REQUIRE(runner.grad_weights()[k].data<float>()[e] == first[k].data<float>()[e]);
            }
        }
        for (std::int64_t e = 0; e < first_dx.numel(); ++e)
            REQUIRE(runner.grad_inputs()[0].data<float>()[e] == first_dx.data<float>()[e]);
        double norm = 0.0;
        for (float v : first[0].values<float>()) norm += std::abs(v);
        CHECK(norm > 0.0);
        // Without the input's gradient, the weights' are the same.
        runner.forward(true);
        runner.backward(dy, 1, {false});
        for (std::size_t k = 0; k < first.size(); ++k) {
            for (std::int64_t e = 0; e < first[k].numel(); ++e) {
                REQUIRE(runner.grad_weights()[k].data<float>()[e] == first[k].data<float>()[e]);
            }
        }

        // Only the cell state's gradient: still a full backward. No gradient at all: zeros.
        std::vector<Tensor> only_c(3);
        only_c[2] = dy[2];
        runner.forward(true);
        runner.backward(only_c);
        norm = 0.0;
        for (float v : runner.grad_weights()[1].values<float>()) norm += std::abs(v);
        CHECK(norm > 0.0);
        runner.forward(true);
        runner.backward({});
        for (const Tensor& g : runner.grad_weights()) {
            for (float v : g.values<float>()) REQUIRE(v == 0.0f);
        }
        for (float v : runner.grad_inputs()[0].values<float>()) REQUIRE(v == 0.0f);
    }
}

// ---- Dropout ------------------------------------------------------------------------------------

TEST_CASE("LSTM input dropout: one (batch, features) mask for every step, inverted scaling, training only") {
    const std::int64_t N = 16, T = 6, F = 10, U = 4;
    const float rate = 0.3f;
    for (const bool masked : {false, true}) {
        CAPTURE(masked);
        OpRunner runner("LSTM", "{units: 4, dropout: 0.3, return_sequences: true}", {{DType::F32, {N, T, F}}}, {masked},
                        true);
        randomize(runner, 21);
        // Inference and deterministic training: no dropout at all.
        const Config c{"dropout", kSequences | (masked ? kMasked : 0u), N, T, F, U};
        const lstm_reference::Result plain = reference(runner, c);
        runner.forward(false);
        CHECK(max_error(runner.outputs()[0], plain.sequence) < 1e-5);
        runner.forward(true, 5, true);
        CHECK(max_error(runner.outputs()[0], plain.sequence) < 1e-5);

        // Training: which features were dropped shows in the input gradient (zero at every step).
        runner.forward(true, 5);
        const Tensor y = runner.outputs()[0];
        Tensor dy(DType::F32, y.shape());
        fill_uniform(dy, 0.5, 1.0, 3);
        runner.backward({dy}, 5);
        const float* dx = runner.grad_inputs()[0].data<float>();
        const std::uint8_t* m = masked ? runner.input_masks()[0].data<std::uint8_t>() : nullptr;
        Tensor dropped_input = runner.inputs()[0];
        int dropped = 0, total = 0;
        for (std::int64_t n = 0; n < N; ++n) {
            bool any_step = false;
            for (std::int64_t t = 0; t < T; ++t) any_step = any_step || !m || m[n * T + t];
            if (!any_step) continue;  // a fully masked row shows nothing
            for (std::int64_t f = 0; f < F; ++f) {
                int zeros = 0, live = 0;
                for (std::int64_t t = 0; t < T; ++t) {
                    if (m && !m[n * T + t]) continue;
                    ++live;
                    if (dx[(n * T + t) * F + f] == 0.0f) ++zeros;
                }
                CHECK((zeros == 0 || zeros == live));  // the same mask at every step
                const bool gone = zeros == live;
                dropped += gone;
                ++total;
                for (std::int64_t t = 0; t < T; ++t) {
                    float& v = dropped_input.data<float>()[(n * T + t) * F + f];
                    v = gone ? 0.0f : v / (1.0f - rate);
                }
            }
        }
        CHECK(dropped > total / 10);
        CHECK(dropped < total / 2);
        // The output is Keras's LSTM on the input with that mask applied and the rest scaled up.
        Tensor saved_input = runner.inputs()[0];
        runner.inputs()[0] = dropped_input;
        const lstm_reference::Result expected = reference(runner, c);
        runner.inputs()[0] = saved_input;
        for (std::int64_t n = 0; n < N; ++n) {
            bool any_step = false;
            for (std::int64_t t = 0; t < T; ++t) any_step = any_step || !m || m[n * T + t];
            if (!any_step) continue;
            for (std::int64_t i = n * T * U; i < (n + 1) * T * U; ++i) {
                REQUIRE(std::abs(double(y.data<float>()[i]) - expected.sequence[static_cast<std::size_t>(i)]) < 1e-5);
            }
        }
        // Another step's seed draws another mask.
        runner.forward(true, 6);
        double moved = 0.0;
        for (std::int64_t i = 0; i < y.numel(); ++i)
            moved += std::abs(runner.outputs()[0].data<float>()[i] - y.data<float>()[i]);
        CHECK(moved > 1e-3);
    }
}

// ---- Declarations and errors --------------------------------------------------------------------

TEST_CASE("LSTM declares Keras's weights, outputs and masks") {
    OpRunner runner("LSTM", "{units: 3, return_sequences: true, return_state: true}", {{DType::F32, {2, 4, 5}}}, {true},
                    true);
    const auto& shapes = runner.shapes();
    REQUIRE(shapes.weights.size() == 3);
    CHECK(shapes.weights[0].name == "kernel");
    CHECK(shapes.weights[0].shape == Shape{5, 12});
    CHECK(shapes.weights[0].initializer == NNG_INIT_GLOROT_UNIFORM);
    CHECK(shapes.weights[1].name == "recurrent_kernel");
    CHECK(shapes.weights[1].shape == Shape{3, 12});
    CHECK(shapes.weights[1].initializer == NNG_INIT_ORTHOGONAL);
    CHECK(shapes.weights[2].name == "bias");
    CHECK(shapes.weights[2].shape == Shape{12});
    CHECK(shapes.weights[2].initializer == NNG_INIT_LSTM_BIAS);
    CHECK(shapes.weights[2].params[0] == 3.0);
    REQUIRE(shapes.outputs.size() == 3);
    CHECK(shapes.outputs[0].tensor.shape == Shape{2, 4, 3});
    CHECK(shapes.outputs[0].mask_rule == NNG_MASK_FROM_INPUT);
    CHECK(shapes.outputs[1].tensor.shape == Shape{2, 3});
    CHECK(shapes.outputs[1].mask_rule == NNG_MASK_NONE);
    CHECK(shapes.outputs[2].mask_rule == NNG_MASK_NONE);
    // The bias starts at Keras's unit_forget_bias: 1 for the forget gate only.
    runner.initialize_weights(3);
    const float* bias = runner.weights()[2].data<float>();
    for (int j = 0; j < 12; ++j) CHECK(bias[j] == (j >= 3 && j < 6 ? 1.0f : 0.0f));

    OpRunner last("LSTM", "{units: 3, use_bias: false, unit_forget_bias: false}", {{DType::F32, {2, 4, 5}}}, {true},
                  false);
    REQUIRE(last.shapes().outputs.size() == 1);
    CHECK(last.shapes().outputs[0].tensor.shape == Shape{2, 3});
    CHECK(last.shapes().outputs[0].mask_rule == NNG_MASK_NONE);  // the mask ends with the sequence
    CHECK(last.shapes().weights.size() == 2);
    OpRunner ones("LSTM", "{units: 2, bias_initializer: ones}", {{DType::F32, {1, 2, 2}}});
    CHECK(ones.shapes().weights[2].initializer == NNG_INIT_ONES);
}

TEST_CASE("LSTM rejects wrong shapes and unsupported attributes with the reason") {
    CHECK(error_of("{units: 4}", {2, 5}).find("(batch, timesteps, features)") != std::string::npos);
    CHECK(error_of("{units: 4}", {2, 5}).find("(2, 5)") != std::string::npos);
    CHECK(error_of("{units: 4}", {2, 3, 4, 5}).find("rank 3") != std::string::npos);
    CHECK(error_of("{units: 4}", {2, 5, 3}, DType::I32).find("float32") != std::string::npos);
    CHECK(error_of("{units: 4}", {2, 0, 3}).find("at least one step") != std::string::npos);
    CHECK(error_of("{units: 0}", {2, 5, 3}).find("units") != std::string::npos);
    // Sizes whose arrays cannot be addressed: refused before any buffer size is formed from them.
    CHECK(error_of("{units: 4294967296100}", {64, 200, 32}).find("units 4294967296100 with input (64, 200, 32)") !=
          std::string::npos);
    CHECK(error_of("{units: 100}", {64, 4611686018427387904, 32}).find("too large to address") != std::string::npos);
    CHECK(error_of("{units: 3000000}", {64, 200, 32}).find("too large to address") ==
          std::string::npos);  // large (its weights would not fit here), but addressable
    CHECK(error_of("{units: 4, stateful: true}", {2, 5, 3}).find("stateful") != std::string::npos);
    CHECK(error_of("{units: 4, unroll: true}", {2, 5, 3}).find("unroll") != std::string::npos);
    CHECK(error_of("{units: 4, recurrent_dropout: 0.2}", {2, 5, 3}).find("recurrent_dropout") != std::string::npos);
    CHECK(error_of("{units: 4, activation: gelu}", {2, 5, 3}).find("activation") != std::string::npos);
    CHECK(error_of("{units: 4, use_cudnn: maybe}", {2, 5, 3}).find("use_cudnn") != std::string::npos);
    CHECK(error_of("{units: 4, activation: relu, use_cudnn: true}", {2, 5, 3}).find("default cell") !=
          std::string::npos);
    CHECK(error_of("{units: 4, activation: relu, use_cudnn: false}", {2, 5, 3}).empty());
    std::string masked_error;
    try {
        OpRunner runner("LSTM", "{units: 4, use_cudnn: true}", {{DType::F32, {2, 5, 3}}}, {true});
    } catch (const std::exception& e) {
        masked_error = e.what();
    }
    CHECK(masked_error.find("mask") != std::string::npos);
    CHECK(error_of("{units: 4, bias_initializer: random_uniform}", {2, 5, 3}).find("unit_forget_bias") !=
          std::string::npos);
    // Accepted as Keras accepts them.
    CHECK(error_of("{units: 4, stateful: false, unroll: false, recurrent_dropout: 0.0, seed: 3}", {2, 5, 3}).empty());
    CHECK(error_of("{units: 4, unit_forget_bias: false, bias_initializer: random_uniform}", {2, 5, 3}).empty());
}

// ---- Steady state -------------------------------------------------------------------------------

TEST_CASE("LSTM creates its primitives once per shape and allocates no buffers in the steady state") {
    const auto& registry = nngraph::testing::built_plugins();
    // use_cudnn: true without a mask takes oneDNN's path; auto (f32) and a mask the stepwise one.
    for (const auto& [masked, fused] : {std::pair{false, true}, {false, false}, {true, false}}) {
        CAPTURE(masked);
        CAPTURE(fused);
        const std::string attributes =
            std::string("{units: 8, return_sequences: true, return_state: true, dropout: 0.2") +
            (fused ? ", use_cudnn: true}" : "}");
        OpRunner train("LSTM", attributes, {{DType::F32, {4, 9, 5}}}, {masked}, true);
        OpRunner infer("LSTM", attributes, {{DType::F32, {4, 9, 5}}}, {masked}, false);
        randomize(train, 1);
        randomize(infer, 1);
        std::vector<Tensor> dy;
        for (const Tensor& out : train.outputs()) {
            dy.emplace_back(DType::F32, out.shape());
            fill_uniform(dy.back(), -1, 1, 2);
        }
        auto step = [&](std::uint64_t seed) {
            train.forward(true, seed);
            train.backward(dy, seed);
            infer.forward(false);
        };
        step(1);
        const auto before = registry.counters();
        step(2);
        step(3);
        const auto after = registry.counters();
        CHECK(after.at("onednn.primitives_created") == before.at("onednn.primitives_created"));
        CHECK(after.at("onednn.buffer_allocations") == before.at("onednn.buffer_allocations"));
        CHECK(after.at("lstm.forward_calls") == before.at("lstm.forward_calls") + 4);
        CHECK(after.at("lstm.backward_calls") == before.at("lstm.backward_calls") + 2);
        CHECK(after.at("lstm.stepwise_calls") - before.at("lstm.stepwise_calls") == (fused ? 0 : 6));
    }
}
