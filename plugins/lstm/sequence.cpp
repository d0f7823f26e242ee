// Helpers both LSTM paths share: activations with derivatives from their outputs, conversions
// between batch-major tensors and time-major processing order, Keras's input dropout mask, and the
// phase timings reported as counters.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "lstm.hpp"
#include "nngraph/vector_math.hpp"

namespace nngraph_lstm {

// ---- Activations ---------------------------------------------------------------------------------

Act parse_activation(const std::string& name, const char* attribute) {
    if (name == "linear") return Act::linear;
    if (name == "tanh") return Act::tanh;
    if (name == "sigmoid") return Act::sigmoid;
    if (name == "hard_sigmoid") return Act::hard_sigmoid;
    if (name == "relu") return Act::relu;
    if (name == "relu6") return Act::relu6;
    if (name == "softsign") return Act::softsign;
    throw nng::OpError("activation '" + name + "' is not supported by LSTM (supported: " +
                           std::string(kActivationChoices) + ", or null for linear)",
                       attribute);
}

namespace {

// x = scale / (1 + e^(-scale x)) - (scale - 1) over n floats in place, on the widest vectors:
// sigmoid with scale 1, tanh (2 sigmoid(2x) - 1) with scale 2, whose absolute error of a few 1e-8
// is what the cell needs.
template <int kBytes>
struct ScaledSigmoid {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) V of(V x, float scale) {
        return scale / (1.0f + nng::simd::vexp_normal(x * -scale)) - (scale - 1.0f);
    }
    static inline __attribute__((always_inline)) void run(float* x, std::int64_t n, float scale) {
        if (n < kLanes) {
            nng::simd::store_first(x, of(nng::simd::load_first<V>(x, n), scale), n);
            return;
        }
        // The last whole vector of the row, read before anything is written: it overlaps the one
        // before it where n is not a multiple of the lanes, and a tail in a padded vector of its
        // own would stall on forwarding the stores before it.
        const V last = of(nng::simd::load<V>(x + n - kLanes), scale);
        for (std::int64_t c = 0; c < n - kLanes; c += kLanes)
            nng::simd::store(x + c, of(nng::simd::load<V>(x + c), scale));
        nng::simd::store(x + n - kLanes, last);
    }
};

}  // namespace

NNG_LOOP_CLONES void activate(Act f, float* x, std::int64_t n) {
    switch (f) {
        case Act::linear:
            return;
        case Act::tanh:
            return nng::simd::run_widest<ScaledSigmoid>(x, n, 2.0f);
        case Act::sigmoid:
            return nng::simd::run_widest<ScaledSigmoid>(x, n, 1.0f);
        case Act::hard_sigmoid:  // Keras 3: relu6(x + 3) / 6
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i] / 6.0f + 0.5f, 0.0f), 1.0f);
            return;
        case Act::relu:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) {
                const float v = x[i];
                x[i] = std::max(v, 0.0f);
            }
            return;
        case Act::relu6:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) {
                const float v = x[i];
                x[i] = std::min(std::max(v, 0.0f), 6.0f);
            }
            return;
        case Act::softsign:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::abs(x[i]));
            return;
    }
}

NNG_LOOP_CLONES void times_derivative(Act f, const float* y, float* d, std::int64_t n) {
    switch (f) {
        case Act::linear:
            return;
        case Act::tanh:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= 1.0f - y[i] * y[i];
            return;
        case Act::sigmoid:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= y[i] * (1.0f - y[i]);
            return;
        case Act::hard_sigmoid:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= (y[i] > 0.0f && y[i] < 1.0f) ? 1.0f / 6.0f : 0.0f;
            return;
        case Act::relu:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= y[i] > 0.0f ? 1.0f : 0.0f;
            return;
        case Act::relu6:
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= (y[i] > 0.0f && y[i] < 6.0f) ? 1.0f : 0.0f;
            return;
        case Act::softsign:  // 1 / (1 + |x|)^2 = (1 - |y|)^2
#pragma omp simd
            for (std::int64_t i = 0; i < n; ++i) d[i] *= (1.0f - std::abs(y[i])) * (1.0f - std::abs(y[i]));
            return;
    }
}

// ---- Layout conversions --------------------------------------------------------------------------

namespace {

// One loop for both directions: the time-major side is indexed by step k, the batch-major side by
// t(k); rows of `width` floats are copied (and scaled) one (k, n) pair at a time.
template <bool kToTimeMajor>
void convert(const float* src, float* dst, std::int64_t batch, std::int64_t steps, std::int64_t width, bool reverse,
             const float* scale) {
#pragma omp parallel for schedule(static) if (steps * batch * width > 32768)
    for (std::int64_t k = 0; k < steps; ++k) {
        const std::int64_t t = reverse ? steps - 1 - k : k;
        for (std::int64_t n = 0; n < batch; ++n) {
            const std::int64_t time_major = (k * batch + n) * width, batch_major = (n * steps + t) * width;
            const float* from = src + (kToTimeMajor ? batch_major : time_major);
            float* to = dst + (kToTimeMajor ? time_major : batch_major);
            if (scale) {
                const float* m = scale + n * width;
#pragma omp simd
                for (std::int64_t f = 0; f < width; ++f) to[f] = from[f] * m[f];
            } else {
                std::memcpy(to, from, static_cast<std::size_t>(width) * sizeof(float));
            }
        }
    }
}

// Part by part: each part's sequences are consecutive rows on the batch-major side and one block
// on the part-major time-major side, both starting at sequence first(p).
template <bool kToTimeMajor>
void convert_parts(const float* src, float* dst, const BatchSplit& split, std::int64_t steps, std::int64_t width,
                   bool reverse, const float* scale) {
    for (std::int64_t p = 0; p < split.parts; ++p) {
        const std::int64_t n0 = split.first(p);
        convert<kToTimeMajor>(src + n0 * steps * width, dst + n0 * steps * width, split.count(p), steps, width, reverse,
                              scale ? scale + n0 * width : nullptr);
    }
}

}  // namespace

void to_time_major(const float* src, float* dst, std::int64_t batch, std::int64_t steps, std::int64_t width,
                   bool reverse, const float* scale) {
    convert<true>(src, dst, batch, steps, width, reverse, scale);
}

void to_batch_major(const float* src, float* dst, std::int64_t batch, std::int64_t steps, std::int64_t width,
                    bool reverse, const float* scale) {
    convert<false>(src, dst, batch, steps, width, reverse, scale);
}

void to_time_major(const float* src, float* dst, const BatchSplit& split, std::int64_t steps, std::int64_t width,
                   bool reverse, const float* scale) {
    convert_parts<true>(src, dst, split, steps, width, reverse, scale);
}

void to_batch_major(const float* src, float* dst, const BatchSplit& split, std::int64_t steps, std::int64_t width,
                    bool reverse, const float* scale) {
    convert_parts<false>(src, dst, split, steps, width, reverse, scale);
}

void dropout_mask(float* mask, std::int64_t batch, std::int64_t features, float rate, std::uint64_t seed) {
    const float kept = 1.0f / (1.0f - rate);
    const std::int64_t n = batch * features;
    for (std::int64_t i = 0; i < n; ++i) {
        mask[i] = nng::uniform_float(seed, static_cast<std::uint64_t>(i)) >= rate ? kept : 0.0f;
    }
}

void fill_zero(float* x, std::int64_t n) {
    constexpr std::int64_t kBlock = 1 << 16;  // 256 KiB a block, spread over the threads
    const std::int64_t blocks = nng::ceil_div(n, kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (std::int64_t b = 0; b < blocks; ++b) {
        const std::int64_t begin = b * kBlock;
        std::memset(x + begin, 0, static_cast<std::size_t>(std::min(kBlock, n - begin)) * sizeof(float));
    }
}

void add_to(float* a, const float* b, std::int64_t n) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) a[i] += b[i];
}

std::int64_t carved_floats(std::initializer_list<std::int64_t> counts) {
    nng::Carver counter;
    for (std::int64_t n : counts) counter.take<float>(n);
    return counter.floats();
}

void carve(float* memory, std::int64_t floats, std::initializer_list<Part> parts) {
    nng::Carver carver(memory, static_cast<std::size_t>(floats) * sizeof(float));
    try {
        for (const Part& p : parts) p.take(carver);
    } catch (const std::length_error& e) {
        throw std::runtime_error(std::string("LSTM: scratch too small for its arrays: ") + e.what());
    }
}

std::int64_t GradientCopies::floats(const Sizes& s, int workers) {
    const std::int64_t gates = 4 * s.units;
    return std::max(workers - 1, 0) * carved_floats({s.features * gates, s.units * gates, gates});
}

GradientCopies::GradientCopies(const Sizes& s, int workers, const ParamGrads& grads, float* memory)
    : kernel_(s.features * 4 * s.units),
      recurrent_(s.units * 4 * s.units),
      bias_(4 * s.units),
      workers_(workers),
      grads_(grads),
      memory_(memory) {}

ParamGrads GradientCopies::of(int w) const {
    if (w == 0) return grads_;
    ParamGrads copy = grads_;
    const std::int64_t per_worker = carved_floats({kernel_, recurrent_, bias_});
    float *kernel = nullptr, *recurrent = nullptr, *bias = nullptr;
    carve(memory_ + (w - 1) * per_worker, per_worker, {{&kernel, kernel_}, {&recurrent, recurrent_}, {&bias, bias_}});
    if (copy.kernel) copy.kernel = kernel;
    if (copy.recurrent_kernel) copy.recurrent_kernel = recurrent;
    if (copy.bias) copy.bias = bias;
    return copy;
}

void GradientCopies::add_copies() const {
    for (int w = 1; w < workers_; ++w) {
        const ParamGrads copy = of(w);
        if (grads_.kernel) add_to(grads_.kernel, copy.kernel, kernel_);
        if (grads_.recurrent_kernel) add_to(grads_.recurrent_kernel, copy.recurrent_kernel, recurrent_);
        if (grads_.bias) add_to(grads_.bias, copy.bias, bias_);
    }
}

// ---- Timings and counters ------------------------------------------------------------------------

namespace {

constexpr std::size_t kPhases = static_cast<std::size_t>(Phase::count);
constexpr std::array<const char*, kPhases> kPhaseNames = {
    "lstm.forward_input_ns",  "lstm.forward_weights_ns",  "lstm.forward_compute_ns",  "lstm.forward_output_ns",
    "lstm.backward_input_ns", "lstm.backward_weights_ns", "lstm.backward_compute_ns", "lstm.backward_output_ns",
};

struct Tallies {
    std::array<std::atomic<std::int64_t>, kPhases> nanoseconds{};
    std::atomic<std::int64_t> forward_calls{0}, backward_calls{0}, stepwise_calls{0};
};
Tallies& tallies() {
    static Tallies t;
    return t;
}

}  // namespace

void record(Phase phase, std::chrono::steady_clock::duration elapsed) {
    tallies().nanoseconds[static_cast<std::size_t>(phase)] +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
}

void count_call(bool backward, bool stepwise) {
    ++(backward ? tallies().backward_calls : tallies().forward_calls);
    if (stepwise) ++tallies().stepwise_calls;
}

std::int32_t counters(nng_counter* out, std::int32_t capacity) {
    std::int32_t n = onednn::counters(out, capacity);
    if (!out) return 0;
    const auto add = [&](const char* name, std::int64_t value) {
        if (n < capacity) out[n++] = {name, value};
    };
    Tallies& t = tallies();
    for (std::size_t p = 0; p < kPhases; ++p) add(kPhaseNames[p], t.nanoseconds[p].load());
    add("lstm.forward_calls", t.forward_calls.load());
    add("lstm.backward_calls", t.backward_calls.load());
    add("lstm.stepwise_calls", t.stepwise_calls.load());
    return n;
}

}  // namespace nngraph_lstm
