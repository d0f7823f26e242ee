#include "graph/graph.hpp"

#include <boost/graph/topological_sort.hpp>

#include <algorithm>
#include <map>

#include "graph/attributes.hpp"
#include "graph/precision.hpp"
#include "nngraph/nngraph.hpp"
#include "plugins/op_instance.hpp"

namespace nngraph {
namespace fs = std::filesystem;

Graph::~Graph() = default;

std::shared_ptr<const Graph> Graph::load(const fs::path& model_file, PluginSearch search) {
    return from_spec(read_model_file(model_file), std::move(search));
}

std::shared_ptr<const Graph> Graph::from_spec(ModelSpec spec, PluginSearch search) {
    std::shared_ptr<Graph> graph(new Graph());
    search.model_file = spec.plugin_dirs;
    graph->spec_ = std::move(spec);
    graph->registry_ = std::make_shared<const OpRegistry>(OpRegistry::load(search));
    graph->build();
    return graph;
}

void Graph::build() {
    add_vertices();
    create_ops();
    connect();
    sort();
    infer_shapes();
    collect_weights();
}

void Graph::add_vertices() {
    std::map<std::string, SourceLocation> names;
    auto claim = [&](const std::string& name, const SourceLocation& where) {
        auto [it, inserted] = names.emplace(name, where);
        if (!inserted) {
            throw model_error(where, name, "duplicate name; '" + name + "' is already used at " + it->second.str());
        }
    };
    for (const InputSpec& input : spec_.inputs) {
        claim(input.name, input.where);
        GraphNode node;
        node.name = input.name;
        node.op = "InputLayer";
        node.is_input = true;
        node.where = input.where;
        file_order_.push_back(static_cast<NodeId>(boost::add_vertex(std::move(node), storage_)));
    }
    for (const NodeSpec& spec : spec_.nodes) {
        claim(spec.name, spec.where);
        GraphNode node;
        node.name = spec.name;
        node.op = spec.op;
        node.where = spec.where;
        file_order_.push_back(static_cast<NodeId>(boost::add_vertex(std::move(node), storage_)));
    }
}

void Graph::create_ops() {
    const std::size_t first_op = spec_.inputs.size();
    for (std::size_t i = 0; i < spec_.nodes.size(); ++i) {
        const NodeSpec& spec = spec_.nodes[i];
        GraphNode& node = storage_[first_op + i];
        const RegisteredOp* op = registry_->find(spec.op);
        if (!op) throw model_error(spec.where, spec.name, registry_->describe_missing(spec.op));
        if (spec_.sequential && op->def->min_inputs > 1) {
            // A Sequential layer that takes several inputs reads the layer before it for each of
            // them: Attention becomes self-attention, Attention([x, x]), as in a Functional file.
            NodeSpec& sequential_spec = spec_.nodes[i];
            sequential_spec.inputs.assign(static_cast<std::size_t>(op->def->min_inputs),
                                          sequential_spec.inputs.front());
        }
        const auto count = static_cast<std::int32_t>(spec.inputs.size());
        if (count < op->def->min_inputs || count > op->def->max_inputs) {
            const std::string range =
                op->def->min_inputs == op->def->max_inputs
                    ? std::to_string(op->def->min_inputs)
                    : std::to_string(op->def->min_inputs) + " to " + std::to_string(op->def->max_inputs);
            throw model_error(spec.where, spec.name,
                              spec.op + " takes " + range + " input(s), " + std::to_string(count) + " given");
        }
        node.attributes = std::make_shared<AttributeValues>(*op->def, spec.attributes, spec.name, spec.where);
        // The support is measured, once a process, only when a node asks for bf16.
        if (spec.precision == NNG_PRECISION_MIXED_BFLOAT16) {
            require_precision_supported(spec.precision, bfloat16_support(),
                                        spec.precision_where.file.empty() ? spec.where : spec.precision_where,
                                        spec.name);
        }
        try {
            node.instance = std::make_shared<OpInstance>(*op, node.attributes->view(), spec.precision);
        } catch (const OpCreateError& e) {
            const SourceLocation where =
                e.failure().attribute.empty() ? spec.where : node.attributes->where_of(e.failure().attribute);
            throw model_error(where, spec.name, spec.op + ": " + e.failure().message);
        }
    }
}

void Graph::connect() {
    std::map<std::string, NodeId> by_name;
    for (NodeId id : file_order_) by_name[node(id).name] = id;
    const std::size_t first_op = spec_.inputs.size();
    for (std::size_t i = 0; i < spec_.nodes.size(); ++i) {
        const NodeSpec& spec = spec_.nodes[i];
        for (std::size_t slot = 0; slot < spec.inputs.size(); ++slot) {
            const TensorRefSpec& ref = spec.inputs[slot];
            auto it = by_name.find(ref.node);
            if (it == by_name.end()) {
                throw model_error(ref.where, spec.name, "input '" + ref.text + "' is neither a graph input nor a node");
            }
            boost::add_edge(static_cast<std::size_t>(it->second), first_op + i,
                            GraphEdge{ref.output, static_cast<int>(slot)}, storage_);
        }
    }
    for (const TensorRefSpec& ref : spec_.outputs) {
        if (!by_name.count(ref.node))
            throw model_error(ref.where, "", "output '" + ref.text + "' is neither a graph input nor a node");
    }
}

void Graph::sort() {
    std::vector<std::size_t> reversed;
    try {
        boost::topological_sort(storage_, std::back_inserter(reversed));
    } catch (const boost::not_a_dag&) {
        cycle_error();
    }
    order_.assign(reversed.rbegin(), reversed.rend());
}

void Graph::cycle_error() const {
    // Depth-first search with colours; a grey successor closes a cycle, read back through parents.
    const std::size_t n = num_nodes();
    enum Colour { White, Grey, Black };
    std::vector<Colour> colour(n, White);
    std::vector<std::size_t> parent(n, n);
    for (std::size_t root = 0; root < n; ++root) {
        if (colour[root] != White) continue;
        std::vector<std::pair<std::size_t, GraphStorage::out_edge_iterator>> stack;
        colour[root] = Grey;
        stack.emplace_back(root, boost::out_edges(root, storage_).first);
        while (!stack.empty()) {
            auto& [u, it] = stack.back();
            if (it == boost::out_edges(u, storage_).second) {
                colour[u] = Black;
                stack.pop_back();
                continue;
            }
            const std::size_t v = boost::target(*it, storage_);
            ++it;
            if (colour[v] == Grey) {
                std::vector<std::string> path{storage_[v].name};
                for (std::size_t w = u; w != v; w = parent[w]) path.insert(path.begin() + 1, storage_[w].name);
                path.push_back(storage_[v].name);
                std::string text;
                for (std::size_t k = 0; k < path.size(); ++k) text += (k ? " -> " : "") + path[k];
                throw model_error(storage_[v].where, storage_[v].name, "the graph has a cycle: " + text);
            }
            if (colour[v] == White) {
                colour[v] = Grey;
                parent[v] = u;
                stack.emplace_back(v, boost::out_edges(v, storage_).first);
            }
        }
    }
    throw InputError(spec_.file + ": the graph has a cycle");
}

TensorId Graph::add_tensor(GraphTensor tensor) {
    tensors_.push_back(std::move(tensor));
    return static_cast<TensorId>(tensors_.size() - 1);
}

namespace {

// Activations are sized per sample here and times the batch later: this bound leaves room for the
// largest batch, so no byte count the planner computes from them can overflow.
constexpr std::uint64_t kMaxSampleBytes = kMaxTensorBytes / static_cast<std::uint64_t>(kMaxBatchSize);

// The attribute given in the file whose value is one of `shape`'s sizes: the likely cause of a huge shape.
std::string attribute_behind(const AttributeValues& attributes, const Shape& shape) {
    for (const auto& [name, text] : attributes.given_text()) {
        for (std::int64_t d : shape) {
            if (d > 1 && text.find(std::to_string(d)) != std::string::npos) return name;
        }
    }
    return {};
}

// Refuses a shape whose bytes exceed `limit`, naming the node, what the shape is for, the size and,
// when one explains it, the attribute at its file position.
void check_size(const Shape& shape, DType dtype, std::uint64_t limit, const std::string& what, const std::string& node,
                const std::string& op, const SourceLocation& node_where, const AttributeValues* attributes) {
    const std::optional<std::uint64_t> bytes = checked_byte_count(shape, dtype);
    if (bytes && *bytes <= limit) return;
    const std::string attribute = attributes ? attribute_behind(*attributes, shape) : std::string();
    const SourceLocation where = attribute.empty() ? node_where : attributes->where_of(attribute);
    std::string size = "shape " + shape_to_string(shape);
    if (bytes) size += " (" + std::to_string(*bytes) + " bytes)";
    throw model_error(where, node,
                      (op.empty() ? "" : op + ": ") + what + " of " + size + " is too large: at most " +
                          std::to_string(limit) + " bytes" + (limit == kMaxSampleBytes ? " per sample" : "") +
                          (attribute.empty() ? std::string() : "; check '" + attribute + "'"));
}

}  // namespace

void Graph::infer_shapes() {
    const std::size_t first_op = spec_.inputs.size();
    for (NodeId id : order_) {
        GraphNode& node = storage_[static_cast<std::size_t>(id)];
        if (node.is_input) {
            const InputSpec& input = spec_.inputs[static_cast<std::size_t>(id)];
            check_size(input.shape, input.dtype, kMaxSampleBytes, "input '" + input.name + "'", input.name, "",
                       input.where, nullptr);
            Shape shape{-1};
            shape.insert(shape.end(), input.shape.begin(), input.shape.end());
            GraphTensor t;
            t.name = input.name;
            t.info = {input.dtype, shape};
            t.producer = id;
            node.outputs.push_back(add_tensor(std::move(t)));
            OutputInfo info;
            info.tensor = tensors_.back().info;
            node.shapes.outputs.push_back(std::move(info));
            inputs_.push_back(node.outputs.back());
            continue;
        }
        const NodeSpec& spec = spec_.nodes[static_cast<std::size_t>(id) - first_op];
        std::vector<TensorInfo> infos;
        std::vector<bool> masks;
        for (std::size_t slot = 0; slot < spec.inputs.size(); ++slot) {
            const TensorRefSpec& ref = spec.inputs[slot];
            const GraphNode* producer = nullptr;
            for (NodeId p : file_order_) {
                if (storage_[static_cast<std::size_t>(p)].name == ref.node)
                    producer = &storage_[static_cast<std::size_t>(p)];
            }
            std::vector<TensorId> visible;
            for (TensorId t : producer->outputs) {
                if (tensors_[static_cast<std::size_t>(t)].role == NNG_OUTPUT_VISIBLE) visible.push_back(t);
            }
            if (ref.output < 0 || ref.output >= static_cast<int>(visible.size())) {
                throw model_error(ref.where, spec.name,
                                  "'" + ref.text + "' does not exist: node '" + producer->name + "' has " +
                                      std::to_string(visible.size()) + " output(s)");
            }
            const TensorId t = visible[static_cast<std::size_t>(ref.output)];
            node.inputs.push_back(t);
            tensors_[static_cast<std::size_t>(t)].consumers.emplace_back(id, static_cast<int>(slot));
            infos.push_back(tensors_[static_cast<std::size_t>(t)].info);
            masks.push_back(tensors_[static_cast<std::size_t>(t)].mask >= 0);
        }

        std::vector<std::int32_t> sources;
        for (std::size_t i = 0; i < node.inputs.size(); ++i) {
            const auto first = std::find(node.inputs.begin(), node.inputs.end(), node.inputs[i]);
            sources.push_back(static_cast<std::int32_t>(first - node.inputs.begin()));
        }
        node.instance->set_input_sources(std::move(sources));
        OpFailure failure;
        if (!node.instance->infer(infos, masks, false, 1, node.shapes, failure)) {
            std::string shapes;
            for (const auto& info : infos) shapes += (shapes.empty() ? "" : ", ") + shape_to_string(info.shape);
            const SourceLocation where =
                failure.attribute.empty() ? spec.where : node.attributes->where_of(failure.attribute);
            throw model_error(where, spec.name, spec.op + ": " + failure.message + " (input shapes: " + shapes + ")");
        }
        for (std::size_t j = 0; j < node.shapes.outputs.size(); ++j) {
            const TensorInfo& out = node.shapes.outputs[j].tensor;
            check_size(out.shape, out.dtype, kMaxSampleBytes, "output " + std::to_string(j), spec.name, spec.op,
                       spec.where, node.attributes.get());
        }
        for (const WeightInfo& w : node.shapes.weights) {
            check_size(w.shape, DType::F32, kMaxTensorBytes, "weight '" + w.name + "'", spec.name, spec.op, spec.where,
                       node.attributes.get());
        }

        std::vector<TensorId> visible_ids;
        for (std::size_t j = 0; j < node.shapes.outputs.size(); ++j) {
            const OutputInfo& out = node.shapes.outputs[j];
            GraphTensor t;
            t.info = out.tensor;
            t.producer = id;
            t.output_index = static_cast<int>(j);
            t.role = out.role;
            if (out.role == NNG_OUTPUT_VISIBLE) {
                t.name = visible_ids.empty() ? node.name : node.name + ":" + std::to_string(visible_ids.size());
            } else {
                t.name = node.name + ":logits" + (j ? std::to_string(j) : "");
            }
            if (out.mask_rule == NNG_MASK_FROM_INPUT) {
                t.mask =
                    tensors_[static_cast<std::size_t>(node.inputs[static_cast<std::size_t>(out.mask_source)])].mask;
            }
            const TensorId tid = add_tensor(std::move(t));
            if (out.mask_rule == NNG_MASK_COMPUTED) {
                GraphTensor mask;
                mask.name = tensors_[static_cast<std::size_t>(tid)].name + ":mask";
                mask.info = {DType::U8, out.mask_shape};
                mask.producer = id;
                mask.output_index = static_cast<int>(j);
                mask.is_mask = true;
                tensors_[static_cast<std::size_t>(tid)].mask = add_tensor(std::move(mask));
            }
            node.outputs.push_back(tid);
            if (out.role == NNG_OUTPUT_VISIBLE) visible_ids.push_back(tid);
        }
        for (std::size_t j = 0; j < node.shapes.outputs.size(); ++j) {
            const OutputInfo& out = node.shapes.outputs[j];
            if (out.role != NNG_OUTPUT_VISIBLE) {
                tensors_[static_cast<std::size_t>(node.outputs[static_cast<std::size_t>(out.logits_of)])].logits =
                    node.outputs[j];
            }
        }
    }
    for (const TensorRefSpec& ref : spec_.outputs) {
        const auto t = find_tensor(ref.output == 0 ? ref.node : ref.node + ":" + std::to_string(ref.output));
        if (!t) throw model_error(ref.where, "", "output '" + ref.text + "' does not exist");
        outputs_.push_back(*t);
    }
}

void Graph::collect_weights() {
    const std::size_t first_op = spec_.inputs.size();
    std::uint64_t total_bytes = 0;  // each weight is below kMaxTensorBytes, so the sum cannot wrap before the check
    for (NodeId id : file_order_) {
        GraphNode& node = storage_[static_cast<std::size_t>(id)];
        if (node.is_input) continue;
        const NodeSpec& spec = spec_.nodes[static_cast<std::size_t>(id) - first_op];
        for (std::size_t k = 0; k < node.shapes.weights.size(); ++k) {
            total_bytes += *checked_byte_count(node.shapes.weights[k].shape, DType::F32);
            if (total_bytes > kMaxTensorBytes) {
                throw model_error(spec.where, node.name,
                                  "the weights up to '" + node.shapes.weights[k].name + "' add up to more than " +
                                      std::to_string(kMaxTensorBytes) + " bytes");
            }
            GraphWeight w;
            w.name = node.name + "." + node.shapes.weights[k].name;
            w.node = id;
            w.index = static_cast<int>(k);
            w.info = node.shapes.weights[k];
            node.weights.push_back(static_cast<WeightId>(weights_.size()));
            weights_.push_back(std::move(w));
        }
        for (const KeyedValue& given : spec.weights) {
            auto it = std::find_if(node.weights.begin(), node.weights.end(), [&](WeightId w) {
                return weights_[static_cast<std::size_t>(w)].info.name == given.key;
            });
            if (it == node.weights.end()) {
                std::string declared;
                for (WeightId w : node.weights)
                    declared += (declared.empty() ? "" : ", ") + weights_[static_cast<std::size_t>(w)].info.name;
                throw model_error(given.where, node.name,
                                  node.op + " has no weight '" + given.key +
                                      "'; its weights: " + (declared.empty() ? std::string("none") : declared));
            }
            GraphWeight& w = weights_[static_cast<std::size_t>(*it)];
            w.inline_value =
                tensor_from_yaml(given.value, w.info.shape, given.where, node.name, "weight '" + given.key + "'");
        }
    }
}

std::optional<WeightId> Graph::find_weight(const std::string& name) const {
    for (std::size_t i = 0; i < weights_.size(); ++i) {
        if (weights_[i].name == name) return static_cast<WeightId>(i);
    }
    return std::nullopt;
}

std::optional<TensorId> Graph::find_tensor(const std::string& name) const {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
        if (tensors_[i].name == name) return static_cast<TensorId>(i);
    }
    return std::nullopt;
}

std::int64_t Graph::parameter_count(bool trainable) const {
    std::int64_t n = 0;
    for (const GraphWeight& w : weights_) {
        if (w.info.trainable == trainable) n += shape_numel(w.info.shape);
    }
    return n;
}

Tensor tensor_from_yaml(const YAML::Node& value, const Shape& shape, const SourceLocation& where,
                        const std::string& node, const std::string& what) {
    Shape found;
    std::vector<float> values;
    // Walks the nesting, recording each level's length on first visit and insisting later
    // siblings agree (a ragged list has no shape).
    auto walk = [&](auto&& self, const YAML::Node& n, std::size_t depth) -> void {
        if (n.IsSequence()) {
            if (found.size() == depth)
                found.push_back(static_cast<std::int64_t>(n.size()));
            else if (found.size() < depth || found[depth] != static_cast<std::int64_t>(n.size())) {
                throw model_error(SourceLocation::of(where.file, n), node, what + " is a ragged nested list");
            }
            for (const YAML::Node& item : n) self(self, item, depth + 1);
            return;
        }
        if (found.size() != depth)
            throw model_error(SourceLocation::of(where.file, n), node, what + " is a ragged nested list");
        values.push_back(static_cast<float>(yaml_as<double>(n, SourceLocation::of(where.file, n), what)));
    };
    walk(walk, value, 0);
    if (found != shape) {
        throw model_error(where, node,
                          what + " has shape " + shape_to_string(found) + " in the file, but the op declares " +
                              shape_to_string(shape));
    }
    return Tensor::from<float>(shape, values);
}

}  // namespace nngraph
