// Reverse mode over the graph, decided once: which tensors carry gradients, which nodes run
// backward, and who contributes to each gradient (contributions add up where a tensor feeds
// several inputs, e.g. Attention([x, x])). Generic: nothing here knows any particular op.
#pragma once

#include <vector>

#include "graph/graph.hpp"

namespace nngraph {

// One contribution to the gradient of a tensor: the backward of `node` writing its input `slot`,
// or the loss (node == -1) writing the gradient of a graph output or its logits twin.
struct GradContribution {
    NodeId node = -1;
    int slot = 0;
};

struct GradientPlan {
    // Per tensor: true when the loss depends on it through something trainable.
    std::vector<bool> needs_grad;
    // Per tensor: its contributions in the order backward produces them.
    std::vector<std::vector<GradContribution>> contributions;
    // Per node: true when its backward runs.
    std::vector<bool> runs_backward;
    // Per tensor a loss reads: whether the loss writes the logits twin instead of the output.
    std::vector<TensorId> loss_targets;  // the tensors the loss writes gradients into
};

// `loss_reads` are the graph outputs the loss reads; `use_logits[i]` says whether the loss works
// from output i's logits twin. Throws InputError naming the node when gradients would have to pass
// through an op that has no backward.
GradientPlan plan_gradients(const Graph& graph, const std::vector<TensorId>& loss_reads,
                            const std::vector<bool>& use_logits);

}  // namespace nngraph
