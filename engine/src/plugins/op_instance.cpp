#include "plugins/op_instance.hpp"

#include <cstddef>
#include <cstring>

#include "nngraph/error.hpp"

namespace nngraph {
namespace {

nng_error fresh_error() {
    nng_error error{};
    error.struct_size = sizeof(nng_error);
    return error;
}

OpFailure to_failure(const nng_error& error) {
    OpFailure failure;
    failure.message = error.message[0] ? error.message : "the op reported a failure without a message";
    failure.attribute = error.attribute;
    return failure;
}

}  // namespace

nng_shape to_c_shape(const Shape& shape) {
    if (shape.size() > NNG_MAX_RANK) {
        throw InputError("shape " + shape_to_string(shape) + " has rank " + std::to_string(shape.size()) +
                         "; nngraph supports at most " + std::to_string(NNG_MAX_RANK));
    }
    nng_shape c{};
    c.rank = static_cast<std::int32_t>(shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) c.dims[i] = shape[i];
    return c;
}

Shape from_c(const nng_shape& shape) { return Shape(shape.dims, shape.dims + shape.rank); }

nng_tensor_info to_c(const TensorInfo& info) {
    return nng_tensor_info{static_cast<nng_dtype>(info.dtype), to_c_shape(info.shape)};
}

std::string OpInstance::input_name(int slot) const {
    const nng_op_def& def = *op_.def;
    // A plugin built before the field was appended passes a smaller struct_size.
    if (def.struct_size < offsetof(nng_op_def, input_names) + sizeof(def.input_names) || !def.input_names) return {};
    if (slot < 0 || slot >= def.max_inputs || !def.input_names[slot]) return {};
    return def.input_names[slot];
}

OpInstance::OpInstance(const RegisteredOp& op, const nng_attrs& attrs, nng_precision precision)
    : op_(op), precision_(precision) {
    nng_error error = fresh_error();
    if (op_.def->create(&attrs, &instance_, &error) != NNG_OK) throw OpCreateError(to_failure(error));
}

OpInstance::~OpInstance() {
    if (instance_) op_.def->destroy(instance_);
}

bool OpInstance::infer(const std::vector<TensorInfo>& inputs, const std::vector<bool>& input_has_mask, bool training,
                       int num_threads, InferResult& result, OpFailure& failure,
                       const SessionInference* session) const {
    std::vector<nng_tensor_info> c_inputs;
    std::vector<std::int32_t> c_masks;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        c_inputs.push_back(to_c(inputs[i]));
        c_masks.push_back(input_has_mask[i] ? 1 : 0);
    }
    nng_infer_io io{};
    io.struct_size = sizeof(io);
    io.training = training ? 1 : 0;
    io.num_inputs = static_cast<std::int32_t>(inputs.size());
    io.inputs = c_inputs.data();
    io.input_has_mask = c_masks.data();
    io.backward_needs = NNG_NEEDS_ALL;
    io.inference_identity = -1;
    io.num_threads = num_threads;
    std::vector<std::int32_t> advances;
    if (session) {
        for (const bool a : session->input_advances) advances.push_back(a ? 1 : 0);
        io.session_positions = session->positions;
        io.input_advances = advances.data();
    }
    io.precision = precision_;
    if (input_sources_.size() == inputs.size()) io.input_sources = input_sources_.data();
    nng_error error = fresh_error();
    if (op_.def->infer(instance_, &io, &error) != NNG_OK) {
        failure = to_failure(error);
        return false;
    }

    auto invalid = [&](const std::string& what) {
        failure = {"the plugin's shape inference returned " + what, {}};
        return false;
    };
    if (io.num_outputs < 1 || io.num_outputs > NNG_MAX_OUTPUTS)
        return invalid(std::to_string(io.num_outputs) + " outputs");
    if (io.num_weights < 0 || io.num_weights > NNG_MAX_WEIGHTS)
        return invalid(std::to_string(io.num_weights) + " weights");
    if (io.num_buffers < 0 || io.num_buffers > NNG_MAX_BUFFERS)
        return invalid(std::to_string(io.num_buffers) + " buffers");

    result = InferResult{};
    for (std::int32_t j = 0; j < io.num_outputs; ++j) {
        const nng_output_info& o = io.outputs[j];
        if (o.tensor.shape.rank < 0 || o.tensor.shape.rank > NNG_MAX_RANK) return invalid("an output of invalid rank");
        OutputInfo out;
        out.tensor = {static_cast<DType>(o.tensor.dtype), from_c(o.tensor.shape)};
        out.role = o.role;
        out.logits_of = o.logits_of;
        out.mask_rule = o.mask_rule;
        out.mask_source = o.mask_source;
        if (o.mask_rule == NNG_MASK_COMPUTED) out.mask_shape = from_c(o.mask_shape);
        if (o.mask_rule == NNG_MASK_FROM_INPUT &&
            (o.mask_source < 0 || o.mask_source >= io.num_inputs || !input_has_mask[o.mask_source])) {
            out.mask_rule = NNG_MASK_NONE;  // passing on a mask that is not there is passing on nothing
        }
        if (o.role != NNG_OUTPUT_VISIBLE && (o.logits_of < 0 || o.logits_of >= io.num_outputs)) {
            return invalid("a logits output that belongs to no output");
        }
        result.outputs.push_back(std::move(out));
    }
    for (std::int32_t k = 0; k < io.num_weights; ++k) {
        const nng_weight_spec& w = io.weights[k];
        WeightInfo info;
        info.name = std::string(w.name, strnlen(w.name, NNG_NAME_CAPACITY));
        info.shape = from_c(w.shape);
        for (std::int64_t d : info.shape) {
            if (d < 0) return invalid("weight '" + info.name + "' with a dynamic dimension");
        }
        info.initializer = w.initializer;
        info.params[0] = w.params[0];
        info.params[1] = w.params[1];
        info.trainable = w.trainable != 0;
        result.weights.push_back(std::move(info));
    }
    for (std::int32_t b = 0; b < io.num_buffers; ++b) {
        const nng_buffer_spec& spec = io.buffers[b];
        BufferDeclaration declared;
        declared.name = std::string(spec.name, strnlen(spec.name, NNG_NAME_CAPACITY));
        if (spec.lifetime < NNG_BUFFER_PER_CALL || spec.lifetime > NNG_BUFFER_SESSION) {
            return invalid("buffer '" + declared.name + "' with lifetime " +
                           std::to_string(static_cast<int>(spec.lifetime)) +
                           "; expected per call (1), saved (2), per thread (3), backward (4) or session (5)");
        }
        declared.lifetime = spec.lifetime;
        declared.bytes = spec.bytes;
        result.buffers.push_back(std::move(declared));
    }
    result.backward_needs = io.backward_needs;
    result.forward_flops = io.forward_flops;
    result.forward_bytes = io.forward_bytes;
    result.backward_flops = io.backward_flops;
    result.backward_bytes = io.backward_bytes;
    if (io.sequence_role < NNG_SEQUENCE_REFUSED || io.sequence_role > NNG_SEQUENCE_SPREADS)
        return invalid("sequence role " + std::to_string(io.sequence_role));
    result.sequence_role = static_cast<nng_sequence_role>(io.sequence_role);
    result.sequence_layout = io.sequence_layout == NNG_SHARD_ZIGZAG ? NNG_SHARD_ZIGZAG : NNG_SHARD_CONTIGUOUS;
    if (io.batch_slicing < NNG_SLICING_REFUSED || io.batch_slicing > NNG_SLICING_SLOWER)
        return invalid("batch slicing " + std::to_string(io.batch_slicing) +
                       "; expected refused (0), free (1) or slower (2)");
    result.batch_slicing = static_cast<nng_batch_slicing>(io.batch_slicing);
    result.sums_repeated_gradients = io.sums_repeated_gradients != 0;
    if (const std::int32_t k = io.inference_identity; k >= 0) {
        if (k >= io.num_inputs)
            return invalid("inference identity with input " + std::to_string(k) + " of " +
                           std::to_string(io.num_inputs));
        if (io.num_outputs != 1)
            return invalid("inference identity on an op with " + std::to_string(io.num_outputs) + " outputs");
        if (!(result.outputs[0].tensor.dtype == inputs[k].dtype && result.outputs[0].tensor.shape == inputs[k].shape)) {
            return invalid("inference identity of output 0 with input " + std::to_string(k) +
                           ", whose dtype or shape differs");
        }
        result.inference_identity = k;
    }
    return true;
}

void OpInstance::forward(const std::string& node, const nng_context& ctx, const nng_exec_args& args) const {
    nng_error error = fresh_error();
    const nng_status status = op_.def->forward(instance_, &ctx, &args, &error);
    if (status == NNG_BAD_INPUT)
        throw InputError("node '" + node + "' (" + op_.def->name + "): " + to_failure(error).message);
    if (status != NNG_OK)
        throw RunError("node '" + node + "' (" + op_.def->name + "): forward failed: " + to_failure(error).message);
}

void OpInstance::backward(const std::string& node, const nng_context& ctx, const nng_exec_args& args) const {
    if (!op_.def->backward) throw RunError("node '" + node + "' (" + op_.def->name + ") has no backward");
    nng_error error = fresh_error();
    if (op_.def->backward(instance_, &ctx, &args, &error) != NNG_OK) {
        throw RunError("node '" + node + "' (" + op_.def->name + "): backward failed: " + to_failure(error).message);
    }
}

}  // namespace nngraph
