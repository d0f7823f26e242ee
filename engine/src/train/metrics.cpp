#include "train/metrics.hpp"

#include <cctype>

#include "nngraph/error.hpp"

namespace nngraph {

std::vector<std::pair<std::string, double>> Scores::named(const std::string& prefix) const {
    std::map<std::string, double> sorted = metrics;
    if (accuracy) sorted["accuracy"] = *accuracy;
    sorted["loss"] = loss;
    std::vector<std::pair<std::string, double>> out;
    for (const auto& [name, value] : sorted) out.emplace_back(prefix + name, value);
    return out;
}

AccuracyKind resolve_accuracy(const std::string& loss, const Shape& prediction_shape) {
    if (!prediction_shape.empty() && prediction_shape.back() == 1) return AccuracyKind::Binary;
    if (loss == "binary_crossentropy") return AccuracyKind::Binary;
    if (loss == "sparse_categorical_crossentropy") return AccuracyKind::SparseCategorical;
    return AccuracyKind::Categorical;
}

namespace {

std::int64_t argmax(const float* v, std::int64_t n) {
    std::int64_t best = 0;
    for (std::int64_t k = 1; k < n; ++k) {
        if (v[k] > v[best]) best = k;
    }
    return best;
}

// How a prediction splits into steps: class scores lie along the last axis, one group per step.
struct Steps {
    std::int64_t width = 0;      // values per sample
    std::int64_t classes = 1;    // values per step
    std::int64_t positions = 0;  // steps per sample
};

Steps steps_of(const TensorView& prediction, std::int64_t rows) {
    Steps s;
    s.width = rows ? prediction.numel() / rows : 0;
    s.classes = prediction.shape.empty() ? 1 : prediction.shape.back();
    s.positions = s.classes ? s.width / s.classes : 0;
    return s;
}

// The right answers at step t of one sample, out of units_per_step(kind, classes).
std::int64_t right_at_step(AccuracyKind kind, const float* pred, const float* target, std::int64_t t,
                           std::int64_t classes) {
    const float* step = pred + t * classes;
    switch (kind) {
        case AccuracyKind::Binary: {
            std::int64_t right = 0;
            for (std::int64_t k = 0; k < classes; ++k)
                right += (step[k] > 0.5f ? 1.0f : 0.0f) == target[t * classes + k];
            return right;
        }
        case AccuracyKind::Categorical:
            return argmax(step, classes) == argmax(target + t * classes, classes) ? 1 : 0;
        case AccuracyKind::SparseCategorical:
            return double(argmax(step, classes)) == double(target[t]) ? 1 : 0;
    }
    return 0;
}

std::int64_t units_per_step(AccuracyKind kind, std::int64_t classes) {
    return kind == AccuracyKind::Binary ? classes : 1;
}

}  // namespace

double accuracy_sum(AccuracyKind kind, const TensorView& prediction, const float* targets, std::int64_t target_width,
                    const std::int64_t* indices, std::int64_t rows) {
    const Steps s = steps_of(prediction, rows);
    const double units = double(s.positions * units_per_step(kind, s.classes));
    double sum = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* target = targets + (indices ? indices[r] : r) * target_width;
        std::int64_t right = 0;
        for (std::int64_t t = 0; t < s.positions; ++t)
            right += right_at_step(kind, prediction.as<float>() + r * s.width, target, t, s.classes);
        sum += double(right) / units;
    }
    return sum;
}

AccuracyTally masked_accuracy(AccuracyKind kind, const TensorView& prediction, const float* targets,
                              std::int64_t target_width, const std::int64_t* indices, std::int64_t rows,
                              std::span<const std::uint8_t> mask) {
    const Steps s = steps_of(prediction, rows);
    const std::int64_t units = units_per_step(kind, s.classes);
    AccuracyTally tally;
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* target = targets + (indices ? indices[r] : r) * target_width;
        for (std::int64_t t = 0; t < s.positions; ++t) {
            if (mask[static_cast<std::size_t>(r * s.positions + t)] == 0) continue;
            tally.right += double(right_at_step(kind, prediction.as<float>() + r * s.width, target, t, s.classes));
            tally.counted += double(units);
        }
    }
    return tally;
}

namespace {

// binary_accuracy, categorical_accuracy, sparse_categorical_accuracy: the mean over samples of each
// sample's accuracy. State: the sum of sample accuracies, the samples.
class AccuracyMetric final : public Metric {
public:
    AccuracyMetric(std::string name, AccuracyKind kind) : Metric(std::move(name), 2), kind_(kind) {}
    void update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask) override {
        if (mask.empty()) {
            state_[0] += accuracy_sum(kind_, prediction, targets, target_width, indices, rows);
            state_[1] += double(rows);
            return;
        }
        const AccuracyTally tally = masked_accuracy(kind_, prediction, targets, target_width, indices, rows, mask);
        state_[0] += tally.right;
        state_[1] += tally.counted;
    }
    double result() const override { return state_[1] > 0 ? state_[0] / state_[1] : 0.0; }

private:
    AccuracyKind kind_;
};

// Keras's in_top_k at every step: the target class is in the top k when fewer than k classes score
// strictly higher (ties at the boundary count as in). `sparse`: targets are class ids, one a step,
// else one-hot rows. State: the steps in the top k, the steps counted.
class TopKMetric final : public Metric {
public:
    TopKMetric(std::string name, int k, bool sparse) : Metric(std::move(name), 2), k_(k), sparse_(sparse) {}
    void update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask) override {
        const Steps s = steps_of(prediction, rows);
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* target = targets + (indices ? indices[r] : r) * target_width;
            for (std::int64_t t = 0; t < s.positions; ++t) {
                if (!mask.empty() && mask[static_cast<std::size_t>(r * s.positions + t)] == 0) continue;
                const float* scores = prediction.as<float>() + r * s.width + t * s.classes;
                const std::int64_t label =
                    sparse_ ? static_cast<std::int64_t>(target[t]) : argmax(target + t * s.classes, s.classes);
                if (label < 0 || label >= s.classes) {
                    throw RunError(name_ + ": target " + std::to_string(target[t]) + " is not a class id in [0, " +
                                   std::to_string(s.classes) + ")");
                }
                std::int64_t higher = 0;
                for (std::int64_t c = 0; c < s.classes; ++c) higher += scores[c] > scores[label];
                state_[0] += higher < k_ ? 1.0 : 0.0;
                state_[1] += 1.0;
            }
        }
    }
    double result() const override { return state_[1] > 0 ? state_[0] / state_[1] : 0.0; }

private:
    int k_;
    bool sparse_;
};

// Confusion counts at thresholds over every predicted value (flattened, as Keras's AUC, Precision
// and Recall count them): a value is a predicted positive above the threshold, a target positive
// when it is not 0. State: true positives, false positives, true negatives, false negatives, each
// one per threshold.
class ConfusionMetric : public Metric {
protected:
    ConfusionMetric(std::string name, std::vector<double> thresholds)
        : Metric(std::move(name), 4 * thresholds.size()), thresholds_(std::move(thresholds)) {}
    double tp(std::size_t i) const { return state_[i]; }
    double fp(std::size_t i) const { return state_[thresholds_.size() + i]; }
    double tn(std::size_t i) const { return state_[2 * thresholds_.size() + i]; }
    double fn(std::size_t i) const { return state_[3 * thresholds_.size() + i]; }
    static double divide_no_nan(double a, double b) { return b == 0.0 ? 0.0 : a / b; }

public:
    void update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask) override {
        const std::size_t n = thresholds_.size();
        const std::int64_t width = rows ? prediction.numel() / rows : 0;
        // Under a mask, every value of a masked step weighs nothing.
        const std::int64_t steps = mask.empty() || rows == 0 ? 1 : static_cast<std::int64_t>(mask.size()) / rows;
        const std::int64_t per_step = steps ? width / steps : width;
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* target = targets + (indices ? indices[r] : r) * target_width;
            const float* values = prediction.as<float>() + r * width;
            for (std::int64_t v = 0; v < width; ++v) {
                if (!mask.empty() && mask[static_cast<std::size_t>(r * steps + v / per_step)] == 0) continue;
                const bool positive = target[v] != 0.0f;
                for (std::size_t i = 0; i < n; ++i) {
                    const bool predicted = double(values[v]) > thresholds_[i];
                    state_[(positive ? (predicted ? 0 : 3) : (predicted ? 1 : 2)) * n + i] += 1.0;
                }
            }
        }
    }

protected:
    std::vector<double> thresholds_;
};

class Precision final : public ConfusionMetric {
public:
    Precision(std::string name, double threshold) : ConfusionMetric(std::move(name), {threshold}) {}
    double result() const override { return divide_no_nan(tp(0), tp(0) + fp(0)); }
};

class Recall final : public ConfusionMetric {
public:
    Recall(std::string name, double threshold) : ConfusionMetric(std::move(name), {threshold}) {}
    double result() const override { return divide_no_nan(tp(0), tp(0) + fn(0)); }
};

// Keras's AUC (curve ROC, summation interpolation): thresholds i / (n - 1) for i in 1..n-2 with
// -1e-7 and 1 + 1e-7 at the ends; the area is the sum over neighbouring thresholds of the drop in
// false-positive rate times the mean of their recalls.
class Auc final : public ConfusionMetric {
public:
    Auc(std::string name, int num_thresholds) : ConfusionMetric(std::move(name), thresholds_for(num_thresholds)) {}
    double result() const override {
        double area = 0.0;
        for (std::size_t i = 0; i + 1 < thresholds_.size(); ++i) {
            const double x0 = divide_no_nan(fp(i), fp(i) + tn(i)), x1 = divide_no_nan(fp(i + 1), fp(i + 1) + tn(i + 1));
            const double y0 = divide_no_nan(tp(i), tp(i) + fn(i)), y1 = divide_no_nan(tp(i + 1), tp(i + 1) + fn(i + 1));
            area += (x0 - x1) * (y0 + y1) / 2.0;
        }
        return area;
    }

private:
    static std::vector<double> thresholds_for(int n) {
        std::vector<double> t{-1e-7};
        for (int i = 1; i < n - 1; ++i) t.push_back(double(i) / double(n - 1));
        t.push_back(1.0 + 1e-7);
        return t;
    }
};

std::string lower_snake(const std::string& name) {
    std::string out;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(name[i]);
        // "SparseTopKCategoricalAccuracy" -> "sparse_top_k_categorical_accuracy"; "AUC" -> "auc".
        if (std::isupper(c) && i > 0 &&
            (std::islower(static_cast<unsigned char>(name[i - 1])) ||
             (i + 1 < name.size() && std::islower(static_cast<unsigned char>(name[i + 1])) &&
              std::isupper(static_cast<unsigned char>(name[i - 1])))))
            out += '_';
        out += static_cast<char>(std::tolower(c));
    }
    return out;
}

}  // namespace

std::string canonical_metric(const std::string& name) {
    const std::string snake = lower_snake(name);
    if (snake == "acc" || snake == "accuracy") return "accuracy";
    for (const char* known :
         {"binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "top_k_categorical_accuracy",
          "sparse_top_k_categorical_accuracy", "auc", "precision", "recall"}) {
        if (snake == known) return known;
    }
    return {};
}

std::unique_ptr<Metric> make_metric(const MetricSpec& spec, const std::string& loss) {
    const std::string name = spec.display_name.empty() ? spec.name : spec.display_name;
    const bool class_ids = loss == "sparse_categorical_crossentropy";
    auto needs_full_targets = [&] {
        if (class_ids) {
            throw InputError("the " + spec.name +
                             " metric compares every predicted value with its target, so it needs "
                             "one-hot or 0/1 targets, not the class ids of " +
                             loss);
        }
    };
    if (spec.name == "binary_accuracy") return std::make_unique<AccuracyMetric>(name, AccuracyKind::Binary);
    if (spec.name == "categorical_accuracy") return std::make_unique<AccuracyMetric>(name, AccuracyKind::Categorical);
    if (spec.name == "sparse_categorical_accuracy")
        return std::make_unique<AccuracyMetric>(name, AccuracyKind::SparseCategorical);
    if (spec.name == "top_k_categorical_accuracy") {
        needs_full_targets();
        return std::make_unique<TopKMetric>(name, spec.k, false);
    }
    if (spec.name == "sparse_top_k_categorical_accuracy") return std::make_unique<TopKMetric>(name, spec.k, true);
    if (spec.name == "auc") {
        needs_full_targets();
        if (spec.num_thresholds < 2) throw InputError("AUC needs num_thresholds of 2 or more");
        return std::make_unique<Auc>(name, spec.num_thresholds);
    }
    if (spec.name == "precision") {
        needs_full_targets();
        return std::make_unique<Precision>(name, spec.threshold);
    }
    if (spec.name == "recall") {
        needs_full_targets();
        return std::make_unique<Recall>(name, spec.threshold);
    }
    throw InputError("unknown metric '" + spec.name + "'; known metrics: " + kMetricNames);
}

MetricSet::MetricSet(const std::vector<MetricSpec>& specs, const std::string& loss) {
    for (const MetricSpec& spec : specs) metrics_.push_back(make_metric(spec, loss));
}

void MetricSet::update(const TensorView& prediction, const float* targets, std::int64_t target_width,
                       const std::int64_t* indices, std::int64_t rows, std::span<const std::uint8_t> mask) {
    for (auto& m : metrics_) m->update(prediction, targets, target_width, indices, rows, mask);
}

void MetricSet::reset() {
    for (auto& m : metrics_) m->reset();
}

void MetricSet::add(const MetricSet& other) {
    for (std::size_t i = 0; i < metrics_.size(); ++i) {
        const std::span<double> into = metrics_[i]->state();
        const std::span<const double> from = std::as_const(*other.metrics_[i]).state();
        for (std::size_t k = 0; k < into.size(); ++k) into[k] += from[k];
    }
}

std::vector<std::span<double>> MetricSet::states() {
    std::vector<std::span<double>> out;
    for (auto& m : metrics_) out.push_back(m->state());
    return out;
}

std::map<std::string, double> MetricSet::results() const {
    std::map<std::string, double> out;
    for (const auto& m : metrics_) out[m->name()] = m->result();
    return out;
}

}  // namespace nngraph
