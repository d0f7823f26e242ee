// An independent reference for Keras 3's LSTM: plain loops over Keras's equations in double, one
// sequence at a time, written from keras/src/layers/rnn/lstm.py (LSTMCell.call) and the generic
// RNN loop (backend rnn with zero_output_for_mask=False): nothing here is shared with the plugin.
//
//   z = x W + h U + b, split in gate order i, f, c, o
//   i = ra(z_i), f = ra(z_f), g = a(z_c), o = ra(z_o);  c' = f c + i g;  h' = o a(c')
//   masked step: h, c and the output stay those of the previous step (zeros before the first)
//   go_backwards: steps taken from the last time to the first; the sequence comes out in that order
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lstm_reference {

inline double activation(const std::string& name, double x) {
    if (name == "tanh") return std::tanh(x);
    if (name == "sigmoid") return 1.0 / (1.0 + std::exp(-x));
    if (name == "hard_sigmoid") return std::fmin(std::fmax(x / 6.0 + 0.5, 0.0), 1.0);
    if (name == "relu") return std::fmax(x, 0.0);
    if (name == "relu6") return std::fmin(std::fmax(x, 0.0), 6.0);
    if (name == "softsign") return x / (1.0 + std::fabs(x));
    if (name == "linear") return x;
    throw std::invalid_argument("reference: unknown activation " + name);
}

struct Options {
    std::int64_t units = 0;
    bool go_backwards = false;
    std::string activation = "tanh", recurrent_activation = "sigmoid";
};

struct Result {
    std::vector<double> sequence;  // (batch, steps, units), in processing order
    std::vector<double> h, c;      // (batch, units): the final states
};

// x (batch, steps, features) row-major; kernel (features, 4 units); recurrent (units, 4 units);
// bias (4 units) or empty; mask (batch, steps) or empty.
inline Result run(const float* x, std::int64_t batch, std::int64_t steps, std::int64_t features, const float* kernel,
                  const float* recurrent, const float* bias, const std::uint8_t* mask, const Options& o) {
    const std::int64_t U = o.units;
    Result r;
    r.sequence.assign(static_cast<std::size_t>(batch * steps * U), 0.0);
    r.h.assign(static_cast<std::size_t>(batch * U), 0.0);
    r.c.assign(static_cast<std::size_t>(batch * U), 0.0);
    std::vector<double> z(static_cast<std::size_t>(4 * U));
    for (std::int64_t n = 0; n < batch; ++n) {
        std::vector<double> h(static_cast<std::size_t>(U), 0.0), c(static_cast<std::size_t>(U), 0.0);
        for (std::int64_t k = 0; k < steps; ++k) {
            const std::int64_t t = o.go_backwards ? steps - 1 - k : k;
            const bool keep = !mask || mask[n * steps + t] != 0;
            if (keep) {
                for (std::int64_t j = 0; j < 4 * U; ++j) {
                    double sum = bias ? bias[j] : 0.0;
                    for (std::int64_t f = 0; f < features; ++f)
                        sum += double(x[(n * steps + t) * features + f]) * kernel[f * 4 * U + j];
                    for (std::int64_t u = 0; u < U; ++u)
                        sum += h[static_cast<std::size_t>(u)] * recurrent[u * 4 * U + j];
                    z[static_cast<std::size_t>(j)] = sum;
                }
                for (std::int64_t u = 0; u < U; ++u) {
                    const auto at = [&](std::int64_t gate) { return z[static_cast<std::size_t>(gate * U + u)]; };
                    const double i = activation(o.recurrent_activation, at(0));
                    const double f = activation(o.recurrent_activation, at(1));
                    const double g = activation(o.activation, at(2));
                    const double out = activation(o.recurrent_activation, at(3));
                    c[static_cast<std::size_t>(u)] = f * c[static_cast<std::size_t>(u)] + i * g;
                    h[static_cast<std::size_t>(u)] = out * activation(o.activation, c[static_cast<std::size_t>(u)]);
                }
            }
            for (std::int64_t u = 0; u < U; ++u)
                r.sequence[static_cast<std::size_t>((n * steps + k) * U + u)] = h[static_cast<std::size_t>(u)];
        }
        for (std::int64_t u = 0; u < U; ++u) {
            r.h[static_cast<std::size_t>(n * U + u)] = h[static_cast<std::size_t>(u)];
            r.c[static_cast<std::size_t>(n * U + u)] = c[static_cast<std::size_t>(u)];
        }
    }
    return r;
}

}  // namespace lstm_reference
