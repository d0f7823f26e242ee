#include "graph/model_file.hpp"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include <yaml-cpp/eventhandler.h>

#include "graph/precision.hpp"

namespace nngraph {
namespace fs = std::filesystem;
namespace {

std::string kind_of(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Null:
            return "null";
        case YAML::NodeType::Scalar:
            return "a scalar";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Map:
            return "a map";
        default:
            return "nothing";
    }
}

// A model file describes a graph; large weights belong in safetensors files, not in YAML.
constexpr std::uintmax_t kMaxModelFileBytes = 1 << 20;
// yaml-cpp follows nesting by recursion and aliases by sharing nodes that every reader of the tree
// walks again: both are bounded before the tree is built.
constexpr std::size_t kMaxNesting = 64;
constexpr std::uint64_t kMaxExpandedValues = 1'000'000;

void check_model_file_size(std::uintmax_t bytes, const std::string& file) {
    if (bytes <= kMaxModelFileBytes) return;
    throw InputError(file + ": the model file has " + std::to_string(bytes) + " bytes, more than the limit of " +
                     std::to_string(kMaxModelFileBytes) +
                     "; a model file describes the graph: put large weights in a "
                     "safetensors file and give it with --weights");
}

// Reads a document's events as yaml-cpp parses them and refuses, at their position, nesting deeper
// than kMaxNesting, aliases inside the node they name or expanding to more than kMaxExpandedValues
// values, and a key repeated in one map (yaml-cpp keeps either silently).
class StructureCheck : public YAML::EventHandler {
public:
    explicit StructureCheck(const std::string& file) : file_(file) {}

    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, nullptr); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  const std::string& value) override {
        leaf(mark, anchor, &value);
    }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        next_child(mark, nullptr);
        for (const Open& open : open_) {
            if (open.anchor == anchor) fail(mark, "an alias refers to the node that contains it");
        }
        const auto size = anchor_sizes_.find(anchor);
        add_values(mark, size == anchor_sizes_.end() ? 1 : size->second);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        start(mark, anchor, false);
    }
    void OnSequenceEnd() override { end(); }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        start(mark, anchor, true);
    }
    void OnMapEnd() override { end(); }

private:
    struct Open {
        YAML::anchor_t anchor;
        std::uint64_t values_before;
        bool is_map;
        bool expecting_key = true;
        std::map<std::string, int> key_lines;  // scalar keys seen so far, with their 1-based lines
    };

    [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const {
        throw InputError(SourceLocation{file_, mark.line + 1, mark.column + 1}.str() + ": " + message);
    }

    // Keeps track of keys and values in the innermost map; `key` is the text of a scalar node.
    void next_child(const YAML::Mark& mark, const std::string* key) {
        if (open_.empty() || !open_.back().is_map) return;
        Open& map = open_.back();
        const bool is_key = map.expecting_key;
        map.expecting_key = !map.expecting_key;
        if (!is_key || !key) return;
        const auto [seen, inserted] = map.key_lines.emplace(*key, mark.line + 1);
        if (!inserted)
            fail(mark, "the key '" + *key + "' appears twice in one map (first on line " +
                           std::to_string(seen->second) + ")");
    }

    void add_values(const YAML::Mark& mark, std::uint64_t count) {
        values_ += count;
        if (values_ > kMaxExpandedValues) {
            fail(mark, "the aliases expand to more than " + std::to_string(kMaxExpandedValues) + " values");
        }
    }

    void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, const std::string* text) {
        next_child(mark, text);
        add_values(mark, 1);
        if (anchor) anchor_sizes_[anchor] = 1;
    }

    void start(const YAML::Mark& mark, YAML::anchor_t anchor, bool is_map) {
        next_child(mark, nullptr);
        if (open_.size() >= kMaxNesting) fail(mark, "nested deeper than " + std::to_string(kMaxNesting) + " levels");
        add_values(mark, 1);
        open_.push_back({anchor, values_ - 1, is_map});
    }

    void end() {
        const Open& closed = open_.back();
        if (closed.anchor) anchor_sizes_[closed.anchor] = values_ - closed.values_before;
        open_.pop_back();
    }

    const std::string& file_;
    std::vector<Open> open_;
    std::map<YAML::anchor_t, std::uint64_t> anchor_sizes_;  // values each anchored node expands to
    std::uint64_t values_ = 0;
};

class Parser {
public:
    Parser(std::string file, fs::path base_dir) : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

    ModelSpec parse(const YAML::Node& root) {
        if (!root.IsMap())
            throw error(root, "", "a model file is a map with 'nodes' (Functional) or 'layers' (Sequential)");
        ModelSpec spec;
        spec.file = file_;
        const bool functional = bool(root["nodes"]);
        const bool sequential = bool(root["layers"]);
        if (functional == sequential) {
            throw error(root, "",
                        functional ? "a model file has either 'nodes' (Functional) or 'layers' (Sequential), not both"
                                   : "expected 'nodes' (Functional style) or 'layers' (Sequential style)");
        }
        spec.sequential = sequential;
        check_keys(root, "", "model file",
                   sequential ? std::vector<std::string>{"name", "input", "layers", "training", "data", "plugins",
                                                         "dtype_policy", "sequence_parallel"}
                              : std::vector<std::string>{"name", "inputs", "nodes", "outputs", "training", "data",
                                                         "plugins", "dtype_policy", "sequence_parallel"});
        spec.name = root["name"] ? scalar<std::string>(root["name"], "", "'name'") : "model";
        if (root["dtype_policy"]) {
            spec.dtype_policy = parse_precision(scalar<std::string>(root["dtype_policy"], "", "'dtype_policy'"),
                                                SourceLocation::of(file_, root["dtype_policy"]), "");
            dtype_policy_where_ = SourceLocation::of(file_, root["dtype_policy"]);
        }
        dtype_policy_ = spec.dtype_policy;
        if (const YAML::Node n = root["sequence_parallel"]) {
            const std::string value = scalar<std::string>(n, "", "'sequence_parallel'");
            if (value != "auto" && value != "true" && value != "false")
                throw error(n, "", "'sequence_parallel' is auto, true or false, not '" + value + "'");
            spec.sequence_parallel = value == "auto"   ? SequenceParallelRequest::Auto
                                     : value == "true" ? SequenceParallelRequest::On
                                                       : SequenceParallelRequest::Off;
        }
        if (sequential)
            parse_sequential(root, spec);
        else
            parse_functional(root, spec);
        name_unnamed_nodes(spec);
        if (root["plugins"]) {
            for (const YAML::Node& dir : list(root["plugins"], "", "'plugins'")) {
                const fs::path p = scalar<std::string>(dir, "", "a plugin directory");
                spec.plugin_dirs.push_back(p.is_absolute() ? p : base_dir_ / p);
            }
        }
        // yaml-cpp: a missing key reads as an invalid node, which cannot be copied; keep null instead.
        if (root["training"]) spec.training = root["training"];
        if (root["data"]) spec.data = root["data"];
        return spec;
    }

private:
    InputError error(const YAML::Node& at, const std::string& node, const std::string& message) const {
        return model_error(SourceLocation::of(file_, at), node, message);
    }

    template <class T>
    T scalar(const YAML::Node& n, const std::string& node, const std::string& what) const {
        return yaml_as<T>(n, SourceLocation::of(file_, n), (node.empty() ? "" : "node '" + node + "': ") + what);
    }
    // A map's key: YAML allows any node there ({[units]: 2}); a model file's keys are names.
    std::string key(const YAML::Node& k, const std::string& node) const {
        return scalar<std::string>(k, node, "a key");
    }

    std::vector<YAML::Node> list(const YAML::Node& n, const std::string& node, const std::string& what) const {
        if (!n.IsSequence()) throw error(n, node, what + " must be a list, not " + kind_of(n));
        std::vector<YAML::Node> items;
        for (std::size_t i = 0; i < n.size(); ++i) items.push_back(n[i]);
        return items;
    }

    void check_keys(const YAML::Node& map, const std::string& node, const std::string& what,
                    const std::vector<std::string>& allowed) const {
        for (const auto& kv : map) {
            const std::string key = this->key(kv.first, node);
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string expected;
                for (const auto& a : allowed) expected += (expected.empty() ? "" : ", ") + a;
                throw error(kv.first, node, "unknown key '" + key + "' in " + what + "; expected one of: " + expected);
            }
        }
    }

    InputSpec parse_input(const YAML::Node& n, std::string default_name) const {
        if (!n.IsMap()) throw error(n, "", "an input is a map like {name: tokens, shape: [200], dtype: int32}");
        check_keys(n, "", "an input", {"name", "shape", "dtype"});
        InputSpec input;
        input.where = SourceLocation::of(file_, n);
        input.name = n["name"] ? scalar<std::string>(n["name"], "", "input 'name'") : std::move(default_name);
        if (input.name.empty()) throw error(n, "", "an input needs a 'name'");
        if (!n["shape"]) throw error(n, "", "input '" + input.name + "' needs a 'shape' (without the batch dimension)");
        for (const YAML::Node& d : list(n["shape"], "", "input '" + input.name + "' shape")) {
            const auto dim = scalar<std::int64_t>(d, "", "a dimension of input '" + input.name + "'");
            if (dim <= 0)
                throw error(d, "",
                            "input '" + input.name + "': dimensions must be positive, got " + std::to_string(dim));
            input.shape.push_back(dim);
        }
        const std::string dtype = n["dtype"] ? scalar<std::string>(n["dtype"], "", "input dtype") : "float32";
        if (dtype == "float32")
            input.dtype = DType::F32;
        else if (dtype == "int32")
            input.dtype = DType::I32;
        else if (dtype == "int64")
            input.dtype = DType::I64;
        else
            throw error(n["dtype"], "",
                        "input '" + input.name + "': dtype '" + dtype + "' is not one of float32, int32, int64");
        return input;
    }

    TensorRefSpec parse_ref(const YAML::Node& n, const std::string& node) const {
        TensorRefSpec ref;
        ref.where = SourceLocation::of(file_, n);
        ref.text = scalar<std::string>(n, node, "a tensor reference");
        static const std::regex pattern(R"(^([^:]+)(?::(\d+))?$)");
        std::smatch m;
        if (!std::regex_match(ref.text, m, pattern)) {
            throw error(n, node,
                        "'" + ref.text + "' is not a tensor reference; expected 'node' or 'node:output_index'");
        }
        ref.node = m[1];
        if (m[2].matched) {
            const std::string index = m[2];
            const auto [end, status] = std::from_chars(index.data(), index.data() + index.size(), ref.output);
            if (status != std::errc() || end != index.data() + index.size()) {
                throw error(n, node,
                            "'" + ref.text + "': output index " + index +
                                " is out of range; a node has only a few outputs, numbered from 0");
            }
        }
        return ref;
    }

    // The keys every node may have besides its op's attributes.
    NodeSpec parse_node_body(const YAML::Node& n, bool allow_inputs) const {
        NodeSpec node;
        node.where = SourceLocation::of(file_, n);
        if (!n.IsMap()) throw error(n, "", "a node is a map like {name: dense, op: Dense, units: 1}");
        if (n["name"]) {
            node.name = scalar<std::string>(n["name"], "", "node 'name'");
            node.name_given = true;
            if (node.name.empty() || node.name.find(':') != std::string::npos ||
                node.name.find('.') != std::string::npos) {
                throw error(n["name"], node.name, "a node name must be non-empty and contain no ':' or '.'");
            }
        }
        if (!n["op"]) throw error(n, node.name, "missing 'op' (the operator, e.g. Dense)");
        node.op = scalar<std::string>(n["op"], node.name, "'op'");
        node.precision = dtype_policy_;
        node.precision_where = dtype_policy_where_;
        if (n["dtype"]) {
            node.precision_where = SourceLocation::of(file_, n["dtype"]);
            node.precision =
                parse_precision(scalar<std::string>(n["dtype"], node.name, "'dtype'"), node.precision_where, node.name);
        }
        for (const auto& kv : n) {
            const std::string key = this->key(kv.first, node.name);
            if (key == "name" || key == "op" || key == "dtype") continue;
            if (key == "inputs") {
                if (!allow_inputs)
                    throw error(kv.first, node.name,
                                "a Sequential layer takes no 'inputs': it reads the layer before it");
                const YAML::Node& in = kv.second;
                if (in.IsScalar())
                    node.inputs.push_back(parse_ref(in, node.name));
                else
                    for (const YAML::Node& r : list(in, node.name, "'inputs'"))
                        node.inputs.push_back(parse_ref(r, node.name));
            } else if (key == "weights") {
                if (!kv.second.IsMap())
                    throw error(kv.second, node.name, "'weights' is a map from weight name to nested lists");
                for (const auto& w : kv.second) {
                    node.weights.push_back(
                        {this->key(w.first, node.name), w.second, SourceLocation::of(file_, w.first)});
                }
            } else {
                node.attributes.push_back({key, kv.second, SourceLocation::of(file_, kv.first)});
            }
        }
        return node;
    }

    void parse_functional(const YAML::Node& root, ModelSpec& spec) const {
        if (!root["inputs"]) throw error(root, "", "a Functional model file needs 'inputs'");
        for (const YAML::Node& in : list(root["inputs"], "", "'inputs'")) spec.inputs.push_back(parse_input(in, ""));
        for (const YAML::Node& n : list(root["nodes"], "", "'nodes'")) {
            NodeSpec node = parse_node_body(n, true);
            if (node.inputs.empty()) throw error(n, node.name, "missing 'inputs' (the tensors this node reads)");
            spec.nodes.push_back(std::move(node));
        }
        if (!root["outputs"]) throw error(root, "", "a Functional model file needs 'outputs'");
        const YAML::Node& outs = root["outputs"];
        if (outs.IsScalar())
            spec.outputs.push_back(parse_ref(outs, ""));
        else
            for (const YAML::Node& o : list(outs, "", "'outputs'")) spec.outputs.push_back(parse_ref(o, ""));
        if (spec.outputs.empty()) throw error(outs, "", "'outputs' must name at least one tensor");
    }

    void parse_sequential(const YAML::Node& root, ModelSpec& spec) const {
        if (!root["input"]) throw error(root, "", "a Sequential model file needs 'input' ({shape: [...], dtype: ...})");
        spec.inputs.push_back(parse_input(root["input"], "input"));
        for (const YAML::Node& n : list(root["layers"], "", "'layers'"))
            spec.nodes.push_back(parse_node_body(n, false));
        if (spec.nodes.empty()) throw error(root["layers"], "", "'layers' must hold at least one layer");
    }

    // Keras's naming: snake_case of the op, then _1, _2, ... for repeats; names taken explicitly are skipped.
    static void name_unnamed_nodes(ModelSpec& spec) {
        std::set<std::string> taken;
        for (const auto& in : spec.inputs) taken.insert(in.name);
        for (const auto& node : spec.nodes) {
            if (node.name_given) taken.insert(node.name);
        }
        std::map<std::string, int> next_suffix;
        for (auto& node : spec.nodes) {
            if (node.name_given) continue;
            const std::string base = keras_snake_case(node.op);
            for (;;) {
                int& suffix = next_suffix[base];
                std::string candidate = suffix == 0 ? base : base + "_" + std::to_string(suffix);
                ++suffix;
                if (taken.insert(candidate).second) {
                    node.name = std::move(candidate);
                    break;
                }
            }
        }
        if (spec.sequential) {
            // Each layer reads the one before it; the model's output is its last layer.
            std::string previous = spec.inputs.front().name;
            for (auto& node : spec.nodes) {
                node.inputs.push_back({previous, previous, 0, node.where});
                previous = node.name;
            }
            spec.outputs.push_back({previous, previous, 0, spec.nodes.back().where});
        }
    }

    std::string file_;
    fs::path base_dir_;
    nng_precision dtype_policy_ = NNG_PRECISION_FLOAT32;  // the file's, for nodes without `dtype`
    SourceLocation dtype_policy_where_;
};

}  // namespace

template <class T>
T yaml_as(const YAML::Node& node, const SourceLocation& where, const std::string& what) {
    const char* expected = std::is_same_v<T, std::string> ? "a string"
                           : std::is_same_v<T, bool>      ? "true or false"
                           : std::is_integral_v<T>        ? "an integer"
                                                          : "a number";
    if (!node.IsScalar()) throw model_error(where, "", what + ": expected " + expected + ", got " + kind_of(node));
    try {
        return node.as<T>();
    } catch (const YAML::Exception&) {
        throw model_error(where, "", what + ": expected " + expected + ", got '" + node.Scalar() + "'");
    }
}
template std::string yaml_as<std::string>(const YAML::Node&, const SourceLocation&, const std::string&);
template std::int64_t yaml_as<std::int64_t>(const YAML::Node&, const SourceLocation&, const std::string&);
template double yaml_as<double>(const YAML::Node&, const SourceLocation&, const std::string&);
template bool yaml_as<bool>(const YAML::Node&, const SourceLocation&, const std::string&);

std::string keras_snake_case(const std::string& op) {
    // Keras: re.sub("(.)([A-Z][a-z]+)", r"\1_\2"), then re.sub("([a-z])([A-Z])", r"\1_\2"), lower().
    static const std::regex word_start("(.)([A-Z][a-z]+)");
    static const std::regex lower_upper("([a-z])([A-Z])");
    std::string name;
    for (char c : op) {
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') name += c;
    }
    name = std::regex_replace(name, word_start, "$1_$2");
    name = std::regex_replace(name, lower_upper, "$1_$2");
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return name;
}

ModelSpec parse_model(const std::string& yaml_text, const std::string& file_name, const fs::path& base_dir) {
    check_model_file_size(yaml_text.size(), file_name);
    YAML::Node root;
    try {
        std::istringstream events(yaml_text);
        YAML::Parser parser(events);
        StructureCheck check(file_name);
        parser.HandleNextDocument(check);
        root = YAML::Load(yaml_text);
    } catch (const YAML::ParserException& e) {
        throw InputError(SourceLocation{file_name, e.mark.line + 1, e.mark.column + 1}.str() +
                         ": not valid YAML: " + e.msg);
    }
    return Parser(file_name, base_dir).parse(root);
}

ModelSpec read_model_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError("cannot open model file '" + path.string() + "'");
    std::error_code ec;
    if (const std::uintmax_t bytes = fs::file_size(path, ec); !ec) check_model_file_size(bytes, path.string());
    std::stringstream text;
    text << in.rdbuf();
    ModelSpec spec = parse_model(text.str(), path.string(), fs::absolute(path).parent_path());
    spec.path = path;
    return spec;
}

}  // namespace nngraph
