// One entry per Keras layer class the engine has an op for: its op, the config keys that become
// attributes, and where its variables are stored and what the engine calls them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace nngraph::keras {

using json = nlohmann::json;

// The variables of one Keras object under a layer's group, in stored order.
struct VariableGroup {
    // Paths below the layer's group where the object may be, by Keras version ("" is the layer's
    // own); the first one present is read.
    std::vector<std::string> subgroups;
    std::string prefix;              // prepended to each engine weight name ("query.")
    std::vector<std::string> names;  // engine weight names, one per stored variable
};

struct LayerKind {
    std::string_view keras_class;
    std::string_view op;
    // Config keys copied as attributes when present (the rest of the config is Keras bookkeeping
    // or initial-value detail the imported weights replace).
    std::vector<std::string_view> attributes;
    // Where the layer's variables are, given its config.
    std::function<std::vector<VariableGroup>(const json& config)> variables;
    // Config keys whose other values change what the layer computes in a way the op does not
    // (LayerNormalization's rms_scaling): the layer is refused unless the key has this value.
    std::vector<std::pair<std::string_view, json>> required = {};
};

// The Keras layer class `keras_class`, or nothing when the engine has no op for it.
const LayerKind* find_layer_kind(std::string_view keras_class);
// The Keras operations of a Functional config (`keras.src.ops.numpy` Add, ...) the engine has ops
// for: the op's name, or nothing.
std::optional<std::string_view> operation_op(std::string_view keras_class);

// Keras's naming.to_snake_case: "MultiHeadAttention" -> "multi_head_attention".
std::string to_snake_case(std::string_view class_name);

}  // namespace nngraph::keras
