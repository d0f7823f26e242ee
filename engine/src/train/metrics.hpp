// Keras's metrics: "accuracy", resolved as Keras resolves it from the loss and the output shape,
// and the named ones (binary_accuracy, auc, precision, ...), each kept as sums so that data-parallel
// ranks add their tallies.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
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
    std::map<std::string, double> metrics;  // the other metrics, by Keras name
    // As Keras's logs list them, sorted by name (accuracy, auc, loss, precision, ...), each with
    // `prefix` (such as "val_").
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

// A metric other than "accuracy": its tallies over a set of batches are sums (state()), so the
// tallies of several ranks or batches add up, and the result is computed from them.
class Metric {
public:
    virtual ~Metric() = default;
    const std::string& name() const { return name_; }
    // Adds `rows` samples: prediction rows in batch order, their targets at `indices` (or 0..rows-1).
    // Under the output's mask (one byte per step of the rows, in batch order; empty: no mask) the
    // steps whose byte is 0 weigh nothing, as Keras makes the mask the sample_weight.
    virtual void update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                        const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask) = 0;
    std::span<double> state() { return state_; }
    std::span<const double> state() const { return state_; }
    void reset() { std::fill(state_.begin(), state_.end(), 0.0); }
    virtual double result() const = 0;

protected:
    Metric(std::string name, std::size_t sums) : name_(std::move(name)), state_(sums, 0.0) {}
    std::string name_;
    std::vector<double> state_;
};

// The metric a model file names in `metrics:`: a Keras name as a string ("auc", "Precision",
// "sparse_top_k_categorical_accuracy") or {class_name: ..., config: {k: 3, name: ...}} already
// read into `name`, `k` and `display_name`. Throws InputError for an unknown metric or one the
// loss's targets cannot feed (class ids for AUC, precision, recall).
struct MetricSpec {
    std::string name;          // canonical Keras function name, e.g. "auc"
    std::string display_name;  // the log's name; empty: `name`
    int k = 5;                 // top-k
    int num_thresholds = 200;  // AUC
    double threshold = 0.5;    // binary_accuracy, precision, recall
};
std::unique_ptr<Metric> make_metric(const MetricSpec& spec, const std::string& loss);
// Canonical name of a metric string as Keras's metrics.get accepts it (class or function name), or
// empty when unknown. "accuracy" and "acc" give "accuracy".
std::string canonical_metric(const std::string& name);
// The model file's metrics (besides accuracy), tallying a set of batches.
class MetricSet {
public:
    MetricSet() = default;
    MetricSet(const std::vector<MetricSpec>& specs, const std::string& loss);
    bool empty() const { return metrics_.empty(); }
    void update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask = {});
    void reset();
    // Adds the tallies of `other`, a set made from the same specs.
    void add(const MetricSet& other);
    // Each metric's sums, to add up across ranks in place.
    std::vector<std::span<double>> states();
    std::map<std::string, double> results() const;

private:
    std::vector<std::unique_ptr<Metric>> metrics_;
};

inline constexpr const char* kMetricNames =
    "accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy, "
    "sparse_top_k_categorical_accuracy, auc, precision, recall";

}  // namespace nngraph
