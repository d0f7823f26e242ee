// Keras's losses, averaged over the batch (sum_over_batch_size), with their gradients.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "exec/loss.hpp"

namespace nngraph {

// "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "mse"
// (also "mean_squared_error"). Throws InputError listing the known names.
std::shared_ptr<const LossFunction> make_loss(const std::string& name);
std::vector<std::string> loss_names();

// Keras's masked loss, for an output that carries a mask (e.g. from an Embedding with mask_zero):
// `mask` holds one byte per position of the prediction without its last axis; positions whose byte
// is 0 add neither loss nor gradient, and the result is `loss`'s value averaged over the others
// (0 when there are none). An empty mask is no mask: loss.evaluate(call).
double evaluate_masked(const LossFunction& loss, const LossCall& call, std::span<const std::uint8_t> mask);

}  // namespace nngraph
