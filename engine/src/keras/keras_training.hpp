// A model's compile_config (loss, optimizer, metrics) as the model file's `training:` section,
// for what the engine trains as Keras does; the rest is reported in notes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

namespace nngraph::keras {

// Nothing when the config names no loss the engine has; `notes` gets a sentence for each setting
// left out.
std::optional<YAML::Node> training_section(const nlohmann::json& compile_config, std::vector<std::string>& notes);

}  // namespace nngraph::keras
