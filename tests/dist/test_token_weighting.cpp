// A masked sequence model under mpirun: the loss is the mean over real tokens, and the ranks' shares
// of a batch hold different numbers of them, so the gradient average must weigh each rank by its
// tokens (not its rows) for the run to follow one process.
#include <doctest/doctest.h>

#include <chrono>
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

// A tagger: every real token is classed on its own; padding (id 0) is masked out of the loss and
// the accuracy. 120 sequences in batches of 12 make 10 steps an epoch; every epoch is saved, so the
// checkpoint holds the weights after 20 steps.
const char* kTagger = R"(name: tagger
input: {name: tokens, shape: [6], dtype: int32}
layers:
  - {op: Embedding, input_dim: 12, output_dim: 8, mask_zero: true}
  - {op: Dense, units: 16, activation: tanh}
  - {op: Dense, units: 12, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {name: adam, learning_rate: 0.02}
  metrics: [accuracy]
  batch_size: 12
  epochs: 2
  seed: 5
  callbacks:
    - {class_name: ModelCheckpoint, config: {filepath: every.safetensors, save_best_only: false}}
data: {path: tokens.safetensors}
)";

// Sequences of 1 to 6 real tokens padded with 0 at the end, so that any share of a batch holds its
// own count of them; targets are a fixed function of the token and its step, and padded targets
// hold a class (5) that the masked loss must never read.
void add_sequences(TensorFile& file, const std::string& prefix, std::int64_t count, int salt) {
    Tensor tokens(DType::I32, {count, 6}), targets(DType::F32, {count, 6});
    for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t length = 1 + (i * 7 + salt) % 6;
        for (std::int64_t s = 0; s < 6; ++s) {
            const std::int32_t token = s < length ? std::int32_t(1 + (i * 5 + s * 3 + (i * s) % 4 + salt) % 11) : 0;
            tokens.data<std::int32_t>()[i * 6 + s] = token;
            targets.data<float>()[i * 6 + s] = s < length ? float((token * 3 + s) % 12) : 5.0f;
        }
    }
    file.tensors.emplace(prefix + "tokens", std::move(tokens));
    file.tensors.emplace(prefix + "targets", std::move(targets));
}

std::vector<std::string> train_args(const TempDir& dir, const std::string& name) {
    return {"train",  (dir / "tagger.yaml").string(),           "--threads", "1",
            "--save", (dir / (name + ".safetensors")).string(), "--log",     (dir / (name + ".csv")).string()};
}

}  // namespace

TEST_CASE("a masked sequence model trains on 2 and 3 ranks as one process, each rank weighed by its tokens") {
    TempDir dir;
    write_bytes(dir / "tagger.yaml", kTagger);
    TensorFile data;
    add_sequences(data, "", 120, 0);
    add_sequences(data, "validation.", 30, 3);
    write_safetensors(dir / "tokens.safetensors", data);

    const CliResult single = run_nngraph(train_args(dir, "one"));
    REQUIRE_MESSAGE(single.status == 0, single.err);
    const TensorFile expected = read_safetensors(dir / "one.safetensors");
    REQUIRE(expected.metadata.at("epochs_done") == "2");
    REQUIRE(csv_rows(dir / "one.csv").size() == 2);

    // Two ranks overlapping the average with backward; three in blocking allreduces after it, in
    // buckets of about 100 bytes.
    const std::vector<std::vector<std::string>> runs = {{"2"}, {"3", "--no-overlap", "--bucket-mb", "0.0001"}};
    for (const std::vector<std::string>& run : runs) {
        const std::string& ranks = run.front();
        CAPTURE(ranks);
        const std::string name = "ranks" + ranks;
        std::vector<std::string> args = {"--oversubscribe", "-np", ranks, nngraph_binary().string()};
        const std::vector<std::string> train = train_args(dir, name);
        args.insert(args.end(), train.begin(), train.end());
        args.insert(args.end(), run.begin() + 1, run.end());
        Mpirun job(dir, args);
        const std::optional<int> status = job.wait(std::chrono::seconds(120));
        REQUIRE(status.has_value());
        REQUIRE_MESSAGE(*status == 0, job.err());
        check_same_checkpoint(read_safetensors(dir / (name + ".safetensors")), expected, std::stoi(ranks));
        // The epoch lines' loss and accuracy, training and validation, are the real tokens' means.
        check_same_log(dir / (name + ".csv"), dir / "one.csv");
    }
}
