#include "exec/sequence_parallel.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "nngraph/error.hpp"

namespace nngraph {

namespace {

// Why a node whose op declares no sequence role cannot take shares, in words for the refusal.
std::string refusal(const GraphNode& node) {
    return "node '" + node.name + "' (" + node.op +
           ") cannot run on a share of the steps: its op does not declare that it works step by step or "
           "combines the ranks' shares (it may need whole sequences: a recurrence, a window across steps, a "
           "reshape of the steps); set sequence_parallel: false or remove it from the model";
}

}  // namespace

std::optional<SequenceParallelism> plan_sequence_parallelism(const Graph& graph, int parts, int part) {
    const SequenceParallelRequest request = graph.spec().sequence_parallel;
    if (parts <= 1 || request == SequenceParallelRequest::Off) return std::nullopt;
    bool spreads = false, zigzag = false;
    for (NodeId id : graph.order()) {
        const InferResult& r = graph.node(id).shapes;
        if (graph.node(id).is_input || r.sequence_role != NNG_SEQUENCE_SPREADS) continue;
        spreads = true;
        zigzag = zigzag || r.sequence_layout == NNG_SHARD_ZIGZAG;
    }
    if (request == SequenceParallelRequest::Auto && !spreads) return std::nullopt;

    SequenceParallelism plan;
    plan.sharded.assign(graph.tensors().size(), false);
    plan.sharded_call.assign(graph.num_nodes(), false);
    plan.partial_grads.assign(graph.weights().size(), false);
    const auto mark = [&](TensorId t) {
        plan.sharded[static_cast<std::size_t>(t)] = true;
        if (const TensorId mask = graph.tensor(t).mask; mask >= 0) plan.sharded[static_cast<std::size_t>(mask)] = true;
    };

    // Every input with a steps axis is split; they must agree on its length.
    std::int64_t steps = -1;
    std::string first_input;
    for (TensorId t : graph.inputs()) {
        const GraphTensor& input = graph.tensor(t);
        if (input.info.shape.size() < 2) continue;
        if (steps >= 0 && input.info.shape[1] != steps) {
            throw InputError(graph.spec().file +
                             ": sequence parallelism splits every input's steps alike, but input '" + first_input +
                             "' has " + std::to_string(steps) + " steps and '" + input.name + "' " +
                             std::to_string(input.info.shape[1]));
        }
        steps = input.info.shape[1];
        first_input = input.name;
        mark(t);
    }
    if (steps < 0) throw InputError(graph.spec().file + ": sequence parallelism needs an input with a steps axis");
    try {
        plan.shard = SequenceShard(zigzag ? NNG_SHARD_ZIGZAG : NNG_SHARD_CONTIGUOUS, parts, part, steps);
    } catch (const std::invalid_argument& e) {
        throw InputError(graph.spec().file + ": input '" + first_input + "' cannot be split over " +
                         std::to_string(parts) + " ranks: " + e.what());
    }

    for (NodeId id : graph.order()) {
        const GraphNode& node = graph.node(id);
        if (node.is_input) continue;
        const auto count = std::count_if(node.inputs.begin(), node.inputs.end(),
                                         [&](TensorId t) { return plan.sharded[static_cast<std::size_t>(t)]; });
        if (count == 0) continue;
        const nng_sequence_role role = node.shapes.sequence_role;
        if (role == NNG_SEQUENCE_REFUSED) throw InputError(graph.spec().file + ": " + refusal(node));
        if (count != static_cast<std::ptrdiff_t>(node.inputs.size())) {
            throw InputError(graph.spec().file + ": node '" + node.name + "' (" + node.op +
                             ") reads both shares of the steps and whole tensors; under sequence parallelism its "
                             "inputs must all hold shares");
        }
        plan.sharded_call[static_cast<std::size_t>(id)] = true;
        for (WeightId w : node.weights) plan.partial_grads[static_cast<std::size_t>(w)] = true;
        if (role == NNG_SEQUENCE_COMBINES) continue;
        for (TensorId t : node.outputs) mark(t);
    }
    return plan;
}

Tensor whole_sequence(const TensorView& share, const SequenceShard& shard, dist::Communicator& comm) {
    if (share.dtype != DType::F32 || share.shape.size() < 2)
        throw RunError("only float32 tensors with a steps axis are gathered from sequence shares");
    Shape shape(share.shape.begin(), share.shape.end());
    const std::int64_t local = shape[1];
    shape[1] = shard.global_steps();
    Tensor whole(DType::F32, shape);
    std::memset(whole.raw(), 0, whole.nbytes());
    const std::int64_t per_step = local ? share.numel() / (shape[0] * local) : 0;
    const float* from = share.as<const float>();
    float* to = whole.data<float>();
    for (std::int64_t row = 0; row < shape[0]; ++row) {
        for (std::int64_t s = 0; s < local; ++s) {
            std::memcpy(to + (row * shape[1] + shard.global_position(s)) * per_step,
                        from + (row * local + s) * per_step, sizeof(float) * static_cast<std::size_t>(per_step));
        }
    }
    comm.allreduce_sum(std::span<float>(to, static_cast<std::size_t>(whole.numel())));
    return whole;
}

}  // namespace nngraph
