#include "keras/keras_layers.hpp"

#include <algorithm>
#include <array>
#include <regex>

namespace nngraph::keras {
namespace {

bool flag(const json& config, const char* key, bool fallback) {
    const auto it = config.find(key);
    return it != config.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::vector<VariableGroup> own(std::vector<std::string> names) { return {VariableGroup{{""}, "", std::move(names)}}; }

std::vector<std::string> kernel_and_bias(const json& config) {
    if (flag(config, "use_bias", true)) return {"kernel", "bias"};
    return {"kernel"};
}

std::vector<VariableGroup> no_variables(const json&) { return {}; }

std::vector<VariableGroup> dense_variables(const json& config) { return own(kernel_and_bias(config)); }

std::vector<VariableGroup> embedding_variables(const json&) { return own({"embeddings"}); }

// The LSTM layer holds no variable of its own; its cell does.
std::vector<VariableGroup> lstm_variables(const json& config) {
    std::vector<std::string> names = {"kernel", "recurrent_kernel"};
    if (flag(config, "use_bias", true)) names.push_back("bias");
    return {VariableGroup{{"cell"}, "", names}};
}

std::vector<VariableGroup> attention_variables(const json& config) {
    std::vector<std::string> names;
    if (flag(config, "use_scale", false)) names.push_back("scale");
    const auto mode = config.find("score_mode");
    if (mode != config.end() && *mode == "concat") names.push_back("concat_score_weight");
    return own(names);
}

// Four EinsumDense projections; Keras 3.0 walked the private attributes (`_query_dense`), later
// versions the public properties (`query_dense`).
std::vector<VariableGroup> multi_head_attention_variables(const json& config) {
    const std::vector<std::string> names = kernel_and_bias(config);
    std::vector<VariableGroup> groups;
    for (const auto& [keras, engine] :
         std::array<std::pair<std::string, std::string>, 4>{{{"query_dense", "query."},
                                                             {"key_dense", "key."},
                                                             {"value_dense", "value."},
                                                             {"output_dense", "attention_output."}}}) {
        groups.push_back(VariableGroup{{keras, "_" + keras}, engine, names});
    }
    return groups;
}

// Keras builds gamma before beta.
std::vector<VariableGroup> layer_normalization_variables(const json& config) {
    std::vector<std::string> names;
    if (flag(config, "scale", true)) names.push_back("gamma");
    if (flag(config, "center", true)) names.push_back("beta");
    return own(names);
}

const std::vector<LayerKind>& layer_kinds() {
    static const std::vector<LayerKind> kinds = {
        {"Dense",
         "Dense",
         {"units", "activation", "use_bias", "kernel_initializer", "bias_initializer"},
         dense_variables},
        {"Activation", "Activation", {"activation"}, no_variables},
        {"Embedding",
         "Embedding",
         {"input_dim", "output_dim", "embeddings_initializer", "mask_zero"},
         embedding_variables},
        {"Dropout", "Dropout", {"rate", "noise_shape", "seed"}, no_variables},
        {"LSTM",
         "LSTM",
         {"units", "activation", "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer",
          "bias_initializer", "unit_forget_bias", "dropout", "recurrent_dropout", "seed", "return_sequences",
          "return_state", "go_backwards", "stateful", "unroll"},
         lstm_variables},
        {"Attention", "Attention", {"use_scale", "score_mode", "dropout", "seed"}, attention_variables},
        {"MultiHeadAttention",
         "MultiHeadAttention",
         {"num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape", "attention_axes",
          "kernel_initializer", "bias_initializer", "seed"},
         multi_head_attention_variables},
        {"LayerNormalization",
         "LayerNormalization",
         {"axis", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer"},
         layer_normalization_variables,
         {{"rms_scaling", false}}},
        {"GlobalAveragePooling1D", "GlobalAveragePooling1D", {"data_format", "keepdims"}, no_variables},
        {"GlobalMaxPooling1D", "GlobalMaxPooling1D", {"data_format", "keepdims"}, no_variables},
        {"AveragePooling1D", "AveragePooling1D", {"pool_size", "strides", "padding", "data_format"}, no_variables},
        {"MaxPooling1D", "MaxPooling1D", {"pool_size", "strides", "padding", "data_format"}, no_variables},
        {"Add", "Add", {}, no_variables},
        {"Multiply", "Multiply", {}, no_variables},
        {"Concatenate", "Concatenate", {"axis"}, no_variables},
        {"Flatten", "Flatten", {"data_format"}, no_variables},
        {"Reshape", "Reshape", {"target_shape"}, no_variables},
    };
    return kinds;
}

}  // namespace

const LayerKind* find_layer_kind(std::string_view keras_class) {
    const auto& kinds = layer_kinds();
    const auto it = std::find_if(kinds.begin(), kinds.end(),
                                 [&](const LayerKind& kind) { return kind.keras_class == keras_class; });
    return it == kinds.end() ? nullptr : &*it;
}

std::optional<std::string_view> operation_op(std::string_view keras_class) {
    if (keras_class == "Add") return "Add";
    if (keras_class == "Multiply") return "Multiply";
    return std::nullopt;
}

std::string to_snake_case(std::string_view class_name) {
    static const std::regex non_word(R"(\W+)");
    static const std::regex capitalized_word("(.)([A-Z][a-z]+)");
    static const std::regex lower_then_upper("([a-z])([A-Z])");
    std::string name = std::regex_replace(std::string(class_name), non_word, "");
    name = std::regex_replace(name, capitalized_word, "$1_$2");
    name = std::regex_replace(name, lower_then_upper, "$1_$2");
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return name;
}

}  // namespace nngraph::keras
