#include "train/progress.hpp"

#include <cmath>
#include <cstdio>

namespace nngraph {

std::string format_metric(double value) {
    if (std::isnan(value)) return "nan";  // as Keras prints it; printf gives "-nan" for some NaNs
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, std::abs(value) > 1e-3 ? "%.4f" : "%.4e", value);
    return buffer;
}

std::string format_time_per_step(double seconds) {
    char buffer[64];
    if (seconds >= 1 || seconds == 0)
        std::snprintf(buffer, sizeof buffer, "%.0fs/step", seconds);
    else if (seconds >= 1e-3)
        std::snprintf(buffer, sizeof buffer, "%.0fms/step", seconds * 1e3);
    else
        std::snprintf(buffer, sizeof buffer, "%.0fus/step", seconds * 1e6);
    return buffer;
}

namespace {

std::string join_values(const std::vector<std::pair<std::string, double>>& values) {
    std::string out;
    for (const auto& [name, value] : values) out += " - " + name + ": " + format_metric(value);
    return out;
}

}  // namespace

void ProgressBar::begin_epoch(int epoch, int epochs, std::int64_t steps) {
    steps_ = steps;
    last_step_ = 0;
    start_ = last_draw_ = std::chrono::steady_clock::now();
    out_ << "Epoch " << epoch << "/" << epochs << "\n" << std::flush;
}

double ProgressBar::elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(std::int64_t step, const Scores& so_far) {
    last_step_ = step;
    if (!live_) return;
    const auto now = std::chrono::steady_clock::now();
    // Redraw at most ten times a second, and always on the last step.
    if (step < steps_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 20;
    const int filled = steps_ ? static_cast<int>(kWidth * step / steps_) : kWidth;
    std::string bar;
    for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2501" : " ";
    const double elapsed = elapsed_seconds();
    const double per_step = step ? elapsed / double(step) : 0.0;
    char head[64];
    std::snprintf(head, sizeof head, "%lld/%lld ", static_cast<long long>(step), static_cast<long long>(steps_));
    char eta[32];
    std::snprintf(eta, sizeof eta, " %.0fs ", step < steps_ ? per_step * double(steps_ - step) : elapsed);
    out_ << "\r\033[K" << head << bar << eta << format_time_per_step(per_step) << join_values(so_far.named())
         << std::flush;
}

void ProgressBar::end_epoch(const Scores& train, const std::optional<Scores>& validation) {
    auto values = train.named();
    if (validation) {
        for (auto& v : validation->named("val_")) values.push_back(std::move(v));
    }
    const double elapsed = elapsed_seconds();
    const double per_step = last_step_ ? elapsed / double(last_step_) : 0.0;
    if (live_) out_ << "\r\033[K";
    char head[96];
    std::snprintf(head, sizeof head, "%lld/%lld - %.0fs - ", static_cast<long long>(last_step_),
                  static_cast<long long>(steps_), elapsed);
    out_ << head << format_time_per_step(per_step) << join_values(values) << "\n" << std::flush;
}

void ProgressBar::abandon_epoch() {
    if (live_ && last_step_ > 0) out_ << "\n" << std::flush;
}

}  // namespace nngraph
