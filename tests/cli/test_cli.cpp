// The command line as users meet it: exit statuses, help, grad against a gradient worked by hand,
// predict, and a short train / evaluate / resume round.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "gradcheck.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using namespace nngraph::testing;
using doctest::Approx;

TEST_CASE("bad usage exits 2, help exits 0, and nothing crashes") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {}, {"bogus"}, {"summary"}, {"summary", "--nope", "x.yaml"}, {"train", "m.yaml", "--epochs", "0"}}) {
        const CliResult r = run_nngraph(args);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 2);
    }
    for (const char* command : {"summary", "dot", "train", "evaluate", "predict", "grad", "plugins"}) {
        const CliResult r = run_nngraph({command, "--help"});
        CAPTURE(command);
        CHECK(r.status == 0);
        CHECK(r.out.find("--plugins") != std::string::npos);
    }
    const CliResult missing = run_nngraph({"summary", "/nonexistent/model.yaml"});
    CHECK(missing.status == 2);
    CHECK(missing.err.find("cannot open model file '/nonexistent/model.yaml'") != std::string::npos);
}

namespace {

// Two Dense layers with every weight inline: h = tanh(x W1 + b1), y = h W2 + b2, mse.
const char* kTwoLayers = R"(name: two_layers
inputs: [{name: x, shape: [2]}]
nodes:
  - {name: hidden, op: Dense, inputs: [x], units: 2, activation: tanh,
     weights: {kernel: [[0.5, -0.3], [0.8, 0.2]], bias: [0.1, -0.2]}}
  - {name: out, op: Dense, inputs: [hidden], units: 1,
     weights: {kernel: [[1.5], [-0.7]], bias: [0.05]}}
outputs: [out]
training: {loss: mse}
)";

}  // namespace

TEST_CASE("predict --text-file classifies one text a line, as CSV or JSON lines with the line number") {
    TempDir dir;
    // ids: 0 padding, 1 start, 2 unknown, then good 3, bad 4, film 5. Each word's embedding is its
    // score; the mean over the 4 positions goes through a sigmoid.
    write_bytes(dir / "model.vocab.json",
                R"({"format": "nngraph-imdb-vocabulary", "tokenizer_version": 1, "num_words": 6, "maxlen": 4, )"
                R"("words": ["good", "bad", "film"]})");
    write_bytes(dir / "model.yaml", R"(name: words
input: {shape: [4], dtype: int32}
layers:
  - {op: Embedding, input_dim: 6, output_dim: 1, weights: {embeddings: [[0], [0], [0], [2], [-2], [0]]}}
  - {op: GlobalAveragePooling1D}
  - {op: Dense, units: 1, activation: sigmoid, weights: {kernel: [[1]], bias: [0]}}
)");
    TensorFile weights;
    weights.tensors["dense.bias"] = Tensor::from<float>({1}, std::vector<float>{0.0f});
    write_safetensors(dir / "model.safetensors", weights);
    write_bytes(dir / "texts.txt", "Good film!\r\nbad, bad\n\n");
    auto sigmoid = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
    char expected[3][32];
    // "Good film!" is [pad, start, good, film]: mean 0.5; "bad, bad" is [pad, start, bad, bad]: mean
    // -1; the empty line is [pad, pad, pad, start]: 0.
    std::snprintf(expected[0], sizeof expected[0], "%.6f", sigmoid(0.5));
    std::snprintf(expected[1], sizeof expected[1], "%.6f", sigmoid(-1.0));
    std::snprintf(expected[2], sizeof expected[2], "%.6f", sigmoid(0.0));
    const std::string model = (dir / "model.yaml").string(), weights_file = (dir / "model.safetensors").string();

    const CliResult csv =
        run_nngraph({"predict", model, "--weights", weights_file, "--text-file", (dir / "texts.txt").string()});
    INFO(csv.err);
    REQUIRE(csv.status == 0);
    CHECK(csv.out == std::string("line,probability,label\n1,") + expected[0] + ",positive\n2," + expected[1] +
                         ",negative\n3," + expected[2] + ",negative\n");

    const CliResult jsonl = run_nngraph({"predict", model, "--weights", weights_file, "--text-file",
                                         (dir / "texts.txt").string(), "--format", "jsonl"});
    REQUIRE(jsonl.status == 0);
    CHECK(jsonl.out.find(std::string("{\"label\":\"negative\",\"line\":2,\"probability\":") + expected[1] + "}\n") !=
          std::string::npos);
    CHECK(std::count(jsonl.out.begin(), jsonl.out.end(), '\n') == 3);

    // "-" reads standard input.
    const std::string command = "printf 'bad film\\n' | '" + nngraph_binary().string() + "' predict '" + model +
                                "' --weights '" + weights_file + "' --text-file - --format csv > '" +
                                (dir / "stdin.csv").string() + "'";
    REQUIRE(std::system(command.c_str()) == 0);
    char from_stdin[32];
    std::snprintf(from_stdin, sizeof from_stdin, "%.6f", sigmoid(-0.5));
    CHECK(read_bytes(dir / "stdin.csv") == std::string("line,probability,label\n1,") + from_stdin + ",negative\n");

    const CliResult both = run_nngraph(
        {"predict", model, "--weights", weights_file, "--text-file", "-", "--text", "good", "--format", "csv"});
    CHECK(both.status == 2);
    CHECK(both.err.find("predict needs one of --inputs") != std::string::npos);
}

TEST_CASE("nngraph grad on a two-layer Dense graph matches the gradient worked by hand") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kTwoLayers);
    const double x[3][2] = {{1.0, 2.0}, {-0.5, 0.25}, {0.0, -1.0}};
    const double t[3] = {0.3, -0.1, 0.8};
    TensorFile inputs, targets;
    inputs.tensors["x"] = Tensor(DType::F32, {3, 2});
    targets.tensors["targets"] = Tensor(DType::F32, {3, 1});
    for (int i = 0; i < 3; ++i) {
        inputs.tensors["x"].data<float>()[2 * i] = static_cast<float>(x[i][0]);
        inputs.tensors["x"].data<float>()[2 * i + 1] = static_cast<float>(x[i][1]);
        targets.tensors["targets"].data<float>()[i] = static_cast<float>(t[i]);
    }
    write_safetensors(dir / "x.safetensors", inputs);
    write_safetensors(dir / "t.safetensors", targets);
    const CliResult r =
        run_nngraph({"grad", (dir / "model.yaml").string(), "--inputs", (dir / "x.safetensors").string(), "--targets",
                     (dir / "t.safetensors").string(), "--out", (dir / "g.safetensors").string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    const TensorFile g = read_safetensors(dir / "g.safetensors");

    // By hand, in double: forward, then the chain rule backwards.
    const double w1[2][2] = {{0.5, -0.3}, {0.8, 0.2}}, b1[2] = {0.1, -0.2}, w2[2] = {1.5, -0.7}, b2 = 0.05;
    double loss = 0, dw1[2][2] = {}, db1[2] = {}, dw2[2] = {}, db2 = 0;
    for (int i = 0; i < 3; ++i) {
        double h[2];
        for (int j = 0; j < 2; ++j) h[j] = std::tanh(x[i][0] * w1[0][j] + x[i][1] * w1[1][j] + b1[j]);
        const double y = h[0] * w2[0] + h[1] * w2[1] + b2;
        loss += (y - t[i]) * (y - t[i]) / 3;
        const double dy = 2 * (y - t[i]) / 3;
        db2 += dy;
        for (int j = 0; j < 2; ++j) {
            dw2[j] += h[j] * dy;
            const double dz = dy * w2[j] * (1 - h[j] * h[j]);
            db1[j] += dz;
            for (int k = 0; k < 2; ++k) dw1[k][j] += x[i][k] * dz;
        }
    }
    CHECK(g.tensors.at("loss").data<float>()[0] == Approx(loss).epsilon(1e-6));
    CHECK(g.tensors.at("loss").shape().empty());
    for (int k = 0; k < 2; ++k) {
        for (int j = 0; j < 2; ++j)
            CHECK(g.tensors.at("hidden.kernel").data<float>()[2 * k + j] == Approx(dw1[k][j]).epsilon(1e-5));
        CHECK(g.tensors.at("hidden.bias").data<float>()[k] == Approx(db1[k]).epsilon(1e-5));
        CHECK(g.tensors.at("out.kernel").data<float>()[k] == Approx(dw2[k]).epsilon(1e-5));
    }
    CHECK(g.tensors.at("out.bias").data<float>()[0] == Approx(db2).epsilon(1e-5));
    CHECK(g.tensors.size() == 5);
}

TEST_CASE("predict writes every output by name; a weight with no value is named") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kTwoLayers);
    TensorFile inputs;
    inputs.tensors["x"] = Tensor::from<float>({1, 2}, std::vector<float>{1.0f, 2.0f});
    write_safetensors(dir / "x.safetensors", inputs);
    const CliResult r = run_nngraph({"predict", (dir / "model.yaml").string(), "--inputs",
                                     (dir / "x.safetensors").string(), "--out", (dir / "y.safetensors").string()});
    REQUIRE(r.status == 0);
    const double h0 = std::tanh(1.0 * 0.5 + 2.0 * 0.8 + 0.1), h1 = std::tanh(1.0 * -0.3 + 2.0 * 0.2 - 0.2);
    CHECK(read_safetensors(dir / "y.safetensors").tensors.at("out").data<float>()[0] ==
          Approx(h0 * 1.5 - h1 * 0.7 + 0.05).epsilon(1e-6));

    write_bytes(dir / "bare.yaml", "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 1}\n");
    const CliResult bare = run_nngraph({"predict", (dir / "bare.yaml").string(), "--inputs",
                                        (dir / "x.safetensors").string(), "--out", (dir / "z.safetensors").string()});
    CHECK(bare.status == 2);
    CHECK(bare.err.find("weight 'dense.kernel' has no value: give --weights") != std::string::npos);

    TensorFile partial;
    partial.tensors["dense.kernel"] = Tensor(DType::F32, {2, 1});
    write_safetensors(dir / "w.safetensors", partial);
    const CliResult missing =
        run_nngraph({"predict", (dir / "bare.yaml").string(), "--weights", (dir / "w.safetensors").string(), "--inputs",
                     (dir / "x.safetensors").string(), "--out", (dir / "z.safetensors").string()});
    CHECK(missing.status == 2);
    CHECK(missing.err.find("weight 'dense.bias' is missing (expected F32 (1,))") != std::string::npos);
}

TEST_CASE("train prints Keras's epoch lines, logs, keeps the best checkpoint, evaluates and resumes") {
    TempDir dir;
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    const std::string checkpoint = (dir / "best.safetensors").string(), log = (dir / "history.csv").string();
    const CliResult r = run_nngraph({"train", model, "--epochs", "3", "--save", checkpoint, "--log", log});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("Epoch 1/3\n63/63 - ") != std::string::npos);
    CHECK(r.out.find("Epoch 3/3\n") != std::string::npos);
    CHECK(r.out.find(" - accuracy: ") != std::string::npos);
    CHECK(r.out.find(" - val_loss: ") != std::string::npos);
    const std::string history = read_bytes(log);
    // Keras's CSVLogger columns: epoch, then every log sorted by name, the learning rate among them.
    CHECK(history.find("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n0,") == 0);
    CHECK(history.find("\n2,") != std::string::npos);
    CHECK(std::count(history.begin(), history.end(), '\n') == 4);
    const TensorFile saved = read_safetensors(checkpoint);
    CHECK(saved.tensors.count("dense.kernel") == 1);
    CHECK(saved.tensors.count("optimizer.m.dense.kernel") == 1);
    CHECK(saved.metadata.at("monitor") == "val_accuracy");

    const CliResult evaluated = run_nngraph({"evaluate", model, "--weights", checkpoint});
    CHECK(evaluated.status == 0);
    CHECK(evaluated.out.find(" - accuracy: ") != std::string::npos);

    const CliResult resumed = run_nngraph({"train", model, "--epochs", "5", "--resume", checkpoint, "--log", log});
    INFO(resumed.err);
    CHECK(resumed.status == 0);
    CHECK(resumed.out.find("Epoch 1/5") == std::string::npos);
    CHECK(resumed.out.find("Epoch 5/5") != std::string::npos);
    // The resumed run appends its rows under the same header.
    const std::string appended = read_bytes(log);
    CHECK(std::count(appended.begin(), appended.end(), '\n') == 6);
    CHECK(appended.find("\n4,") != std::string::npos);

    const std::string weights = (dir / "weights.safetensors").string();
    const CliResult only = run_nngraph({"train", model, "--epochs", "1", "--save", weights, "--weights-only"});
    INFO(only.err);
    REQUIRE(only.status == 0);
    const TensorFile weights_file = read_safetensors(weights);
    CHECK(weights_file.tensors.count("dense.kernel") == 1);
    for (const auto& [name, tensor] : weights_file.tensors) CHECK(name.rfind("optimizer.", 0) != 0);
    CHECK(run_nngraph({"train", model, "--weights-only"}).status == 2);
}

TEST_CASE("the model file's callbacks: EarlyStopping ends training, ModelCheckpoint decides what --save keeps") {
    TempDir dir;
    std::string xor_model = read_bytes(source_dir() / "graphs/mlp_xor.yaml");
    xor_model = xor_model.substr(0, xor_model.find("data:"));
    // min_delta 10: no epoch improves on the first, so EarlyStopping (patience 1) stops after the
    // second; ModelCheckpoint without save_best_only saves that second epoch by loss.
    write_bytes(dir / "model.yaml",
                xor_model +
                    "  callbacks:\n"
                    "    - {class_name: EarlyStopping, config: {monitor: val_loss, min_delta: 10, patience: 1, "
                    "verbose: 1}}\n"
                    "    - {class_name: ModelCheckpoint, config: {filepath: unused.safetensors, monitor: loss, "
                    "mode: min, save_best_only: false}}\n"
                    "data: {format: synthetic, task: xor, samples: 200, validation_samples: 50, noise: 0.0}\n");
    const std::string checkpoint = (dir / "kept.safetensors").string();
    const CliResult r = run_nngraph({"train", (dir / "model.yaml").string(), "--save", checkpoint});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("Epoch 2/30") != std::string::npos);
    CHECK(r.out.find("Epoch 3/30") == std::string::npos);
    CHECK(r.out.find("Epoch 2: early stopping") != std::string::npos);
    const TensorFile saved = read_safetensors(checkpoint);
    CHECK(saved.metadata.at("monitor") == "loss");
    CHECK(saved.metadata.at("epochs_done") == "2");
    CHECK_FALSE(std::filesystem::exists(dir / "unused.safetensors"));
}

TEST_CASE("train reads inputs and targets from a safetensors file; dot draws the graph") {
    TempDir dir;
    write_bytes(dir / "model.yaml", R"(name: linear
inputs: [{name: x, shape: [3]}]
nodes:
  - {name: y, op: Dense, inputs: [x], units: 1}
outputs: [y]
training: {loss: mse, optimizer: {name: sgd, learning_rate: 0.1}, batch_size: 16, epochs: 40}
)");
    // y = 2 x0 - x1 + 0.5 x2 + 1, learned from 64 samples, checked on 32 more.
    auto make = [](std::int64_t n, std::uint64_t seed) {
        Tensor x(DType::F32, {n, 3}), y(DType::F32, {n, 1});
        fill_uniform(x, -1.0, 1.0, seed);
        for (std::int64_t i = 0; i < n; ++i) {
            const float* r = x.data<float>() + 3 * i;
            y.data<float>()[i] = 2 * r[0] - r[1] + 0.5f * r[2] + 1;
        }
        return std::pair{x, y};
    };
    auto [x, y] = make(64, 1);
    auto [vx, vy] = make(32, 2);
    TensorFile data;
    data.tensors["x"] = x;
    data.tensors["targets"] = y;
    data.tensors["validation.x"] = vx;
    data.tensors["validation.targets"] = vy;
    write_safetensors(dir / "data.safetensors", data);
    const CliResult r = run_nngraph({"train", (dir / "model.yaml").string(), "--data",
                                     (dir / "data.safetensors").string(), "--save", (dir / "w.safetensors").string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("data.safetensors: 64 training samples, 32 validation samples") != std::string::npos);
    const TensorFile w = read_safetensors(dir / "w.safetensors");
    const float* kernel = w.tensors.at("y.kernel").data<float>();
    CHECK(kernel[0] == Approx(2.0).epsilon(0.01));
    CHECK(kernel[1] == Approx(-1.0).epsilon(0.01));
    CHECK(kernel[2] == Approx(0.5).epsilon(0.01));
    CHECK(w.tensors.at("y.bias").data<float>()[0] == Approx(1.0).epsilon(0.01));

    const CliResult dot = run_nngraph({"dot", (dir / "model.yaml").string()});
    CHECK(dot.status == 0);
    CHECK(dot.out.find("digraph \"linear\" {") == 0);
    CHECK(dot.out.find("n0 -> n1;") != std::string::npos);
    // The node with its attributes and shapes, the graph's input and output, one font.
    CHECK(dot.out.find("label=\"y (Dense)\\nunits=1\\nin: (None, 3)\\nout: (None, 1)\"") != std::string::npos);
    CHECK(dot.out.find("label=\"x (InputLayer)\\n(None, 3)\", shape=ellipse") != std::string::npos);
    CHECK(dot.out.find("out0 [label=\"output: y\\n(None, 1)\", shape=ellipse];\n  n1 -> out0;") != std::string::npos);
    CHECK(dot.out.find("rankdir=TB;") != std::string::npos);
    CHECK(dot.out.find("edge [fontname=\"Helvetica\"]") != std::string::npos);
    const CliResult bare = run_nngraph({"dot", (dir / "model.yaml").string(), "--rankdir", "LR", "--no-attributes"});
    CHECK(bare.status == 0);
    CHECK(bare.out.find("rankdir=LR;") != std::string::npos);
    CHECK(bare.out.find("units=1") == std::string::npos);
    CHECK(run_nngraph({"dot", (dir / "model.yaml").string(), "--rankdir", "UP"}).status == 2);
}

TEST_CASE("dot labels an input's edge with Keras's name for it (query, value, key), else with its position") {
    TempDir dir;
    write_bytes(dir / "attend.yaml", R"(name: attend
inputs: [{name: q, shape: [5, 4]}, {name: v, shape: [6, 4]}, {name: k, shape: [6, 4]}]
nodes:
  - {name: luong, op: Attention, inputs: [q, v, k]}
  - {name: heads, op: MultiHeadAttention, inputs: [q, v], num_heads: 2, key_dim: 2}
  - {name: both, op: Concatenate, inputs: [luong, heads]}
outputs: [both]
)");
    const CliResult dot = run_nngraph({"dot", (dir / "attend.yaml").string()});
    REQUIRE(dot.status == 0);
    CHECK(dot.out.find("n0 -> n3 [label=\"query\"];") != std::string::npos);
    CHECK(dot.out.find("n1 -> n3 [label=\"value\"];") != std::string::npos);
    CHECK(dot.out.find("n2 -> n3 [label=\"key\"];") != std::string::npos);
    CHECK(dot.out.find("n0 -> n4 [label=\"query\"];") != std::string::npos);
    CHECK(dot.out.find("n1 -> n4 [label=\"value\"];") != std::string::npos);
    // Concatenate's inputs are a list of equals: numbered.
    CHECK(dot.out.find("n3 -> n5 [label=\"0\"];") != std::string::npos);
    CHECK(dot.out.find("n4 -> n5 [label=\"1\"];") != std::string::npos);
}

TEST_CASE("bench --json is Google Benchmark's layout: real cpu_time, a unit with three digits, aggregated counters") {
    TempDir dir;
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    const CliResult r = run_nngraph({"bench", model, "--json", "--repetitions", "5", "--warmup", "1"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    const nlohmann::json out = nlohmann::json::parse(r.out);
    const nlohmann::json& rows = out.at("benchmarks");
    REQUIRE(rows.size() == 9);  // 5 repetitions, then median, min, max, mad
    std::vector<double> samples_per_second;
    bool cpu_differs = false;
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(rows[i].at("run_type") == "iteration");
        CHECK(rows[i].at("repetition_index") == i);
        samples_per_second.push_back(rows[i].at("samples_per_second").get<double>());
        cpu_differs = cpu_differs || rows[i].at("cpu_time") != rows[i].at("real_time");
        CHECK(rows[i].at("cpu_time").get<double>() > 0.0);
    }
    CHECK(cpu_differs);  // measured, not a copy of the real time
    const nlohmann::json& median = rows[5];
    CHECK(median.at("aggregate_name") == "median");
    CHECK(median.at("aggregate_unit") == "time");
    const std::string unit = median.at("time_unit");
    CHECK((unit == "ns" || unit == "us" || unit == "ms" || unit == "s"));
    // The largest unit in which the median is 100 or more: three digits before the point.
    const double value = median.at("real_time");
    CHECK(value >= 100.0);
    if (unit != "s") CHECK(value < 100000.0);
    // Each counter on an aggregate row is that statistic of the repetitions' values.
    std::sort(samples_per_second.begin(), samples_per_second.end());
    CHECK(median.at("samples_per_second").get<double>() == Approx(samples_per_second[2]));
    CHECK(rows[6].at("samples_per_second").get<double>() == Approx(samples_per_second.front()));
    CHECK(rows[7].at("samples_per_second").get<double>() == Approx(samples_per_second.back()));
    CHECK(rows[8].at("aggregate_name") == "mad");
    CHECK(rows[8].at("batch_size").get<double>() == 0.0);
    CHECK(median.at("batch_size").get<double>() == 32.0);
    for (const nlohmann::json& row : rows) CHECK(row.at("time_unit") == unit);

    // Google Benchmark's compare.py, where Debian's libbenchmark-tools and scipy are installed.
    const std::filesystem::path compare = "/usr/share/benchmark/compare.py";
    if (!std::filesystem::exists(compare) || std::system("/usr/bin/python3 -c 'import scipy' 2>/dev/null") != 0) {
        MESSAGE("compare.py not run: install libbenchmark-tools and python3-scipy");
        return;
    }
    write_bytes(dir / "a.json", r.out);
    write_bytes(dir / "b.json", r.out);
    const std::string command = "/usr/bin/python3 " + compare.string() + " benchmarks '" + (dir / "a.json").string() +
                                "' '" + (dir / "b.json").string() + "' > '" + (dir / "report.txt").string() + "' 2>&1";
    CHECK(std::system(command.c_str()) == 0);
    const std::string report = read_bytes(dir / "report.txt");
    INFO(report);
    CHECK(report.find("mlp_xor/train/batch:32/threads:") != std::string::npos);
    CHECK(report.find("_median") != std::string::npos);
    CHECK(report.find("+0.0000") != std::string::npos);
}

TEST_CASE("bench reads the step's rate against the median of ceiling products spread among its timed steps") {
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    for (const auto& [repetitions, products] : {std::pair{"3", 3}, std::pair{"12", 5}}) {
        const CliResult r = run_nngraph({"bench", model, "--repetitions", repetitions, "--warmup", "1"});
        INFO(r.out, r.err);
        REQUIRE(r.status == 0);
        std::smatch ceiling, work, fraction;
        REQUIRE(
            std::regex_search(r.out, ceiling,
                              std::regex(R"(ceiling: +2048-cube matmul through Dense, (\d+) products among the )"
                                         R"(timed steps: f32 median ([0-9.]+) GFLOP/s \(([0-9.]+) to ([0-9.]+)\))")));
        REQUIRE(std::regex_search(r.out, work, std::regex(R"(; ([0-9.]+) GFLOP/s achieved)")));
        REQUIRE(std::regex_search(r.out, fraction, std::regex(R"(this step runs at ([0-9.]+) of the f32 ceiling)")));
        CHECK(std::stoi(ceiling[1]) == products);
        const double median = std::stod(ceiling[2]), slowest = std::stod(ceiling[3]), fastest = std::stod(ceiling[4]);
        CHECK(slowest > 0.0);
        CHECK(slowest <= median);
        CHECK(median <= fastest);
        CHECK(std::stod(fraction[1]) == Approx(std::stod(work[1]) / median).epsilon(0.01));
    }
}
