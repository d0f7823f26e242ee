// Runs a graph: forward for inference, and forward, loss and backward for training. Each batch
// size gets a plan, built once: concrete shapes, every activation, mask, saved buffer, gradient
// and scratch space placed in one arena by lifetime, and every op call's argument table filled in
// advance. A step then copies its batch in and calls the ops; it allocates nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "autograd/gradient_plan.hpp"
#include "exec/loss.hpp"
#include "exec/plan.hpp"
#include "exec/sequence_parallel.hpp"
#include "graph/graph.hpp"

namespace nngraph {

struct ExecutionPlan;

struct ExecutorOptions {
    int threads = 0;         // 0: OpenMP's default when the executor is made
    std::uint64_t seed = 0;  // dropout and other random ops derive their streams from it
    // Set for an executor that runs incremental-decoding sessions (run_session_step).
    std::optional<SessionShape> session;
    // Set for a sequence-parallel rank: inputs are cut to its share of the steps, and the calls
    // that read shares get the shard (nng_context.sequence_shard).
    std::shared_ptr<const SequenceParallelism> sequence;
    // Inference runs a large batch in slices, one after another, when every op allows it: the
    // bytes a slice's plan may hold so that its tensors stay in cache from op to op. 0: a few
    // times the L2 caches of the threads; negative: never slice.
    std::int64_t slice_bytes = 0;
};

enum class StepKind {
    Infer,     // forward only
    Evaluate,  // forward and the loss value
    Train,     // forward, loss, backward: weight gradients written
    Gradient,  // as Train, but random ops (dropout) off: the gradient of the deterministic model
};

// One batch: the rows `rows` (all rows when empty) of full-dataset tensors, in graph input order
// and loss output order.
struct BatchRef {
    std::vector<const Tensor*> inputs;
    std::vector<const Tensor*> targets;
    std::span<const std::int64_t> rows;
    // rows[0]'s position in the global batch that data-parallel ranks split (random ops key on it).
    std::int64_t global_offset = 0;
};

struct ExecutorStats {
    std::size_t plans_built = 0;
    std::size_t arena_bytes = 0;          // the arena's size now
    std::size_t arena_growths = 0;        // times the arena was (re)allocated
    std::size_t last_plan_requested = 0;  // the sum of the last plan's buffers before sharing
    std::size_t last_plan_arena = 0;      // the last plan's arena after sharing
    std::int64_t last_run_slices = 0;     // the slices the last run's batch ran in (1: whole)
};

class Executor {
public:
    Executor(std::shared_ptr<const Graph> graph, ExecutorOptions options = {});
    ~Executor();
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;

    const Graph& graph() const { return *graph_; }
    const std::shared_ptr<const Graph>& shared_graph() const { return graph_; }
    const ExecutorOptions& options() const { return options_; }

    // Weights by WeightId, initialised by the caller (see weights.hpp); updated in place.
    std::vector<Tensor>& weights() { return weights_; }
    const std::vector<Tensor>& weights() const { return weights_; }
    // Gradients by WeightId, written by Train steps; empty tensors for non-trainable weights.
    const std::vector<Tensor>& weight_grads() const { return weight_grads_; }
    std::vector<Tensor>& weight_grads() { return weight_grads_; }

    // Enables Evaluate and Train steps. Decides reverse mode once: throws InputError when a
    // gradient would have to pass through an op without backward.
    void set_loss(std::shared_ptr<const LossFunction> loss);
    const LossFunction* loss() const { return loss_.get(); }
    // The outputs the loss reads, in graph output order.
    const std::vector<TensorId>& loss_outputs() const { return loss_outputs_; }

    // Runs one batch; returns the loss for Evaluate and Train steps, 0 for Infer.
    double run(const BatchRef& batch, StepKind kind);
    // One call of an incremental-decoding session (options().session set), inference only. The
    // batch's advancing inputs hold one step: the one at `position`. Position 0 starts a session
    // (every node runs); later calls run only the nodes that advance, over the state the session
    // keeps (op caches, the encoder's tensors the decoder reads). Outputs are then read as after run().
    void run_session_step(const BatchRef& batch, std::int64_t position);
    // Row r of every state the session keeps becomes the row rows[r] was (beam search keeping its
    // best hypotheses); rows.size() is the session's batch.
    void reorder_session_rows(std::span<const std::int64_t> rows);

    // The rows of each slice an inference batch of `rows` runs in: `rows` when it runs whole.
    std::int64_t inference_slice_rows(std::int64_t rows);

    // Graph output `i` of the last run; valid until the next run.
    TensorView output(std::size_t i) const;
    // The mask graph output `i` carried in the last run (one byte per sample and step, 1 = real);
    // empty when it carries none. Valid until the next run.
    std::span<const std::uint8_t> output_mask(std::size_t i) const;

    ExecutorStats stats() const { return stats_; }

    // Called after each node's forward with its outputs while set, to read them (finding where a
    // non-finite value first appears); an empty function turns it off.
    using ForwardObserver = std::function<void(NodeId, std::span<const nng_tensor>)>;
    void set_forward_observer(ForwardObserver observer) { forward_observer_ = std::move(observer); }

    // Per-node time of forward and backward calls, accumulated while profiling is on (for
    // `nngraph bench --profile`); indexed by NodeId. Off by default: then nothing is timed.
    struct NodeTime {
        double forward_seconds = 0.0, backward_seconds = 0.0;
        std::int64_t forward_calls = 0, backward_calls = 0;
    };
    void set_profiling(bool on);
    const std::vector<NodeTime>& profile() const { return profile_; }
    // Bytes the last plan keeps alive from the forward pass into backward (activations, masks and
    // saved buffers backward reads): the floor any training step's memory must pay.
    std::size_t last_plan_backward_bytes() const;
    // The last plan's arena: the step where the most bytes are alive and the buffers alive then.
    std::string last_plan_memory_report() const;
    // Every buffer of the last plan's arena: what it holds, where and when.
    struct PlannedBuffer {
        std::string name;  // "tensor x", "gradient of x", "buffer 'mean' of norm forward", ...
        std::size_t offset = 0, bytes = 0;
        int first_step = 0, last_step = 0;  // alive from, to (inclusive)
    };
    std::vector<PlannedBuffer> last_plan_buffers() const;
    // The work of the last run's calls (of every slice), as their ops counted it; indexed by NodeId
    // (zeros for inputs, calls the plan skips and backward calls it does not make).
    struct NodeWork {
        std::int64_t forward_flops = 0, forward_bytes = 0, backward_flops = 0, backward_bytes = 0;
    };
    std::vector<NodeWork> last_plan_work() const;
    // Called during a Train step's backward with each weight as soon as its gradient is final (for
    // data-parallel training to start averaging it while backward goes on); empty: none.
    void set_on_gradient_ready(std::function<void(WeightId)> hook) { on_gradient_ready_ = std::move(hook); }
    // Steps run so far; random ops see a different seed every step.
    std::uint64_t step_count() const { return step_count_; }
    void set_step_count(std::uint64_t steps) { step_count_ = steps; }

private:
    enum class Pass { Forward, Backward };
    ExecutionPlan& plan_for(std::int64_t batch, bool training);
    void bind(ExecutionPlan& plan);
    // Rows [first, first + rows) of the batch into the plan's input (and target) buffers.
    void load_batch(ExecutionPlan& plan, const BatchRef& batch, bool with_targets, std::int64_t first,
                    std::int64_t rows) const;
    // An inference batch slice by slice, the outputs gathered into sliced_outputs_.
    void run_in_slices(const BatchRef& batch, std::int64_t rows, std::int64_t slice_rows);
    // Graph output `i` of a slice of `count` rows, the first at `first`, into sliced_outputs_[i]
    // (and its mask) of `rows`.
    void gather_slice_output(const ExecutionPlan& plan, std::size_t i, std::int64_t first, std::int64_t count,
                             std::int64_t rows);
    // The plan a whole (unsliced) run or session step has just called.
    void set_last_plan(ExecutionPlan& plan);
    double run_loss(ExecutionPlan& plan, bool with_grad) const;
    // Checks the batch's inputs against the graph (advancing inputs one step long in a session);
    // returns the rows.
    std::int64_t check_inputs(const BatchRef& batch) const;
    // Every op's forward in order; in a session's later calls only those that advance.
    // `counts_calls`: false for a step's later slices, so that a profile counts calls by step.
    void run_forward(ExecutionPlan& plan, nng_context& ctx, bool only_advancing, bool counts_calls = true);
    std::span<const std::uint8_t> mask_of(const ExecutionPlan& plan, TensorId t) const;
    // The threads every op call runs with; per-thread buffers are planned for that many.
    int planned_threads() const;
    // An op call's context with what every step sets: its threads, first batch row and the ranks.
    nng_context call_context(std::int64_t batch_offset) const;
    // Calls one op's forward or backward, timed while profiling is on.
    void call_op(NodeId node, Pass pass, const nng_context& ctx, const nng_exec_args& args, bool counts_call = true);

    std::shared_ptr<const Graph> graph_;
    ExecutorOptions options_;
    std::vector<Tensor> weights_;
    std::vector<Tensor> weight_grads_;
    std::function<void(WeightId)> on_gradient_ready_;
    std::vector<int> gradient_writers_;  // per weight: backward calls still to write its gradient
    std::shared_ptr<const LossFunction> loss_;
    std::vector<TensorId> loss_outputs_;
    std::vector<bool> loss_uses_logits_;
    GradientPlan gradients_;
    std::map<std::pair<std::int64_t, bool>, std::unique_ptr<ExecutionPlan>> plans_;
    ForwardObserver forward_observer_;
    ExecutionPlan* last_plan_ = nullptr;
    // The plans the last run called, with how many times: one entry unless it ran in slices.
    std::vector<std::pair<const ExecutionPlan*, std::int64_t>> last_run_plans_;
    std::map<std::int64_t, std::int64_t> slice_rows_;  // inference_slice_rows by batch
    // A sliced run's graph outputs and their masks (empty when an output carries none).
    std::vector<Tensor> sliced_outputs_;
    std::vector<std::vector<std::uint8_t>> sliced_masks_;
    struct Arena;
    std::unique_ptr<Arena> arena_;
    ExecutorStats stats_;
    std::uint64_t step_count_ = 0;
    bool profiling_ = false;
    std::vector<NodeTime> profile_;
    std::vector<std::byte> reorder_scratch_;  // one session buffer's rows while they are reordered
    nng_sequence_shard shard_{};              // options_.sequence's, as op calls see it
    const nng_sequence_shard* shard_of(NodeId node) const;
};

}  // namespace nngraph
