#include "op_runner.hpp"

#include <yaml-cpp/yaml.h>

#include "dist/plugin_comm.hpp"
#include "exec/weights.hpp"
#include "graph/attributes.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/error.hpp"
#include "nngraph/random.hpp"
#include "plugins/op_instance.hpp"

namespace nngraph::testing {
namespace {

nng_tensor view(Tensor& t) {
    nng_tensor c{};
    c.struct_size = sizeof(nng_tensor);
    c.dtype = static_cast<nng_dtype>(t.dtype());
    c.shape = to_c_shape(t.shape());
    c.data = t.empty() ? nullptr : t.raw();
    return c;
}

std::vector<nng_tensor> views(std::vector<Tensor>& tensors) {
    std::vector<nng_tensor> out;
    for (Tensor& t : tensors) out.push_back(view(t));
    return out;
}

}  // namespace

const OpRegistry& built_plugins() {
    static const OpRegistry registry = OpRegistry::load(std::vector<std::filesystem::path>{default_plugin_dir()});
    return registry;
}

OpRunner::OpRunner(const OpRegistry& registry, const std::string& op, const std::string& attributes,
                   const std::vector<TensorInfo>& inputs, const std::vector<bool>& input_masks, bool training,
                   nng_precision precision) {
    const RegisteredOp* registered = registry.find(op);
    if (!registered) throw InputError(registry.describe_missing(op));
    const YAML::Node given = YAML::Load(attributes);
    std::vector<KeyedValue> entries;
    for (const auto& kv : given) entries.push_back({kv.first.as<std::string>(), kv.second, {"test", 0, 0}});
    attributes_ = std::make_unique<AttributeValues>(*registered->def, entries, op, SourceLocation{"test", 0, 0});
    try {
        instance_ = std::make_unique<OpInstance>(*registered, attributes_->view(), precision);
    } catch (const OpCreateError& e) {
        throw InputError(op + ": " + e.failure().message);
    }
    std::vector<bool> masks = input_masks;
    masks.resize(inputs.size(), false);
    input_infos_ = inputs;
    input_has_mask_ = masks;
    OpFailure failure;
    if (!instance_->infer(inputs, masks, training, 1, shapes_, failure)) throw InputError(op + ": " + failure.message);
    buffer_threads_ = 1;
    buffer_training_ = training;

    for (std::size_t i = 0; i < inputs.size(); ++i) {
        inputs_.emplace_back(inputs[i].dtype, inputs[i].shape);
        grad_inputs_.push_back(inputs[i].dtype == DType::F32 ? Tensor(DType::F32, inputs[i].shape) : Tensor());
        const Shape& s = inputs[i].shape;
        input_masks_.push_back(
            masks[i] ? Tensor(DType::U8, Shape(s.begin(), s.begin() + std::min<std::size_t>(2, s.size()))) : Tensor());
        if (masks[i])
            std::fill(input_masks_.back().data<std::uint8_t>(),
                      input_masks_.back().data<std::uint8_t>() + input_masks_.back().numel(), 1);
    }
    for (const OutputInfo& out : shapes_.outputs) {
        outputs_.emplace_back(out.tensor.dtype, out.tensor.shape);
        output_masks_.push_back(out.mask_rule == NNG_MASK_COMPUTED ? Tensor(DType::U8, out.mask_shape) : Tensor());
    }
    for (const WeightInfo& w : shapes_.weights) {
        weights_.emplace_back(DType::F32, w.shape);
        grad_weights_.push_back(w.trainable ? Tensor(DType::F32, w.shape) : Tensor());
    }
    plan_buffers(1, training);
    initialize_weights(1);
}

void OpRunner::plan_buffers(int threads, bool training) {
    if (threads != buffer_threads_ || training != buffer_training_) {
        OpFailure failure;
        InferResult again;
        if (!instance_->infer(input_infos_, input_has_mask_, training, threads, again, failure)) {
            throw InputError("inference for " + std::to_string(threads) + " threads: " + failure.message);
        }
        shapes_.buffers = std::move(again.buffers);
        buffer_threads_ = threads;
        buffer_training_ = training;
        buffers_.clear();
        buffer_views_.clear();
    }
    if (!buffers_.empty() || shapes_.buffers.empty()) return;
    buffer_views_.clear();
    for (const BufferDeclaration& b : shapes_.buffers) {
        const bool per_thread = b.lifetime == NNG_BUFFER_PER_THREAD;
        const std::uint64_t stride = per_thread ? nng::round_up(b.bytes, kTensorAlignment) : 0;
        const int slices = per_thread ? threads : 1;
        const std::uint64_t total = per_thread ? stride * static_cast<std::uint64_t>(slices) : b.bytes;
        buffers_.push_back(total ? Tensor(DType::U8, {static_cast<std::int64_t>(total)}) : Tensor());
        buffer_views_.push_back({total ? buffers_.back().raw() : nullptr, b.bytes, stride, slices});
    }
}

OpRunner::~OpRunner() = default;

std::uint64_t OpRunner::buffer_bytes(const std::string& name) const {
    for (const BufferDeclaration& b : shapes_.buffers) {
        if (b.name == name) return b.bytes;
    }
    throw InputError("the op declared no buffer named '" + name + "'");
}

std::uint64_t OpRunner::declared_bytes() const {
    std::uint64_t total = 0;
    for (const Tensor& b : buffers_) total += b.nbytes();
    return total;
}

void OpRunner::initialize_weights(std::uint64_t seed) {
    for (std::size_t k = 0; k < weights_.size(); ++k) {
        apply_initializer(shapes_.weights[k], nng::derive_seed(seed, shapes_.weights[k].name.c_str()), weights_[k]);
    }
}

// The C views of one call's tensors; `args` points into them.
struct OpRunner::Call {
    std::vector<nng_tensor> in, in_masks, out, out_masks, w, d_out, d_in, d_w;
    nng_exec_args args{};
    nng_context ctx{};
};

std::unique_ptr<OpRunner::Call> OpRunner::prepare_call(bool training, std::uint64_t seed, int threads) {
    plan_buffers(threads, training);
    auto call = std::make_unique<Call>();
    call->in = views(inputs_);
    call->in_masks = views(input_masks_);
    call->out = views(outputs_);
    call->out_masks = views(output_masks_);
    call->w = views(weights_);
    // A mask passed through is the input's own.
    for (std::size_t j = 0; j < shapes_.outputs.size(); ++j) {
        if (shapes_.outputs[j].mask_rule == NNG_MASK_FROM_INPUT) {
            call->out_masks[j] = call->in_masks[static_cast<std::size_t>(shapes_.outputs[j].mask_source)];
        }
    }
    nng_exec_args& a = call->args;
    a.struct_size = sizeof(a);
    a.num_inputs = static_cast<std::int32_t>(call->in.size());
    a.inputs = call->in.data();
    a.input_masks = call->in_masks.data();
    a.num_outputs = static_cast<std::int32_t>(call->out.size());
    a.outputs = call->out.data();
    a.output_masks = call->out_masks.data();
    a.num_weights = static_cast<std::int32_t>(call->w.size());
    a.weights = call->w.data();
    a.num_buffers = static_cast<std::int32_t>(buffer_views_.size());
    a.buffers = buffer_views_.empty() ? nullptr : buffer_views_.data();
    nng_context& ctx = call->ctx;
    ctx.struct_size = sizeof(ctx);
    ctx.training = training;
    ctx.seed = seed;
    ctx.num_threads = threads;
    ctx.batch_offset = batch_offset_;
    ctx.comm = nngraph::dist::plugin_comm();
    ctx.sequence_shard = has_shard_ ? &sequence_shard_ : nullptr;
    return call;
}

void OpRunner::forward(bool training, std::uint64_t seed, bool deterministic, int threads) {
    auto call = prepare_call(training, seed, threads);
    call->ctx.deterministic = deterministic;
    instance_->forward("test", call->ctx, call->args);
}

void OpRunner::backward(const std::vector<Tensor>& grad_outputs, std::uint64_t seed, std::vector<bool> want_input,
                        int threads) {
    auto call = prepare_call(true, seed, threads);
    // The output gradients as given (no copy); a missing or empty one is an absent gradient.
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
        nng_tensor t = view(outputs_[j]);
        const bool given = j < grad_outputs.size() && !grad_outputs[j].empty();
        t.data = given ? const_cast<void*>(grad_outputs[j].raw()) : nullptr;
        call->d_out.push_back(t);
    }
    call->d_in = views(grad_inputs_);
    call->d_w = views(grad_weights_);
    for (std::size_t i = 0; i < want_input.size() && i < call->d_in.size(); ++i) {
        if (!want_input[i]) call->d_in[i].data = nullptr;
    }
    call->args.grad_outputs = call->d_out.data();
    call->args.grad_inputs = call->d_in.data();
    call->args.grad_weights = call->d_w.data();
    instance_->backward("test", call->ctx, call->args);
}

}  // namespace nngraph::testing
