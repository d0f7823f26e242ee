// Keras's losses, averaged over the batch (sum_over_batch_size), with their gradients.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "exec/loss.hpp"

namespace nngraph {

// "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "mse"
// (also "mean_squared_error"). Throws InputError listing the known names.
std::shared_ptr<const LossFunction> make_loss(const std::string& name);
std::vector<std::string> loss_names();

}  // namespace nngraph
