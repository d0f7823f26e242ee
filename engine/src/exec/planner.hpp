// Builds the plan of one batch size as a sequence of passes over the graph, each its own
// function: infer shapes, order steps, compute lifetimes, alias inference buffers, request
// buffers (tensors, targets, gradients, what ops declare), build argument tables, place buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/gradient_plan.hpp"
#include "exec/loss.hpp"
#include "exec/plan.hpp"
#include "exec/sequence_parallel.hpp"
#include "graph/graph.hpp"

namespace nngraph {

// What a plan depends on besides the batch: the graph and, for steps with a loss, the loss and
// the reverse-mode plan (both empty before Executor::set_loss).
struct PlanContext {
    const Graph& graph;
    const GradientPlan& gradients;
    const LossFunction* loss = nullptr;
    const std::vector<TensorId>& loss_outputs;
    int threads = 1;                                // of every op call: the slices of per-thread buffers
    const SessionShape* session = nullptr;          // set for an incremental-decoding session's plan
    const SequenceParallelism* sequence = nullptr;  // set on a sequence-parallel rank: inputs hold shares
};

// Throws RunError naming the node when an op rejects its concrete shapes.
std::unique_ptr<ExecutionPlan> build_plan(const PlanContext& context, std::int64_t batch, bool training);

}  // namespace nngraph
