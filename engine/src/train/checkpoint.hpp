// Checkpoints: the weights by name, the optimiser's state and where training stood, in one
// safetensors file written atomically, so `train --resume` continues exactly where it stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "exec/executor.hpp"
#include "train/callbacks.hpp"
#include "train/optimizers.hpp"

namespace nngraph {

struct TrainingState {
    int epochs_done = 0;           // completed epochs
    std::uint64_t steps_done = 0;  // executor steps, so random ops continue their streams
    std::uint64_t seed = 0;
    std::optional<double> best;  // the best monitored value so far
    std::string monitor;         // "val_accuracy", ...
    CallbackState callbacks;     // EarlyStopping's and ReduceLROnPlateau's counters, bests and weights
};

// Writes weights ("<node>.<weight>"), optimiser state ("optimizer.*") and the state as metadata.
void save_checkpoint(const std::filesystem::path& path, const Executor& executor, const Optimizer* optimizer,
                     const TrainingState& state);
// The training state a checkpoint holds, without loading anything.
TrainingState read_training_state(const std::filesystem::path& path);
// Reads a checkpoint into the executor's weights and the optimiser; returns the training state.
TrainingState load_checkpoint(const std::filesystem::path& path, Executor& executor, Optimizer* optimizer);

// Weight files without training state: the weights by name only.
void save_weights(const std::filesystem::path& path, const Executor& executor);
// Loads every weight from `path`; weights the model file gives inline may be missing from it.
void load_weights(const std::filesystem::path& path, Executor& executor);

}  // namespace nngraph
