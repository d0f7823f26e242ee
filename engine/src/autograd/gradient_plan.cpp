#include "autograd/gradient_plan.hpp"

#include "plugins/op_instance.hpp"

namespace nngraph {

GradientPlan plan_gradients(const Graph& graph, const std::vector<TensorId>& loss_reads,
                            const std::vector<bool>& use_logits) {
    const std::size_t num_tensors = graph.tensors().size();
    GradientPlan plan;
    plan.needs_grad.assign(num_tensors, false);
    plan.contributions.resize(num_tensors);
    plan.runs_backward.assign(graph.num_nodes(), false);

    // Forward pass over the order: a tensor can carry a gradient when it is floating point and
    // its producer has a trainable weight or reads a tensor that can.
    std::vector<bool> requires_grad(num_tensors, false);
    for (NodeId id : graph.order()) {
        const GraphNode& node = graph.node(id);
        if (node.is_input) continue;
        bool any = false;
        for (WeightId w : node.weights) any = any || graph.weights()[static_cast<std::size_t>(w)].info.trainable;
        for (TensorId t : node.inputs) any = any || requires_grad[static_cast<std::size_t>(t)];
        for (TensorId t : node.outputs) {
            requires_grad[static_cast<std::size_t>(t)] = any && graph.tensor(t).info.dtype == DType::F32;
        }
    }

    // The loss seeds the backward pass.
    for (std::size_t i = 0; i < loss_reads.size(); ++i) {
        TensorId target = loss_reads[i];
        if (use_logits[i]) target = graph.tensor(target).logits;
        plan.loss_targets.push_back(target);
        if (!requires_grad[static_cast<std::size_t>(target)]) continue;
        plan.needs_grad[static_cast<std::size_t>(target)] = true;
        plan.contributions[static_cast<std::size_t>(target)].push_back({-1, 0});
    }

    // Backward pass over the reversed order: a node runs backward when one of its outputs needs a
    // gradient; each input it reads that can carry a gradient then receives a contribution.
    for (auto it = graph.order().rbegin(); it != graph.order().rend(); ++it) {
        const GraphNode& node = graph.node(*it);
        if (node.is_input) continue;
        bool runs = false;
        for (TensorId t : node.outputs) runs = runs || plan.needs_grad[static_cast<std::size_t>(t)];
        if (!runs) continue;
        if (!node.instance->has_backward()) {
            throw InputError(node.where.str() + ": node '" + node.name + "': op " + node.op +
                             " has no backward, but training needs gradients to flow through it");
        }
        plan.runs_backward[static_cast<std::size_t>(*it)] = true;
        for (std::size_t slot = 0; slot < node.inputs.size(); ++slot) {
            const TensorId t = node.inputs[slot];
            if (!requires_grad[static_cast<std::size_t>(t)]) continue;
            plan.needs_grad[static_cast<std::size_t>(t)] = true;
            plan.contributions[static_cast<std::size_t>(t)].push_back({*it, static_cast<int>(slot)});
        }
    }
    return plan;
}

}  // namespace nngraph
