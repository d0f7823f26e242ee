// Keras's learning-rate schedules (keras.optimizers.schedules), in Keras 3's equations. The
// optimizer asks for the rate at its iteration count before each update, as Keras does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nngraph {

struct LearningRateSchedule {
    enum class Kind { exponential_decay, cosine_decay, piecewise_constant_decay };
    Kind kind = Kind::exponential_decay;
    double initial_learning_rate = 0;
    double decay_steps = 1;
    // ExponentialDecay: initial * decay_rate ^ (step / decay_steps), the exponent floored when staircase.
    double decay_rate = 1;
    bool staircase = false;
    // CosineDecay: from initial (or from warmup_target after a linear warm-up of warmup_steps)
    // down to alpha times that over decay_steps, then flat.
    double alpha = 0;
    bool has_warmup_target = false;
    double warmup_target = 0;
    double warmup_steps = 0;
    // PiecewiseConstantDecay: values[i] while step <= boundaries[i], the last value after.
    std::vector<double> boundaries, values;

    double at(std::int64_t step) const;
};

// The Keras class names the model file may give, for messages.
inline constexpr const char* kScheduleNames = "ExponentialDecay, CosineDecay, PiecewiseConstantDecay";

}  // namespace nngraph
