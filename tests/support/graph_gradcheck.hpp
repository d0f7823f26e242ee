// Finite-difference check of a whole graph's weight gradients through the executor: autograd's
// plumbing (gradients summed where a tensor feeds several inputs, logits twins, masks) on top of
// each op's own backward.
#pragma once

#include <memory>
#include <string>

#include "exec/executor.hpp"
#include "gradcheck.hpp"

namespace nngraph::testing {

struct GraphGradCase {
    std::string label;
    std::string model_yaml;  // a model file's text; its training.loss is the loss
    std::int64_t batch = 4;
    double input_low = -1.0, input_high = 1.0;  // inputs; integer inputs take integers in [low, high)
    double step = 1e-2, rtol = 1e-2, atol = 1e-3;
    int samples_per_weight = 24;
    std::uint64_t seed = 5;
};

// Random weights, inputs and targets (in [0, 1) for the loss); compares the executor's gradient
// (StepKind::Gradient) with central differences of the evaluated loss for sampled weight elements.
GradResult check_graph_gradients(const GraphGradCase& c);

}  // namespace nngraph::testing
