// Keras's optimizers, in Keras's exact update equations.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nngraph/tensor.hpp"
#include "train/schedules.hpp"

namespace nngraph {

struct OptimizerConfig {
    std::string name = "adam";  // adam | sgd
    double learning_rate = -1;  // -1: the optimizer's Keras default (adam 0.001, sgd 0.01)
    double beta_1 = 0.9;
    double beta_2 = 0.999;
    double epsilon = 1e-7;
    double momentum = 0.0;
    bool nesterov = false;
    // Keras's decoupled weight_decay: before each update, w -= w * weight_decay * learning_rate.
    double weight_decay = 0.0;
    // A Keras learning-rate schedule in place of the constant learning_rate.
    std::optional<LearningRateSchedule> schedule;

    // The rate of the update after `iterations` updates.
    double learning_rate_at(std::int64_t iterations) const {
        return schedule ? schedule->at(iterations) : learning_rate;
    }
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    // One update of every weight that has a gradient (non-empty tensor in `grads`).
    virtual void apply(std::vector<Tensor>& weights, const std::vector<Tensor>& grads) = 0;
    std::int64_t iterations() const { return iterations_; }

    // State as named tensors: "optimizer.iterations" and "optimizer.<slot>.<weight name>", for checkpoints.
    void save_state(const std::vector<std::string>& weight_names, std::map<std::string, Tensor>& out) const;
    // Restores what save_state wrote; throws InputError naming a missing or misshapen entry.
    void load_state(const std::vector<std::string>& weight_names, const std::map<std::string, Tensor>& in,
                    const std::string& source);

protected:
    // Per-weight state tensors, each slot ("m", "v", "momentum") one vector indexed like the weights.
    std::vector<std::pair<std::string, std::vector<Tensor>>> slots_;
    std::int64_t iterations_ = 0;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const std::vector<Tensor>& weights,
                                          const std::vector<Tensor>& grads);

}  // namespace nngraph
