// Hostile input at the command line: every refusal exits 2 with a message that says what was wrong
// and what was expected; nothing crashes, and nothing fails late.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <limits>

#include "cli_runner.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

extern char** environ;

using namespace nngraph;
using namespace nngraph::testing;

namespace {

bool says(const CliResult& r, const std::string& text) { return r.err.find(text) != std::string::npos; }

// A model with its weights inline, so that a test needs no weights file: y = x · [1, 2] + 0.5.
constexpr const char* kInlineDense = R"(name: inline
inputs: [{name: x, shape: [2]}]
nodes:
  - {name: y, op: Dense, inputs: [x], units: 1, weights: {kernel: [[1.0], [2.0]], bias: [0.5]}}
outputs: [y]
)";

struct TimedResult {
    CliResult result;
    double seconds = 0;
};

// Runs nngraph and kills it once `limit` has passed, so that a hang fails the case (as a crash)
// instead of stopping the suite: the binary under test (NNGRAPH_TEST_BINARY) may be one that hangs.
TimedResult run_within(const std::vector<std::string>& args, std::chrono::seconds limit) {
    const auto start = std::chrono::steady_clock::now();
    TimedResult timed;
    timed.result = run_nngraph(args, {}, [&](pid_t child, const std::filesystem::path&) {
        while (std::chrono::steady_clock::now() - start < limit) {
            siginfo_t info{};
            // WNOWAIT leaves the child for the runner to reap.
            if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                info.si_pid == child)
                return;
            ::usleep(10'000);
        }
        ::kill(child, SIGKILL);
    });
    timed.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return timed;
}

// A safetensors file with the given header and data bytes, as a hostile writer would make it.
void write_raw_safetensors(const std::filesystem::path& path, const std::string& header, const std::string& data) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i)
        bytes[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    write_bytes(path, bytes + header + data);
}

}  // namespace

TEST_CASE("YAML that attacks the parser is refused within 2 s, at its file:line:column") {
    TempDir dir;
    const std::string dense = "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, weights: {kernel: ";
    // Nine lines of anchors that expand to 10^9 numbers when followed.
    std::string bomb = "input: {shape: [2]}\ndata:\n  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
    for (int level = 1; level < 9; ++level) {
        const std::string previous = "*a" + std::to_string(level - 1);
        bomb += "  a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
        for (int i = 0; i < 10; ++i) bomb += (i ? ", " : "") + previous;
        bomb += "]\n";
    }
    const std::string deep = std::string(300, '[') + "1" + std::string(300, ']');
    struct Case {
        std::string name, yaml;
        std::vector<std::string> messages;
    };
    for (const Case& c : std::vector<Case>{
             {"alias recursion",
              dense + "&w [*w]}}\n",
              {"model.yaml:3:49: an alias refers to the node that contains it"}},
             {"alias bomb",
              bomb + "layers:\n  - {op: Dense, units: 2, weights: {kernel: *a8}}\n",
              {"model.yaml:", "the aliases expand to more than 1000000 values"}},
             {"deep nesting", dense + deep + "}}\n", {"model.yaml:3:", "nested deeper than 64 levels"}},
             {"very deep nesting",
              dense + std::string(10000, '[') + "1" + std::string(10000, ']') + "}}\n",
              {"model.yaml:3:", "nested deeper than 64 levels"}},
             {"duplicate top-level key",
              "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2}\nlayers:\n  - {op: Dense, units: 3}\n",
              {"model.yaml:4:1: the key 'layers' appears twice in one map (first on line 2)"}},
             {"duplicate attribute",
              "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, units: 3}\n",
              {"model.yaml:3:27: the key 'units' appears twice in one map (first on line 3)"}},
         }) {
        CAPTURE(c.name);
        write_bytes(dir / "model.yaml", c.yaml);
        const TimedResult run = run_within({"summary", (dir / "model.yaml").string()}, std::chrono::seconds(20));
        CAPTURE(run.result.err.substr(0, 300));
        CHECK_FALSE(run.result.crashed);
        CHECK(run.result.status == 2);
        for (const std::string& message : c.messages) CHECK(says(run.result, message));
        CHECK(run.seconds < 2.0);
    }
}

TEST_CASE("a model file above the size limit is refused within 2 s, pointing at safetensors") {
    TempDir dir;
    std::string model = read_bytes(source_dir() / "graphs/mlp_xor.yaml");
    model += "# " + std::string(2 << 20, 'x') + "\n";
    write_bytes(dir / "big.yaml", model);
    const std::string path = (dir / "big.yaml").string();
    const TimedResult run = run_within({"summary", path}, std::chrono::seconds(60));
    CAPTURE(run.result.err.substr(0, 300));
    CHECK_FALSE(run.result.crashed);
    CHECK(run.result.status == 2);
    CHECK(says(run.result, path + ": the model file has " + std::to_string(model.size()) +
                               " bytes, more than the limit of 1048576"));
    CHECK(says(run.result, "put large weights in a safetensors file"));
    CHECK(run.seconds < 2.0);
}

TEST_CASE("an output index too large for any node is refused at its position, not by stoi") {
    TempDir dir;
    write_bytes(dir / "model.yaml",
                "name: refs\ninputs: [{name: x, shape: [2]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: 2}\n"
                "  - {name: e, op: Dense, inputs: ['d:99999999999'], units: 1}\noutputs: [e]\n");
    const CliResult r = run_nngraph({"summary", (dir / "model.yaml").string()});
    CAPTURE(r.err);
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 2);
    CHECK(says(r, "model.yaml:5:"));
    CHECK(says(r, "'d:99999999999': output index 99999999999 is out of range"));
    CHECK_FALSE(says(r, "stoi"));
}

TEST_CASE("safetensors headers that nest deeply or hold huge text are refused briefly, with the file named") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kInlineDense);
    TensorFile inputs;
    inputs.tensors["x"] = Tensor(DType::F32, {2, 2});
    write_safetensors(dir / "x.safetensors", inputs);
    const std::string model = (dir / "model.yaml").string(), x = (dir / "x.safetensors").string(),
                      out = (dir / "y.safetensors").string();
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    const std::string long_text(100000, 'x');
    struct Case {
        std::string name, flag, header, data, message;
    };
    for (const Case& c : std::vector<Case>{
             {"deep weights header", "--weights", R"({"y.kernel":)" + deep + "}", "",
              "the JSON header nests deeper than 8 levels"},
             {"deep metadata", "--weights", R"({"__metadata__":{"k":)" + deep + "}}", "",
              "the JSON header nests deeper than 8 levels"},
             {"deep inputs header", "--inputs", deep, "", "the JSON header nests deeper than 8 levels"},
             {"huge dtype", "--inputs", R"({"x":{"dtype":")" + long_text + R"(","shape":[2],"data_offsets":[0,8]}})",
              std::string(8, '\0'), "xxxxx"},
             {"huge tensor name", "--weights", R"({")" + long_text + R"(":{"dtype":"F32","shape":[2]}})",
              std::string(8, '\0'), "xxxxx"},
         }) {
        CAPTURE(c.name);
        const std::string bad = (dir / "bad.safetensors").string();
        write_raw_safetensors(bad, c.header, c.data);
        std::vector<std::string> args{"predict", model, "--inputs", x, "--out", out};
        if (c.flag == "--weights") args.insert(args.end(), {"--weights", bad});
        if (c.flag == "--inputs") args[3] = bad;
        const TimedResult run = run_within(args, std::chrono::seconds(20));
        CAPTURE(run.result.err.substr(0, 300));
        CHECK_FALSE(run.result.crashed);
        CHECK(run.result.status == 2);
        CHECK(says(run.result, bad));
        CHECK(says(run.result, c.message));
        CHECK(run.result.err.size() < 1000);
        CHECK(run.seconds < 2.0);
    }
}

TEST_CASE("--resume refuses a checkpoint whose training state is not what --save writes, naming file and field") {
    TempDir dir;
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    const std::string good = (dir / "good.safetensors").string();
    REQUIRE(run_nngraph({"train", model, "--epochs", "1", "--save", good}).status == 0);
    const TensorFile saved = read_safetensors(good);
    struct Case {
        std::string key, text, message;
    };
    for (const Case& c : std::vector<Case>{
             {"epochs_done", "-5", "metadata 'epochs_done' is '-5'; expected a whole number from 0 to 1000000"},
             {"epochs_done", "99999999999", "metadata 'epochs_done' is '99999999999'"},
             {"steps_done", "-1", "metadata 'steps_done' is '-1'; expected a whole number of 0 or more"},
             {"seed", " 7", "metadata 'seed' is ' 7'"},
             {"best", "nan", "metadata 'best' is 'nan'; expected a finite number"},
             {"seed", "", "metadata 'seed' is missing"},
         }) {
        CAPTURE(c.key);
        CAPTURE(c.text);
        TensorFile changed = saved;
        if (c.text.empty())
            changed.metadata.erase(c.key);
        else
            changed.metadata[c.key] = c.text;
        const std::string bad = (dir / "bad.safetensors").string();
        write_safetensors(bad, changed);
        const CliResult r = run_nngraph({"train", model, "--epochs", "3", "--resume", bad});
        CAPTURE(r.err);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 2);
        CHECK(says(r, bad));
        CHECK(says(r, c.message));
        CHECK(r.out.find("Epoch") == std::string::npos);
    }
}

TEST_CASE("count flags are bounded and say their range in plain words") {
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    for (const Case& c : std::vector<Case>{
             {{"train", model, "--epochs", "0"}, "--epochs: must be a whole number from 1 to 1000000, not '0'"},
             {{"train", model, "--epochs", "99999999999"}, "--epochs: must be a whole number from 1 to 1000000"},
             {{"train", model, "--batch-size", "-3"},
              "--batch-size: must be a whole number from 1 to 1048576, not '-3'"},
             {{"predict", model, "--batch-size", "1e9"},
              "--batch-size: must be a whole number from 1 to 1048576, not '1e9'"},
             {{"summary", model, "--threads", "100000"}, "--threads: must be a whole number from 0 to "},
             {{"bench", model, "--repetitions", "0"}, "--repetitions: must be a whole number from 1 to 100000"},
         }) {
        const CliResult r = run_nngraph(c.args);
        CAPTURE(r.err);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 2);
        CHECK(says(r, c.message));
        CHECK_FALSE(says(r, "179769"));
    }
}

TEST_CASE("an unknown command is named, with the closest known one") {
    const CliResult typo = run_nngraph({"trian", "model.yaml"});
    CHECK(typo.status == 2);
    CHECK(says(typo, "unknown command 'trian': did you mean 'train'?"));
    CHECK(says(typo, "commands: summary, dot, plugins, train, evaluate, predict, grad, bench"));
    const CliResult far = run_nngraph({"xyzzyq"});
    CHECK(far.status == 2);
    CHECK(says(far, "unknown command 'xyzzyq' (commands: "));
}

TEST_CASE("--save and --log destinations are checked before the first epoch") {
    TempDir dir;
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::string missing = (dir / "missing" / "w.safetensors").string();
    for (const Case& c : std::vector<Case>{
             {{"--save", missing},
              "cannot write '" + missing + "': the directory '" + (dir / "missing").string() + "' does not exist"},
             {{"--save", dir.path().string()}, "cannot write '" + dir.path().string() + "': it is a directory"},
             {{"--log", dir.path().string()}, "--log: cannot write '" + dir.path().string() + "': it is a directory"},
             {{"--log", "/proc/history.csv"},
              "--log: cannot write '/proc/history.csv': no file can be created in '/proc'"},
             {{"--save", "/sys/w.safetensors"}, "no file can be created in '/sys'"},
         }) {
        std::vector<std::string> args{"train", model, "--epochs", "2"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        const CliResult r = run_nngraph(args);
        CAPTURE(r.err);
        CHECK(r.status == 2);
        CHECK(says(r, c.message));
        CHECK(r.out.find("Epoch 1/2") == std::string::npos);
    }
}

namespace {

// y = tanh(x W1 + b1) W2 + b2 over 8 rows, with one NaN in row 6 when `poisoned`.
void write_tanh_model_and_data(const TempDir& dir, bool poisoned) {
    write_bytes(dir / "model.yaml", R"(name: tanh_mlp
inputs: [{name: x, shape: [2]}]
nodes:
  - {name: h, op: Dense, inputs: [x], units: 3, activation: tanh}
  - {name: y, op: Dense, inputs: [h], units: 1}
outputs: [y]
training: {loss: mse, optimizer: sgd, batch_size: 1, epochs: 2, shuffle: false}
)");
    TensorFile data;
    Tensor x(DType::F32, {8, 2}), t(DType::F32, {8, 1});
    for (int i = 0; i < 16; ++i) x.data<float>()[i] = 0.1f * static_cast<float>(i);
    for (int i = 0; i < 8; ++i) t.data<float>()[i] = static_cast<float>(i % 2);
    if (poisoned) x.data<float>()[10] = std::numeric_limits<float>::quiet_NaN();
    data.tensors["x"] = x;
    data.tensors["targets"] = t;
    write_safetensors(dir / "data.safetensors", data);
}

}  // namespace

TEST_CASE("training stops at the first non-finite loss, naming the epoch, the step and the node") {
    TempDir dir;
    write_tanh_model_and_data(dir, true);
    const std::string model = (dir / "model.yaml").string(), data = (dir / "data.safetensors").string();
    const CliResult stopped = run_nngraph({"train", model, "--data", data, "--log", (dir / "h.csv").string()});
    CAPTURE(stopped.err);
    CHECK(stopped.status == 1);
    CHECK(says(
        stopped,
        "training stopped at a non-finite loss (turn this off with --no-terminate-on-nan): epoch 1, step 6/8: the loss "
        "is nan; the first node whose output is not finite is 'h' (Dense)"));
    CHECK(stopped.out.find("nan") == std::string::npos);
    CHECK(stopped.out.find("Epoch 2/2") == std::string::npos);

    const CliResult kept_going = run_nngraph({"train", model, "--data", data, "--no-terminate-on-nan"});
    CAPTURE(kept_going.err);
    CHECK(kept_going.status == 0);
    CHECK(kept_going.out.find("Epoch 2/2") != std::string::npos);
    CHECK(kept_going.out.find("loss: nan") != std::string::npos);
    CHECK_FALSE(says(kept_going, "best loss"));

    write_bytes(dir / "off.yaml", read_bytes(dir / "model.yaml")
                                      .replace(read_bytes(dir / "model.yaml").find("shuffle: false"), 14,
                                               "shuffle: false, terminate_on_nan: false"));
    const CliResult off_in_file = run_nngraph({"train", (dir / "off.yaml").string(), "--data", data});
    CHECK(off_in_file.status == 0);
}

TEST_CASE("a non-finite loss after good epochs keeps the best checkpoint") {
    TempDir dir;
    // Plain SGD with a far too large rate: the weights grow geometrically until the loss overflows.
    write_bytes(dir / "model.yaml", R"(name: diverging
inputs: [{name: x, shape: [1]}]
nodes:
  - {name: y, op: Dense, inputs: [x], units: 1, weights: {kernel: [[0.5]], bias: [0.0]}}
outputs: [y]
training: {loss: mse, optimizer: {name: sgd, learning_rate: 2}, batch_size: 1, epochs: 40, shuffle: false}
)");
    TensorFile data;
    const float x[] = {1, 2, 3, 4}, t[] = {2, 4, 6, 8};
    data.tensors["x"] = Tensor::from<float>({4, 1}, x);
    data.tensors["targets"] = Tensor::from<float>({4, 1}, t);
    write_safetensors(dir / "data.safetensors", data);
    const std::string checkpoint = (dir / "best.safetensors").string();
    const CliResult r = run_nngraph(
        {"train", (dir / "model.yaml").string(), "--data", (dir / "data.safetensors").string(), "--save", checkpoint});
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(says(r, "best loss "));
    CHECK(says(r, " at epoch 1, saved to " + checkpoint));
    CHECK(says(r, "the first node whose output is not finite is 'y' (Dense)"));
    const TensorFile saved = read_safetensors(checkpoint);
    CHECK(saved.metadata.at("epochs_done") == "1");
    CHECK(std::isfinite(saved.tensors.at("y.kernel").data<float>()[0]));
}

TEST_CASE("non-finite weights and hyperparameters are refused with what holds them named") {
    TempDir dir;
    write_tanh_model_and_data(dir, false);
    TensorFile weights;
    const float kernel[] = {0.1f, 0.2f, std::numeric_limits<float>::infinity(), 0.3f, 0.4f, 0.5f}, bias[] = {0, 0, 0};
    const float out_kernel[] = {1, 1, 1}, out_bias[] = {0};
    weights.tensors["h.kernel"] = Tensor::from<float>({2, 3}, kernel);
    weights.tensors["h.bias"] = Tensor::from<float>({3}, bias);
    weights.tensors["y.kernel"] = Tensor::from<float>({3, 1}, out_kernel);
    weights.tensors["y.bias"] = Tensor::from<float>({1}, out_bias);
    write_safetensors(dir / "w.safetensors", weights);
    const CliResult predicted =
        run_nngraph({"predict", (dir / "model.yaml").string(), "--weights", (dir / "w.safetensors").string(),
                     "--inputs", (dir / "data.safetensors").string(), "--out", (dir / "y.safetensors").string()});
    CHECK(predicted.status == 2);
    CHECK(says(predicted,
               "w.safetensors: tensor 'h.kernel' holds an infinity at element 2 of 6; weights must be finite numbers"));

    std::string yaml = read_bytes(dir / "model.yaml");
    yaml.replace(yaml.find("optimizer: sgd"), 14, "optimizer: {name: sgd, learning_rate: .nan}");
    write_bytes(dir / "nan_rate.yaml", yaml);
    const CliResult rate = run_nngraph({"summary", (dir / "nan_rate.yaml").string()});
    CHECK(rate.status == 2);
    CHECK(says(rate, "nan_rate.yaml:7:"));
    CHECK(says(rate, "optimizer learning_rate must be a finite number, not .nan"));
}

namespace {

// `nngraph train` as a child that the test signals once it has trained a few epochs.
CliResult train_then_signal(const std::vector<std::string>& args, int signal) {
    return run_nngraph(args, {}, [signal](pid_t child, const std::filesystem::path& stdout_file) {
        // Signal once epoch 3 has begun: two epochs are done and the third is under way.
        for (int waited = 0; waited < 600 && read_bytes(stdout_file).find("Epoch 3/") == std::string::npos; ++waited)
            ::usleep(50'000);
        ::kill(child, signal);
    });
}

}  // namespace

TEST_CASE("Ctrl-C or SIGTERM stops training after the current step, keeps its work and exits 130") {
    for (const int signal : {SIGINT, SIGTERM}) {
        TempDir dir;
        const std::string checkpoint = (dir / "best.safetensors").string(), log = (dir / "history.csv").string();
        const CliResult r = train_then_signal({"train", (source_dir() / "graphs/mlp_xor.yaml").string(), "--epochs",
                                               "100000", "--save", checkpoint, "--log", log},
                                              signal);
        CAPTURE(r.err);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 130);
        CHECK(r.err.find(std::string("nngraph: stopped by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
                         " at epoch ") != std::string::npos);
        CHECK(r.err.find("the best checkpoint is " + checkpoint + " (continue with --resume " + checkpoint + ")") !=
              std::string::npos);
        CHECK(r.err.find("the history is in " + log) != std::string::npos);
        // The interrupted epoch's line is finished and logged.
        CHECK(r.out.back() == '\n');
        const std::string history = read_bytes(log);
        const auto epoch_lines = std::count(r.out.begin(), r.out.end(), '\n') / 2;
        CHECK(std::count(history.begin(), history.end(), '\n') == epoch_lines + 1);
        const TensorFile saved = read_safetensors(checkpoint);
        CHECK(std::stoi(saved.metadata.at("epochs_done")) >= 1);
        CHECK(std::stoi(saved.metadata.at("epochs_done")) <= epoch_lines);
    }
}

TEST_CASE("sizes from the model file that overflow are refused, naming the node, the attribute and the size") {
    TempDir dir;
    struct Case {
        std::string body, message;
    };
    for (const Case& c : std::vector<Case>{
             {"inputs: [{name: x, shape: [4294967296, 4294967296]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], "
              "units: 2}",
              "model.yaml:2:10: node 'x': input 'x' of shape (4294967296, 4294967296) is too large: at most "
              "4398046511104 bytes per sample"},
             {"inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: "
              "4611686018427387904}",
              "model.yaml:4:39: node 'd': Dense: output 0 of shape (None, 4611686018427387904) is too large: at most "
              "4398046511104 bytes per "
              "sample; check 'units'"},
             {"inputs: [{name: x, shape: [2147483647]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: "
              "2147483647}",
              "model.yaml:4:39: node 'd': Dense: weight 'kernel' of shape (2147483647, 2147483647) is too large: "
              "at most 4611686018427387904 bytes; check 'units'"},
             {"inputs: [{name: x, shape: [3], dtype: int32}]\nnodes:\n  - {name: d, op: Embedding, inputs: [x], "
              "input_dim: 10, output_dim: 4611686018427387904}",
              "model.yaml:4:58: node 'd': Embedding: output 0 of shape (None, 3, 4611686018427387904) is too large: at "
              "most 4398046511104 bytes per sample; check 'output_dim'"},
             // 4 x (2^62 + 1) wraps to 4, the input's count, unless the SDK's product is checked.
             {"inputs: [{name: x, shape: [4]}]\nnodes:\n  - {name: d, op: Reshape, inputs: [x], target_shape: [4, "
              "4611686018427387905]}",
              "model.yaml:4:5: node 'd': Reshape: the element count of shape (None, 4, 4611686018427387905) overflows "
              "64 "
              "bits"},
         }) {
        write_bytes(dir / "model.yaml", "name: big\n" + c.body + "\noutputs: [d]\n");
        const CliResult r = run_nngraph({"summary", (dir / "model.yaml").string()});
        CAPTURE(r.err);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 2);
        CHECK(says(r, c.message));
        CHECK(r.out.find("Total params") == std::string::npos);
    }
}

TEST_CASE("inputs and targets files that do not fit the model or each other are named") {
    TempDir dir;
    write_bytes(dir / "model.yaml", R"(name: inline
inputs: [{name: x, shape: [2]}]
nodes:
  - {name: y, op: Dense, inputs: [x], units: 1, weights: {kernel: [[1.0], [2.0]], bias: [0.5]}}
outputs: [y]
training: {loss: mse}
)");
    TensorFile inputs, wide, targets;
    inputs.tensors["x"] = Tensor(DType::F32, {2, 2});
    wide.tensors["x"] = Tensor(DType::F32, {2, 3});
    targets.tensors["targets"] = Tensor(DType::F32, {3, 1});
    write_safetensors(dir / "x.safetensors", inputs);
    write_safetensors(dir / "wide.safetensors", wide);
    write_safetensors(dir / "t.safetensors", targets);
    const std::string x = (dir / "x.safetensors").string(), t = (dir / "t.safetensors").string(),
                      w = (dir / "wide.safetensors").string();
    const CliResult rows = run_nngraph({"grad", (dir / "model.yaml").string(), "--inputs", x, "--targets", t, "--out",
                                        (dir / "g.safetensors").string()});
    CHECK(rows.status == 2);
    CHECK(says(rows, x + " and " + t + ": the targets of output 'y' has 3 rows where the first input has 2"));
    const CliResult shape = run_nngraph(
        {"predict", (dir / "model.yaml").string(), "--inputs", w, "--out", (dir / "y.safetensors").string()});
    CHECK(shape.status == 2);
    CHECK(says(shape, w + ": input 'x' is F32 (2, 3); the model expects F32 (None, 2)"));
}

TEST_CASE("an allocation that cannot be satisfied names the weight and node it was for") {
    // With the kernel's overcommit set to 'always' the allocation would succeed and filling it would
    // bring the OOM killer; the other two modes refuse a 1.2 TB request outright.
    if (read_bytes("/proc/sys/vm/overcommit_memory").rfind("1", 0) == 0) return;
    TempDir dir;
    write_bytes(dir / "model.yaml",
                "name: big\ninputs: [{name: x, shape: [3]}]\nnodes:\n"
                "  - {name: d, op: Dense, inputs: [x], units: 100000000000}\noutputs: [d]\ntraining: {loss: mse}\n");
    TensorFile data;
    data.tensors["x"] = Tensor(DType::F32, {1, 3});
    data.tensors["targets"] = Tensor(DType::F32, {1, 100000});
    write_safetensors(dir / "data.safetensors", data);
    const CliResult r =
        run_nngraph({"train", (dir / "model.yaml").string(), "--data", (dir / "data.safetensors").string()});
    CAPTURE(r.err);
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 1);
    CHECK(says(
        r,
        "weight 'd.kernel' (3, 100000000000) of node 'd': out of memory allocating a tensor of 1200000000000 bytes"));
}

TEST_CASE("token ids outside [0, input_dim) are bad input, exit 2, with the inputs file named") {
    TempDir dir;
    write_bytes(dir / "model.yaml", R"(name: ids
inputs: [{name: x, shape: [2], dtype: int32}]
nodes:
  - {name: e, op: Embedding, inputs: [x], input_dim: 4, output_dim: 1, weights: {embeddings: [[0.0], [1.0], [2.0], [3.0]]}}
outputs: [e]
)");
    for (const std::int32_t bad : {4, -1, 2147483647}) {
        TensorFile inputs;
        const std::int32_t ids[] = {1, 2, 3, bad};
        inputs.tensors["x"] = Tensor::from<std::int32_t>({2, 2}, ids);
        write_safetensors(dir / "x.safetensors", inputs);
        const std::string x = (dir / "x.safetensors").string();
        const CliResult r = run_nngraph(
            {"predict", (dir / "model.yaml").string(), "--inputs", x, "--out", (dir / "y.safetensors").string()});
        CAPTURE(r.err);
        CHECK(r.status == 2);
        CHECK(says(r, x + ": node 'e' (Embedding): Embedding: id " + std::to_string(bad) +
                          " at position (1, 1) of the ids (2, 2) is "
                          "outside [0, input_dim = 4)"));
    }
}

TEST_CASE("predict warns when inputs make outputs non-finite") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kInlineDense);
    TensorFile inputs;
    const float x[] = {1, 2, std::numeric_limits<float>::quiet_NaN(), 4, 5, 6};
    inputs.tensors["x"] = Tensor::from<float>({3, 2}, x);
    write_safetensors(dir / "x.safetensors", inputs);
    const std::string file = (dir / "x.safetensors").string();
    const CliResult r = run_nngraph(
        {"predict", (dir / "model.yaml").string(), "--inputs", file, "--out", (dir / "y.safetensors").string()});
    CHECK(r.status == 0);
    CHECK(says(
        r, "nngraph: warning: 1 of the 3 values of output 'y' are not finite (NaN or infinite); check the inputs in " +
               file));
}

TEST_CASE("a .keras file whose HDF5 part makes the library crash or loop is refused, naming the file") {
    // Keras 3.6+ files with a byte changed in the global heap that holds the layer names: the HDF5
    // library crashes (SIGSEGV in H5HG_read) or loops for ever on these when it reads them in the
    // nngraph process; the fuzz corpus keeps them.
    TempDir dir;
    const std::filesystem::path corpus = source_dir() / "tests/fuzz/corpus/fuzz_keras_file";
    // Under AddressSanitizer the library's overlapping memcpy ends the child (exit 1) before the SIGSEGV.
    const std::vector<std::string> crashed{"crashed with signal 11 (Segmentation fault)", "ended with exit status 1"};
    struct Case {
        std::string input;
        std::vector<std::string> ended;
    };
    for (const Case& c : std::vector<Case>{{"crash_global_heap_layer_name", crashed},
                                           {"crash_global_heap_layer_name_2", crashed},
                                           {"hang_global_heap_layer_name", {"gave no answer within 10.0 s"}}}) {
        CAPTURE(c.input);
        const std::string keras = (corpus / c.input).string();
        const TimedResult run = run_within({"import", keras, "--out", (dir / "model.yaml").string(), "--weights-out",
                                            (dir / "weights.safetensors").string()},
                                           std::chrono::seconds(60));
        CAPTURE(run.result.err);
        CHECK_FALSE(run.result.crashed);
        CHECK(run.result.status == 2);
        CHECK(std::any_of(c.ended.begin(), c.ended.end(), [&](const std::string& ended) {
            return says(run.result, "'" + keras + "': model.weights.h5: the HDF5 library " + ended +
                                        " while reading the layer name stored at 'layers/embedding/vars'; the file "
                                        "is damaged");
        }));
        CHECK_FALSE(std::filesystem::exists(dir / "model.yaml"));
    }
}
