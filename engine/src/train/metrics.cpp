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

double accuracy_sum(AccuracyKind kind, const TensorView& prediction, const float* targets, std::int64_t target_width,
                    const std::int64_t* indices, std::int64_t rows) {
    const float* p = prediction.as<float>();
    const std::int64_t width = rows ? prediction.numel() / rows : 0;
    // Class scores lie along the last axis; a sequence output has one such group per step.
    const std::int64_t classes = prediction.shape.empty() ? 1 : prediction.shape.back();
    const std::int64_t positions = classes ? width / classes : 0;
    auto argmax = [](const float* v, std::int64_t n) {
        std::int64_t best = 0;
        for (std::int64_t k = 1; k < n; ++k) {
            if (v[k] > v[best]) best = k;
        }
        return best;
    };
    double sum = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* pred = p + r * width;
        const float* target = targets + (indices ? indices[r] : r) * target_width;
        std::int64_t right = 0;
        switch (kind) {
        case AccuracyKind::Binary:
            for (std::int64_t k = 0; k < width; ++k) right += (pred[k] > 0.5f ? 1.0f : 0.0f) == target[k];
            sum += double(right) / double(width);
            break;
        case AccuracyKind::Categorical:
            for (std::int64_t t = 0; t < positions; ++t) right += argmax(pred + t * classes, classes) == argmax(target + t * classes, classes);
            sum += double(right) / double(positions);
            break;
        case AccuracyKind::SparseCategorical:
            for (std::int64_t t = 0; t < positions; ++t) right += double(argmax(pred + t * classes, classes)) == double(target[t]);
            sum += double(right) / double(positions);
            break;
        }
    }
    return sum;
}

}  // namespace nngraph
