#include "train/optimizers.hpp"

#include <cmath>
#include <cstring>

#include "nngraph/error.hpp"

namespace nngraph {
namespace {

// Slot tensors shaped like the weights that train (the ones with a gradient), empty elsewhere.
std::vector<Tensor> zeros_like_trainable(const std::vector<Tensor>& weights, const std::vector<Tensor>& grads) {
    std::vector<Tensor> out;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        out.push_back(grads[i].empty() ? Tensor() : Tensor(DType::F32, weights[i].shape()));
    }
    return out;
}

// Keras 3's _apply_weight_decay, run before every optimizer's own update: each weight that trains
// shrinks by the factor 1 - weight_decay * learning_rate.
void apply_weight_decay(std::vector<Tensor>& weights, const std::vector<Tensor>& grads, double weight_decay,
                        double learning_rate) {
    if (weight_decay == 0.0) return;
    const float keep = static_cast<float>(1.0 - weight_decay * learning_rate);
    for (std::size_t w = 0; w < weights.size(); ++w) {
        if (grads[w].empty()) continue;
        float* theta = weights[w].data<float>();
        const std::int64_t n = weights[w].numel();
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (std::int64_t i = 0; i < n; ++i) theta[i] *= keep;
    }
}

// Keras 3 Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon), t counting from 1.
class Adam final : public Optimizer {
public:
    Adam(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads) : c_(c) {
        if (c_.learning_rate < 0) c_.learning_rate = 0.001;
        slots_.emplace_back("m", zeros_like_trainable(weights, grads));
        slots_.emplace_back("v", zeros_like_trainable(weights, grads));
    }
    void apply(std::vector<Tensor>& weights, const std::vector<Tensor>& grads) override {
        const double learning_rate = c_.learning_rate_at(iterations_);
        apply_weight_decay(weights, grads, c_.weight_decay, learning_rate);
        const double t = double(iterations_ + 1);
        const double alpha = learning_rate * std::sqrt(1.0 - std::pow(c_.beta_2, t)) / (1.0 - std::pow(c_.beta_1, t));
        const float a = static_cast<float>(alpha), b1 = static_cast<float>(1.0 - c_.beta_1),
                    b2 = static_cast<float>(1.0 - c_.beta_2), eps = static_cast<float>(c_.epsilon);
        for (std::size_t w = 0; w < weights.size(); ++w) {
            if (grads[w].empty()) continue;
            float* theta = weights[w].data<float>();
            const float* g = grads[w].data<float>();
            float* m = slots_[0].second[w].data<float>();
            float* v = slots_[1].second[w].data<float>();
            const std::int64_t n = weights[w].numel();
#pragma omp parallel for simd if (n > 32768) schedule(static)
            for (std::int64_t i = 0; i < n; ++i) {
                m[i] += (g[i] - m[i]) * b1;
                v[i] += (g[i] * g[i] - v[i]) * b2;
                theta[i] -= a * m[i] / (std::sqrt(v[i]) + eps);
            }
        }
        ++iterations_;
    }

private:
    OptimizerConfig c_;
};

// Keras 3 SGD: without momentum theta -= lr g; with it m = momentum m - lr g, then
// theta += m, or theta += momentum m - lr g (Nesterov).
class Sgd final : public Optimizer {
public:
    Sgd(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads) : c_(c) {
        if (c_.learning_rate < 0) c_.learning_rate = 0.01;
        if (c_.momentum != 0.0) slots_.emplace_back("momentum", zeros_like_trainable(weights, grads));
    }
    void apply(std::vector<Tensor>& weights, const std::vector<Tensor>& grads) override {
        const double learning_rate = c_.learning_rate_at(iterations_);
        apply_weight_decay(weights, grads, c_.weight_decay, learning_rate);
        const float lr = static_cast<float>(learning_rate), mu = static_cast<float>(c_.momentum);
        for (std::size_t w = 0; w < weights.size(); ++w) {
            if (grads[w].empty()) continue;
            float* theta = weights[w].data<float>();
            const float* g = grads[w].data<float>();
            const std::int64_t n = weights[w].numel();
            if (slots_.empty()) {
#pragma omp parallel for simd if (n > 32768) schedule(static)
                for (std::int64_t i = 0; i < n; ++i) theta[i] -= lr * g[i];
                continue;
            }
            float* m = slots_[0].second[w].data<float>();
            const bool nesterov = c_.nesterov;
#pragma omp parallel for simd if (n > 32768) schedule(static)
            for (std::int64_t i = 0; i < n; ++i) {
                m[i] = mu * m[i] - lr * g[i];
                theta[i] += nesterov ? mu * m[i] - lr * g[i] : m[i];
            }
        }
        ++iterations_;
    }

private:
    OptimizerConfig c_;
};

}  // namespace

void Optimizer::save_state(const std::vector<std::string>& weight_names, std::map<std::string, Tensor>& out) const {
    const std::int64_t iterations[] = {iterations_};
    out["optimizer.iterations"] = Tensor::from<std::int64_t>({}, iterations);
    for (const auto& [slot, tensors] : slots_) {
        for (std::size_t w = 0; w < tensors.size(); ++w) {
            if (!tensors[w].empty()) out["optimizer." + slot + "." + weight_names[w]] = tensors[w];
        }
    }
}

void Optimizer::load_state(const std::vector<std::string>& weight_names, const std::map<std::string, Tensor>& in,
                           const std::string& source) {
    auto find = [&](const std::string& name) -> const Tensor& {
        auto it = in.find(name);
        if (it == in.end())
            throw InputError(source + ": optimizer state '" + name +
                             "' is missing; is this a checkpoint written by `nngraph train --save`?");
        return it->second;
    };
    const Tensor& iterations = find("optimizer.iterations");
    if (iterations.dtype() != DType::I64 || iterations.numel() != 1)
        throw InputError(source + ": 'optimizer.iterations' must be one I64");
    iterations_ = iterations.data<std::int64_t>()[0];
    for (auto& [slot, tensors] : slots_) {
        for (std::size_t w = 0; w < tensors.size(); ++w) {
            if (tensors[w].empty()) continue;
            const std::string name = "optimizer." + slot + "." + weight_names[w];
            const Tensor& value = find(name);
            if (value.dtype() != DType::F32 || value.shape() != tensors[w].shape()) {
                throw InputError(source + ": '" + name + "' has shape " + shape_to_string(value.shape()) +
                                 ", expected " + shape_to_string(tensors[w].shape()));
            }
            std::memcpy(tensors[w].raw(), value.raw(), value.nbytes());
        }
    }
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const std::vector<Tensor>& weights,
                                          const std::vector<Tensor>& grads) {
    if (config.name == "adam") return std::make_unique<Adam>(config, weights, grads);
    if (config.name == "sgd") return std::make_unique<Sgd>(config, weights, grads);
    throw InputError("unknown optimizer '" + config.name + "'; known optimizers: adam, sgd");
}

}  // namespace nngraph
