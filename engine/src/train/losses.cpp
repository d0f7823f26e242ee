#include "train/losses.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "nngraph/error.hpp"

namespace nngraph {
namespace {

constexpr double kEpsilon = 1e-7;  // Keras's backend epsilon, the probability clip

class BinaryCrossentropy final : public LossFunction {
public:
    const char* name() const override { return "binary_crossentropy"; }
    bool works_from_logits(nng_output_role role) const override { return role == NNG_OUTPUT_SIGMOID_LOGITS; }
    Shape target_shape(const Shape& prediction) const override { return prediction; }

    // Keras: the mean over the last axis, then over the batch; so every element weighs 1/n.
    double evaluate(const LossCall& call) const override {
        if (!call.mask.empty()) return evaluate_masked(*this, call, call.mask);
        const std::int64_t n = call.prediction.numel();
        const float* y = call.targets.as<float>();
        double total = 0.0;
        if (call.logits.data) {
            // From logits, exact and stable: max(z, 0) - z*y + log(1 + exp(-|z|)); gradient sigmoid(z) - y.
            const float* z = call.logits.as<float>();
            for (std::int64_t i = 0; i < n; ++i) {
                const double zi = z[i];
                total += std::max(zi, 0.0) - zi * y[i] + std::log1p(std::exp(-std::abs(zi)));
                if (call.grad) call.grad[i] = static_cast<float>((1.0 / (1.0 + std::exp(-zi)) - y[i]) / double(n));
            }
        } else {
            // From probabilities clipped to [eps, 1 - eps]; the clip passes no gradient outside.
            const float* p = call.prediction.as<float>();
            for (std::int64_t i = 0; i < n; ++i) {
                const double clipped = std::clamp<double>(p[i], kEpsilon, 1.0 - kEpsilon);
                total -= y[i] * std::log(clipped) + (1.0 - y[i]) * std::log(1.0 - clipped);
                if (call.grad) {
                    const bool inside = p[i] >= kEpsilon && p[i] <= 1.0 - kEpsilon;
                    call.grad[i] =
                        inside ? static_cast<float>((clipped - y[i]) / (clipped * (1.0 - clipped)) / double(n)) : 0.0f;
                }
            }
        }
        return n ? total / double(n) : 0.0;
    }
};

// Categorical cross-entropy over the last axis, for one-hot (or soft) targets or class ids.
class CategoricalCrossentropy : public LossFunction {
public:
    explicit CategoricalCrossentropy(bool sparse) : sparse_(sparse) {}
    const char* name() const override {
        return sparse_ ? "sparse_categorical_crossentropy" : "categorical_crossentropy";
    }
    bool works_from_logits(nng_output_role role) const override { return role == NNG_OUTPUT_SOFTMAX_LOGITS; }
    Shape target_shape(const Shape& prediction) const override {
        if (!sparse_) return prediction;
        return Shape(prediction.begin(), prediction.end() - 1);
    }

    double evaluate(const LossCall& call) const override {
        const std::int64_t classes = call.prediction.shape.back();
        const std::int64_t groups = call.prediction.numel() / classes;  // every position but the class axis
        const std::span<const std::uint8_t> mask = call.mask;
        if (!mask.empty() && static_cast<std::int64_t>(mask.size()) != groups) {
            throw RunError(std::string(name()) + ": a mask of " + std::to_string(mask.size()) + " positions for " +
                           std::to_string(groups) + " predictions of " + std::to_string(classes) + " classes");
        }
        std::int64_t counted = groups;
        if (!mask.empty()) counted = std::count_if(mask.begin(), mask.end(), [](std::uint8_t m) { return m != 0; });
        // The mean over the positions that count (all of them without a mask).
        const double per_group = counted ? 1.0 / double(counted) : 0.0;
        if (sparse_ && call.logits.data) return sparse_from_logits(call, groups, classes, per_group);
        // Scratch kept between calls, so a steady-state step allocates nothing.
        std::vector<double>& target = target_;
        std::vector<double>& dq = gradient_;
        target.resize(static_cast<std::size_t>(classes));
        dq.resize(static_cast<std::size_t>(classes));
        double total = 0.0;
        for (std::int64_t g = 0; g < groups; ++g) {
            if (!mask.empty() && mask[static_cast<std::size_t>(g)] == 0) {
                if (call.grad) std::fill_n(call.grad + g * classes, classes, 0.0f);
                continue;
            }
            fill_target(call, g, classes, target);
            double target_sum = 0.0;
            for (double t : target) target_sum += t;
            float* grad = call.grad ? call.grad + g * classes : nullptr;
            if (call.logits.data) {
                const float* z = call.logits.as<float>() + g * classes;
                const double log_sum = log_sum_exp(z, classes);
                for (std::int64_t k = 0; k < classes; ++k) {
                    total -= target[static_cast<std::size_t>(k)] * (z[k] - log_sum);
                    if (grad)
                        grad[k] = static_cast<float>(
                            (std::exp(z[k] - log_sum) * target_sum - target[static_cast<std::size_t>(k)]) * per_group);
                }
            } else {
                // Keras: normalise the probabilities to sum 1, clip to [eps, 1 - eps], -sum(y log p).
                const float* p = call.prediction.as<float>() + g * classes;
                double sum = 0.0;
                for (std::int64_t k = 0; k < classes; ++k) sum += p[k];
                double dot = 0.0;  // sum_k dL/dq_k * q_k, for the normalisation's gradient
                for (std::int64_t k = 0; k < classes; ++k) {
                    const double q = p[k] / sum;
                    const double clipped = std::clamp(q, kEpsilon, 1.0 - kEpsilon);
                    total -= target[static_cast<std::size_t>(k)] * std::log(clipped);
                    const bool inside = q >= kEpsilon && q <= 1.0 - kEpsilon;
                    dq[static_cast<std::size_t>(k)] = inside ? -target[static_cast<std::size_t>(k)] / clipped : 0.0;
                    dot += dq[static_cast<std::size_t>(k)] * q;
                }
                if (grad) {
                    for (std::int64_t k = 0; k < classes; ++k)
                        grad[k] = static_cast<float>((dq[static_cast<std::size_t>(k)] - dot) / sum * per_group);
                }
            }
        }
        return total * per_group;
    }

private:
    // Class ids against logits, the sequence models' case (a vocabulary-wide softmax at every step).
    // The output's softmax has already been computed, so the gradient p - onehot and the loss
    // -log p[id] need no exp; only a row whose p[id] underflows takes the log-sum-exp of its logits.
    // Positions run in parallel; position g weighs per_group, or 0 when masked.
    double sparse_from_logits(const LossCall& call, std::int64_t groups, std::int64_t classes, double per_group) const {
        const std::span<const std::uint8_t> mask = call.mask;
        const float* labels = call.targets.as<float>();
        for (std::int64_t g = 0; g < groups; ++g) class_id(labels[g], classes);
        const float* logits = call.logits.as<float>();
        const float* probabilities = call.prediction.as<float>();
        float* const grad_base = call.grad;
        const auto weight = static_cast<float>(per_group);
        double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (std::int64_t g = 0; g < groups; ++g) {
            float* grad = grad_base ? grad_base + g * classes : nullptr;
            if (!mask.empty() && mask[static_cast<std::size_t>(g)] == 0) {
                if (grad) std::fill_n(grad, classes, 0.0f);
                continue;
            }
            const float* p = probabilities + g * classes;
            const auto id = static_cast<std::int64_t>(labels[g]);
            total += p[id] >= kSmallestTrustedProbability
                         ? -std::log(double(p[id]))
                         : log_sum_exp(logits + g * classes, classes) - double(logits[g * classes + id]);
            if (!grad) continue;
            for (std::int64_t k = 0; k < classes; ++k) grad[k] = p[k] * weight;
            grad[id] -= weight;
        }
        return total * per_group;
    }

    // Below this a float probability has lost digits to underflow, so its log is taken from the logits.
    static constexpr float kSmallestTrustedProbability = 1e-30f;

    static double log_sum_exp(const float* z, std::int64_t n) {
        const float top = *std::max_element(z, z + n);
        double sum = 0.0;
        for (std::int64_t k = 0; k < n; ++k) sum += std::exp(double(z[k]) - top);
        return double(top) + std::log(sum);
    }

    std::int64_t class_id(double label, std::int64_t classes) const {
        const auto id = static_cast<std::int64_t>(label);
        if (label != double(id) || id < 0 || id >= classes) {
            throw RunError(std::string(name()) + ": target " + std::to_string(label) + " is not a class id in [0, " +
                           std::to_string(classes) + ")");
        }
        return id;
    }

    void fill_target(const LossCall& call, std::int64_t group, std::int64_t classes,
                     std::vector<double>& target) const {
        if (!sparse_) {
            const float* y = call.targets.as<float>() + group * classes;
            for (std::int64_t k = 0; k < classes; ++k) target[static_cast<std::size_t>(k)] = y[k];
            return;
        }
        std::fill(target.begin(), target.end(), 0.0);
        target[static_cast<std::size_t>(class_id(call.targets.as<float>()[group], classes))] = 1.0;
    }
    bool sparse_;
    mutable std::vector<double> target_, gradient_;
};

class MeanSquaredError final : public LossFunction {
public:
    const char* name() const override { return "mse"; }
    bool works_from_logits(nng_output_role) const override { return false; }
    Shape target_shape(const Shape& prediction) const override { return prediction; }
    double evaluate(const LossCall& call) const override {
        if (!call.mask.empty()) return evaluate_masked(*this, call, call.mask);
        const std::int64_t n = call.prediction.numel();
        const float* p = call.prediction.as<float>();
        const float* y = call.targets.as<float>();
        double total = 0.0;
        for (std::int64_t i = 0; i < n; ++i) {
            const double d = double(p[i]) - y[i];
            total += d * d;
            if (call.grad) call.grad[i] = static_cast<float>(2.0 * d / double(n));
        }
        return n ? total / double(n) : 0.0;
    }
};

}  // namespace

double evaluate_masked(const LossFunction& loss, const LossCall& call, std::span<const std::uint8_t> mask) {
    if (mask.empty()) return loss.evaluate(call);
    const auto positions = static_cast<std::int64_t>(mask.size());
    const std::int64_t width = call.prediction.numel() / positions;
    const std::int64_t target_width = call.targets.numel() / positions;
    if (width * positions != call.prediction.numel() || target_width * positions != call.targets.numel()) {
        throw RunError(std::string(loss.name()) + ": a mask of " + std::to_string(positions) +
                       " positions does not divide a prediction of " + std::to_string(call.prediction.numel()) +
                       " values");
    }
    std::int64_t valid = 0;
    for (const std::uint8_t m : mask) valid += m != 0;
    // Each real position is a batch of one for the loss; its value and gradient are then weighed 1/valid.
    const std::int64_t one_prediction[2] = {1, width};
    const std::int64_t one_target[2] = {1, target_width};
    const std::span<const std::int64_t> prediction_shape(one_prediction, 2), target_shape(one_target, 2);
    double total = 0.0;
    for (std::int64_t g = 0; g < positions; ++g) {
        float* grad = call.grad ? call.grad + g * width : nullptr;
        if (mask[static_cast<std::size_t>(g)] == 0) {
            if (grad) std::fill_n(grad, width, 0.0f);
            continue;
        }
        LossCall one;
        one.prediction = {call.prediction.dtype, prediction_shape, call.prediction.as<float>() + g * width};
        if (call.logits.data) one.logits = {call.logits.dtype, prediction_shape, call.logits.as<float>() + g * width};
        one.targets = {call.targets.dtype, target_shape, call.targets.as<float>() + g * target_width};
        one.grad = grad;
        total += loss.evaluate(one);
        if (grad) {
            for (std::int64_t k = 0; k < width; ++k) grad[k] = static_cast<float>(grad[k] / double(valid));
        }
    }
    return valid ? total / double(valid) : 0.0;
}

std::vector<std::string> loss_names() {
    return {"binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "mse"};
}

std::shared_ptr<const LossFunction> make_loss(const std::string& name) {
    if (name == "binary_crossentropy") return std::make_shared<BinaryCrossentropy>();
    if (name == "categorical_crossentropy") return std::make_shared<CategoricalCrossentropy>(false);
    if (name == "sparse_categorical_crossentropy") return std::make_shared<CategoricalCrossentropy>(true);
    if (name == "mse" || name == "mean_squared_error") return std::make_shared<MeanSquaredError>();
    std::string known;
    for (const auto& n : loss_names()) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown loss '" + name + "'; known losses: " + known);
}

}  // namespace nngraph
