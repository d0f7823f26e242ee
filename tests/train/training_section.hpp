// The training config of a small model file written in a test: the tests of optimizers, metrics
// and callbacks read them from the `training:` section, as a user writes it.
#pragma once

#include <string>

#include "graph/model_file.hpp"
#include "train/training_config.hpp"

namespace nngraph::testing {

// A Sequential model of one Dense(1) on 2 features whose `training:` section holds `entries`: YAML
// lines below it, the first as it stands and the others indented by two ("loss: mse\n  optimizer: adam").
inline TrainingConfig training_section(const std::string& entries) {
    const std::string text =
        "name: m\ninput: {shape: [2]}\nlayers:\n  - {op: Dense, units: 1}\ntraining:\n  " + entries + "\n";
    return parse_training_config(parse_model(text, "model.yaml", "."));
}

}  // namespace nngraph::testing
