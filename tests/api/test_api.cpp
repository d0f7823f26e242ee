// The public C++ API, entry point by entry point, through nngraph/nngraph.hpp alone.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "nngraph/nngraph.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using doctest::Approx;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;

namespace {

const std::filesystem::path kGraphs = std::filesystem::path(NNGRAPH_SOURCE_DIR) / "graphs";

// Two Dense layers with every weight inline: h = tanh(x W1 + b1), y = h W2 + b2, mse.
const char* kTwoLayers = R"(name: two_layers
inputs: [{name: x, shape: [2]}]
nodes:
  - {name: hidden, op: Dense, inputs: [x], units: 2, activation: tanh,
     weights: {kernel: [[0.5, -0.3], [0.8, 0.2]], bias: [0.1, -0.2]}}
  - {name: out, op: Dense, inputs: [hidden], units: 1,
     weights: {kernel: [[1.5], [-0.7]], bias: [0.05]}}
outputs: [out]
training: {loss: mse, optimizer: {name: sgd, learning_rate: 0.1}, batch_size: 2}
)";

// A text classifier small enough to train in a test: ids -> embedding -> mean -> sigmoid.
const char* kBagOfWords = R"(name: bag_of_words
inputs: [{name: tokens, shape: [6], dtype: int32}]
nodes:
  - {name: embedding, op: Embedding, inputs: [tokens], input_dim: 8, output_dim: 4}
  - {name: pool, op: GlobalAveragePooling1D, inputs: [embedding]}
  - {name: dense, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [dense]
training: {loss: binary_crossentropy, metrics: [accuracy]}
)";

Model two_layers(const TempDir& dir) {
    write_bytes(dir / "two_layers.yaml", kTwoLayers);
    return Model::load(dir / "two_layers.yaml", {{}, 1, {}});
}

Samples xor_samples(std::int64_t n) {
    Tensor x(DType::F32, {n, 2}), y(DType::F32, {n, 1});
    for (std::int64_t i = 0; i < n; ++i) {
        const float a = float((i * 37) % 17) / 8.0f - 1.0f, b = float((i * 11) % 13) / 6.0f - 1.0f;
        x.data<float>()[2 * i] = a;
        x.data<float>()[2 * i + 1] = b;
        y.data<float>()[i] = (a > 0) != (b > 0) ? 1.0f : 0.0f;
    }
    return {{x}, {y}};
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no InputError)";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a loaded model describes its inputs, outputs, nodes, weights, parameters and summary") {
    const Model model = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, {}});
    CHECK(model.name() == "mlp_xor");
    CHECK(model.seed() == 3);  // the file's training.seed
    REQUIRE(model.inputs().size() == 1);
    CHECK(model.inputs()[0].name == "point");
    CHECK(model.inputs()[0].shape == Shape{-1, 2});
    REQUIRE(model.outputs().size() == 1);
    CHECK(model.outputs()[0].shape == Shape{-1, 1});
    const std::vector<ModelNode> nodes = model.nodes();
    REQUIRE(nodes.size() == 4);
    CHECK(nodes[0].op == "InputLayer");
    CHECK(nodes[1].op == "Dense");
    CHECK(nodes[1].inputs == std::vector<std::string>{"point"});
    CHECK(nodes[1].outputs.at(0).shape == Shape{-1, 16});
    CHECK(nodes[1].weights.size() == 2);
    const ParameterCount p = model.parameters();
    CHECK(p.total == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1);
    CHECK(p.trainable == p.total);
    CHECK(p.non_trainable == 0);
    CHECK(model.weights().size() == 6);
    CHECK(contains(model.summary(), "Total params: 337"));
    CHECK(contains(model.dot(), "digraph"));
}

TEST_CASE("bad input raises InputError saying what, where and what was expected") {
    TempDir dir;
    CHECK(contains(error_of([] { Model::load("/nonexistent/model.yaml"); }),
                   "cannot open model file '/nonexistent/model.yaml'"));
    write_bytes(
        dir / "unknown.yaml",
        "name: u\ninputs: [{name: x, shape: [2]}]\nnodes:\n  - {name: n, op: NoSuchOp, inputs: [x]}\noutputs: [n]\n");
    CHECK(contains(error_of([&] { Model::load(dir / "unknown.yaml"); }), "unknown op 'NoSuchOp'"));
    CHECK(contains(error_of([&] { Model::load(kGraphs / "mlp_xor.yaml", {{dir / "missing"}, 0, {}}); }), "missing"));

    Model model = two_layers(dir);
    CHECK(contains(error_of([&] { model.weight("nope.kernel"); }), "model 'two_layers' has no weight 'nope.kernel'"));
    CHECK(contains(error_of([&] { model.set_weight("out.bias", Tensor(DType::F32, {2})); }),
                   "weight 'out.bias' is F32 (1,), not F32 (2,)"));
    CHECK(contains(error_of([&] { model.predict({}); }), "model 'two_layers' has 1 inputs; predict got 0 tensors"));
    CHECK(contains(error_of([&] {
                       model.predict({Tensor(DType::F32, {2, 2})}, 0);
                   }),
                   "the batch size must be from 1 to 1048576, not 0"));
    CHECK(contains(error_of([&] { model.load_weights(dir / "absent.safetensors"); }), "absent.safetensors"));
    Samples wrong = xor_samples(4);
    wrong.targets.clear();
    TrainOptions options;
    options.samples = wrong;
    CHECK(contains(error_of([&] { model.train(options); }),
                   "the training samples has 0 target tensors for model 'two_layers', which has 1 outputs"));
    CHECK(contains(error_of([&] { model.predict_text({"a"}, Vocabulary({"a"}, 4, 3)); }),
                   "the vocabulary encodes 3 ids, but input 'x' has shape (None, 2)"));

    write_bytes(dir / "no_loss.yaml",
                "name: no_loss\ninputs: [{name: x, shape: [2]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: "
                "1}\noutputs: [d]\n");
    Model no_loss = Model::load(dir / "no_loss.yaml");
    const Samples s = xor_samples(2);
    CHECK(contains(error_of([&] { no_loss.gradients(s.inputs, s.targets); }), "training.loss, and it gives none"));
}

TEST_CASE("weights are read and written by name, and saved weights load into a fresh model") {
    TempDir dir;
    Model model = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, 7});
    Model other = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, 8});
    const std::string name = model.weights().front().name;
    CHECK(model.weight(name).values<float>()[0] != other.weight(name).values<float>()[0]);  // seeded apart

    Tensor bias = model.weight("dense_2.bias");
    bias.data<float>()[0] = 0.25f;
    model.set_weight("dense_2.bias", bias);
    CHECK(model.weight("dense_2.bias").data<float>()[0] == 0.25f);
    model.save_weights(dir / "w.safetensors");
    other.load_weights(dir / "w.safetensors");
    for (const ModelWeight& w : model.weights()) {
        CAPTURE(w.name);
        const Tensor a = model.weight(w.name), b = other.weight(w.name);
        CHECK(std::equal(a.values<float>().begin(), a.values<float>().end(), b.values<float>().begin()));
    }
}

TEST_CASE("predict runs every row in batches, and inputs and targets read from files by name") {
    TempDir dir;
    Model model = two_layers(dir);
    const Samples s = xor_samples(5);
    const std::vector<Tensor> all = model.predict(s.inputs, 32);
    const std::vector<Tensor> in_twos = model.predict(s.inputs, 2);
    REQUIRE(all.size() == 1);
    CHECK(all[0].shape() == Shape{5, 1});
    for (std::int64_t i = 0; i < 5; ++i) CHECK(all[0].data<float>()[i] == Approx(in_twos[0].data<float>()[i]));
    // y = tanh(x W1 + b1) W2 + b2 for the first row, by hand.
    const float x0 = s.inputs[0].data<float>()[0], x1 = s.inputs[0].data<float>()[1];
    const double h0 = std::tanh(0.5 * x0 + 0.8 * x1 + 0.1), h1 = std::tanh(-0.3 * x0 + 0.2 * x1 - 0.2);
    CHECK(all[0].data<float>()[0] == Approx(1.5 * h0 - 0.7 * h1 + 0.05).epsilon(1e-5));

    TensorFile file;
    file.tensors["x"] = s.inputs[0];
    file.tensors["targets"] = s.targets[0];
    write_safetensors(dir / "data.safetensors", file);
    CHECK(model.read_inputs(dir / "data.safetensors").at(0).shape() == Shape{5, 2});
    CHECK(model.read_targets(dir / "data.safetensors").at(0).shape() == Shape{5, 1});
    write_safetensors(dir / "empty.safetensors", TensorFile{});
    CHECK(
        contains(error_of([&] { model.read_inputs(dir / "empty.safetensors"); }), "no tensor 'x' for graph input 'x'"));
}

TEST_CASE("gradients give the loss and every weight's gradient, matching finite differences") {
    TempDir dir;
    Model model = two_layers(dir);
    const Samples s = xor_samples(4);
    const Gradients g = model.gradients(s.inputs, s.targets);
    CHECK(g.loss_function == "mse");
    CHECK(g.weights.size() == 4);
    EvaluateOptions eval;
    eval.samples = s;
    CHECK(model.evaluate(eval).metrics.loss == Approx(g.loss).epsilon(1e-6));
    const double h = 1e-3;
    for (const auto& [name, grad] : g.weights) {
        Tensor w = model.weight(name);
        const float original = w.data<float>()[0];
        w.data<float>()[0] = original + float(h);
        model.set_weight(name, w);
        const double up = model.evaluate(eval).metrics.loss;
        w.data<float>()[0] = original - float(h);
        model.set_weight(name, w);
        const double down = model.evaluate(eval).metrics.loss;
        w.data<float>()[0] = original;
        model.set_weight(name, w);
        CAPTURE(name);
        CHECK(grad.data<float>()[0] == Approx((up - down) / (2 * h)).epsilon(1e-2));
    }
}

TEST_CASE("train calls back per batch and per epoch, lowers the loss, and either callback can stop it") {
    TempDir dir;
    Model model = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, {}});
    TrainOptions options;
    options.samples = xor_samples(64);
    options.validation_samples = xor_samples(16);
    options.epochs = 20;
    options.batch_size = 16;
    int batches = 0;
    options.on_batch = [&](const BatchEnd& b) {
        CHECK(b.steps == 4);
        CHECK(b.step == batches % 4 + 1);
        ++batches;
        return Training::Continue;
    };
    TrainResult full = model.train(options);
    CHECK_FALSE(full.stopped);
    CHECK(batches == 20 * 4);
    REQUIRE(full.history.size() == 20);
    CHECK(full.history.back().train.loss < full.history.front().train.loss);
    CHECK(full.history.back().validation.has_value());
    CHECK(full.monitor == "val_accuracy");
    CHECK(full.best.has_value());

    options.on_batch = {};
    options.on_epoch = [](const EpochEnd& e) { return e.epoch == 3 ? Training::Stop : Training::Continue; };
    const TrainResult by_epoch = model.train(options);
    CHECK(by_epoch.stopped);
    CHECK(by_epoch.history.size() == 3);

    batches = 0;
    options.on_epoch = {};
    options.on_batch = [&](const BatchEnd& b) {
        ++batches;
        return b.epoch == 2 && b.step == 2 ? Training::Stop : Training::Continue;
    };
    std::ostringstream log;
    options.log = &log;
    const TrainResult by_batch = model.train(options);
    CHECK(by_batch.stopped);
    CHECK(batches == 6);
    REQUIRE(by_batch.history.size() == 2);
    CHECK(by_batch.history[1].validation.has_value());  // the stopped epoch is still validated
    CHECK(contains(log.str(), "Epoch 2/20\n2/4 - "));
}

TEST_CASE("train keeps the best checkpoint and resumes from it; evaluate reads the model file's data") {
    TempDir dir;
    Model model = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, {}});
    TrainOptions options;
    options.epochs = 2;
    options.save_best = dir / "best.safetensors";
    std::string started;
    options.on_start = [&](const TrainStart& start) { started = start.data; };
    const TrainResult first = model.train(options);
    CHECK_FALSE(started.empty());
    CHECK(first.best_epoch >= 1);
    CHECK(std::filesystem::exists(dir / "best.safetensors"));

    Model resumed = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, {}});
    options.save_best.reset();
    options.resume = dir / "best.safetensors";
    options.epochs = 3;
    int first_epoch = -1;
    options.on_start = [&](const TrainStart& start) { first_epoch = start.first_epoch; };
    const TrainResult rest = resumed.train(options);
    CHECK(first_epoch == first.best_epoch);
    REQUIRE_FALSE(rest.history.empty());
    CHECK(rest.history.front().epoch == first.best_epoch + 1);

    std::ostringstream line;
    EvaluateOptions eval;
    eval.log = &line;
    const Evaluation e = resumed.evaluate(eval);
    CHECK(e.samples == 500);  // the synthetic task's validation split
    CHECK(e.metrics.accuracy.has_value());
    CHECK(contains(line.str(), " - accuracy: "));
}

TEST_CASE("predict_text encodes texts with a vocabulary and runs a one-input text model") {
    TempDir dir;
    write_bytes(dir / "bag.yaml", kBagOfWords);
    Model model = Model::load(dir / "bag.yaml", {{}, 1, 5});
    const Vocabulary vocabulary({"good", "great", "bad", "awful"}, 8, 6);
    Tensor tokens(DType::I32, {4, 6}), labels(DType::F32, {4, 1});
    const std::vector<std::string> texts = {"good great", "bad awful", "great good good", "awful bad bad"};
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const std::vector<std::int32_t> ids = vocabulary.encode(texts[i]);
        std::copy(ids.begin(), ids.end(), tokens.data<std::int32_t>() + 6 * std::int64_t(i));
        labels.data<float>()[i] = i % 2 == 0 ? 1.0f : 0.0f;
    }
    TrainOptions options;
    options.samples = Samples{{tokens}, {labels}};
    options.epochs = 200;
    options.batch_size = 4;
    model.train(options);
    const Tensor p = model.predict_text({"a great film", "an awful film"}, vocabulary);
    REQUIRE(p.shape() == Shape{2, 1});
    CHECK(p.data<float>()[0] > 0.5f);
    CHECK(p.data<float>()[1] < 0.5f);
    CHECK(vocabulary_path("dir/w.safetensors") == std::filesystem::path("dir/w.vocab.json"));
}

TEST_CASE("a benchmark steps with synthetic data and reports memory, timing and counters") {
    const Model model = Model::load(kGraphs / "mlp_xor.yaml", {{}, 1, {}});
    Benchmark train = model.benchmark({8, true, 1});
    CHECK(train.batch_size() == 8);
    CHECK(train.training());
    CHECK(train.threads() == 1);
    train.set_profiling(true);
    train.step();
    train.step();
    const std::vector<NodeTiming> profile = train.profile();
    REQUIRE(profile.size() == 3);
    CHECK(profile[0].op == "Dense");
    CHECK(profile[0].forward_seconds > 0.0);
    CHECK(profile[0].backward_seconds > 0.0);
    const MemoryFigures memory = train.memory();
    CHECK(memory.arena_bytes > 0);
    CHECK(memory.weight_bytes == 337 * sizeof(float));
    CHECK(memory.optimizer_bytes > 0);
    CHECK_FALSE(train.memory_report().empty());
    CHECK(train.counter("no.such.counter") == 0);
    // The step's work is what its nodes counted, forward and backward.
    double counted = 0.0;
    for (const NodeTiming& t : profile) counted += t.forward_flops + t.backward_flops;
    CHECK(profile[0].forward_flops > 0.0);
    CHECK(profile[0].backward_flops > profile[0].forward_flops);
    CHECK(train.work().flops == doctest::Approx(counted));
    CHECK(train.work().bytes > 0.0);

    Benchmark infer = model.benchmark({0, false, 1});
    CHECK(infer.batch_size() == 32);  // the file's training.batch_size
    infer.step();
    CHECK(infer.memory().optimizer_bytes == 0);
    // A ceiling sample sets its products up once, then times one of each on every call.
    for (int call = 0; call < 2; ++call) {
        const MatmulCeilings sample = infer.sample_matmul_ceilings();
        CHECK(sample.f32_gflops > 0.0);
        CHECK(sample.bf16_gflops >= 0.0);
    }
}

TEST_CASE("list_plugins finds the engine's operators") {
    const PluginCatalog catalog = list_plugins();
    CHECK(catalog.plugins > 0);
    CHECK_FALSE(catalog.searched.empty());
    const auto dense =
        std::find_if(catalog.ops.begin(), catalog.ops.end(), [](const PluginOp& op) { return op.op == "Dense"; });
    REQUIRE(dense != catalog.ops.end());
    CHECK(std::filesystem::exists(dense->file));
}
