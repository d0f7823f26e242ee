// The engine's side of one op instance (one graph node): owns what the plugin's `create` returned,
// and turns the C calls' statuses into exceptions that name the node.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nngraph/op_types.hpp"
#include "nngraph/plugin.h"
#include "nngraph/registry.hpp"

namespace nngraph {

// An op's failure, with the message and the attribute the plugin blamed (if any).
struct OpFailure {
    std::string message;
    std::string attribute;
};

// What the plan of an incremental-decoding session tells each op (nng_infer_io.session_positions
// and input_advances): the most positions a session reaches, and which inputs advance per call.
struct SessionInference {
    std::int64_t positions = 0;
    std::vector<bool> input_advances;
};

class OpInstance {
public:
    // Calls the plugin's `create`. Throws OpCreateError (carrying the plugin's message and blamed
    // attribute) so that the caller can attach a model-file location.
    // `precision` is the node's dtype policy (nng_precision), passed to every infer.
    OpInstance(const RegisteredOp& op, const nng_attrs& attrs, nng_precision precision = NNG_PRECISION_FLOAT32);
    OpInstance(const OpInstance&) = delete;
    OpInstance& operator=(const OpInstance&) = delete;
    ~OpInstance();

    const nng_op_def& def() const { return *op_.def; }
    const RegisteredOp& registered() const { return op_; }
    bool has_backward() const { return op_.def->backward != nullptr; }
    nng_precision precision() const { return precision_; }
    // Keras's name of input `slot` ("query"), or empty when the op does not name it.
    std::string input_name(int slot) const;

    // Per input, the lowest index of an input that is the same graph tensor (nng_infer_io's
    // input_sources), told every infer from now on; by default each input is its own.
    void set_input_sources(std::vector<std::int32_t> sources) { input_sources_ = std::move(sources); }

    // Returns false and fills `failure` when the plugin rejects the inputs. `num_threads` is what
    // every call of the plan runs with (1 at load time); `session` is set in a decoding session's plan.
    bool infer(const std::vector<TensorInfo>& inputs, const std::vector<bool>& input_has_mask, bool training,
               int num_threads, InferResult& result, OpFailure& failure,
               const SessionInference* session = nullptr) const;

    // Throw RunError "<node> (<op>): forward failed: ..." on failure.
    void forward(const std::string& node, const nng_context& ctx, const nng_exec_args& args) const;
    void backward(const std::string& node, const nng_context& ctx, const nng_exec_args& args) const;

private:
    RegisteredOp op_;
    void* instance_ = nullptr;
    nng_precision precision_ = NNG_PRECISION_FLOAT32;
    std::vector<std::int32_t> input_sources_;
};

class OpCreateError : public std::exception {
public:
    explicit OpCreateError(OpFailure failure) : failure_(std::move(failure)) {}
    const char* what() const noexcept override { return failure_.message.c_str(); }
    const OpFailure& failure() const { return failure_; }

private:
    OpFailure failure_;
};

nng_tensor_info to_c(const TensorInfo& info);
nng_shape to_c_shape(const Shape& shape);
Shape from_c(const nng_shape& shape);

}  // namespace nngraph
