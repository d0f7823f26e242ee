#include "exec/executor.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "exec/memory_planner.hpp"
#include "nngraph/random.hpp"
#include "plugins/op_instance.hpp"

namespace nngraph {

// The tensors of one argument list of an op call, and the arena buffer behind each (-1: none).
struct TensorTable {
    std::vector<nng_tensor> tensors;
    std::vector<int> buffers;

    void add(DType dtype, const Shape& shape, int buffer, void* fixed_data = nullptr) {
        nng_tensor t{};
        t.struct_size = sizeof(nng_tensor);
        t.dtype = static_cast<nng_dtype>(dtype);
        t.shape = to_c_shape(shape);
        t.data = fixed_data;
        tensors.push_back(t);
        buffers.push_back(buffer);
    }
    void bind(std::byte* base, const std::vector<std::size_t>& offsets) {
        for (std::size_t i = 0; i < tensors.size(); ++i) {
            if (buffers[i] >= 0) tensors[i].data = base + offsets[static_cast<std::size_t>(buffers[i])];
        }
    }
    const nng_tensor* data() const { return tensors.empty() ? nullptr : tensors.data(); }
};

// One op node's calls: argument tables filled at plan time, pointers set when the plan is bound.
struct NodeCall {
    NodeId node = -1;
    int forward_step = 0;
    int backward_step = 0;
    bool runs_backward = false;
    bool skipped = false;  // inference of an identity (Dropout): output 0 is the input's buffer
    TensorTable inputs, input_masks, outputs, output_masks, weights, saved;
    TensorTable grad_outputs, grad_inputs, grad_weights;
    std::vector<WeightId> weight_ids;  // weights live outside the arena: bound at every run
    int forward_scratch = -1, backward_scratch = -1;  // buffer indices
    std::uint64_t scratch_bytes = 0;
    // After backward: gradient buffer `into` += temporary buffer `from`, `count` floats.
    struct Accumulation {
        int into, from;
        std::int64_t count;
    };
    std::vector<Accumulation> accumulate;
    nng_exec_args args{};

    void bind(std::byte* base, const std::vector<std::size_t>& offsets) {
        for (TensorTable* table : {&inputs, &input_masks, &outputs, &output_masks, &weights, &saved, &grad_outputs,
                                   &grad_inputs, &grad_weights}) {
            table->bind(base, offsets);
        }
        args = nng_exec_args{};
        args.struct_size = sizeof(nng_exec_args);
        args.num_inputs = static_cast<std::int32_t>(inputs.tensors.size());
        args.inputs = inputs.data();
        args.input_masks = input_masks.data();
        args.num_outputs = static_cast<std::int32_t>(outputs.tensors.size());
        args.outputs = outputs.data();
        args.output_masks = output_masks.data();
        args.num_weights = static_cast<std::int32_t>(weights.tensors.size());
        args.weights = weights.data();
        args.num_saved = static_cast<std::int32_t>(saved.tensors.size());
        args.saved = saved.data();
        args.grad_outputs = grad_outputs.data();
        args.grad_inputs = grad_inputs.data();
        args.grad_weights = grad_weights.data();
    }
};

struct Executor::Plan {
    std::int64_t batch = 0;
    bool training = false;
    std::vector<BufferRequest> requests;
    std::vector<std::string> request_names;  // what each buffer holds, for memory reports
    ArenaLayout layout;
    std::vector<Shape> shapes;           // per tensor, concrete
    std::vector<int> tensor_buffer;      // per tensor: buffer index
    std::vector<int> grad_buffer;        // per tensor: buffer index or -1
    std::vector<int> target_buffer;      // per loss output
    std::vector<Shape> target_shapes;
    std::vector<NodeCall> calls;         // forward order
    std::byte* bound_base = nullptr;
    std::size_t backward_bytes = 0;      // alive across the loss step (training plans)

    std::byte* buffer(int b) const { return b < 0 ? nullptr : bound_base + layout.offsets[static_cast<std::size_t>(b)]; }
    TensorView view(TensorId t, DType dtype, const std::vector<int>& buffers) const {
        return {dtype, shapes[static_cast<std::size_t>(t)], buffer(buffers[static_cast<std::size_t>(t)])};
    }
};

struct Executor::Arena {
    std::byte* base = nullptr;
    std::size_t bytes = 0;
    ~Arena() { std::free(base); }
};

namespace {

std::size_t bytes_of(DType dtype, const Shape& shape) {
    return static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
}

void add_into(float* into, const float* from, std::int64_t n) {
#pragma omp parallel for simd if (n > 65536) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) into[i] += from[i];
}

}  // namespace

Executor::Executor(std::shared_ptr<const Graph> graph, ExecutorOptions options)
    : graph_(std::move(graph)), options_(options), arena_(std::make_unique<Arena>()) {
    for (const GraphWeight& w : graph_->weights()) {
        try {
            weights_.emplace_back(DType::F32, w.info.shape);
            weight_grads_.push_back(w.info.trainable ? Tensor(DType::F32, w.info.shape) : Tensor());
        } catch (const RunError& e) {
            throw RunError("weight '" + w.name + "' " + shape_to_string(w.info.shape) + " of node '" + graph_->node(w.node).name +
                           "': " + e.what());
        }
    }
}

Executor::~Executor() = default;

void Executor::set_loss(std::shared_ptr<const LossFunction> loss) {
    loss_ = std::move(loss);
    loss_outputs_ = graph_->outputs();
    loss_uses_logits_.clear();
    for (TensorId t : loss_outputs_) {
        const TensorId logits = graph_->tensor(t).logits;
        loss_uses_logits_.push_back(logits >= 0 && loss_->works_from_logits(graph_->tensor(logits).role));
    }
    gradients_ = plan_gradients(*graph_, loss_outputs_, loss_uses_logits_);
    plans_.clear();
    last_plan_ = nullptr;
}

Executor::Plan& Executor::plan_for(std::int64_t batch, bool training) {
    auto& slot = plans_[{batch, training}];
    if (!slot) {
        slot = build_plan(batch, training);
        ++stats_.plans_built;
        stats_.last_plan_requested = slot->layout.requested_bytes;
        stats_.last_plan_arena = slot->layout.arena_bytes;
    }
    return *slot;
}


std::unique_ptr<Executor::Plan> Executor::build_plan(std::int64_t batch, bool training) const {
    const Graph& g = *graph_;
    auto plan = std::make_unique<Plan>();
    plan->batch = batch;
    plan->training = training;
    const std::size_t num_tensors = g.tensors().size();
    plan->shapes.resize(num_tensors);
    plan->tensor_buffer.assign(num_tensors, -1);
    plan->grad_buffer.assign(num_tensors, -1);

    // Steps: 0 loads the batch, 1..K run forward, K+1 the loss, K+2..2K+1 backward in reverse,
    // 2K+2 is the caller reading outputs.
    std::vector<NodeId> ops;
    for (NodeId id : g.order()) {
        if (!g.node(id).is_input) ops.push_back(id);
    }
    const int K = static_cast<int>(ops.size());
    const int loss_step = K + 1;
    const int end_step = 2 * K + 2;
    std::vector<int> forward_step(g.num_nodes(), 0), backward_step(g.num_nodes(), 0);
    for (int k = 0; k < K; ++k) {
        const auto id = static_cast<std::size_t>(ops[static_cast<std::size_t>(k)]);
        forward_step[id] = 1 + k;
        backward_step[id] = 2 * K + 1 - k;
    }
    auto runs_backward = [&](NodeId n) { return training && gradients_.runs_backward[static_cast<std::size_t>(n)]; };
    auto shape_of = [&](TensorId t) -> Shape& { return plan->shapes[static_cast<std::size_t>(t)]; };

    // Concrete shapes, node by node.
    std::vector<InferResult> inferred(g.num_nodes());
    for (TensorId t : g.inputs()) {
        shape_of(t) = g.tensor(t).info.shape;
        shape_of(t)[0] = batch;
    }
    for (NodeId id : ops) {
        const GraphNode& node = g.node(id);
        std::vector<TensorInfo> infos;
        std::vector<bool> masks;
        for (TensorId t : node.inputs) {
            infos.push_back({g.tensor(t).info.dtype, shape_of(t)});
            masks.push_back(g.tensor(t).mask >= 0);
        }
        OpFailure failure;
        InferResult& r = inferred[static_cast<std::size_t>(id)];
        if (!node.instance->infer(infos, masks, training, r, failure)) {
            throw RunError("node '" + node.name + "' (" + node.op + "): shape inference at batch " + std::to_string(batch) +
                           " failed: " + failure.message);
        }
        if (r.outputs.size() != node.outputs.size()) {
            throw RunError("node '" + node.name + "' (" + node.op + ") declared " + std::to_string(node.outputs.size()) +
                           " outputs at load but " + std::to_string(r.outputs.size()) + " at batch " + std::to_string(batch));
        }
        for (std::size_t j = 0; j < node.outputs.size(); ++j) {
            const TensorId t = node.outputs[j];
            shape_of(t) = r.outputs[j].tensor.shape;
            const TensorId mask = g.tensor(t).mask;
            if (mask >= 0 && g.tensor(mask).producer == id && r.outputs[j].mask_rule == NNG_MASK_COMPUTED) {
                shape_of(mask) = r.outputs[j].mask_shape;
            }
        }
    }

    // Lifetimes of forward tensors: from their producer to their last reader, forward or backward.
    std::vector<int> first(num_tensors, 0), last(num_tensors, 0);
    for (std::size_t t = 0; t < num_tensors; ++t) {
        const NodeId producer = g.tensors()[t].producer;
        first[t] = last[t] = forward_step[static_cast<std::size_t>(producer)];
    }
    auto extend = [&](TensorId t, int step) { last[static_cast<std::size_t>(t)] = std::max(last[static_cast<std::size_t>(t)], step); };
    for (NodeId id : ops) {
        const GraphNode& node = g.node(id);
        const InferResult& r = inferred[static_cast<std::size_t>(id)];
        const bool backward = runs_backward(id);
        const int fwd = forward_step[static_cast<std::size_t>(id)];
        const int bwd = backward_step[static_cast<std::size_t>(id)];
        for (std::size_t i = 0; i < node.inputs.size(); ++i) {
            const TensorId t = node.inputs[i];
            extend(t, fwd);
            if (backward && r.backward_needs_input(static_cast<int>(i))) extend(t, bwd);
            if (g.tensor(t).mask >= 0) extend(g.tensor(t).mask, backward ? bwd : fwd);
        }
        for (std::size_t j = 0; j < node.outputs.size(); ++j) {
            if (backward && r.backward_needs_output(static_cast<int>(j))) extend(node.outputs[j], bwd);
        }
    }
    for (TensorId t : g.outputs()) {
        extend(t, end_step);
        if (g.tensor(t).logits >= 0) extend(g.tensor(t).logits, end_step);
    }

    auto request = [&](std::size_t bytes, int from, int to, std::string name) {
        plan->requests.push_back({bytes, from, to});
        plan->request_names.push_back(std::move(name));
        return static_cast<int>(plan->requests.size() - 1);
    };
    // Inference: an op whose output is one of its inputs unchanged (Dropout) is not called; the
    // output shares the input's buffer, which lives as long as either of them.
    std::vector<TensorId> owner(num_tensors);
    std::iota(owner.begin(), owner.end(), TensorId{0});
    std::vector<bool> skipped(g.num_nodes(), false);
    if (!training) {
        for (NodeId id : ops) {
            const int input = inferred[static_cast<std::size_t>(id)].inference_identity;
            if (input < 0) continue;
            const GraphNode& node = g.node(id);
            const auto out = static_cast<std::size_t>(node.outputs[0]);
            const TensorId shared = owner[static_cast<std::size_t>(node.inputs[static_cast<std::size_t>(input)])];
            owner[out] = shared;
            extend(shared, last[out]);
            skipped[static_cast<std::size_t>(id)] = true;
        }
    }
    for (std::size_t t = 0; t < num_tensors; ++t) {
        if (owner[t] != static_cast<TensorId>(t)) continue;
        plan->tensor_buffer[t] = request(bytes_of(g.tensors()[t].info.dtype, plan->shapes[t]), first[t], last[t], "tensor " + g.tensors()[t].name);
    }
    for (std::size_t t = 0; t < num_tensors; ++t) plan->tensor_buffer[t] = plan->tensor_buffer[static_cast<std::size_t>(owner[t])];
    if (loss_) {
        for (TensorId t : loss_outputs_) {
            Shape shape = loss_->target_shape(shape_of(t));
            plan->target_buffer.push_back(request(bytes_of(DType::F32, shape), 0, loss_step, "targets of " + g.tensor(t).name));
            plan->target_shapes.push_back(std::move(shape));
        }
    }

    // Gradients: alive from their first contribution to the producer's backward. Every further
    // contribution goes to a temporary that is added in right after the call that wrote it.
    std::vector<std::vector<int>> contribution_buffer(num_tensors);
    if (training) {
        for (std::size_t t = 0; t < num_tensors; ++t) {
            if (!gradients_.needs_grad[t]) continue;
            const auto& contributions = gradients_.contributions[t];
            auto step_of = [&](const GradContribution& c) {
                return c.node < 0 ? loss_step : backward_step[static_cast<std::size_t>(c.node)];
            };
            const std::size_t bytes = bytes_of(DType::F32, plan->shapes[t]);
            const int consumed = backward_step[static_cast<std::size_t>(g.tensors()[t].producer)];
            plan->grad_buffer[t] = request(bytes, step_of(contributions.front()), consumed, "gradient of " + g.tensors()[t].name);
            contribution_buffer[t].push_back(plan->grad_buffer[t]);
            for (std::size_t c = 1; c < contributions.size(); ++c) {
                contribution_buffer[t].push_back(request(bytes, step_of(contributions[c]), step_of(contributions[c]),
                                                         "gradient contribution to " + g.tensors()[t].name));
            }
        }
    }

    // Argument tables of every call.
    for (NodeId id : ops) {
        const GraphNode& node = g.node(id);
        const InferResult& r = inferred[static_cast<std::size_t>(id)];
        NodeCall call;
        call.node = id;
        call.forward_step = forward_step[static_cast<std::size_t>(id)];
        call.backward_step = backward_step[static_cast<std::size_t>(id)];
        call.runs_backward = runs_backward(id);
        call.skipped = skipped[static_cast<std::size_t>(id)];
        auto buffer_of = [&](TensorId t) { return plan->tensor_buffer[static_cast<std::size_t>(t)]; };
        for (TensorId t : node.inputs) {
            call.inputs.add(g.tensor(t).info.dtype, shape_of(t), buffer_of(t));
            const TensorId mask = g.tensor(t).mask;
            call.input_masks.add(DType::U8, mask >= 0 ? shape_of(mask) : Shape{}, mask >= 0 ? buffer_of(mask) : -1);
        }
        for (TensorId t : node.outputs) {
            call.outputs.add(g.tensor(t).info.dtype, shape_of(t), buffer_of(t));
            const TensorId mask = g.tensor(t).mask;
            call.output_masks.add(DType::U8, mask >= 0 ? shape_of(mask) : Shape{}, mask >= 0 ? buffer_of(mask) : -1);
        }
        for (WeightId w : node.weights) {
            const GraphWeight& weight = g.weights()[static_cast<std::size_t>(w)];
            call.weight_ids.push_back(w);
            call.weights.add(DType::F32, weight.info.shape, -1);
            call.grad_weights.add(DType::F32, weight.info.shape, -1);
        }
        const int saved_until = call.runs_backward ? call.backward_step : call.forward_step;
        for (const TensorInfo& saved : r.saved) {
            call.saved.add(saved.dtype, saved.shape,
                           request(bytes_of(saved.dtype, saved.shape), call.forward_step, saved_until, "saved by " + node.name));
        }
        call.scratch_bytes = r.scratch_bytes;
        if (r.scratch_bytes) {
            call.forward_scratch = request(r.scratch_bytes, call.forward_step, call.forward_step, "scratch of " + node.name + " forward");
            if (call.runs_backward) {
                call.backward_scratch = request(r.scratch_bytes, call.backward_step, call.backward_step, "scratch of " + node.name + " backward");
            }
        }
        if (call.runs_backward) {
            for (TensorId t : node.outputs) call.grad_outputs.add(DType::F32, shape_of(t), plan->grad_buffer[static_cast<std::size_t>(t)]);
            for (std::size_t slot = 0; slot < node.inputs.size(); ++slot) {
                const TensorId t = node.inputs[slot];
                int buffer = -1;
                const auto& contributions = gradients_.contributions[static_cast<std::size_t>(t)];
                for (std::size_t c = 0; c < contributions.size(); ++c) {
                    if (contributions[c].node != id || contributions[c].slot != static_cast<int>(slot)) continue;
                    buffer = contribution_buffer[static_cast<std::size_t>(t)][c];
                    if (c > 0) call.accumulate.push_back({plan->grad_buffer[static_cast<std::size_t>(t)], buffer, shape_numel(shape_of(t))});
                }
                call.grad_inputs.add(DType::F32, shape_of(t), buffer);
            }
        }
        plan->calls.push_back(std::move(call));
    }

    plan->layout = plan_arena(plan->requests);
    if (training) {
        // What is alive while the loss runs, less the loss's own targets: what backward needs.
        for (std::size_t r = 0; r < plan->requests.size(); ++r) {
            const BufferRequest& q = plan->requests[r];
            const bool is_target = std::find(plan->target_buffer.begin(), plan->target_buffer.end(), static_cast<int>(r)) != plan->target_buffer.end();
            if (!is_target && q.first_step < loss_step && q.last_step > loss_step) plan->backward_bytes += q.bytes;
        }
    }
    return plan;
}

void Executor::bind(Plan& plan) {
    if (arena_->bytes < plan.layout.arena_bytes) {
        std::free(arena_->base);
        arena_->base = nullptr;
        arena_->bytes = 0;
        const std::size_t bytes = (plan.layout.arena_bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
        arena_->base = static_cast<std::byte*>(std::aligned_alloc(kTensorAlignment, bytes));
        if (!arena_->base) throw RunError("out of memory: the step needs an arena of " + std::to_string(bytes) + " bytes");
        arena_->bytes = bytes;
        ++stats_.arena_growths;
        stats_.arena_bytes = bytes;
    }
    if (plan.bound_base == arena_->base) return;
    plan.bound_base = arena_->base;
    for (NodeCall& call : plan.calls) call.bind(plan.bound_base, plan.layout.offsets);
}

void Executor::load_batch(Plan& plan, const BatchRef& batch, bool with_targets, std::int64_t rows) const {
    auto gather = [&](const Tensor& source, std::byte* destination, const std::string& name) {
        const std::int64_t available = source.dim(0);
        const std::size_t row_bytes = available ? source.nbytes() / static_cast<std::size_t>(available) : 0;
        const auto* from = static_cast<const std::byte*>(source.raw());
        if (batch.rows.empty()) {
            std::memcpy(destination, from, row_bytes * static_cast<std::size_t>(rows));
            return;
        }
        for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t row = batch.rows[static_cast<std::size_t>(r)];
            if (row < 0 || row >= available) {
                throw RunError("batch row " + std::to_string(row) + " is outside the " + std::to_string(available) +
                               " rows of '" + name + "'");
            }
            std::memcpy(destination + row_bytes * static_cast<std::size_t>(r), from + row_bytes * static_cast<std::size_t>(row), row_bytes);
        }
    };
    const Graph& g = *graph_;
    for (std::size_t i = 0; i < g.inputs().size(); ++i) {
        const TensorId t = g.inputs()[i];
        gather(*batch.inputs[i], plan.buffer(plan.tensor_buffer[static_cast<std::size_t>(t)]), g.tensor(t).name);
    }
    if (with_targets) {
        for (std::size_t i = 0; i < plan.target_buffer.size(); ++i) gather(*batch.targets[i], plan.buffer(plan.target_buffer[i]), "targets");
    }
}

namespace {

// The batch's tensors must match what the graph declares (dtype and every dimension but the
// first) and have `rows` rows. Checked every step, so it must not allocate unless it fails.
void check_batch_tensor(const Tensor& t, DType dtype, const Shape& declared, std::int64_t rows,
                        const std::string& name, const char* what) {
    bool fits = t.dtype() == dtype && t.rank() == declared.size() && t.rank() > 0;
    for (std::size_t i = 1; fits && i < declared.size(); ++i) fits = t.dim(i) == declared[i];
    if (!fits) {
        Shape shown = declared;
        shown[0] = -1;
        throw InputError(std::string(what) + " '" + name + "' is " + std::string(dtype_name(t.dtype())) + " " +
                         shape_to_string(t.shape()) + "; the model expects " + std::string(dtype_name(dtype)) + " " +
                         shape_to_string(shown));
    }
    if (t.dim(0) != rows) {
        throw InputError(std::string(what) + " '" + name + "' has " + std::to_string(t.dim(0)) +
                         " rows where the first input has " + std::to_string(rows));
    }
}

}  // namespace

double Executor::run(const BatchRef& batch, StepKind kind) {
    const Graph& g = *graph_;
    const bool training = kind == StepKind::Train || kind == StepKind::Gradient;
    const bool with_loss = kind != StepKind::Infer;
    if (with_loss && !loss_) throw RunError("this executor has no loss: call set_loss before evaluating or training");
    if (batch.inputs.size() != g.inputs().size()) {
        throw InputError("the model has " + std::to_string(g.inputs().size()) + " inputs, " +
                         std::to_string(batch.inputs.size()) + " given");
    }
    const std::int64_t available = batch.inputs.empty() ? 0 : batch.inputs[0]->dim(0);
    for (std::size_t i = 0; i < g.inputs().size(); ++i) {
        const GraphTensor& input = g.tensor(g.inputs()[i]);
        check_batch_tensor(*batch.inputs[i], input.info.dtype, input.info.shape, available, input.name, "input");
    }
    const std::int64_t rows = batch.rows.empty() ? available : static_cast<std::int64_t>(batch.rows.size());
    if (rows <= 0) throw InputError("an empty batch");

    Plan& plan = plan_for(rows, training);
    if (with_loss) {
        if (batch.targets.size() != loss_outputs_.size()) {
            throw InputError("the loss needs " + std::to_string(loss_outputs_.size()) + " target tensor(s), " +
                             std::to_string(batch.targets.size()) + " given");
        }
        for (std::size_t i = 0; i < batch.targets.size(); ++i) {
            check_batch_tensor(*batch.targets[i], DType::F32, plan.target_shapes[i], available,
                               g.tensor(loss_outputs_[i]).name, "the targets of output");
        }
    }
    bind(plan);
    load_batch(plan, batch, with_loss, rows);

    if (options_.threads > 0 && omp_get_max_threads() != options_.threads) omp_set_num_threads(options_.threads);
    nng_context ctx{};
    ctx.struct_size = sizeof(nng_context);
    ctx.training = training ? 1 : 0;
    ctx.deterministic = kind == StepKind::Gradient ? 1 : 0;
    ctx.num_threads = options_.threads > 0 ? options_.threads : omp_get_max_threads();
    const std::uint64_t step_seed = nng::derive_seed(options_.seed, step_count_);

    for (NodeCall& call : plan.calls) {
        if (call.skipped) continue;
        for (std::size_t k = 0; k < call.weight_ids.size(); ++k) {
            const auto w = static_cast<std::size_t>(call.weight_ids[k]);
            call.weights.tensors[k].data = weights_[w].raw();
            call.grad_weights.tensors[k].data = weight_grads_[w].empty() ? nullptr : weight_grads_[w].raw();
        }
        const GraphNode& node = g.node(call.node);
        ctx.seed = nng::derive_seed(step_seed, static_cast<std::uint64_t>(call.node));
        ctx.scratch = plan.buffer(call.forward_scratch);
        ctx.scratch_bytes = call.scratch_bytes;
        if (profiling_) {
            const auto start = std::chrono::steady_clock::now();
            node.instance->forward(node.name, ctx, call.args);
            NodeTime& t = profile_[static_cast<std::size_t>(call.node)];
            t.forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            ++t.forward_calls;
        } else {
            node.instance->forward(node.name, ctx, call.args);
        }
        if (forward_observer_) forward_observer_(call.node, {call.args.outputs, static_cast<std::size_t>(call.args.num_outputs)});
    }

    double loss = with_loss ? run_loss(plan, training) : 0.0;

    if (training) {
        // A weight whose node does not run backward gets no gradient: zero, so the optimiser sees none.
        for (const NodeCall& call : plan.calls) {
            if (call.runs_backward) continue;
            for (WeightId w : call.weight_ids) {
                Tensor& grad = weight_grads_[static_cast<std::size_t>(w)];
                if (!grad.empty()) std::memset(grad.raw(), 0, grad.nbytes());
            }
        }
        for (auto it = plan.calls.rbegin(); it != plan.calls.rend(); ++it) {
            NodeCall& call = *it;
            if (!call.runs_backward) continue;
            const GraphNode& node = g.node(call.node);
            ctx.seed = nng::derive_seed(step_seed, static_cast<std::uint64_t>(call.node));  // as in forward
            ctx.scratch = plan.buffer(call.backward_scratch);
            ctx.scratch_bytes = call.scratch_bytes;
            if (profiling_) {
                const auto start = std::chrono::steady_clock::now();
                node.instance->backward(node.name, ctx, call.args);
                NodeTime& t = profile_[static_cast<std::size_t>(call.node)];
                t.backward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                ++t.backward_calls;
            } else {
                node.instance->backward(node.name, ctx, call.args);
            }
            for (const auto& acc : call.accumulate) {
                add_into(reinterpret_cast<float*>(plan.buffer(acc.into)), reinterpret_cast<const float*>(plan.buffer(acc.from)), acc.count);
            }
        }
    }
    ++step_count_;
    last_plan_ = &plan;
    return loss;
}

double Executor::run_loss(Plan& plan, bool with_grad) const {
    const Graph& g = *graph_;
    double total = 0.0;
    for (std::size_t i = 0; i < loss_outputs_.size(); ++i) {
        const TensorId output = loss_outputs_[i];
        LossCall call;
        call.prediction = plan.view(output, g.tensor(output).info.dtype, plan.tensor_buffer);
        if (loss_uses_logits_[i]) call.logits = plan.view(g.tensor(output).logits, DType::F32, plan.tensor_buffer);
        call.targets = {DType::F32, plan.target_shapes[i], plan.buffer(plan.target_buffer[i])};
        const TensorId seeded = gradients_.loss_targets[i];
        if (with_grad && gradients_.needs_grad[static_cast<std::size_t>(seeded)]) {
            call.grad = reinterpret_cast<float*>(plan.buffer(plan.grad_buffer[static_cast<std::size_t>(seeded)]));
        }
        total += loss_->evaluate(call);
    }
    return total;
}

void Executor::set_profiling(bool on) {
    profiling_ = on;
    profile_.assign(graph_->num_nodes(), NodeTime{});
}

std::size_t Executor::last_plan_backward_bytes() const { return last_plan_ ? last_plan_->backward_bytes : 0; }

std::string Executor::last_plan_memory_report() const {
    if (!last_plan_) return "no step has run yet\n";
    const Plan& plan = *last_plan_;
    // The step at which the most bytes are alive, and what they are.
    int last_step = 0;
    for (const BufferRequest& r : plan.requests) last_step = std::max(last_step, r.last_step);
    int peak_step = 0;
    std::size_t peak = 0;
    for (int step = 0; step <= last_step; ++step) {
        std::size_t live = 0;
        for (const BufferRequest& r : plan.requests) live += r.first_step <= step && step <= r.last_step ? r.bytes : 0;
        if (live > peak) {
            peak = live;
            peak_step = step;
        }
    }
    std::vector<std::size_t> order(plan.requests.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return plan.requests[a].bytes > plan.requests[b].bytes; });
    char line[256];
    std::string out;
    std::snprintf(line, sizeof line, "arena %.2f MB for %zu buffers (%.2f MB laid end to end); %.2f MB alive at step %d, the most at any step:\n",
                  double(plan.layout.arena_bytes) / 1048576.0, plan.requests.size(), double(plan.layout.requested_bytes) / 1048576.0,
                  double(peak) / 1048576.0, peak_step);
    out += line;
    for (std::size_t i : order) {
        const BufferRequest& r = plan.requests[i];
        if (r.first_step > peak_step || r.last_step < peak_step || r.bytes < 4096) continue;
        std::snprintf(line, sizeof line, "  %9.3f MB  steps %3d..%-3d  %s\n", double(r.bytes) / 1048576.0, r.first_step, r.last_step,
                      plan.request_names[i].c_str());
        out += line;
    }
    return out;
}

TensorView Executor::output(std::size_t i) const {
    if (!last_plan_) throw RunError("no step has run yet");
    const TensorId t = graph_->outputs().at(i);
    return last_plan_->view(t, graph_->tensor(t).info.dtype, last_plan_->tensor_buffer);
}

}  // namespace nngraph
