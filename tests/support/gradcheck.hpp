// The reusable finite-difference gradient checker (Caffe's idea): every op's backward is compared
// with central differences of its forward, accumulated in double precision, on random inputs.
// A plugin's test adds rows to a table of GradCase and calls check_gradients for each.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "op_runner.hpp"

namespace nngraph::testing {

struct GradInput {
    Shape shape;  // batch included
    DType dtype = DType::F32;
    double low = -1.0, high = 1.0;  // uniform values; integer inputs take integers in [low, high)
    bool mask = false;              // arrives with a random (batch, steps) mask, every row keeping one step at least
    bool differentiable = true;     // false: not checked (e.g. an input the op declares no gradient for)
};

// A (batch, steps, dim) float input, with a random mask when `mask`.
inline GradInput sequence_input(std::int64_t batch, std::int64_t steps, std::int64_t dim, bool mask = false) {
    GradInput in;
    in.shape = {batch, steps, dim};
    in.mask = mask;
    return in;
}

struct GradCase {
    std::string label;  // names the case in failures
    std::string op;
    std::string attributes = "{}";
    std::vector<GradInput> inputs;
    double step = 1e-2;  // the finite-difference step h
    double rtol = 1e-2, atol = 1e-3;
    int samples_per_tensor = 40;  // elements checked per input and weight (all of a smaller tensor)
    std::uint64_t seed = 1;
    // Runs after random inputs and weights are set, to pin values a case needs.
    std::function<void(OpRunner&)> prepare;
};

struct GradResult {
    bool ok = true;
    int checked = 0;
    double worst_error = 0.0;  // |analytic - numeric| / (atol + rtol * max(|analytic|, |numeric|)); <= 1 passes
    std::string report;        // every failing element, and the worst one
};

// Loss L = sum_j <R_j, output_j> with fixed random R_j over every float output (hidden logits
// twins included); compares dL/dx from backward with (L(x+h) - L(x-h)) / 2h for sampled elements of
// every float input and every trainable weight. Random ops run with a fixed seed, so dropout masks
// are the same in every evaluation.
GradResult check_gradients(const GradCase& c, const OpRegistry& registry = built_plugins());

// Fills a tensor with uniform values in [low, high) (integers for integer tensors).
void fill_uniform(Tensor& t, double low, double high, std::uint64_t seed);

}  // namespace nngraph::testing
