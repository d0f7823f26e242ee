#include "train/schedules.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace nngraph {

double LearningRateSchedule::at(std::int64_t iteration) const {
    const double step = static_cast<double>(iteration);
    switch (kind) {
        case Kind::exponential_decay: {
            const double p = staircase ? std::floor(step / decay_steps) : step / decay_steps;
            return initial_learning_rate * std::pow(decay_rate, p);
        }
        case Kind::cosine_decay: {
            const auto decay = [&](double s, double from) {
                const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * s / decay_steps));
                return from * ((1.0 - alpha) * cosine + alpha);
            };
            if (!has_warmup_target) return decay(std::min(step, decay_steps), initial_learning_rate);
            const double s = std::min(step, decay_steps + warmup_steps);
            if (s < warmup_steps)
                return initial_learning_rate + (warmup_target - initial_learning_rate) * s / warmup_steps;
            return decay(s - warmup_steps, warmup_target);
        }
        case Kind::piecewise_constant_decay: {
            // The first boundary the step has not passed picks the value.
            const auto passed = std::lower_bound(boundaries.begin(), boundaries.end(), step);
            return values[static_cast<std::size_t>(passed - boundaries.begin())];
        }
    }
    return initial_learning_rate;
}

}  // namespace nngraph
