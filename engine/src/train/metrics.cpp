#include "train/metrics.hpp"

namespace nngraph {

std::vector<std::pair<std::string, double>> Scores::named(const std::string& prefix) const {
    std::vector<std::pair<std::string, double>> out;
    if (accuracy) out.emplace_back(prefix + "accuracy", *accuracy);
    out.emplace_back(prefix + "loss", loss);
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

}  // namespace nngraph
