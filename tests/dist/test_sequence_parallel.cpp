// Sequence parallelism under mpirun: every rank holds a share of every sample's steps, and predict,
// grad and train give what one process gives; models with ops that need whole sequences are
// refused at load, naming the node.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "mpirun.hpp"
#include "nngraph/safetensors.hpp"
#include "same_run.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

constexpr std::int64_t kSteps = 24;  // splits over 2, 3 and 4 ranks
constexpr std::int64_t kSamples = 6;

// Token and position embeddings, a step-by-step layer, a pooling over the (masked) steps, and a
// classifier on the pooled features: every piece sequence parallelism runs on shares.
// `extra_nodes` go between the features and the pooling, which then reads `pooled`.
std::string pooled_model(const std::string& pooling, const std::string& extra_nodes = "",
                         const std::string& pooled = "features") {
    return R"(name: pooled
sequence_parallel: true
inputs:
  - {name: tokens, shape: [24], dtype: int32}
nodes:
  - {name: embedding, op: Embedding, inputs: [tokens], input_dim: 20, output_dim: 6, mask_zero: true}
  - {name: position_embedding, op: PositionEmbedding, inputs: [embedding], sequence_length: 24}
  - {name: add, op: Add, inputs: [embedding, position_embedding]}
  - {name: dropout, op: Dropout, inputs: [add], rate: 0.3}
  - {name: features, op: Dense, inputs: [dropout], units: 5, activation: tanh}
)" + extra_nodes +
           "  - {name: pool, op: " + pooling + ", inputs: [" + pooled + R"(]}
  - {name: dense, op: Dense, inputs: [pool], units: 1, activation: sigmoid}
outputs: [dense]
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.01}
  batch_size: 3
  epochs: 2
  seed: 5
)";
}

// A small generator, so the weights and tokens are the same on every run and every machine.
struct Draws {
    std::uint64_t state = 88172645463325252ULL;
    std::uint32_t next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<std::uint32_t>(state >> 11);
    }
    float uniform(float low, float high) { return low + (high - low) * float(next() % 100000) / 100000.0f; }
};

Tensor random_f32(Draws& draws, Shape shape, float scale) {
    Tensor t(DType::F32, std::move(shape));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = draws.uniform(-scale, scale);
    return t;
}

// `with_attention`: also the weights of a 2-head MultiHeadAttention of key_dim 3 on the features.
void write_weights(const std::filesystem::path& file, bool with_attention = false) {
    Draws draws;
    TensorFile weights;
    if (with_attention) {
        for (const char* projection : {"query", "key", "value"}) {
            weights.tensors["attention." + std::string(projection) + ".kernel"] = random_f32(draws, {5, 2, 3}, 0.6f);
            weights.tensors["attention." + std::string(projection) + ".bias"] = random_f32(draws, {2, 3}, 0.1f);
        }
        weights.tensors["attention.attention_output.kernel"] = random_f32(draws, {2, 3, 5}, 0.6f);
        weights.tensors["attention.attention_output.bias"] = random_f32(draws, {5}, 0.1f);
    }
    weights.tensors["embedding.embeddings"] = random_f32(draws, {20, 6}, 0.5f);
    weights.tensors["position_embedding.embeddings"] = random_f32(draws, {kSteps, 6}, 0.5f);
    weights.tensors["features.kernel"] = random_f32(draws, {6, 5}, 0.8f);
    weights.tensors["features.bias"] = random_f32(draws, {5}, 0.1f);
    weights.tensors["dense.kernel"] = random_f32(draws, {5, 1}, 0.8f);
    weights.tensors["dense.bias"] = random_f32(draws, {1}, 0.1f);
    write_safetensors(file, weights);
}

// Tokens padded at the front by different amounts: one sample's padding covers the whole share of
// the first ranks (their masked counts are 0), one has none.
void write_batch(const std::filesystem::path& inputs, const std::filesystem::path& targets) {
    Draws draws;
    draws.state = 1234567;
    Tensor tokens(DType::I32, {kSamples, kSteps}), labels(DType::F32, {kSamples, 1});
    const std::int64_t padding[kSamples] = {0, 3, 13, 7, 1, 20};
    for (std::int64_t b = 0; b < kSamples; ++b) {
        for (std::int64_t s = 0; s < kSteps; ++s)
            tokens.data<std::int32_t>()[b * kSteps + s] = s < padding[b] ? 0 : 1 + std::int32_t(draws.next() % 19);
        labels.data<float>()[b] = float(b % 2);
    }
    TensorFile x, y;
    x.tensors["tokens"] = tokens;
    y.tensors["targets"] = labels;
    write_safetensors(inputs, x);
    write_safetensors(targets, y);
}

std::vector<std::string> mpirun_args(int ranks, const std::vector<std::string>& nngraph_args) {
    std::vector<std::string> args{"--oversubscribe", "-np", std::to_string(ranks), nngraph_binary().string()};
    args.insert(args.end(), nngraph_args.begin(), nngraph_args.end());
    return args;
}

// `mpirun -np ranks nngraph args...`; its exit status and what it said.
std::pair<int, std::string> run_ranks(const TempDir& dir, int ranks, const std::vector<std::string>& args) {
    Mpirun job(dir, mpirun_args(ranks, args));
    const std::optional<int> status = job.wait(std::chrono::seconds(120));
    REQUIRE_MESSAGE(status.has_value(), "mpirun did not end within 120 s");
    return {*status, job.err()};
}

}  // namespace

// A causal ring attention between the features and the pooling: the zigzag layout.
const char* kCausalRing =
    "  - {name: attention, op: MultiHeadAttention, inputs: [features], num_heads: 2, key_dim: 3, "
    "implementation: ring, use_causal_mask: true}\n";

TEST_CASE("predict and grad on 2, 3 and 4 ranks, each on a share of the steps, equal one process") {
    for (const std::string variant : {"GlobalAveragePooling1D", "GlobalMaxPooling1D", "causal ring"}) {
        CAPTURE(variant);
        const bool ring = variant == "causal ring";
        TempDir dir;
        const std::string model = (dir / "model.yaml").string(), weights = (dir / "weights.safetensors").string(),
                          inputs = (dir / "x.safetensors").string(), targets = (dir / "y.safetensors").string();
        write_bytes(model,
                    ring ? pooled_model("GlobalAveragePooling1D", kCausalRing, "attention") : pooled_model(variant));
        write_weights(weights, ring);
        write_batch(inputs, targets);
        const auto predict_args = [&](const std::string& out) {
            return std::vector<std::string>{"predict", model,   "--weights", weights,     "--inputs",
                                            inputs,    "--out", out,         "--threads", "1"};
        };
        const auto grad_args = [&](const std::string& out) {
            return std::vector<std::string>{"grad",      model,   "--weights", weights, "--inputs",  inputs,
                                            "--targets", targets, "--out",     out,     "--threads", "1"};
        };
        const CliResult predicted = run_nngraph(predict_args((dir / "p1.safetensors").string()));
        REQUIRE_MESSAGE(predicted.status == 0, predicted.err);
        const CliResult graded = run_nngraph(grad_args((dir / "g1.safetensors").string()));
        REQUIRE_MESSAGE(graded.status == 0, graded.err);
        const TensorFile expected_outputs = read_safetensors(dir / "p1.safetensors");
        const TensorFile expected_grads = read_safetensors(dir / "g1.safetensors");
        REQUIRE(expected_grads.tensors.size() == (ring ? 15u : 7u));  // the loss and every weight

        for (int ranks : {2, 3, 4}) {
            CAPTURE(ranks);
            const std::string p = "p" + std::to_string(ranks) + ".safetensors",
                              g = "g" + std::to_string(ranks) + ".safetensors";
            const auto [predict_status, predict_err] = run_ranks(dir, ranks, predict_args((dir / p).string()));
            REQUIRE_MESSAGE(predict_status == 0, predict_err);
            check_same_tensors(read_safetensors(dir / p), expected_outputs, 1.0);
            const auto [grad_status, grad_err] = run_ranks(dir, ranks, grad_args((dir / g).string()));
            REQUIRE_MESSAGE(grad_status == 0, grad_err);
            check_same_tensors(read_safetensors(dir / g), expected_grads, 1.0);
        }
    }
}

TEST_CASE("training on 2 ranks, with dropout drawn by global positions, equals one process") {
    TempDir dir;
    write_bytes(dir / "model.yaml", pooled_model("GlobalAveragePooling1D"));
    write_batch(dir / "x.safetensors", dir / "y.safetensors");
    TensorFile data = read_safetensors(dir / "x.safetensors");
    data.tensors["targets"] = read_safetensors(dir / "y.safetensors").tensors.at("targets");
    write_safetensors(dir / "data.safetensors", data);
    const auto train_args = [&](const std::string& name) {
        return std::vector<std::string>{
            "train",  (dir / "model.yaml").string(), "--data", (dir / "data.safetensors").string(), "--threads", "1",
            "--save", (dir / name).string()};
    };
    const CliResult single = run_nngraph(train_args("one.safetensors"));
    REQUIRE_MESSAGE(single.status == 0, single.err);
    const auto [status, err] = run_ranks(dir, 2, train_args("two.safetensors"));
    REQUIRE_MESSAGE(status == 0, err);
    const TensorFile expected = read_safetensors(dir / "one.safetensors");
    const TensorFile got = read_safetensors(dir / "two.safetensors");
    for (const auto& [key, value] : expected.metadata) {
        CAPTURE(key);
        // The monitored loss, summed in another order: a float's worth of difference.
        if (key == "best")
            CHECK(std::stod(got.metadata.at(key)) == doctest::Approx(std::stod(value)).epsilon(1e-6));
        else
            CHECK(got.metadata.at(key) == value);
    }
    check_same_tensors(got, expected, 1.0);
}

TEST_CASE("ops that need whole sequences, and steps that do not split, are refused at load naming why") {
    TempDir dir;
    write_weights(dir / "weights.safetensors");
    write_batch(dir / "x.safetensors", dir / "y.safetensors");
    const auto refused = [&](const std::string& model, int ranks) {
        write_bytes(dir / "model.yaml", model);
        const auto [status, err] =
            run_ranks(dir, ranks,
                      {"predict", (dir / "model.yaml").string(), "--weights", (dir / "weights.safetensors").string(),
                       "--inputs", (dir / "x.safetensors").string(), "--out", (dir / "out.safetensors").string()});
        CHECK(status == 2);
        CHECK_FALSE(std::filesystem::exists(dir / "out.safetensors"));
        return err;
    };
    CHECK(refused(pooled_model("GlobalAveragePooling1D",
                               "  - {name: lstm, op: LSTM, inputs: [features], units: 5, "
                               "return_sequences: true}\n",
                               "lstm"),
                  2)
              .find("node 'lstm' (LSTM) cannot run on a share of the steps") != std::string::npos);
    std::string flattened = pooled_model("GlobalAveragePooling1D");
    flattened.replace(flattened.find("op: GlobalAveragePooling1D"), 26, "op: Flatten");
    CHECK(refused(flattened, 2).find("node 'pool' (Flatten) cannot run on a share of the steps") != std::string::npos);
    CHECK(refused(pooled_model("MaxPooling1D"), 2).find("node 'pool' (MaxPooling1D) cannot run on a share") !=
          std::string::npos);
    CHECK(refused(pooled_model("GlobalAveragePooling1D"), 5).find("input 'tokens' cannot be split over 5 ranks") !=
          std::string::npos);
}

namespace {

// graphs/imdb_long.yaml with its attention on the ring core instead of the blockwise one.
std::string imdb_long(const std::string& implementation) {
    std::string model = read_bytes(source_dir() / "graphs" / "imdb_long.yaml");
    const std::string blockwise = "implementation: blockwise";
    REQUIRE(model.find(blockwise) != std::string::npos);
    return model.replace(model.find(blockwise), blockwise.size(), "implementation: " + implementation);
}

// `samples` reviews of 2,048 ids, padded at the front by different amounts, with labels.
void write_reviews(const std::filesystem::path& file, std::int64_t samples) {
    constexpr std::int64_t kLength = 2048;
    Draws draws;
    Tensor tokens(DType::I32, {samples, kLength}), labels(DType::F32, {samples, 1});
    for (std::int64_t b = 0; b < samples; ++b) {
        const std::int64_t padding = draws.next() % 1800;  // up to whole shares of padding
        for (std::int64_t s = 0; s < kLength; ++s)
            tokens.data<std::int32_t>()[b * kLength + s] = s < padding ? 0 : 1 + std::int32_t(draws.next() % 29999);
        labels.data<float>()[b] = float(draws.next() % 2);
    }
    TensorFile data;
    data.tensors["tokens"] = tokens;
    data.tensors["targets"] = labels;
    write_safetensors(file, data);
}

}  // namespace

// `nngraph predict` or `nngraph grad` of the trained `weights` on a batch of 4 reviews: one process
// against 2 ranks, both on the ring model file.
void check_ring_command(const TempDir& dir, const std::string& command, const std::string& weights) {
    CAPTURE(command);
    write_reviews(dir / "batch.safetensors", 4);
    TensorFile targets;
    targets.tensors["targets"] = read_safetensors(dir / "batch.safetensors").tensors.at("targets");
    write_safetensors(dir / "targets.safetensors", targets);
    const auto args = [&](const std::string& out) {
        std::vector<std::string> a{command,     (dir / "ring.yaml").string(),
                                   "--weights", weights,
                                   "--inputs",  (dir / "batch.safetensors").string(),
                                   "--out",     (dir / out).string(),
                                   "--threads", "1"};
        if (command == "grad") a.insert(a.end(), {"--targets", (dir / "targets.safetensors").string()});
        return a;
    };
    const CliResult one = run_nngraph(args(command + "1.safetensors"));
    REQUIRE_MESSAGE(one.status == 0, one.err);
    const auto [status, err] = run_ranks(dir, 2, args(command + "2.safetensors"));
    REQUIRE_MESSAGE(status == 0, err);
    check_same_tensors(read_safetensors(dir / (command + "2.safetensors")),
                       read_safetensors(dir / (command + "1.safetensors")), 1.0);
}

// The reference is one process on the same file (the ring core on whole sequences), whose
// gradients equal the dense core's.
TEST_CASE("imdb_long with ring attention: 20 training steps, predict and grad on 2 ranks equal one process") {
    TempDir dir;
    write_bytes(dir / "ring.yaml", imdb_long("ring"));
    write_reviews(dir / "data.safetensors", 160);  // 20 steps of 8
    const auto train_args = [&](const std::string& out) {
        return std::vector<std::string>{"train",        (dir / "ring.yaml").string(),
                                        "--data",       (dir / "data.safetensors").string(),
                                        "--threads",    "1",
                                        "--batch-size", "8",
                                        "--epochs",     "1",
                                        "--save",       (dir / out).string()};
    };
    const CliResult single = run_nngraph(train_args("one.safetensors"));
    REQUIRE_MESSAGE(single.status == 0, single.err);
    const TensorFile expected = read_safetensors(dir / "one.safetensors");
    REQUIRE(expected.metadata.at("steps_done") == "20");
    const auto [status, err] = run_ranks(dir, 2, train_args("two.safetensors"));
    REQUIRE_MESSAGE(status == 0, err);
    check_same_tensors(read_safetensors(dir / "two.safetensors"), expected, 1.0);
    for (const std::string command : {"predict", "grad"})
        check_ring_command(dir, command, (dir / "one.safetensors").string());
}
