// Callback state survives `train --resume`: a run stopped after some epochs and resumed from its
// checkpoint lowers the learning rate, stops early and restores the best weights exactly as one
// uninterrupted run does; the same checkpoint without its callback state does not.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nngraph/nngraph.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using namespace nngraph;

namespace {

// The XOR MLP of graphs/ with callbacks that keep state across epochs: plateaus come often because
// min_delta is large for this loss, so rates drop and EarlyStopping waits within a few epochs.
// ModelCheckpoint keeps every epoch, so a checkpoint exists at each epoch boundary.
constexpr const char* kModel = R"(name: mlp_xor
input: {name: point, shape: [2], dtype: float32}
layers:
  - {op: Dense, units: 16, activation: tanh}
  - {op: Dense, units: 16, activation: tanh}
  - {op: Dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.02}
  metrics: [accuracy]
  batch_size: 32
  epochs: 14
  seed: 3
  callbacks:
    - {class_name: ReduceLROnPlateau, config: {monitor: loss, factor: 0.5, patience: 1, cooldown: 1, min_delta: 0.08}}
    - {class_name: EarlyStopping, config: {monitor: val_loss, min_delta: 0.01, patience: 4,
                                           restore_best_weights: true}}
    - {class_name: ModelCheckpoint, config: {filepath: unused.safetensors, monitor: val_loss,
                                             save_best_only: false}}
data: {format: synthetic, task: xor, samples: 600, validation_samples: 200, noise: 0.0}
)";

struct Run {
    std::vector<double> rates;  // each epoch's learning rate, by epoch from 1 (0: not run)
    int last_epoch = 0;
    bool stopped = false;
    TensorFile weights;  // after training ended (best weights restored)
};

Run train(const std::filesystem::path& dir, int epochs, const std::filesystem::path& save,
          const std::optional<std::filesystem::path>& resume = std::nullopt) {
    const std::filesystem::path model_file = dir / "model.yaml";
    if (!std::filesystem::exists(model_file)) std::ofstream(model_file) << kModel;
    Model model = Model::load(model_file, {{}, 1, {}});
    TrainOptions options;
    options.epochs = epochs;
    options.save_best = save;
    options.resume = resume;
    const TrainResult result = model.train(options);
    Run run;
    run.rates.assign(static_cast<std::size_t>(epochs) + 1, 0.0);
    for (const EpochEnd& e : result.history) {
        run.rates[static_cast<std::size_t>(e.epoch)] = e.learning_rate;
        run.last_epoch = e.epoch;
    }
    run.stopped = result.stopped;
    model.save_weights(dir / "final.safetensors");
    run.weights = read_safetensors(dir / "final.safetensors");
    return run;
}

bool same_weights(const TensorFile& a, const TensorFile& b) {
    if (a.tensors.size() != b.tensors.size()) return false;
    for (const auto& [name, tensor] : a.tensors) {
        const auto it = b.tensors.find(name);
        if (it == b.tensors.end() || it->second.nbytes() != tensor.nbytes() ||
            std::memcmp(it->second.raw(), tensor.raw(), tensor.nbytes()) != 0)
            return false;
    }
    return true;
}

}  // namespace

TEST_CASE("a run resumed from its checkpoint keeps the callbacks' waits, bests, weights and learning rate") {
    testing::TempDir straight_dir;
    constexpr int kEpochs = 14;
    const Run straight = train(straight_dir.path(), kEpochs, straight_dir / "checkpoint.safetensors");
    // The schedule this test relies on: the rate lowered by the end of epoch 5 and again later,
    // EarlyStopping waiting at epoch 9 and stopping before the last epoch.
    REQUIRE(straight.rates[6] < 0.02);
    REQUIRE(straight.rates[9] < straight.rates[6]);
    REQUIRE(straight.stopped);
    REQUIRE(straight.last_epoch > 10);

    for (const int first_part : {5, 9}) {
        CAPTURE(first_part);
        testing::TempDir split_dir;
        const std::filesystem::path checkpoint = split_dir / "checkpoint.safetensors";
        train(split_dir.path(), first_part, checkpoint);
        const TensorFile saved = read_safetensors(checkpoint);
        CHECK(saved.metadata.count("callbacks.ReduceLROnPlateau.0.learning_rate") == 1);
        CHECK(saved.metadata.count("callbacks.EarlyStopping.0.wait") == 1);
        CHECK(saved.tensors.count("callbacks.EarlyStopping.0.best_weights.0") == 1);
        // At epoch 9 EarlyStopping is part-way through its patience: the split falls inside a wait.
        if (first_part == 9) CHECK(std::stod(saved.metadata.at("callbacks.EarlyStopping.0.wait")) > 0);

        const Run resumed = train(split_dir.path(), kEpochs, split_dir / "resumed.safetensors", checkpoint);
        CHECK(resumed.stopped == straight.stopped);
        CHECK(resumed.last_epoch == straight.last_epoch);
        for (int e = first_part + 1; e <= straight.last_epoch; ++e) {
            CAPTURE(e);
            CHECK(resumed.rates[static_cast<std::size_t>(e)] == straight.rates[static_cast<std::size_t>(e)]);
        }
        CHECK(same_weights(resumed.weights, straight.weights));
        if (first_part != 5) continue;

        // Without the callback state the same checkpoint resumes at the configured rate: another run.
        testing::TempDir bare_dir;
        TensorFile bare = saved;
        std::erase_if(bare.metadata, [](const auto& entry) { return entry.first.rfind("callbacks.", 0) == 0; });
        std::erase_if(bare.tensors, [](const auto& entry) { return entry.first.rfind("callbacks.", 0) == 0; });
        write_safetensors(bare_dir / "bare.safetensors", bare);
        const Run forgetful =
            train(bare_dir.path(), kEpochs, bare_dir / "resumed.safetensors", bare_dir / "bare.safetensors");
        CHECK(forgetful.rates[6] == 0.02);
        CHECK_FALSE(same_weights(forgetful.weights, straight.weights));
    }
}

TEST_CASE("callback state in a checkpoint is checked before training resumes") {
    testing::TempDir dir;
    const std::filesystem::path checkpoint = dir / "checkpoint.safetensors";
    train(dir.path(), 3, checkpoint);
    TensorFile file = read_safetensors(checkpoint);
    file.metadata["callbacks.ReduceLROnPlateau.0.wait"] = "-3";
    write_safetensors(dir / "edited.safetensors", file);
    CHECK_THROWS_WITH_AS(train(dir.path(), 6, dir / "again.safetensors", dir / "edited.safetensors"),
                         doctest::Contains("callback state 'callbacks.ReduceLROnPlateau.0.wait' is -3"), InputError);
    file = read_safetensors(checkpoint);
    file.metadata["callbacks.EarlyStopping.0.best"] = "nan";
    write_safetensors(dir / "edited.safetensors", file);
    CHECK_THROWS_WITH_AS(train(dir.path(), 6, dir / "again.safetensors", dir / "edited.safetensors"),
                         doctest::Contains("'callbacks.EarlyStopping.0.best' is 'nan'; expected a finite number"),
                         InputError);
}
