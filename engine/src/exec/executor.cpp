#include "exec/executor.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include <unistd.h>

#include "dist/plugin_comm.hpp"
#include "exec/planner.hpp"
#include "exec/step_threads.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/buffer.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/parallel.hpp"
#include "nngraph/random.hpp"
#include "plugins/op_instance.hpp"

namespace nngraph {

struct Executor::Arena {
    std::byte* base = nullptr;
    std::size_t bytes = 0;
    ~Arena() { std::free(base); }
};

namespace {

// into[i] += from[i] for i in [begin, end): cloned, as the baseline's 4 lanes leave the sum
// short of the cache's bandwidth.
NNG_LOOP_CLONES void add_range(float* into, const float* from, std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) into[i] += from[i];
}

void add_into(float* into, const float* from, std::int64_t n) {
    nng::parallel_ranges(n, n > 65536 ? omp_get_max_threads() : 1,
                         [&](std::int64_t begin, std::int64_t end) { add_range(into, from, begin, end); });
}

// What a slice of an inference batch may hold by default: a few times the threads' L2 caches,
// as each op's working set beside the slice's tensors takes its share of the L2 and the rest
// waits in L3.
std::int64_t default_slice_bytes(int threads) {
    constexpr std::int64_t kL2Multiple = 4;
    constexpr std::int64_t kAssumedL2 = std::int64_t{512} << 10;
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return kL2Multiple * std::max(threads, 1) * (reported > 0 ? reported : kAssumedL2);
}

}  // namespace

Executor::Executor(std::shared_ptr<const Graph> graph, ExecutorOptions options)
    : graph_(std::move(graph)), options_(std::move(options)), arena_(std::make_unique<Arena>()) {
    if (options_.threads <= 0) options_.threads = omp_get_max_threads();
    if (options_.sequence) shard_ = options_.sequence->shard.to_c();
    for (const GraphWeight& w : graph_->weights()) {
        try {
            weights_.emplace_back(DType::F32, w.info.shape);
            weight_grads_.push_back(w.info.trainable ? Tensor(DType::F32, w.info.shape) : Tensor());
        } catch (const RunError& e) {
            throw RunError("weight '" + w.name + "' " + shape_to_string(w.info.shape) + " of node '" +
                           graph_->node(w.node).name + "': " + e.what());
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
        if (options_.sequence && options_.sequence->sharded[static_cast<std::size_t>(t)]) {
            throw InputError("output '" + graph_->tensor(t).name +
                             "' holds one rank's share of the steps under sequence parallelism; a loss needs "
                             "outputs that hold whole samples (pool over the steps first)");
        }
    }
    gradients_ = plan_gradients(*graph_, loss_outputs_, loss_uses_logits_);
    plans_.clear();
    slice_rows_.clear();
    last_run_plans_.clear();
    last_plan_ = nullptr;
}

ExecutionPlan& Executor::plan_for(std::int64_t batch, bool training) {
    auto& slot = plans_[{batch, training}];
    if (!slot) {
        slot = build_plan(PlanContext{*graph_, gradients_, loss_.get(), loss_outputs_, planned_threads(),
                                      options_.session ? &*options_.session : nullptr, options_.sequence.get()},
                          batch, training);
        ++stats_.plans_built;
        stats_.last_plan_requested = slot->layout.requested_bytes;
        stats_.last_plan_arena = slot->layout.arena_bytes;
    }
    return *slot;
}

void Executor::bind(ExecutionPlan& plan) {
    if (arena_->bytes < plan.layout.arena_bytes) {
        std::free(arena_->base);
        arena_->base = nullptr;
        arena_->bytes = 0;
        const std::size_t bytes = nng::buffer_capacity(plan.layout.arena_bytes);
        arena_->base = nng::allocate_buffer(plan.layout.arena_bytes);
        if (!arena_->base)
            throw RunError("out of memory: the step needs an arena of " + std::to_string(bytes) + " bytes");
        arena_->bytes = bytes;
        ++stats_.arena_growths;
        stats_.arena_bytes = bytes;
    }
    plan.bind(arena_->base);
}

void Executor::load_batch(ExecutionPlan& plan, const BatchRef& batch, bool with_targets, std::int64_t first,
                          std::int64_t rows) const {
    auto gather = [&](const Tensor& source, std::byte* destination, const std::string& name) {
        const std::int64_t available = source.dim(0);
        const std::size_t row_bytes = available ? source.nbytes() / static_cast<std::size_t>(available) : 0;
        const auto* from = static_cast<const std::byte*>(source.raw());
        if (batch.rows.empty()) {
            std::memcpy(destination, from + row_bytes * static_cast<std::size_t>(first),
                        row_bytes * static_cast<std::size_t>(rows));
            return;
        }
        for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t row = batch.rows[static_cast<std::size_t>(first + r)];
            if (row < 0 || row >= available) {
                throw RunError("batch row " + std::to_string(row) + " is outside the " + std::to_string(available) +
                               " rows of '" + name + "'");
            }
            std::memcpy(destination + row_bytes * static_cast<std::size_t>(r),
                        from + row_bytes * static_cast<std::size_t>(row), row_bytes);
        }
    };
    // A sequence-parallel rank's share: of each row, the steps the shard holds, piece by piece.
    auto gather_share = [&](const Tensor& source, std::byte* destination, const std::string& name) {
        const SequenceShard& shard = options_.sequence->shard;
        const std::size_t step_bytes = source.nbytes() / static_cast<std::size_t>(source.dim(0) * source.dim(1));
        const std::size_t piece_bytes = step_bytes * static_cast<std::size_t>(shard.piece_steps());
        const auto* from = static_cast<const std::byte*>(source.raw());
        for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t row = batch.rows.empty() ? first + r : batch.rows[static_cast<std::size_t>(first + r)];
            if (row < 0 || row >= source.dim(0)) {
                throw RunError("batch row " + std::to_string(row) + " is outside the " + std::to_string(source.dim(0)) +
                               " rows of '" + name + "'");
            }
            std::byte* to = destination + static_cast<std::size_t>(r * shard.local_steps()) * step_bytes;
            for (std::int64_t s = 0; s < shard.local_steps(); s += shard.piece_steps()) {
                const std::int64_t global = row * shard.global_steps() + shard.global_position(s);
                std::memcpy(to + static_cast<std::size_t>(s) * step_bytes,
                            from + static_cast<std::size_t>(global) * step_bytes, piece_bytes);
            }
        }
    };
    const Graph& g = *graph_;
    for (std::size_t i = 0; i < g.inputs().size(); ++i) {
        const TensorId t = g.inputs()[i];
        std::byte* destination = plan.buffer(plan.tensor_buffer[static_cast<std::size_t>(t)]);
        if (options_.sequence && options_.sequence->sharded[static_cast<std::size_t>(t)])
            gather_share(*batch.inputs[i], destination, g.tensor(t).name);
        else
            gather(*batch.inputs[i], destination, g.tensor(t).name);
    }
    if (with_targets) {
        for (std::size_t i = 0; i < plan.target_buffer.size(); ++i)
            gather(*batch.targets[i], plan.buffer(plan.target_buffer[i]), "targets");
    }
}

namespace {

// The batch's tensors must match what the graph declares (dtype and every dimension but the
// first) and have `rows` rows. Checked every step, so it must not allocate unless it fails.
// `one_step`: an advancing input of a decoding session, one step long whatever the graph declares.
void check_batch_tensor(const Tensor& t, DType dtype, const Shape& declared, std::int64_t rows, const std::string& name,
                        const char* what, bool one_step = false) {
    bool fits = t.dtype() == dtype && t.rank() == declared.size() && t.rank() > 0;
    for (std::size_t i = 1; fits && i < declared.size(); ++i) fits = t.dim(i) == (one_step && i == 1 ? 1 : declared[i]);
    if (!fits) {
        Shape shown = declared;
        shown[0] = -1;
        if (one_step && shown.size() > 1) shown[1] = 1;
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
    if (options_.session) throw RunError("a decoding executor runs session steps (run_session_step) only");
    const std::int64_t available = batch.inputs.empty() ? 0 : batch.inputs[0]->dim(0);
    const std::int64_t rows = check_inputs(batch);

    // Before planning: ops that size per-thread memory in infer see the thread count of the calls.
    const StepThreads step_threads(options_.threads);
    if (kind == StepKind::Infer) {
        if (const std::int64_t slice = inference_slice_rows(rows); slice < rows) {
            run_in_slices(batch, rows, slice);
            ++step_count_;
            return 0.0;
        }
    }
    ExecutionPlan& plan = plan_for(rows, training);
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
    load_batch(plan, batch, with_loss, 0, rows);

    nng_context ctx = call_context(batch.global_offset);
    ctx.training = training ? 1 : 0;
    ctx.deterministic = kind == StepKind::Gradient ? 1 : 0;
    const std::uint64_t step_seed = nng::derive_seed(options_.seed, step_count_);

    run_forward(plan, ctx, false);

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
        // A weight's gradient is final once the last backward call writing it has run.
        std::vector<int>& writers = gradient_writers_;
        if (on_gradient_ready_) {
            writers.assign(weight_grads_.size(), 0);
            for (const NodeCall& call : plan.calls) {
                if (!call.runs_backward) continue;
                for (WeightId w : call.weight_ids) ++writers[static_cast<std::size_t>(w)];
            }
            for (std::size_t w = 0; w < writers.size(); ++w) {
                if (writers[w] == 0) on_gradient_ready_(static_cast<WeightId>(w));
            }
        }
        for (auto it = plan.calls.rbegin(); it != plan.calls.rend(); ++it) {
            NodeCall& call = *it;
            if (!call.runs_backward) continue;
            ctx.seed = nng::derive_seed(step_seed, static_cast<std::uint64_t>(call.node));  // as in forward
            ctx.sequence_shard = shard_of(call.node);
            call_op(call.node, Pass::Backward, ctx, call.backward_args);
            for (const auto& acc : call.accumulate) {
                add_into(reinterpret_cast<float*>(plan.buffer(acc.into)),
                         reinterpret_cast<const float*>(plan.buffer(acc.from)), acc.count);
            }
            if (!on_gradient_ready_) continue;
            for (WeightId w : call.weight_ids) {
                if (--writers[static_cast<std::size_t>(w)] == 0) on_gradient_ready_(w);
            }
        }
    }
    ++step_count_;
    set_last_plan(plan);
    return loss;
}

std::int64_t Executor::inference_slice_rows(std::int64_t rows) {
    // Fewer samples a slice and the ops' own parallel parts run short.
    constexpr std::int64_t kLeastSliceRows = 16;
    // The work ops slower on slices may hold, as a fraction of the whole: 1 in kSlowerShare.
    constexpr std::int64_t kSlowerShare = 100;
    if (options_.session || options_.sequence || options_.slice_bytes < 0 || rows < 2 * kLeastSliceRows) return rows;
    if (const auto known = slice_rows_.find(rows); known != slice_rows_.end()) return known->second;
    std::int64_t& slice = slice_rows_[rows];
    slice = rows;
    const StepThreads step_threads(options_.threads);  // the plan is the one run() would make
    const ExecutionPlan& whole = plan_for(rows, false);
    const std::int64_t budget =
        options_.slice_bytes > 0 ? options_.slice_bytes : default_slice_bytes(planned_threads());
    const auto arena = static_cast<std::int64_t>(whole.layout.arena_bytes);
    if (arena <= budget) return slice;
    std::int64_t total = 0, slower = 0;
    for (const NodeCall& call : whole.calls) {
        if (call.skipped) continue;
        if (call.batch_slicing == NNG_SLICING_REFUSED) return slice;
        total += call.forward_flops;
        if (call.batch_slicing == NNG_SLICING_SLOWER) slower += call.forward_flops;
    }
    if (slower > total / kSlowerShare) return slice;
    // The arena over the rows as each sample's share: buffers that do not grow with the batch
    // count a little in every slice, which errs towards smaller slices.
    const std::int64_t fitting = std::max(kLeastSliceRows, budget / nng::ceil_div(arena, rows));
    const std::int64_t slices = nng::ceil_div(rows, fitting);
    slice = nng::ceil_div(rows, slices);
    return slice;
}

void Executor::run_in_slices(const BatchRef& batch, std::int64_t rows, std::int64_t slice_rows) {
    const Graph& g = *graph_;
    const std::size_t outputs = g.outputs().size();
    sliced_outputs_.resize(outputs);
    sliced_masks_.resize(outputs);
    last_run_plans_.clear();
    for (std::int64_t first = 0; first < rows; first += slice_rows) {
        const std::int64_t count = std::min(slice_rows, rows - first);
        ExecutionPlan& plan = plan_for(count, false);
        bind(plan);
        load_batch(plan, batch, false, first, count);
        nng_context ctx = call_context(batch.global_offset + first);
        run_forward(plan, ctx, false, first == 0);
        for (std::size_t i = 0; i < outputs; ++i) gather_slice_output(plan, i, first, count, rows);
        if (last_run_plans_.empty() || last_run_plans_.back().first != &plan) last_run_plans_.emplace_back(&plan, 0);
        ++last_run_plans_.back().second;
        last_plan_ = &plan;
    }
    stats_.last_run_slices = nng::ceil_div(rows, slice_rows);
}

namespace {

// A slice's `count` rows of `bytes` in all into rows [first, first + count) of `whole`.
void copy_slice_rows(const void* slice, std::size_t bytes, std::byte* whole, std::int64_t first, std::int64_t count) {
    const std::size_t row_bytes = bytes / static_cast<std::size_t>(count);
    std::memcpy(whole + row_bytes * static_cast<std::size_t>(first), slice, bytes);
}

}  // namespace

void Executor::gather_slice_output(const ExecutionPlan& plan, std::size_t i, std::int64_t first, std::int64_t count,
                                   std::int64_t rows) {
    const TensorId t = graph_->outputs()[i];
    const TensorView part = plan.view(t, graph_->tensor(t).info.dtype, plan.tensor_buffer);
    const std::span<const std::uint8_t> mask = mask_of(plan, t);
    Tensor& whole = sliced_outputs_[i];
    std::vector<std::uint8_t>& whole_mask = sliced_masks_[i];
    if (first == 0) {
        Shape shape(part.shape.begin(), part.shape.end());
        shape.at(0) = rows;
        if (whole.empty() || whole.shape() != shape || whole.dtype() != part.dtype)
            whole = Tensor(part.dtype, std::move(shape));
        whole_mask.resize(mask.size() / static_cast<std::size_t>(count) * static_cast<std::size_t>(rows));
    }
    copy_slice_rows(part.data, whole.nbytes() / static_cast<std::size_t>(rows) * static_cast<std::size_t>(count),
                    static_cast<std::byte*>(whole.raw()), first, count);
    if (!mask.empty())
        copy_slice_rows(mask.data(), mask.size(), reinterpret_cast<std::byte*>(whole_mask.data()), first, count);
}

void Executor::set_last_plan(ExecutionPlan& plan) {
    last_plan_ = &plan;
    last_run_plans_.assign(1, {&plan, 1});
    stats_.last_run_slices = 1;
}

std::int64_t Executor::check_inputs(const BatchRef& batch) const {
    const Graph& g = *graph_;
    if (batch.inputs.size() != g.inputs().size()) {
        throw InputError("the model has " + std::to_string(g.inputs().size()) + " inputs, " +
                         std::to_string(batch.inputs.size()) + " given");
    }
    const std::int64_t available = batch.inputs.empty() ? 0 : batch.inputs[0]->dim(0);
    for (std::size_t i = 0; i < g.inputs().size(); ++i) {
        const GraphTensor& input = g.tensor(g.inputs()[i]);
        const bool one_step = options_.session && options_.session->advancing_inputs.at(i);
        check_batch_tensor(*batch.inputs[i], input.info.dtype, input.info.shape, available, input.name, "input",
                           one_step);
    }
    const std::int64_t rows = batch.rows.empty() ? available : static_cast<std::int64_t>(batch.rows.size());
    if (rows <= 0) throw InputError("an empty batch");
    return rows;
}

void Executor::run_forward(ExecutionPlan& plan, nng_context& ctx, bool only_advancing, bool counts_calls) {
    const std::uint64_t step_seed = nng::derive_seed(options_.seed, step_count_);
    for (NodeCall& call : plan.calls) {
        if (call.skipped || (only_advancing && !call.advances)) continue;
        for (std::size_t k = 0; k < call.weight_ids.size(); ++k) {
            const auto w = static_cast<std::size_t>(call.weight_ids[k]);
            call.weights.entries[k].data = weights_[w].raw();
            call.grad_weights.entries[k].data = weight_grads_[w].empty() ? nullptr : weight_grads_[w].raw();
        }
        ctx.seed = nng::derive_seed(step_seed, static_cast<std::uint64_t>(call.node));
        ctx.sequence_shard = shard_of(call.node);
        call_op(call.node, Pass::Forward, ctx, call.args, counts_calls);
        if (forward_observer_)
            forward_observer_(call.node, {call.args.outputs, static_cast<std::size_t>(call.args.num_outputs)});
    }
}

void Executor::run_session_step(const BatchRef& batch, std::int64_t position) {
    if (!options_.session) throw RunError("this executor was not made for decoding sessions");
    if (position < 0 || position >= options_.session->positions) {
        throw InputError("decoding position " + std::to_string(position) + " is outside the session's " +
                         std::to_string(options_.session->positions) + " positions");
    }
    const std::int64_t rows = check_inputs(batch);
    const StepThreads step_threads(options_.threads);
    ExecutionPlan& plan = plan_for(rows, false);
    if (position > 0 && last_plan_ != &plan)
        throw RunError("a decoding session must start at position 0 (its batch size changed)");
    bind(plan);
    load_batch(plan, batch, false, 0, rows);
    nng_context ctx = call_context(batch.global_offset);
    ctx.position_offset = position;
    run_forward(plan, ctx, position > 0);
    ++step_count_;
    set_last_plan(plan);
}

void Executor::reorder_session_rows(std::span<const std::int64_t> rows) {
    if (!last_plan_ || !options_.session) throw RunError("no decoding session has started");
    ExecutionPlan& plan = *last_plan_;
    if (static_cast<std::int64_t>(rows.size()) != plan.batch) {
        throw RunError("reordering " + std::to_string(rows.size()) + " rows of a session of " +
                       std::to_string(plan.batch));
    }
    for (const int b : plan.session_buffers) {
        const std::size_t bytes = plan.requests[static_cast<std::size_t>(b)].bytes;
        const std::size_t row_bytes = bytes / static_cast<std::size_t>(plan.batch);
        std::byte* data = plan.buffer(b);
        reorder_scratch_.assign(data, data + bytes);
        for (std::size_t r = 0; r < rows.size(); ++r) {
            if (rows[r] < 0 || rows[r] >= plan.batch)
                throw RunError("row " + std::to_string(rows[r]) + " is outside the session");
            std::memcpy(data + r * row_bytes, reorder_scratch_.data() + static_cast<std::size_t>(rows[r]) * row_bytes,
                        row_bytes);
        }
    }
}

double Executor::run_loss(ExecutionPlan& plan, bool with_grad) const {
    const Graph& g = *graph_;
    double total = 0.0;
    for (std::size_t i = 0; i < loss_outputs_.size(); ++i) {
        const TensorId output = loss_outputs_[i];
        LossCall call;
        call.prediction = plan.view(output, g.tensor(output).info.dtype, plan.tensor_buffer);
        if (loss_uses_logits_[i]) call.logits = plan.view(g.tensor(output).logits, DType::F32, plan.tensor_buffer);
        call.targets = {DType::F32, plan.target_shapes[i], plan.buffer(plan.target_buffer[i])};
        call.mask = mask_of(plan, output);
        const TensorId seeded = gradients_.loss_targets[i];
        if (with_grad && gradients_.needs_grad[static_cast<std::size_t>(seeded)]) {
            call.grad = reinterpret_cast<float*>(plan.buffer(plan.grad_buffer[static_cast<std::size_t>(seeded)]));
        }
        total += loss_->evaluate(call);
    }
    return total;
}

const nng_sequence_shard* Executor::shard_of(NodeId node) const {
    return options_.sequence && options_.sequence->sharded_call[static_cast<std::size_t>(node)] ? &shard_ : nullptr;
}

int Executor::planned_threads() const { return options_.threads; }

nng_context Executor::call_context(std::int64_t batch_offset) const {
    nng_context ctx{};
    ctx.struct_size = sizeof(nng_context);
    ctx.num_threads = planned_threads();
    ctx.batch_offset = batch_offset;
    ctx.comm = dist::plugin_comm();
    return ctx;
}

void Executor::call_op(NodeId id, Pass pass, const nng_context& ctx, const nng_exec_args& args, bool counts_call) {
    const GraphNode& node = graph_->node(id);
    auto call = [&] {
        if (pass == Pass::Forward)
            node.instance->forward(node.name, ctx, args);
        else
            node.instance->backward(node.name, ctx, args);
    };
    if (!profiling_) return call();
    const auto start = std::chrono::steady_clock::now();
    call();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    NodeTime& t = profile_[static_cast<std::size_t>(id)];
    if (pass == Pass::Forward) {
        t.forward_seconds += seconds;
        t.forward_calls += counts_call ? 1 : 0;
    } else {
        t.backward_seconds += seconds;
        t.backward_calls += counts_call ? 1 : 0;
    }
}

void Executor::set_profiling(bool on) {
    profiling_ = on;
    profile_.assign(graph_->num_nodes(), NodeTime{});
}

std::vector<Executor::NodeWork> Executor::last_plan_work() const {
    std::vector<NodeWork> work(graph_->num_nodes());
    for (const auto& [plan, times] : last_run_plans_) {
        for (const NodeCall& call : plan->calls) {
            NodeWork& w = work[static_cast<std::size_t>(call.node)];
            w.forward_flops += times * call.forward_flops;
            w.forward_bytes += times * call.forward_bytes;
            w.backward_flops += times * call.backward_flops;
            w.backward_bytes += times * call.backward_bytes;
        }
    }
    return work;
}

std::size_t Executor::last_plan_backward_bytes() const { return last_plan_ ? last_plan_->backward_bytes : 0; }

std::string Executor::last_plan_memory_report() const {
    if (!last_plan_) return "no step has run yet\n";
    std::string out = last_plan_->memory_report();
    // Memory plugins hold outside the arena (oneDNN's scratchpads), by their "_bytes" counters.
    std::size_t held = 0;
    std::string parts;
    char line[160];
    for (const auto& [name, value] : graph_->registry().counters()) {
        if (!name.ends_with("_bytes") || value <= 0) continue;
        held += static_cast<std::size_t>(value);
        std::snprintf(line, sizeof line, "%s%s %.2f MB", parts.empty() ? "" : ", ", name.c_str(),
                      double(value) / 1048576.0);
        parts += line;
    }
    std::snprintf(line, sizeof line, "outside the arena, held by plugins: %.2f MB", double(held) / 1048576.0);
    out += line;
    out += parts.empty() ? "" : " (" + parts + ")";
    std::snprintf(line, sizeof line, "; arena and plugins %.2f MB in all\n",
                  double(last_plan_->layout.arena_bytes + held) / 1048576.0);
    return out + line;
}

std::vector<Executor::PlannedBuffer> Executor::last_plan_buffers() const {
    std::vector<PlannedBuffer> out;
    if (!last_plan_) return out;
    for (std::size_t i = 0; i < last_plan_->requests.size(); ++i) {
        const BufferRequest& r = last_plan_->requests[i];
        out.push_back(
            {last_plan_->request_names[i], last_plan_->layout.offsets[i], r.bytes, r.first_step, r.last_step});
    }
    return out;
}

std::span<const std::uint8_t> Executor::mask_of(const ExecutionPlan& plan, TensorId t) const {
    const TensorId mask = graph_->tensor(t).mask;
    if (mask < 0) return {};
    const TensorView view = plan.view(mask, DType::U8, plan.tensor_buffer);
    return {view.as<const std::uint8_t>(), static_cast<std::size_t>(view.numel())};
}

std::span<const std::uint8_t> Executor::output_mask(std::size_t i) const {
    if (!last_plan_) throw RunError("no step has run yet");
    if (stats_.last_run_slices > 1) return sliced_masks_.at(i);
    return mask_of(*last_plan_, graph_->outputs().at(i));
}

TensorView Executor::output(std::size_t i) const {
    if (!last_plan_) throw RunError("no step has run yet");
    const TensorId t = graph_->outputs().at(i);
    if (stats_.last_run_slices > 1) {
        const Tensor& out = sliced_outputs_.at(i);
        return {out.dtype(), out.shape(), const_cast<void*>(out.raw())};
    }
    return last_plan_->view(t, graph_->tensor(t).info.dtype, last_plan_->tensor_buffer);
}

}  // namespace nngraph
