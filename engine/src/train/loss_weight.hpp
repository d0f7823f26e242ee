// What a loss's mean averages over, recorded as the executor evaluates it: one per row, or one per
// real position when the output carries a mask (the mean over real tokens). A batch's scores are
// weighed by it, and so is each data-parallel rank's gradient, since ranks may hold different
// numbers of real tokens.
#pragma once

#include <memory>

#include "exec/loss.hpp"

namespace nngraph {

// The weight of the mean `call` asks for: the rows of its prediction, or its mask's real positions.
double loss_weight(const LossCall& call);

// Evaluates `loss` and adds each evaluation's loss_weight to `*weight`, which its owner resets
// before a run and reads after the loss (from backward's gradient hooks too): with several outputs
// it is their sum, which weighs ranks alike when the outputs share their rows or mask.
std::shared_ptr<const LossFunction> weighing(std::shared_ptr<const LossFunction> loss, std::shared_ptr<double> weight);

}  // namespace nngraph
