// Keras's "accuracy", resolved as Keras resolves it from the loss and the output shape.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "exec/loss.hpp"

namespace nngraph {

// A loss and, when asked for, an accuracy: over an epoch, a validation set or a batch so far.
struct Scores {
    double loss = 0.0;
    std::optional<double> accuracy;
    // As Keras lists them: accuracy, then loss (with a prefix such as "val_").
    std::vector<std::pair<std::string, double>> named(const std::string& prefix = "") const;
};

enum class AccuracyKind {
    Binary,             // one value per prediction, threshold 0.5 (binary_accuracy)
    Categorical,        // argmax of prediction equals argmax of the one-hot target
    SparseCategorical,  // argmax of prediction equals the class id
};

AccuracyKind resolve_accuracy(const std::string& loss, const Shape& prediction_shape);

// The summed per-sample accuracy of `rows` samples (each sample's accuracy is a mean over its
// values, or over its steps for a (steps, classes) output, as Keras averages over the last axis). `targets` holds the
// samples' rows in the order given by `indices` (or 0..rows-1 when `indices` is empty).
double accuracy_sum(AccuracyKind kind, const TensorView& prediction, const float* targets, std::int64_t target_width,
                    const std::int64_t* indices, std::int64_t rows);

// Keras's accuracy under the output's mask (e.g. from an Embedding with mask_zero): `mask` holds one
// byte per step of the `rows` samples, in batch order; steps whose byte is 0 are not counted. An
// epoch's accuracy is the sum of `right` over the sum of `counted`, so each real step weighs the same.
struct AccuracyTally {
    double right = 0.0;
    double counted = 0.0;
};
AccuracyTally masked_accuracy(AccuracyKind kind, const TensorView& prediction, const float* targets,
                              std::int64_t target_width, const std::int64_t* indices, std::int64_t rows,
                              std::span<const std::uint8_t> mask);

}  // namespace nngraph
