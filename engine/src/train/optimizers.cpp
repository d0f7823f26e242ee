#include "train/optimizers.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "nngraph/cpu.hpp"
#include "nngraph/error.hpp"
#include "nngraph/parallel.hpp"

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

// Keras 3's optimizers, each one update_step. Weight decay, clipping and the iteration count are
// Optimizer::apply's.

// One Adam update's constants: the step size with its bias corrections, 1 - beta_1, 1 - beta_2.
struct AdamStep {
    float alpha, b1, b2, epsilon;
    GradientClip clip;
};

// Adam on elements [begin, end) of one weight. Cloned: on the baseline's 4 lanes the square roots
// and divisions, not the memory, bound the update.
NNG_LOOP_CLONES void adam_elements(const AdamStep& step, float* theta, const float* g, float* m, float* v,
                                   std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) {
        const float gi = step.clip(g[i]);
        m[i] += (gi - m[i]) * step.b1;
        v[i] += (gi * gi - v[i]) * step.b2;
        theta[i] -= step.alpha * m[i] / (std::sqrt(v[i]) + step.epsilon);
    }
}

// Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon), t counting from 1.
// AdamW is Adam whose weight_decay defaults to 0.004.
class Adam final : public Optimizer {
public:
    Adam(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads)
        : Optimizer(c) {
        slots_.emplace_back("m", zeros_like_trainable(weights, grads));
        slots_.emplace_back("v", zeros_like_trainable(weights, grads));
    }

private:
    void update(Tensor& weight, const Tensor& grad, std::size_t w, double learning_rate,
                const GradientClip& clip) override {
        const double t = double(iterations_ + 1);
        const double alpha =
            learning_rate * std::sqrt(1.0 - std::pow(config_.beta_2, t)) / (1.0 - std::pow(config_.beta_1, t));
        const AdamStep step{static_cast<float>(alpha), static_cast<float>(1.0 - config_.beta_1),
                            static_cast<float>(1.0 - config_.beta_2), static_cast<float>(config_.epsilon), clip};
        float* theta = weight.data<float>();
        const float* g = grad.data<float>();
        float* m = slots_[0].second[w].data<float>();
        float* v = slots_[1].second[w].data<float>();
        const std::int64_t n = weight.numel();
        nng::parallel_ranges(n, n > 32768 ? omp_get_max_threads() : 1, [&](std::int64_t begin, std::int64_t end) {
            adam_elements(step, theta, g, m, v, begin, end);
        });
    }
};

// SGD: without momentum theta -= lr g; with it m = momentum m - lr g, then
// theta += m, or theta += momentum m - lr g (Nesterov).
class Sgd final : public Optimizer {
public:
    Sgd(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads) : Optimizer(c) {
        if (config_.momentum != 0.0) slots_.emplace_back("momentum", zeros_like_trainable(weights, grads));
    }

private:
    void update(Tensor& weight, const Tensor& grad, std::size_t w, double learning_rate,
                const GradientClip& clip) override {
        const float lr = static_cast<float>(learning_rate), mu = static_cast<float>(config_.momentum);
        float* theta = weight.data<float>();
        const float* g = grad.data<float>();
        const std::int64_t n = weight.numel();
        if (slots_.empty()) {
#pragma omp parallel for simd if (n > 32768) schedule(static)
            for (std::int64_t i = 0; i < n; ++i) theta[i] -= lr * clip(g[i]);
            return;
        }
        float* m = slots_[0].second[w].data<float>();
        const bool nesterov = config_.nesterov;
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (std::int64_t i = 0; i < n; ++i) {
            const float gi = clip(g[i]);
            m[i] = mu * m[i] - lr * gi;
            theta[i] += nesterov ? mu * m[i] - lr * gi : m[i];
        }
    }
};

// RMSprop: v = rho v + (1 - rho) g^2; centered, a = rho a + (1 - rho) g and the denominator is
// v - a^2 + epsilon, else v + epsilon; step = lr g / sqrt(denominator); with momentum
// m = momentum m + step and theta -= m, else theta -= step.
class RmsProp final : public Optimizer {
public:
    RmsProp(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads)
        : Optimizer(c) {
        slots_.emplace_back("velocity", zeros_like_trainable(weights, grads));
        if (config_.momentum > 0.0) slots_.emplace_back("momentum", zeros_like_trainable(weights, grads));
        if (config_.centered) slots_.emplace_back("average_gradient", zeros_like_trainable(weights, grads));
    }

private:
    void update(Tensor& weight, const Tensor& grad, std::size_t w, double learning_rate,
                const GradientClip& clip) override {
        const float lr = static_cast<float>(learning_rate), rho = static_cast<float>(config_.rho),
                    mu = static_cast<float>(config_.momentum), eps = static_cast<float>(config_.epsilon);
        float* theta = weight.data<float>();
        const float* g = grad.data<float>();
        float* v = slots_[0].second[w].data<float>();
        float* m = config_.momentum > 0.0 ? slots_[1].second[w].data<float>() : nullptr;
        float* a = config_.centered ? slots_.back().second[w].data<float>() : nullptr;
        const std::int64_t n = weight.numel();
#pragma omp parallel for if (n > 32768) schedule(static)
        for (std::int64_t i = 0; i < n; ++i) {
            const float gi = clip(g[i]);
            v[i] = rho * v[i] + (1.0f - rho) * gi * gi;
            float denominator = v[i] + eps;
            if (a) {
                a[i] = rho * a[i] + (1.0f - rho) * gi;
                denominator = v[i] - a[i] * a[i] + eps;
            }
            const float step = lr * gi / std::sqrt(denominator);
            if (m) {
                m[i] = mu * m[i] + step;
                theta[i] -= m[i];
            } else {
                theta[i] -= step;
            }
        }
    }
};

// Adagrad: s += g^2 (s starting at initial_accumulator_value); theta -= lr g / sqrt(s + epsilon).
class Adagrad final : public Optimizer {
public:
    Adagrad(const OptimizerConfig& c, const std::vector<Tensor>& weights, const std::vector<Tensor>& grads)
        : Optimizer(c) {
        std::vector<Tensor> accumulators = zeros_like_trainable(weights, grads);
        for (Tensor& s : accumulators) {
            if (!s.empty()) std::fill_n(s.data<float>(), s.numel(), static_cast<float>(c.initial_accumulator_value));
        }
        slots_.emplace_back("accumulator", std::move(accumulators));
    }

private:
    void update(Tensor& weight, const Tensor& grad, std::size_t w, double learning_rate,
                const GradientClip& clip) override {
        const float lr = static_cast<float>(learning_rate), eps = static_cast<float>(config_.epsilon);
        float* theta = weight.data<float>();
        const float* g = grad.data<float>();
        float* s = slots_[0].second[w].data<float>();
        const std::int64_t n = weight.numel();
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (std::int64_t i = 0; i < n; ++i) {
            const float gi = clip(g[i]);
            s[i] += gi * gi;
            theta[i] -= lr * gi / std::sqrt(s[i] + eps);
        }
    }
};

double squared_norm(const Tensor& t) {
    const float* g = t.data<float>();
    const std::int64_t n = t.numel();
    double sum = 0.0;
#pragma omp parallel for simd reduction(+ : sum) if (n > 32768) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) sum += double(g[i]) * double(g[i]);
    return sum;
}

}  // namespace

Optimizer::Optimizer(const OptimizerConfig& config) : config_(config) {
    if (config_.learning_rate < 0) config_.learning_rate = config_.name == "sgd" ? 0.01 : 0.001;
    if (config_.weight_decay < 0) config_.weight_decay = config_.name == "adamw" ? 0.004 : 0.0;
    const int clippings = (config_.clipnorm > 0) + (config_.global_clipnorm > 0) + (config_.clipvalue > 0);
    if (clippings > 1) {
        throw InputError("only one of clipnorm, clipvalue and global_clipnorm can be set (got clipnorm " +
                         std::to_string(config_.clipnorm) + ", clipvalue " + std::to_string(config_.clipvalue) +
                         ", global_clipnorm " + std::to_string(config_.global_clipnorm) + ")");
    }
}

void Optimizer::set_learning_rate(double rate) {
    config_.schedule.reset();
    config_.learning_rate = rate;
}

void Optimizer::apply(std::vector<Tensor>& weights, const std::vector<Tensor>& grads) {
    // Keras's clip_by_norm scales g by clipnorm / max(|g|, clipnorm); clip_by_global_norm scales
    // every g by global_clipnorm / max(global norm, global_clipnorm).
    clips_.assign(weights.size(), GradientClip{});
    if (config_.clipnorm > 0) {
        for (std::size_t w = 0; w < weights.size(); ++w) {
            if (grads[w].empty()) continue;
            clips_[w].scale =
                static_cast<float>(config_.clipnorm / std::max(std::sqrt(squared_norm(grads[w])), config_.clipnorm));
        }
    } else if (config_.global_clipnorm > 0) {
        double sum = 0.0;
        for (const Tensor& g : grads) {
            if (!g.empty()) sum += squared_norm(g);
        }
        const float scale =
            static_cast<float>(config_.global_clipnorm / std::max(std::sqrt(sum), config_.global_clipnorm));
        for (GradientClip& clip : clips_) clip.scale = scale;
    } else if (config_.clipvalue > 0) {
        for (GradientClip& clip : clips_) clip.limit = static_cast<float>(config_.clipvalue);
    }
    const double rate = learning_rate();
    if (config_.weight_decay != 0.0) {
        // Keras 3's _apply_weight_decay: each weight that trains shrinks by 1 - weight_decay * lr.
        const float keep = static_cast<float>(1.0 - config_.weight_decay * rate);
        for (std::size_t w = 0; w < weights.size(); ++w) {
            if (grads[w].empty()) continue;
            float* theta = weights[w].data<float>();
            const std::int64_t n = weights[w].numel();
#pragma omp parallel for simd if (n > 32768) schedule(static)
            for (std::int64_t i = 0; i < n; ++i) theta[i] *= keep;
        }
    }
    for (std::size_t w = 0; w < weights.size(); ++w) {
        if (!grads[w].empty()) update(weights[w], grads[w], w, rate, clips_[w]);
    }
    ++iterations_;
}

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

bool is_optimizer_name(const std::string& name) {
    for (const char* known : {"adam", "adamw", "sgd", "rmsprop", "adagrad"}) {
        if (name == known) return true;
    }
    return false;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const std::vector<Tensor>& weights,
                                          const std::vector<Tensor>& grads) {
    if (config.name == "adam" || config.name == "adamw") return std::make_unique<Adam>(config, weights, grads);
    if (config.name == "sgd") return std::make_unique<Sgd>(config, weights, grads);
    if (config.name == "rmsprop") return std::make_unique<RmsProp>(config, weights, grads);
    if (config.name == "adagrad") return std::make_unique<Adagrad>(config, weights, grads);
    throw InputError("unknown optimizer '" + config.name + "'; known optimizers: " + kOptimizerNames);
}

}  // namespace nngraph
