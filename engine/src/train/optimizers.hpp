// Keras's optimizers, in Keras's exact update equations.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nngraph/tensor.hpp"
#include "train/schedules.hpp"

namespace nngraph {

struct OptimizerConfig {
    std::string name = "adam";  // adam | adamw | sgd | rmsprop | adagrad
    double learning_rate = -1;  // -1: the optimizer's Keras default (0.01 for sgd, 0.001 for the others)
    double beta_1 = 0.9;
    double beta_2 = 0.999;
    double epsilon = 1e-7;
    double momentum = 0.0;
    bool nesterov = false;
    // Keras's decoupled weight_decay: before each update, w -= w * weight_decay * learning_rate.
    // -1: the optimizer's Keras default (0.004 for adamw, 0 for the others).
    double weight_decay = -1;
    // A Keras learning-rate schedule in place of the constant learning_rate.
    std::optional<LearningRateSchedule> schedule;
    // RMSprop: the decay of its averages, and whether it divides by the gradient's variance.
    double rho = 0.9;
    bool centered = false;
    // Adagrad: where the accumulated squared gradients start.
    double initial_accumulator_value = 0.1;
    // Keras's gradient clipping, at most one of them (0: off): each gradient to this L2 norm, all
    // gradients together to this global norm, or each value into [-clipvalue, clipvalue].
    double clipnorm = 0.0;
    double global_clipnorm = 0.0;
    double clipvalue = 0.0;

    // The rate of the update after `iterations` updates.
    double learning_rate_at(std::int64_t iterations) const {
        return schedule ? schedule->at(iterations) : learning_rate;
    }
};

// How one weight's gradient is clipped, applied to each value as the update reads it, so the
// gradients themselves stay as backward wrote them.
struct GradientClip {
    float scale = 1.0f;
    float limit = std::numeric_limits<float>::infinity();
    float operator()(float g) const {
        const float scaled = g * scale;
        return scaled > limit ? limit : (scaled < -limit ? -limit : scaled);
    }
};

// Keras 3's BaseOptimizer.apply: clip the gradients, apply the weight decay, then the optimizer's
// own update_step, at the learning rate of the current iteration.
class Optimizer {
public:
    explicit Optimizer(const OptimizerConfig& config);
    virtual ~Optimizer() = default;
    // One update of every weight that has a gradient (non-empty tensor in `grads`).
    void apply(std::vector<Tensor>& weights, const std::vector<Tensor>& grads);
    std::int64_t iterations() const { return iterations_; }
    const OptimizerConfig& config() const { return config_; }
    // The learning rate of the next update. ReduceLROnPlateau sets a constant rate in its place,
    // as Keras assigns optimizer.learning_rate.
    double learning_rate() const { return config_.learning_rate_at(iterations_); }
    void set_learning_rate(double rate);

    // State as named tensors: "optimizer.iterations" and "optimizer.<slot>.<weight name>", for checkpoints.
    void save_state(const std::vector<std::string>& weight_names, std::map<std::string, Tensor>& out) const;
    // Restores what save_state wrote; throws InputError naming a missing or misshapen entry.
    void load_state(const std::vector<std::string>& weight_names, const std::map<std::string, Tensor>& in,
                    const std::string& source);

protected:
    // The optimizer's update_step for weight `w`, its gradient read through `clip`.
    virtual void update(Tensor& weight, const Tensor& grad, std::size_t w, double learning_rate,
                        const GradientClip& clip) = 0;

    OptimizerConfig config_;
    // Per-weight state tensors, each slot ("m", "v", "momentum") one vector indexed like the weights.
    std::vector<std::pair<std::string, std::vector<Tensor>>> slots_;
    std::int64_t iterations_ = 0;

private:
    std::vector<GradientClip> clips_;  // one per weight, refilled every step
};

inline constexpr const char* kOptimizerNames = "adam, adamw, sgd, rmsprop, adagrad";
bool is_optimizer_name(const std::string& name);

// Throws InputError for an unknown name or more than one kind of clipping.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const std::vector<Tensor>& weights,
                                          const std::vector<Tensor>& grads);

}  // namespace nngraph
