// config.json and model.weights.h5 to a model file and its weights: Sequential stays Sequential,
// Functional stays Functional, every layer keeps its Keras name.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "keras/keras_weights.hpp"
#include "nngraph/safetensors.hpp"

namespace nngraph::keras {

struct Conversion {
    std::string model_file;  // YAML
    TensorFile weights;      // by "<node>.<weight>"
    std::vector<std::string> notes;
};

// `config` is config.json parsed; `label` names the .keras file in messages. A layer the engine
// has no op for, a shared layer, or variables that do not match the config raise InputError.
Conversion convert_keras_model(const nlohmann::json& config, const WeightsFile& weights, const std::string& label);

}  // namespace nngraph::keras
