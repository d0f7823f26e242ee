// Keras's training log: the live progress bar on a terminal and the per-epoch line.
//   Epoch 3/10
//   STEPS/STEPS - SECONDSs - TIME/step - accuracy: A - loss: L - val_accuracy: VA - val_loss: VL
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "train/metrics.hpp"

namespace nngraph {

// Keras's number format: 4 decimals, or scientific below 1e-3.
std::string format_metric(double value);
// Keras's time per step: a whole number of ms, us or s (the largest unit that keeps it at least 1), then "/step".
std::string format_time_per_step(double seconds);

class ProgressBar {
public:
    // `live`: redraw a bar in place (the output is a terminal).
    ProgressBar(std::ostream& out, bool live) : out_(out), live_(live) {}

    void begin_epoch(int epoch, int epochs, std::int64_t steps);
    // After each step, with the running scores; draws (and formats) only when it redraws.
    void update(std::int64_t step, const Scores& so_far);
    // The epoch's final line.
    void end_epoch(const Scores& train, const std::optional<Scores>& validation);
    // Ends a live bar's line without an epoch line, when the epoch cannot be reported.
    void abandon_epoch();
    double elapsed_seconds() const;

private:
    std::ostream& out_;
    bool live_;
    std::int64_t steps_ = 0;
    std::int64_t last_step_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace nngraph
