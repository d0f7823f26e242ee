// A model file as written: both styles (Functional and Sequential) parsed into one description,
// with every position kept for error messages. Nothing here knows about plugins yet.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "graph/source_location.hpp"
#include "nngraph/plugin.h"
#include "nngraph/tensor.hpp"

namespace nngraph {

// A reference to a tensor: "dense" (output 0 of node dense) or "lstm:1" (output 1).
struct TensorRefSpec {
    std::string text;
    std::string node;
    int output = 0;
    SourceLocation where;
};

struct KeyedValue {
    std::string key;
    YAML::Node value;
    SourceLocation where;
};

struct NodeSpec {
    std::string name;
    bool name_given = false;
    std::string op;
    std::vector<TensorRefSpec> inputs;
    std::vector<KeyedValue> attributes;
    std::vector<KeyedValue> weights;  // inline initial values
    // `dtype:` on the node (Keras's per-layer policy), else the file's dtype_policy.
    nng_precision precision = NNG_PRECISION_FLOAT32;
    SourceLocation precision_where;
    SourceLocation where;
};

struct InputSpec {
    std::string name;
    Shape shape;  // without the batch dimension
    DType dtype = DType::F32;
    SourceLocation where;
};

// `sequence_parallel:` of a model file: under mpirun, whether every rank runs a share of every
// sample's steps. Auto: when an op spreads the sequence over the ranks itself (ring attention).
enum class SequenceParallelRequest { Auto, On, Off };

struct ModelSpec {
    std::filesystem::path path;
    std::string file;  // path as given, for messages
    std::string name;
    bool sequential = false;
    std::vector<InputSpec> inputs;
    std::vector<NodeSpec> nodes;  // file order
    std::vector<TensorRefSpec> outputs;
    std::vector<std::filesystem::path> plugin_dirs;      // resolved against the file's folder
    YAML::Node training;                                 // null when absent
    YAML::Node data;                                     // null when absent
    nng_precision dtype_policy = NNG_PRECISION_FLOAT32;  // `dtype_policy:`, every node's default
    SequenceParallelRequest sequence_parallel = SequenceParallelRequest::Auto;
};

// Parses a model file; throws InputError with file, line and column for every malformed part.
ModelSpec read_model_file(const std::filesystem::path& path);
ModelSpec parse_model(const std::string& yaml_text, const std::string& file_name,
                      const std::filesystem::path& base_dir);

// Keras's default layer name for an op: "GlobalAveragePooling1D" -> "global_average_pooling1d".
std::string keras_snake_case(const std::string& op);

// Reads a scalar of a YAML node as T, or throws a model_error naming `what`.
template <class T>
T yaml_as(const YAML::Node& node, const SourceLocation& where, const std::string& what);

}  // namespace nngraph
