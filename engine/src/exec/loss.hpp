// The interface between the executor and a loss: the executor gives the loss the predictions (and,
// where the output has one and the loss accepts it, the pre-activation logits) with the targets;
// the loss returns its value and writes the gradient where the backward pass starts.
#pragma once

#include <cstdint>
#include <span>

#include "nngraph/plugin.h"
#include "nngraph/tensor.hpp"

namespace nngraph {

// A borrowed view of a planned buffer; its shape is borrowed too, so making one never allocates.
struct TensorView {
    DType dtype = DType::F32;
    std::span<const std::int64_t> shape;
    void* data = nullptr;

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (std::int64_t d : shape) n *= d;
        return n;
    }
    template <class T>
    T* as() const {
        return static_cast<T*>(data);
    }
};

struct LossCall {
    TensorView prediction;  // the visible output, e.g. probabilities after a sigmoid
    TensorView logits;  // its pre-activation twin (prediction = activation(logits)); null unless the loss works from it
    TensorView targets;
    float* grad = nullptr;  // d(loss)/d(logits if given, else prediction); null when not training
    // The output's mask, one byte per position (the prediction without its last axis): positions
    // whose byte is 0 add neither loss nor gradient. Empty: every position counts.
    std::span<const std::uint8_t> mask;
};

class LossFunction {
public:
    virtual ~LossFunction() = default;
    virtual const char* name() const = 0;
    // Whether the loss can start from an output's logits of this role (Keras's `_keras_logits`).
    virtual bool works_from_logits(nng_output_role role) const = 0;
    // The shape targets must have for a prediction of `prediction_shape` (batch included).
    virtual Shape target_shape(const Shape& prediction_shape) const = 0;
    // The loss averaged over the batch (Keras's sum_over_batch_size), or over the real positions
    // when call.mask is set; writes the gradient of that average when call.grad is set.
    virtual double evaluate(const LossCall& call) const = 0;
};

}  // namespace nngraph
