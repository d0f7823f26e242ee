#include "keras/keras_converter.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "keras/keras_layers.hpp"
#include "keras/keras_training.hpp"
#include "nngraph/error.hpp"

namespace nngraph::keras {
namespace {

constexpr std::size_t kMaxShown = 80;
constexpr int kMaxDepth = 32;
constexpr std::int64_t kMaxDimension = std::int64_t{1} << 31;

// Initializer names the engine's ops take (docs/operators.md); others are left to the op's default,
// which the imported weights replace anyway.
const std::set<std::string> kEngineInitializers = {
    "glorot_uniform", "he_uniform",    "orthogonal",       "zeros",   "ones",
    "random_uniform", "random_normal", "truncated_normal", "uniform", "normal"};

std::string shown(const std::string& text) {
    return text.size() <= kMaxShown ? text : text.substr(0, kMaxShown) + "...";
}

std::string shown(const json& value) {
    if (value.is_string()) return shown(value.get<std::string>());
    return shown(value.dump());
}

// A referenced tensor: output `index` of the layer or input `layer`.
struct TensorRef {
    std::string layer;
    std::int64_t node_index = 0;
    std::int64_t index = 0;
};

struct KerasLayer {
    std::string keras_class;
    std::string module;
    std::string name;
    const json* config = nullptr;
    const json* entry = nullptr;
};

class Converter {
public:
    Converter(const WeightsFile& weights, const json& compile_config, std::string label)
        : weights_(weights), compile_config_(compile_config), label_(std::move(label)) {}

    Conversion sequential(const json& model) {
        const json& layers = array_at(model, "layers", "the Sequential config");
        YAML::Node root;
        root["name"] = string_or(model, "name", "sequential");
        YAML::Node input;
        YAML::Node nodes(YAML::NodeType::Sequence);
        std::optional<Shape> input_shape;
        std::string input_dtype = "float32";
        std::size_t first = 0;
        if (!layers.empty() && class_of(layers[0]) == "InputLayer") {
            const KerasLayer layer = parse_layer(layers[0]);
            input["name"] = layer.name;
            input_shape = input_layer_shape(layer);
            input_dtype = dtype_name(*layer.config);
            first = 1;
        } else if (model.contains("build_input_shape")) {
            input_shape = shape_without_batch(model["build_input_shape"], "the Sequential's build_input_shape");
        }
        for (std::size_t i = first; i < layers.size(); ++i) {
            const KerasLayer layer = parse_layer(layers[i]);
            const LayerKind* kind = kind_of(layer);
            if (!kind) continue;
            if (!input_shape) input_shape = build_input_shape(layer);
            nodes.push_back(layer_node(layer, *kind, {}, nullptr));
            if (i == first && kind->op == "Embedding") input_dtype = "int32";
        }
        refuse_unknown_layers();
        if (!input_shape) {
            throw InputError(label_ + ": config.json gives the Sequential model no input shape (no InputLayer, " +
                             "build_input_shape or build_config); build the model before saving it");
        }
        input["shape"] = shape_node(*input_shape);
        input["dtype"] = input_dtype;
        input.SetStyle(YAML::EmitterStyle::Flow);
        root["input"] = input;
        root["layers"] = nodes;
        return finish(root);
    }

    Conversion functional(const json& model) {
        const json& layers = array_at(model, "layers", "the Functional config");
        std::vector<KerasLayer> parsed;
        for (const json& entry : layers) parsed.push_back(parse_layer(entry));

        std::map<std::string, std::vector<std::string>> consumers;  // input name -> ops reading it
        std::vector<std::pair<KerasLayer, std::vector<TensorRef>>> calls;
        for (const KerasLayer& layer : parsed) {
            if (layer.keras_class == "InputLayer") {
                calls.emplace_back(layer, std::vector<TensorRef>{});
                continue;
            }
            std::vector<TensorRef> inputs = inbound_tensors(layer);
            for (const TensorRef& ref : inputs) consumers[ref.layer].push_back(layer.keras_class);
            calls.emplace_back(layer, std::move(inputs));
        }

        YAML::Node root;
        root["name"] = string_or(model, "name", "functional");
        YAML::Node inputs(YAML::NodeType::Sequence);
        YAML::Node nodes(YAML::NodeType::Sequence);
        for (const auto& [layer, refs] : calls) {
            if (layer.keras_class == "InputLayer") {
                next_group(layer);
                YAML::Node input;
                input["name"] = layer.name;
                input["shape"] = shape_node(input_layer_shape(layer));
                std::string dtype = dtype_name(*layer.config);
                const auto& readers = consumers[layer.name];
                // Keras casts float ids to integers inside Embedding; the engine reads them as ids.
                if (!readers.empty() && std::all_of(readers.begin(), readers.end(),
                                                    [](const std::string& c) { return c == "Embedding"; })) {
                    dtype = "int32";
                }
                input["dtype"] = dtype;
                input.SetStyle(YAML::EmitterStyle::Flow);
                inputs.push_back(input);
                continue;
            }
            if (is_operation(layer)) {
                const std::optional<std::string_view> op = operation_op(layer.keras_class);
                if (!op) {
                    unknown_.push_back("'" + shown(layer.name) + "' (" + shown(layer.keras_class) + ", an operation)");
                    continue;
                }
                YAML::Node node;
                node["name"] = layer.name;
                node["op"] = std::string(*op);
                node["inputs"] = references(refs);
                node.SetStyle(YAML::EmitterStyle::Flow);
                nodes.push_back(node);
                continue;
            }
            const LayerKind* kind = kind_of(layer);
            if (!kind) continue;
            nodes.push_back(layer_node(layer, *kind, refs, &call_arguments(layer)));
        }
        refuse_unknown_layers();

        root["inputs"] = inputs;
        root["nodes"] = nodes;
        std::vector<TensorRef> outputs;
        collect_layer_triples(model.contains("output_layers") ? model["output_layers"] : json(), outputs, 0);
        if (outputs.empty()) throw InputError(label_ + ": config.json's Functional model names no output_layers");
        YAML::Node output_names = references(outputs);
        root["outputs"] = output_names;
        return finish(root);
    }

private:
    // ---- config.json ------------------------------------------------------------------------

    const json& array_at(const json& object, const char* key, const std::string& what) const {
        if (!object.is_object() || !object.contains(key) || !object[key].is_array()) {
            throw InputError(label_ + ": config.json: " + what + " has no '" + key + "' list");
        }
        return object[key];
    }

    static std::string string_or(const json& object, const char* key, const std::string& fallback) {
        const auto it = object.find(key);
        return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
    }

    static std::string class_of(const json& entry) {
        return entry.is_object() ? string_or(entry, "class_name", "") : "";
    }

    KerasLayer parse_layer(const json& entry) const {
        if (!entry.is_object() || !entry.contains("config") || !entry["config"].is_object()) {
            throw InputError(label_ + ": config.json: a layer entry without a 'config' object: " + shown(entry));
        }
        KerasLayer layer;
        layer.entry = &entry;
        layer.config = &entry["config"];
        layer.keras_class = string_or(entry, "class_name", "");
        layer.module = string_or(entry, "module", "");
        layer.name = string_or(entry, "name", string_or(*layer.config, "name", ""));
        if (layer.keras_class.empty() || layer.name.empty()) {
            throw InputError(label_ + ": config.json: a layer entry without a class_name or name: " + shown(entry));
        }
        if (layer.name.find_first_of(":.") != std::string::npos) {
            throw InputError(label_ + ": layer '" + shown(layer.name) + "' (" + shown(layer.keras_class) +
                             "): nngraph's node names may not contain ':' or '.'; rename the layer in Keras");
        }
        return layer;
    }

    static bool is_operation(const KerasLayer& layer) {
        return layer.module.rfind("keras.src.ops", 0) == 0 || layer.module.rfind("keras.ops", 0) == 0;
    }

    // The layer's kind, or nothing after noting it as refused; every layer counts for the weight keys.
    const LayerKind* kind_of(const KerasLayer& layer) {
        const std::string key = next_group(layer);
        const LayerKind* kind = find_layer_kind(layer.keras_class);
        if (!kind) unknown_.push_back("'" + shown(layer.name) + "' (" + shown(layer.keras_class) + ")");
        group_of_[layer.name] = key;
        return kind;
    }

    // Keras stores a model's layers under `layers/<class in snake_case>`, numbered _1, _2, ... by
    // class in layer order (saving_lib's _save_container_state), whatever the layers' names.
    std::string next_group(const KerasLayer& layer) {
        const std::string base = to_snake_case(layer.keras_class);
        const auto [it, fresh] = used_group_names_.try_emplace(base, 0);
        if (!fresh) ++it->second;
        return "layers/" + (fresh ? base : base + "_" + std::to_string(it->second));
    }

    void refuse_unknown_layers() const {
        if (unknown_.empty()) return;
        std::string list;
        for (const std::string& layer : unknown_) list += (list.empty() ? "" : ", ") + layer;
        throw InputError(label_ + ": the engine has no op for layer " + list +
                         " (imported: Dense, Activation, Embedding, Dropout, LSTM, Attention, MultiHeadAttention, " +
                         "LayerNormalization, the 1D poolings, Add, Multiply, Concatenate, Flatten, Reshape)");
    }

    Shape shape_without_batch(const json& dims, const std::string& what) const {
        if (!dims.is_array() || dims.empty()) {
            throw InputError(label_ + ": " + what + " is not a shape with a batch dimension: " + shown(dims));
        }
        Shape shape;
        for (std::size_t i = 1; i < dims.size(); ++i) {
            if (!dims[i].is_number_integer() || dims[i].get<std::int64_t>() < 1 ||
                dims[i].get<std::int64_t>() > kMaxDimension) {
                throw InputError(label_ + ": " + what + " " + shown(dims) +
                                 ": every dimension but the batch must be a fixed size from 1 to 2^31 (nngraph " +
                                 "plans its memory from the input shapes)");
            }
            shape.push_back(dims[i].get<std::int64_t>());
        }
        return shape;
    }

    Shape input_layer_shape(const KerasLayer& layer) const {
        const json& config = *layer.config;
        const std::string what = " of input '" + shown(layer.name) + "'";
        for (const char* key : {"batch_shape", "batch_input_shape"}) {
            if (config.contains(key)) return shape_without_batch(config[key], std::string("the ") + key + what);
        }
        if (config.contains("shape") && config["shape"].is_array()) {
            json with_batch = json::array({nullptr});
            for (const json& d : config["shape"]) with_batch.push_back(d);
            return shape_without_batch(with_batch, "the shape" + what);
        }
        throw InputError(label_ + ": " + what + " has no batch_shape");
    }

    std::optional<Shape> build_input_shape(const KerasLayer& layer) const {
        const json& entry = *layer.entry;
        if (entry.contains("build_config") && entry["build_config"].is_object() &&
            entry["build_config"].contains("input_shape")) {
            return shape_without_batch(entry["build_config"]["input_shape"],
                                       "the build input shape of layer '" + shown(layer.name) + "'");
        }
        return std::nullopt;
    }

    // "float32", or the name inside a dtype policy ({"class_name": "DTypePolicy", "config": {"name": ...}}).
    std::string dtype_name(const json& config) const {
        std::string dtype = "float32";
        const auto it = config.find("dtype");
        if (it != config.end()) {
            if (it->is_string()) {
                dtype = it->get<std::string>();
            } else if (it->is_object() && it->contains("config") && (*it)["config"].is_object()) {
                dtype = string_or((*it)["config"], "name", dtype);
            }
        }
        if (dtype != "float32" && dtype != "int32" && dtype != "int64") {
            throw InputError(label_ + ": an input of dtype '" + shown(dtype) +
                             "'; nngraph's inputs are float32, int32 or int64");
        }
        return dtype;
    }

    // ---- inbound nodes ----------------------------------------------------------------------

    // Keras 3 writes each call as {"args": [...], "kwargs": {...}}; tensors are
    // {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, index]}}.
    std::vector<TensorRef> inbound_tensors(const KerasLayer& layer) const {
        const json& entry = *layer.entry;
        if (!entry.contains("inbound_nodes") || !entry["inbound_nodes"].is_array()) {
            throw InputError(label_ + ": layer '" + shown(layer.name) + "' has no inbound_nodes");
        }
        const json& calls = entry["inbound_nodes"];
        if (calls.size() != 1) {
            throw InputError(label_ + ": layer '" + shown(layer.name) + "' (" + shown(layer.keras_class) +
                             ") is called " + std::to_string(calls.size()) +
                             " times; nngraph's nodes are not shared, so each call must be its own layer");
        }
        const json& call = calls[0];
        std::vector<TensorRef> refs;
        if (call.is_object()) {
            const std::size_t constants = collect_tensors(call.value("args", json::array()), refs, 0);
            if (constants > 0 && is_operation(layer)) {
                throw InputError(label_ + ": operation '" + shown(layer.name) + "' (" + shown(layer.keras_class) +
                                 ") has a constant operand; nngraph's " + shown(layer.keras_class) +
                                 " takes tensors only");
            }
            const json kwargs = call.value("kwargs", json::object());
            for (const char* key : {"query", "value", "key"}) {
                if (kwargs.is_object() && kwargs.contains(key)) collect_tensors(kwargs[key], refs, 0);
            }
            if (kwargs.is_object()) {
                for (const auto& [key, value] : kwargs.items()) {
                    if (key == "query" || key == "value" || key == "key") continue;
                    std::vector<TensorRef> extra;
                    collect_tensors(value, extra, 0);
                    if (!extra.empty()) {
                        throw InputError(label_ + ": layer '" + shown(layer.name) + "' is given the tensor '" +
                                         shown(key) + "'; nngraph takes masks only from Embedding(mask_zero)");
                    }
                }
            }
        } else {
            collect_layer_triples(call, refs, 0);  // the older [[layer, node, index, kwargs], ...]
        }
        if (refs.empty()) throw InputError(label_ + ": layer '" + shown(layer.name) + "' reads no tensor");
        return refs;
    }

    // Appends the tensors in `value` in order; returns how many non-tensor leaves it met.
    std::size_t collect_tensors(const json& value, std::vector<TensorRef>& refs, int depth) const {
        if (depth > kMaxDepth) throw InputError(label_ + ": config.json nests a layer's arguments too deeply");
        if (value.is_object() && value.value("class_name", "") == "__keras_tensor__") {
            const json history = value.contains("config") && value["config"].is_object()
                                     ? value["config"].value("keras_history", json())
                                     : json();
            refs.push_back(tensor_ref(history));
            return 0;
        }
        if (value.is_array()) {
            std::size_t constants = 0;
            for (const json& item : value) constants += collect_tensors(item, refs, depth + 1);
            return constants;
        }
        return value.is_null() ? 0 : 1;
    }

    static bool is_triple(const json& value) {
        return value.is_array() && value.size() >= 3 && value[0].is_string() && value[1].is_number_integer() &&
               value[2].is_number_integer();
    }

    // [layer, node, index] triples in nested lists or maps (input_layers, output_layers).
    void collect_layer_triples(const json& value, std::vector<TensorRef>& refs, int depth) const {
        if (depth > kMaxDepth) throw InputError(label_ + ": config.json nests a layer list too deeply");
        if (is_triple(value)) {
            refs.push_back(tensor_ref(value));
        } else if (value.is_array() || value.is_object()) {
            for (const json& item : value) collect_layer_triples(item, refs, depth + 1);
        }
    }

    TensorRef tensor_ref(const json& history) const {
        if (!is_triple(history)) {
            throw InputError(label_ +
                             ": config.json: a tensor reference is not [layer, node, index]: " + shown(history));
        }
        TensorRef ref{history[0].get<std::string>(), history[1].get<std::int64_t>(), history[2].get<std::int64_t>()};
        if (ref.node_index != 0) {
            throw InputError(label_ + ": layer '" + shown(ref.layer) + "' is called more than once; nngraph's nodes " +
                             "are not shared, so each call must be its own layer");
        }
        if (ref.index < 0 || ref.index > 64) {
            throw InputError(label_ + ": output " + std::to_string(ref.index) + " of '" + shown(ref.layer) +
                             "' does not exist");
        }
        return ref;
    }

    static YAML::Node references(const std::vector<TensorRef>& refs) {
        YAML::Node list(YAML::NodeType::Sequence);
        for (const TensorRef& ref : refs) {
            list.push_back(ref.index == 0 ? ref.layer : ref.layer + ":" + std::to_string(ref.index));
        }
        list.SetStyle(YAML::EmitterStyle::Flow);
        return list;
    }

    // Arguments of the call that the engine holds as attributes (use_causal_mask).
    const json& call_arguments(const KerasLayer& layer) const {
        static const json none = json::object();
        const json& calls = (*layer.entry)["inbound_nodes"];
        if (calls.size() == 1 && calls[0].is_object() && calls[0].contains("kwargs") &&
            calls[0]["kwargs"].is_object()) {
            return calls[0]["kwargs"];
        }
        return none;
    }

    // ---- layers -----------------------------------------------------------------------------

    YAML::Node layer_node(const KerasLayer& layer, const LayerKind& kind, const std::vector<TensorRef>& refs,
                          const json* call_kwargs) {
        YAML::Node node;
        node["name"] = layer.name;
        node["op"] = std::string(kind.op);
        if (call_kwargs) node["inputs"] = references(refs);
        const json& config = *layer.config;
        for (const auto& [key, wanted] : kind.required) {
            const auto it = config.find(std::string(key));
            if (it != config.end() && *it != wanted) {
                throw InputError(label_ + ": layer '" + shown(layer.name) + "' (" + layer.keras_class + ") has " +
                                 std::string(key) + ": " + shown(*it) + "; nngraph's " + std::string(kind.op) +
                                 " computes only " + std::string(key) + ": " + wanted.dump());
            }
        }
        refuse_quantized(layer);
        for (const std::string_view key : kind.attributes) {
            const auto it = config.find(std::string(key));
            if (it == config.end()) continue;
            if (std::optional<YAML::Node> value = attribute(layer, std::string(key), *it)) {
                node[std::string(key)] = *value;
            }
        }
        if (call_kwargs) {
            if (call_kwargs->value("return_attention_scores", false) == true) {
                throw InputError(label_ + ": layer '" + shown(layer.name) +
                                 "' returns its attention scores; nngraph's attention ops return the output only");
            }
            if (call_kwargs->contains("use_causal_mask") && (*call_kwargs)["use_causal_mask"] == true) {
                node["use_causal_mask"] = true;
            }
        }
        node.SetStyle(YAML::EmitterStyle::Flow);
        read_variables(layer, kind);
        return node;
    }

    // A quantized layer (dtype policy "int8_from_float32", ...) stores integer kernels and scales.
    void refuse_quantized(const KerasLayer& layer) const {
        const auto it = layer.config->find("dtype");
        if (it == layer.config->end() || !it->is_object()) return;
        const std::string policy_class = string_or(*it, "class_name", "");
        const std::string policy_name =
            it->contains("config") && (*it)["config"].is_object() ? string_or((*it)["config"], "name", "") : "";
        if (policy_class.find("Quantized") != std::string::npos || policy_name.find("_from_") != std::string::npos) {
            throw InputError(label_ + ": layer '" + shown(layer.name) + "' is quantized (dtype policy '" +
                             shown(policy_name) + "'); nngraph imports float weights");
        }
    }

    std::optional<YAML::Node> attribute(const KerasLayer& layer, const std::string& key, const json& value) const {
        if (key.size() > 12 && key.ends_with("_initializer")) {
            std::string name =
                value.is_string()
                    ? value.get<std::string>()
                    : (value.is_object() ? to_snake_case(string_or(value, "class_name", "")) : std::string());
            if (!kEngineInitializers.contains(name)) return std::nullopt;
            return YAML::Node(name);
        }
        if (key == "activation" || key == "recurrent_activation") {
            if (value.is_null() || value.is_string()) return yaml_value(value, 0);
            if (value.is_object() && value.contains("config") && value["config"].is_string()) {
                return YAML::Node(value["config"].get<std::string>());
            }
            throw InputError(label_ + ": layer '" + shown(layer.name) + "' has a custom " + key + " " + shown(value) +
                             "; nngraph knows Keras's built-in activations by name");
        }
        return yaml_value(value, 0);
    }

    YAML::Node yaml_value(const json& value, int depth) const {
        if (depth > kMaxDepth) throw InputError(label_ + ": config.json nests an attribute too deeply");
        if (value.is_null()) return YAML::Node(YAML::NodeType::Null);
        if (value.is_boolean()) return YAML::Node(value.get<bool>());
        if (value.is_number_integer()) return YAML::Node(value.get<std::int64_t>());
        // nlohmann prints the shortest text that reads back as the same double.
        if (value.is_number()) return YAML::Node(value.dump());
        if (value.is_string()) return YAML::Node(value.get<std::string>());
        YAML::Node node(value.is_array() ? YAML::NodeType::Sequence : YAML::NodeType::Map);
        if (value.is_array()) {
            for (const json& item : value) node.push_back(yaml_value(item, depth + 1));
        } else {
            for (const auto& [key, item] : value.items()) node[key] = yaml_value(item, depth + 1);
        }
        node.SetStyle(YAML::EmitterStyle::Flow);
        return node;
    }

    // ---- model.weights.h5 -------------------------------------------------------------------

    void read_variables(const KerasLayer& layer, const LayerKind& kind) {
        const std::string& group = group_of_.at(layer.name);
        const std::string where = "layer '" + shown(layer.name) + "' (" + layer.keras_class + ")";
        if (const std::optional<std::string> stored = weights_.stored_name(group); stored && *stored != layer.name) {
            throw InputError(label_ + ": model.weights.h5 holds layer '" + shown(*stored) + "' at " + group +
                             ", where config.json's layer order puts " + where);
        }
        for (const VariableGroup& variables : kind.variables(*layer.config)) {
            std::string path = group;
            for (const std::string& sub : variables.subgroups) {
                const std::string candidate = sub.empty() ? group : group + "/" + sub;
                if (weights_.has_group(candidate)) {
                    path = candidate;
                    break;
                }
            }
            std::vector<Tensor> values = weights_.variables(path);
            if (values.size() != variables.names.size()) {
                std::string expected;
                for (const std::string& name : variables.names) expected += (expected.empty() ? "" : ", ") + name;
                throw InputError(label_ + ": " + where + ": expected " + std::to_string(variables.names.size()) +
                                 " variables (" + expected + ") in model.weights.h5 at " + path + "/vars, found " +
                                 std::to_string(values.size()));
            }
            for (std::size_t i = 0; i < values.size(); ++i) {
                result_.weights.tensors[layer.name + "." + variables.prefix + variables.names[i]] =
                    std::move(values[i]);
            }
        }
    }

    static YAML::Node shape_node(const Shape& shape) {
        YAML::Node node(YAML::NodeType::Sequence);
        for (const std::int64_t d : shape) node.push_back(d);
        node.SetStyle(YAML::EmitterStyle::Flow);
        return node;
    }

    Conversion finish(YAML::Node root) {
        if (std::optional<YAML::Node> training = training_section(compile_config_, result_.notes)) {
            root["training"] = *training;
        }
        const std::int64_t optimizer_variables = weights_.count_variables("optimizer");
        if (optimizer_variables > 0) {
            result_.notes.push_back("skipped the optimizer's state (" + std::to_string(optimizer_variables) +
                                    " variables): training the imported model starts its optimizer afresh");
        }
        YAML::Emitter out;
        out << root;
        result_.model_file = std::string("# Imported from ") + label_ + " by nngraph import.\n" + out.c_str() + "\n";
        return std::move(result_);
    }

    const WeightsFile& weights_;
    const json& compile_config_;
    std::string label_;
    std::map<std::string, int> used_group_names_;
    std::map<std::string, std::string> group_of_;  // layer name -> its group in model.weights.h5
    std::vector<std::string> unknown_;
    Conversion result_;
};

}  // namespace

Conversion convert_keras_model(const json& config, const WeightsFile& weights, const std::string& label) {
    if (!config.is_object() || !config.contains("config") || !config["config"].is_object()) {
        throw InputError(label +
                         ": config.json holds no model config (expected {\"class_name\": ..., \"config\": ...})");
    }
    const std::string model_class = config.value("class_name", "");
    static const json no_compile_config;
    Converter converter(weights, config.contains("compile_config") ? config["compile_config"] : no_compile_config,
                        label);
    if (model_class == "Sequential") return converter.sequential(config["config"]);
    if (model_class == "Functional" || model_class == "Model") return converter.functional(config["config"]);
    throw InputError(label + ": config.json holds a '" + shown(model_class) +
                     "' model; nngraph imports Sequential and Functional models (a subclassed model has no " +
                     "config to import)");
}

}  // namespace nngraph::keras
