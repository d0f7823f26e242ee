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
        switch (kind) {
        case AccuracyKind::Binary: {
            std::int64_t right = 0;
            for (std::int64_t k = 0; k < width; ++k) right += (pred[k] > 0.5f ? 1.0f : 0.0f) == target[k];
            sum += double(right) / double(width);
            break;
        }
        case AccuracyKind::Categorical: sum += argmax(pred, width) == argmax(target, target_width) ? 1.0 : 0.0; break;
        case AccuracyKind::SparseCategorical: sum += double(argmax(pred, width)) == double(target[0]) ? 1.0 : 0.0; break;
        }
    }
    return sum;
}

}  // namespace nngraph
