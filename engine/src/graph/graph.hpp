// The model as a graph: a Boost.Graph adjacency_list of nodes (graph inputs and op instances),
// with edges from a producing output to a consuming input, shape-inferred at load with a dynamic
// batch dimension, and a topological order computed once.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "graph/model_file.hpp"
#include "nngraph/op_types.hpp"
#include "nngraph/registry.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph {

class OpInstance;
class AttributeValues;

using TensorId = int;
using NodeId = int;
using WeightId = int;

struct GraphTensor {
    std::string name;  // "dense", "lstm:1", "embedding:mask"
    TensorInfo info;   // dim 0 is -1 (the batch)
    NodeId producer = -1;
    int output_index = 0;
    bool is_mask = false;
    TensorId mask = -1;  // this tensor's mask, if one travels with it
    nng_output_role role = NNG_OUTPUT_VISIBLE;
    TensorId logits = -1;                           // a visible sigmoid/softmax output: its hidden pre-activation twin
    std::vector<std::pair<NodeId, int>> consumers;  // (node, input slot), in graph order
};

struct GraphWeight {
    std::string name;  // "<node>.<weight>", as in weight files
    NodeId node = -1;
    int index = 0;  // position among the node's weights
    WeightInfo info;
    std::optional<Tensor> inline_value;  // from the model file's `weights:`
};

struct GraphNode {
    std::string name;
    std::string op;  // "InputLayer" for graph inputs
    bool is_input = false;
    std::shared_ptr<OpInstance> instance;
    std::shared_ptr<AttributeValues> attributes;
    std::vector<TensorId> inputs;
    std::vector<TensorId> outputs;
    std::vector<WeightId> weights;
    InferResult shapes;  // load-time inference (dynamic batch)
    SourceLocation where;
};

struct GraphEdge {
    int output = 0;  // the producer's output index
    int input = 0;   // the consumer's input slot
};

using GraphStorage = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, GraphNode, GraphEdge>;

class Graph {
public:
    // Reads, checks and shape-infers a model file. `search` gives the --plugins directories; the
    // model file's own `plugins:` entries are added to it. Throws InputError on any problem.
    static std::shared_ptr<const Graph> load(const std::filesystem::path& model_file, PluginSearch search = {});
    static std::shared_ptr<const Graph> from_spec(ModelSpec spec, PluginSearch search = {});

    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    ~Graph();

    const std::string& name() const { return spec_.name; }
    const ModelSpec& spec() const { return spec_; }
    const OpRegistry& registry() const { return *registry_; }
    const GraphStorage& storage() const { return storage_; }

    std::size_t num_nodes() const { return boost::num_vertices(storage_); }
    const GraphNode& node(NodeId id) const { return storage_[static_cast<std::size_t>(id)]; }
    const GraphTensor& tensor(TensorId id) const { return tensors_.at(static_cast<std::size_t>(id)); }
    const std::vector<GraphTensor>& tensors() const { return tensors_; }
    const std::vector<GraphWeight>& weights() const { return weights_; }
    std::optional<WeightId> find_weight(const std::string& name) const;
    std::optional<TensorId> find_tensor(const std::string& name) const;

    // Execution order: every node after the nodes it reads (graph inputs included).
    const std::vector<NodeId>& order() const { return order_; }
    const std::vector<TensorId>& inputs() const { return inputs_; }
    const std::vector<TensorId>& outputs() const { return outputs_; }
    // Nodes in file order (inputs first), as summaries list them.
    const std::vector<NodeId>& file_order() const { return file_order_; }

    std::int64_t parameter_count(bool trainable) const;

private:
    Graph() = default;
    void build();
    void add_vertices();
    void create_ops();
    void connect();
    void sort();
    void infer_shapes();
    void collect_weights();
    [[noreturn]] void cycle_error() const;
    TensorId add_tensor(GraphTensor tensor);

    ModelSpec spec_;
    std::shared_ptr<const OpRegistry> registry_;  // declared first: the op code outlives the instances
    GraphStorage storage_;
    std::vector<GraphTensor> tensors_;
    std::vector<GraphWeight> weights_;
    std::vector<NodeId> order_;
    std::vector<NodeId> file_order_;
    std::vector<TensorId> inputs_;
    std::vector<TensorId> outputs_;
};

// Parses nested YAML lists (or a scalar) into an F32 tensor of exactly `shape`.
Tensor tensor_from_yaml(const YAML::Node& value, const Shape& shape, const SourceLocation& where,
                        const std::string& node, const std::string& what);

}  // namespace nngraph
