#include "keras/keras_training.hpp"

#include <map>

#include "keras/keras_layers.hpp"

namespace nngraph::keras {
namespace {

constexpr std::size_t kMaxShown = 60;

std::string shown(const json& value) {
    const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    return text.size() <= kMaxShown ? text : text.substr(0, kMaxShown) + "...";
}

// A Keras object written as a string ("adam") or serialized ({"class_name": "Adam", "config": ...}):
// its name in snake_case and its config.
std::pair<std::string, json> name_and_config(const json& value) {
    if (value.is_string()) return {value.get<std::string>(), json::object()};
    if (value.is_object() && value.contains("class_name") && value["class_name"].is_string()) {
        const json config = value.contains("config") && value["config"].is_object() ? value["config"] : json::object();
        return {to_snake_case(value["class_name"].get<std::string>()), config};
    }
    return {"", json::object()};
}

std::optional<std::string> loss_name(const json& loss) {
    static const std::map<std::string, std::string> kLosses = {
        {"binary_crossentropy", "binary_crossentropy"},
        {"categorical_crossentropy", "categorical_crossentropy"},
        {"sparse_categorical_crossentropy", "sparse_categorical_crossentropy"},
        {"mse", "mse"},
        {"mean_squared_error", "mse"}};
    const auto [name, config] = name_and_config(loss);
    // Classes come in snake_case (BinaryCrossentropy -> binary_crossentropy), as their functions are named.
    const auto it = kLosses.find(name);
    if (it == kLosses.end() || config.value("from_logits", false) == true) return std::nullopt;
    return it->second;
}

YAML::Node scalar(const json& value) {
    if (value.is_boolean()) return YAML::Node(value.get<bool>());
    if (value.is_number_integer()) return YAML::Node(value.get<std::int64_t>());
    return YAML::Node(value.dump());  // the shortest text that reads back as the same double
}

std::optional<YAML::Node> optimizer(const json& value, std::vector<std::string>& notes) {
    static const std::map<std::string, std::vector<std::string>> kArguments = {
        {"adam", {"learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"}},
        {"sgd", {"learning_rate", "momentum", "nesterov", "weight_decay"}}};
    const auto [name, config] = name_and_config(value);
    const auto known = kArguments.find(name);
    if (known == kArguments.end()) {
        notes.push_back("training: the optimizer " +
                        shown(value.is_object() ? value.value("class_name", json()) : value) +
                        " is left out (nngraph trains with adam or sgd; adam is the default)");
        return std::nullopt;
    }
    YAML::Node node;
    node["name"] = name;
    for (const std::string& argument : known->second) {
        const auto it = config.find(argument);
        if (it == config.end() || it->is_null()) continue;
        if (it->is_number() || it->is_boolean()) {
            node[argument] = scalar(*it);
        } else if (argument == "learning_rate" && it->is_object()) {
            node[argument] = YAML::Load(it->dump());  // a schedule, in Keras's own serialization
        }
    }
    for (const char* unsupported : {"clipnorm", "clipvalue", "global_clipnorm", "use_ema", "amsgrad"}) {
        const auto it = config.find(unsupported);
        if (it != config.end() && !it->is_null() && *it != false) {
            notes.push_back(std::string("training: the optimizer's ") + unsupported + " is left out");
        }
    }
    node.SetStyle(YAML::EmitterStyle::Flow);
    return node;
}

}  // namespace

std::optional<YAML::Node> training_section(const json& compile_config, std::vector<std::string>& notes) {
    if (!compile_config.is_object() || !compile_config.contains("loss")) return std::nullopt;
    const std::optional<std::string> loss = loss_name(compile_config["loss"]);
    if (!loss) {
        notes.push_back("training: the loss " + shown(compile_config["loss"]) +
                        " is left out, and with it the training section (nngraph's losses: binary, categorical and " +
                        "sparse categorical cross-entropy and mse, from probabilities)");
        return std::nullopt;
    }
    YAML::Node training;
    training["loss"] = *loss;
    if (compile_config.contains("optimizer")) {
        if (std::optional<YAML::Node> node = optimizer(compile_config["optimizer"], notes))
            training["optimizer"] = *node;
    }
    const auto metrics = compile_config.find("metrics");
    if (metrics != compile_config.end() && metrics->is_array()) {
        for (const json& metric : *metrics) {
            if (metric == "accuracy" || metric == "acc") {
                training["metrics"].push_back("accuracy");
                training["metrics"].SetStyle(YAML::EmitterStyle::Flow);
            } else {
                notes.push_back("training: the metric " + shown(metric) + " is left out (nngraph computes accuracy)");
            }
        }
    }
    return training;
}

}  // namespace nngraph::keras
