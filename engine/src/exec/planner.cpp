#include "exec/planner.hpp"

#include <algorithm>
#include <numeric>
#include <optional>
#include <string>

#include "nngraph/arithmetic.hpp"
#include "plugins/op_instance.hpp"

namespace nngraph {
namespace {

std::uint64_t aligned(std::uint64_t bytes) { return nng::round_up(bytes, kTensorAlignment); }

// Every byte count the planner requests stays within kMaxTensorBytes, so the arena's sums and
// the per-thread products below cannot wrap.
std::size_t bytes_of(DType dtype, const Shape& shape, const std::string& what) {
    const std::optional<std::uint64_t> bytes = checked_byte_count(shape, dtype);
    if (!bytes) {
        throw RunError(what + " of shape " + shape_to_string(shape) + " and type " + std::string(dtype_name(dtype)) +
                       " would exceed 2^62 bytes");
    }
    return *bytes;
}

// Steps: 0 loads the batch, 1..K run forward, K+1 the loss, K+2..2K+1 backward in reverse,
// 2K+2 is the caller reading outputs.
struct StepOrder {
    std::vector<NodeId> ops;                       // the op nodes in forward order
    std::vector<int> forward_step, backward_step;  // per node
    int loss_step = 0, end_step = 0;
};

// Per tensor, the steps it is alive (inclusive), and the tensor whose buffer it uses.
struct Lifetimes {
    std::vector<int> first, last;
    std::vector<TensorId> owner;
    std::vector<bool> skipped;  // per node: an inference identity, not called

    void extend(TensorId t, int step) {
        int& until = last[static_cast<std::size_t>(t)];
        until = std::max(until, step);
    }
};

class Planner {
public:
    Planner(const PlanContext& context, std::int64_t batch, bool training)
        : g_(context.graph), context_(context), training_(training), plan_(std::make_unique<ExecutionPlan>()) {
        plan_->batch = batch;
        plan_->training = training;
    }

    std::unique_ptr<ExecutionPlan> run() {
        order_steps();
        mark_advancing();
        infer_shapes();
        compute_lifetimes();
        if (!training_) alias_inference_buffers();
        if (context_.session) keep_session_tensors();
        request_tensor_buffers();
        request_target_buffers();
        if (training_) request_gradient_buffers();
        build_argument_tables();
        place_buffers();
        if (training_) measure_backward_bytes();
        return std::move(plan_);
    }

private:
    bool runs_backward(NodeId n) const {
        return training_ && context_.gradients.runs_backward[static_cast<std::size_t>(n)];
    }
    Shape& shape_of(TensorId t) { return plan_->shapes[static_cast<std::size_t>(t)]; }
    const InferResult& inferred(NodeId n) const { return inferred_[static_cast<std::size_t>(n)]; }
    int request(std::uint64_t bytes, int from, int to, std::string name) {
        if (bytes > kMaxTensorBytes) {
            throw RunError(name + " at batch " + std::to_string(plan_->batch) + " needs " + std::to_string(bytes) +
                           " bytes; at most 2^62 bytes can be planned");
        }
        plan_->requests.push_back({bytes, from, to});
        plan_->request_names.push_back(std::move(name));
        return static_cast<int>(plan_->requests.size() - 1);
    }

    void order_steps() {
        for (NodeId id : g_.order()) {
            if (!g_.node(id).is_input) steps_.ops.push_back(id);
        }
        const int K = static_cast<int>(steps_.ops.size());
        steps_.loss_step = K + 1;
        steps_.end_step = 2 * K + 2;
        steps_.forward_step.assign(g_.num_nodes(), 0);
        steps_.backward_step.assign(g_.num_nodes(), 0);
        for (int k = 0; k < K; ++k) {
            const auto id = static_cast<std::size_t>(steps_.ops[static_cast<std::size_t>(k)]);
            steps_.forward_step[id] = 1 + k;
            steps_.backward_step[id] = 2 * K + 1 - k;
        }
    }

    bool advances(TensorId t) const { return advancing_[static_cast<std::size_t>(t)]; }

    // In a decoding session: the tensors that depend on an advancing input (masks with the tensor
    // their node makes); every tensor otherwise.
    void mark_advancing() {
        const SessionShape* session = context_.session;
        advancing_.assign(g_.tensors().size(), session == nullptr);
        if (!session) return;
        for (std::size_t i = 0; i < g_.inputs().size(); ++i) {
            if (session->advancing_inputs.at(i)) advancing_[static_cast<std::size_t>(g_.inputs()[i])] = true;
        }
        for (NodeId id : steps_.ops) {
            const GraphNode& node = g_.node(id);
            const bool any =
                std::any_of(node.inputs.begin(), node.inputs.end(), [&](TensorId t) { return advances(t); });
            for (std::size_t t = 0; t < g_.tensors().size(); ++t) {
                if (g_.tensors()[t].producer == id) advancing_[t] = any;
            }
        }
    }

    // Concrete shapes, node by node; in a decoding session an advancing input has one step a call.
    void infer_shapes() {
        plan_->shapes.resize(g_.tensors().size());
        inferred_.resize(g_.num_nodes());
        for (TensorId t : g_.inputs()) {
            shape_of(t) = g_.tensor(t).info.shape;
            shape_of(t)[0] = plan_->batch;
            if (context_.sequence && context_.sequence->sharded[static_cast<std::size_t>(t)])
                shape_of(t)[1] = context_.sequence->shard.local_steps();
            if (context_.session && advances(t)) {
                if (shape_of(t).size() < 2)
                    throw RunError("decoding: input '" + g_.tensor(t).name + "' has no steps axis to advance along");
                shape_of(t)[1] = 1;
            }
        }
        for (NodeId id : steps_.ops) {
            const GraphNode& node = g_.node(id);
            std::vector<TensorInfo> infos;
            std::vector<bool> masks;
            for (TensorId t : node.inputs) {
                infos.push_back({g_.tensor(t).info.dtype, shape_of(t)});
                masks.push_back(g_.tensor(t).mask >= 0);
            }
            OpFailure failure;
            InferResult& r = inferred_[static_cast<std::size_t>(id)];
            SessionInference session;
            if (context_.session) {
                session.positions = context_.session->positions;
                for (TensorId t : node.inputs) session.input_advances.push_back(advances(t));
            }
            if (!node.instance->infer(infos, masks, training_, context_.threads, r, failure,
                                      context_.session ? &session : nullptr)) {
                throw RunError("node '" + node.name + "' (" + node.op + "): shape inference at batch " +
                               std::to_string(plan_->batch) + " failed: " + failure.message);
            }
            if (r.outputs.size() != node.outputs.size()) {
                throw RunError("node '" + node.name + "' (" + node.op + ") declared " +
                               std::to_string(node.outputs.size()) + " outputs at load but " +
                               std::to_string(r.outputs.size()) + " at batch " + std::to_string(plan_->batch));
            }
            check_same_buffers(node, r);
            for (std::size_t j = 0; j < node.outputs.size(); ++j) {
                const TensorId t = node.outputs[j];
                shape_of(t) = r.outputs[j].tensor.shape;
                const TensorId mask = g_.tensor(t).mask;
                if (mask >= 0 && g_.tensor(mask).producer == id && r.outputs[j].mask_rule == NNG_MASK_COMPUTED) {
                    shape_of(mask) = r.outputs[j].mask_shape;
                }
            }
        }
    }

    // A buffer handle is the buffer's index in the op's declarations: the same in every plan only
    // if every infer declares the same buffers in the same order.
    void check_same_buffers(const GraphNode& node, const InferResult& r) const {
        auto names = [](const InferResult& result) {
            std::string list;
            for (const BufferDeclaration& b : result.buffers) list += (list.empty() ? "'" : ", '") + b.name + "'";
            return "(" + list + ")";
        };
        bool same = r.buffers.size() == node.shapes.buffers.size();
        for (std::size_t b = 0; same && b < r.buffers.size(); ++b) {
            same = r.buffers[b].name == node.shapes.buffers[b].name &&
                   r.buffers[b].lifetime == node.shapes.buffers[b].lifetime;
        }
        if (!same) {
            throw RunError("node '" + node.name + "' (" + node.op + ") declared the buffers " + names(node.shapes) +
                           " at load but " + names(r) + " at batch " + std::to_string(plan_->batch) +
                           "; an op must declare the same buffers in the same order in every infer");
        }
    }

    // Forward tensors live from their producer to their last reader, forward or backward.
    void compute_lifetimes() {
        const std::size_t num_tensors = g_.tensors().size();
        life_.first.assign(num_tensors, 0);
        life_.last.assign(num_tensors, 0);
        life_.owner.resize(num_tensors);
        std::iota(life_.owner.begin(), life_.owner.end(), TensorId{0});
        life_.skipped.assign(g_.num_nodes(), false);
        for (std::size_t t = 0; t < num_tensors; ++t) {
            const NodeId producer = g_.tensors()[t].producer;
            life_.first[t] = life_.last[t] = steps_.forward_step[static_cast<std::size_t>(producer)];
        }
        for (NodeId id : steps_.ops) {
            const GraphNode& node = g_.node(id);
            const InferResult& r = inferred(id);
            const bool backward = runs_backward(id);
            const int fwd = steps_.forward_step[static_cast<std::size_t>(id)];
            const int bwd = steps_.backward_step[static_cast<std::size_t>(id)];
            for (std::size_t i = 0; i < node.inputs.size(); ++i) {
                const TensorId t = node.inputs[i];
                life_.extend(t, fwd);
                if (backward && r.backward_needs_input(static_cast<int>(i))) life_.extend(t, bwd);
                if (g_.tensor(t).mask >= 0) life_.extend(g_.tensor(t).mask, backward ? bwd : fwd);
            }
            for (std::size_t j = 0; j < node.outputs.size(); ++j) {
                if (backward && r.backward_needs_output(static_cast<int>(j))) life_.extend(node.outputs[j], bwd);
            }
        }
        for (TensorId t : g_.outputs()) {
            life_.extend(t, steps_.end_step);
            if (g_.tensor(t).logits >= 0) life_.extend(g_.tensor(t).logits, steps_.end_step);
            // The loss and the metrics read an output's mask: padded positions count for neither.
            if (g_.tensor(t).mask >= 0) life_.extend(g_.tensor(t).mask, steps_.end_step);
        }
    }

    // The encoder's tensors the decoder reads are made at a session's first call and read at every
    // call: they hold their memory for the whole plan, so that no call's buffers take it.
    void keep_session_tensors() {
        for (NodeId id : steps_.ops) {
            const GraphNode& node = g_.node(id);
            const bool node_advances =
                std::any_of(node.inputs.begin(), node.inputs.end(), [&](TensorId t) { return advances(t); });
            if (!node_advances) continue;
            for (TensorId t : node.inputs) {
                if (advances(t)) continue;
                kept_.push_back(t);
                if (g_.tensor(t).mask >= 0) kept_.push_back(g_.tensor(t).mask);
            }
        }
        for (TensorId& t : kept_) {
            t = life_.owner[static_cast<std::size_t>(t)];
            life_.first[static_cast<std::size_t>(t)] = 0;
            life_.extend(t, steps_.end_step);
        }
    }

    // An op whose output is one of its inputs unchanged when not training (Dropout) is not
    // called; the output shares the input's buffer, which lives as long as either of them.
    void alias_inference_buffers() {
        for (NodeId id : steps_.ops) {
            const int input = inferred(id).inference_identity;
            if (input < 0) continue;
            const GraphNode& node = g_.node(id);
            const auto out = static_cast<std::size_t>(node.outputs[0]);
            const TensorId shared = life_.owner[static_cast<std::size_t>(node.inputs[static_cast<std::size_t>(input)])];
            life_.owner[out] = shared;
            life_.extend(shared, life_.last[out]);
            life_.skipped[static_cast<std::size_t>(id)] = true;
        }
    }

    void request_tensor_buffers() {
        const std::size_t num_tensors = g_.tensors().size();
        plan_->tensor_buffer.assign(num_tensors, -1);
        plan_->grad_buffer.assign(num_tensors, -1);
        for (std::size_t t = 0; t < num_tensors; ++t) {
            if (life_.owner[t] != static_cast<TensorId>(t)) continue;
            const std::string name = "tensor " + g_.tensors()[t].name;
            plan_->tensor_buffer[t] = request(bytes_of(g_.tensors()[t].info.dtype, plan_->shapes[t], name),
                                              life_.first[t], life_.last[t], name);
        }
        for (std::size_t t = 0; t < num_tensors; ++t) {
            plan_->tensor_buffer[t] = plan_->tensor_buffer[static_cast<std::size_t>(life_.owner[t])];
        }
        for (TensorId t : kept_) add_session_buffer(plan_->tensor_buffer[static_cast<std::size_t>(t)]);
    }

    void add_session_buffer(int buffer) {
        std::vector<int>& kept = plan_->session_buffers;
        if (buffer >= 0 && std::find(kept.begin(), kept.end(), buffer) == kept.end()) kept.push_back(buffer);
    }

    void request_target_buffers() {
        if (!context_.loss) return;
        for (TensorId t : context_.loss_outputs) {
            Shape shape = context_.loss->target_shape(shape_of(t));
            const std::string name = "targets of " + g_.tensor(t).name;
            plan_->target_buffer.push_back(request(bytes_of(DType::F32, shape, name), 0, steps_.loss_step, name));
            plan_->target_shapes.push_back(std::move(shape));
        }
    }

    // Whether a contribution is an input that repeats an earlier input of its node whose op sums
    // the tensor's gradient into that input's slot (nng_infer_io.sums_repeated_gradients): it
    // then gets no slot.
    bool summed_by_op(const GradContribution& c) const {
        if (c.node < 0 || !inferred(c.node).sums_repeated_gradients) return false;
        const std::vector<TensorId>& inputs = g_.node(c.node).inputs;
        const auto slot = inputs.begin() + c.slot;
        return std::find(inputs.begin(), slot, *slot) != slot;
    }

    // Gradients live from their first contribution to the producer's backward. Every further
    // contribution goes to a temporary that is added in right after the call that wrote it,
    // unless its op sums it (summed_by_op).
    void request_gradient_buffers() {
        const std::size_t num_tensors = g_.tensors().size();
        const GradientPlan& gradients = context_.gradients;
        contribution_buffer_.assign(num_tensors, {});
        auto step_of = [&](const GradContribution& c) {
            return c.node < 0 ? steps_.loss_step : steps_.backward_step[static_cast<std::size_t>(c.node)];
        };
        for (std::size_t t = 0; t < num_tensors; ++t) {
            if (!gradients.needs_grad[t]) continue;
            const auto& contributions = gradients.contributions[t];
            const std::size_t bytes = bytes_of(DType::F32, plan_->shapes[t], "gradient of " + g_.tensors()[t].name);
            const int consumed = steps_.backward_step[static_cast<std::size_t>(g_.tensors()[t].producer)];
            plan_->grad_buffer[t] =
                request(bytes, step_of(contributions.front()), consumed, "gradient of " + g_.tensors()[t].name);
            contribution_buffer_[t].push_back(plan_->grad_buffer[t]);
            for (std::size_t c = 1; c < contributions.size(); ++c) {
                if (summed_by_op(contributions[c])) {
                    contribution_buffer_[t].push_back(-1);
                    continue;
                }
                contribution_buffer_[t].push_back(request(bytes, step_of(contributions[c]), step_of(contributions[c]),
                                                          "gradient contribution to " + g_.tensors()[t].name));
            }
        }
    }

    void build_argument_tables() {
        for (NodeId id : steps_.ops) {
            NodeCall call;
            call.node = id;
            call.forward_step = steps_.forward_step[static_cast<std::size_t>(id)];
            call.backward_step = steps_.backward_step[static_cast<std::size_t>(id)];
            call.runs_backward = runs_backward(id);
            call.skipped = life_.skipped[static_cast<std::size_t>(id)];
            call.advances = std::any_of(g_.node(id).inputs.begin(), g_.node(id).inputs.end(),
                                        [&](TensorId t) { return advances(t); });
            const InferResult& counted = inferred_[static_cast<std::size_t>(id)];
            if (!call.skipped) {
                call.forward_flops = counted.forward_flops;
                call.forward_bytes = counted.forward_bytes;
            }
            call.batch_slicing = counted.batch_slicing;
            if (call.runs_backward) {
                call.backward_flops = counted.backward_flops;
                call.backward_bytes = counted.backward_bytes;
            }
            add_forward_tensors(call);
            request_op_buffers(call);
            if (call.runs_backward) add_gradient_tensors(call);
            plan_->calls.push_back(std::move(call));
        }
    }

    void add_forward_tensors(NodeCall& call) {
        const GraphNode& node = g_.node(call.node);
        auto buffer_of = [&](TensorId t) { return plan_->tensor_buffer[static_cast<std::size_t>(t)]; };
        auto add_with_mask = [&](TensorTable& tensors, TensorTable& masks, TensorId t) {
            tensors.add(g_.tensor(t).info.dtype, shape_of(t), buffer_of(t));
            const TensorId mask = g_.tensor(t).mask;
            masks.add(DType::U8, mask >= 0 ? shape_of(mask) : Shape{}, mask >= 0 ? buffer_of(mask) : -1);
        };
        for (TensorId t : node.inputs) add_with_mask(call.inputs, call.input_masks, t);
        for (TensorId t : node.outputs) add_with_mask(call.outputs, call.output_masks, t);
        for (WeightId w : node.weights) {
            const GraphWeight& weight = g_.weights()[static_cast<std::size_t>(w)];
            call.weight_ids.push_back(w);
            call.weights.add(DType::F32, weight.info.shape, -1);
            call.grad_weights.add(DType::F32, weight.info.shape, -1);
        }
    }

    // Saved buffers live from a training forward to the backward; scratch (per call, per thread
    // or backward only) only during the call that uses it, so scratch of different steps shares
    // memory. A call a buffer is not for sees it with no memory.
    void request_op_buffers(NodeCall& call) {
        const GraphNode& node = g_.node(call.node);
        const InferResult& r = inferred(call.node);
        const int saved_until = call.runs_backward ? call.backward_step : call.forward_step;
        for (const BufferDeclaration& b : r.buffers) {
            const std::string name = "buffer '" + b.name + "' of " + node.name;
            if (b.lifetime == NNG_BUFFER_SESSION) {  // kept from a session's first call to its last
                const int buffer = b.bytes > 0 ? request(b.bytes, 0, steps_.end_step, name) : -1;
                add_session_buffer(buffer);
                call.forward_buffers.add(buffer >= 0 ? b.bytes : 0, 0, 1, buffer);
                call.backward_buffers.add(0, 0, 1, -1);
                continue;
            }
            if (b.lifetime == NNG_BUFFER_SAVED) {
                const bool kept = training_ && b.bytes > 0;
                const int buffer = kept ? request(b.bytes, call.forward_step, saved_until, name) : -1;
                call.forward_buffers.add(kept ? b.bytes : 0, 0, 1, buffer);
                call.backward_buffers.add(kept ? b.bytes : 0, 0, 1, buffer);
                continue;
            }
            const int slices = b.lifetime == NNG_BUFFER_PER_THREAD ? context_.threads : 1;
            // Each slice is aligned: slices + 1 leaves room for the padding.
            if (b.lifetime == NNG_BUFFER_PER_THREAD &&
                b.bytes > kMaxTensorBytes / static_cast<std::uint64_t>(slices + 1)) {
                throw RunError(name + " of " + std::to_string(b.bytes) + " bytes for each of " +
                               std::to_string(slices) + " threads at batch " + std::to_string(plan_->batch) +
                               " would exceed 2^62 bytes");
            }
            const std::uint64_t stride = b.lifetime == NNG_BUFFER_PER_THREAD ? aligned(b.bytes) : 0;
            const std::uint64_t total =
                b.lifetime == NNG_BUFFER_PER_THREAD ? stride * static_cast<std::uint64_t>(slices) : b.bytes;
            auto scratch = [&](BufferTable& table, int step, const char* pass) {
                table.add(b.bytes, stride, slices, b.bytes > 0 ? request(total, step, step, name + " " + pass) : -1);
            };
            if (b.lifetime != NNG_BUFFER_BACKWARD)
                scratch(call.forward_buffers, call.forward_step, "forward");
            else
                call.forward_buffers.add(0, 0, 1, -1);
            if (call.runs_backward)
                scratch(call.backward_buffers, call.backward_step, "backward");
            else
                call.backward_buffers.add(0, 0, 1, -1);
        }
    }

    // Gradients of outputs in, of inputs out; a contribution after the first is added into the
    // gradient right after the call.
    void add_gradient_tensors(NodeCall& call) {
        const GraphNode& node = g_.node(call.node);
        for (TensorId t : node.outputs)
            call.grad_outputs.add(DType::F32, shape_of(t), plan_->grad_buffer[static_cast<std::size_t>(t)]);
        for (std::size_t slot = 0; slot < node.inputs.size(); ++slot) {
            const TensorId t = node.inputs[slot];
            int buffer = -1;
            const auto& contributions = context_.gradients.contributions[static_cast<std::size_t>(t)];
            for (std::size_t c = 0; c < contributions.size(); ++c) {
                if (contributions[c].node != call.node || contributions[c].slot != static_cast<int>(slot)) continue;
                buffer = contribution_buffer_[static_cast<std::size_t>(t)][c];
                if (c > 0 && buffer >= 0) {
                    call.accumulate.push_back(
                        {plan_->grad_buffer[static_cast<std::size_t>(t)], buffer, shape_numel(shape_of(t))});
                }
            }
            call.grad_inputs.add(DType::F32, shape_of(t), buffer);
        }
    }

    void place_buffers() { plan_->layout = plan_arena(plan_->requests); }

    // What is alive while the loss runs, less the loss's own targets: what backward needs.
    void measure_backward_bytes() {
        const auto& targets = plan_->target_buffer;
        for (std::size_t r = 0; r < plan_->requests.size(); ++r) {
            const BufferRequest& q = plan_->requests[r];
            const bool is_target = std::find(targets.begin(), targets.end(), static_cast<int>(r)) != targets.end();
            if (!is_target && q.first_step < steps_.loss_step && q.last_step > steps_.loss_step)
                plan_->backward_bytes += q.bytes;
        }
    }

    const Graph& g_;
    const PlanContext& context_;
    bool training_;
    std::unique_ptr<ExecutionPlan> plan_;
    StepOrder steps_;
    std::vector<InferResult> inferred_;  // per node
    Lifetimes life_;
    std::vector<std::vector<int>> contribution_buffer_;  // per tensor, per contribution
    std::vector<bool> advancing_;                        // per tensor (see mark_advancing)
    std::vector<TensorId> kept_;                         // decoding: the encoder's tensors the decoder reads
};

}  // namespace

std::unique_ptr<ExecutionPlan> build_plan(const PlanContext& context, std::int64_t batch, bool training) {
    return Planner(context, batch, training).run();
}

}  // namespace nngraph
