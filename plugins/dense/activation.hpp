// Keras's activations, parsed once from their name, with forward and backward on oneDNN: shared by
// Dense (its `activation`) and the Activation op.
#pragma once

#include <string>

#include "nngraph/onednn.hpp"

namespace nngraph_dense {

class ActivationFn {
public:
    // linear (or null), relu, sigmoid, tanh, softmax, gelu, elu, softplus, swish, exponential.
    static ActivationFn parse(const std::string& name);

    bool is_linear() const { return !softmax_ && eltwise_.identity(); }
    bool is_softmax() const { return softmax_; }
    // Sigmoid and softmax outputs get a hidden logits twin (the pre-activation), for the losses.
    nng_output_role logits_role() const;
    // Backward needs the pre-activation (gelu, softplus, swish); else the output suffices.
    bool backward_needs_input() const;

    // y = f(z) (softmax over the last axis); y may be z.
    void forward(const nng::onednn::View& z, const nng::onednn::View& y) const;
    // dz = f'(z) dy, from z or y as backward_needs_input() says (the other may be absent).
    void backward(const nng::onednn::View& z, const nng::onednn::View& y, const nng::onednn::View& dy,
                  const nng::onednn::View& dz) const;
    const nng::onednn::Eltwise& eltwise() const { return eltwise_; }

    static constexpr const char* kChoices = "linear|relu|sigmoid|tanh|softmax|gelu|elu|softplus|swish|exponential";

private:
    nng::onednn::Eltwise eltwise_;
    bool softmax_ = false;
};

// Adds `from` into `into` elementwise (a logits twin's gradient into the pre-activation's).
void add_into(const nng::TensorRef& into, const nng::TensorRef& from);

const nng_op_def* dense_op();
const nng_op_def* activation_op();

}  // namespace nngraph_dense
