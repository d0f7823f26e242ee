// The model file's `training:` section as a typed struct (command-line flags override it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "graph/model_file.hpp"
#include "train/callbacks.hpp"
#include "train/metrics.hpp"
#include "train/optimizers.hpp"

namespace nngraph {

struct TrainingConfig {
    std::string loss;  // empty when the file gives none
    OptimizerConfig optimizer;
    bool accuracy = false;            // "accuracy" among the metrics
    std::vector<MetricSpec> metrics;  // the other metrics, in the order given
    std::int64_t batch_size = 32;     // Keras's fit default
    int epochs = 1;
    std::uint64_t seed = 0;
    bool shuffle = true;
    // Keras's TerminateOnNaN: stop at the first batch whose loss is not finite.
    bool terminate_on_nan = true;
    // training.callbacks, as Keras serializes them ({class_name: EarlyStopping, config: {...}}).
    std::vector<CallbackConfig> callbacks;
    std::optional<ModelCheckpointConfig> checkpoint;  // what --save keeps
};

// Parses spec.training (absent: all defaults). Throws InputError with file positions.
TrainingConfig parse_training_config(const ModelSpec& spec);

}  // namespace nngraph
