#include "exec/weights.hpp"

#include <cmath>
#include <cstring>

#include "nngraph/random.hpp"

namespace nngraph {
namespace {

struct Fans {
    double in, out;
};

// Keras's compute_fans: the last two axes, times the product of the others (the receptive field).
Fans compute_fans(const Shape& shape) {
    if (shape.empty()) return {1, 1};
    if (shape.size() == 1) return {double(shape[0]), double(shape[0])};
    double receptive = 1;
    for (std::size_t i = 0; i + 2 < shape.size(); ++i) receptive *= double(shape[i]);
    return {double(shape[shape.size() - 2]) * receptive, double(shape.back()) * receptive};
}

void fill_uniform(float* out, std::int64_t n, double low, double high, nng::Random& rng) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(rng.uniform(low, high));
}

// Keras's Orthogonal: QR of a (max(r, c), min(r, c)) normal matrix with the signs of R's diagonal
// folded in, transposed when there are fewer rows than columns. Modified Gram-Schmidt produces that
// sign-corrected Q directly (its R has a positive diagonal); it runs twice for accuracy.
void fill_orthogonal(float* out, const Shape& shape, double gain, nng::Random& rng) {
    std::int64_t rows = 1;
    for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    const std::int64_t cols = shape.back();
    const std::int64_t tall = std::max(rows, cols), narrow = std::min(rows, cols);
    std::vector<double> a(static_cast<std::size_t>(tall * narrow));  // column-major: column k at a[k * tall]
    for (double& v : a) v = rng.normal();
    for (std::int64_t k = 0; k < narrow; ++k) {
        double* column = &a[static_cast<std::size_t>(k * tall)];
        for (int pass = 0; pass < 2; ++pass) {
            for (std::int64_t j = 0; j < k; ++j) {
                const double* previous = &a[static_cast<std::size_t>(j * tall)];
                double dot = 0;
                for (std::int64_t i = 0; i < tall; ++i) dot += previous[i] * column[i];
                for (std::int64_t i = 0; i < tall; ++i) column[i] -= dot * previous[i];
            }
        }
        double norm = 0;
        for (std::int64_t i = 0; i < tall; ++i) norm += column[i] * column[i];
        norm = std::sqrt(norm);
        for (std::int64_t i = 0; i < tall; ++i) column[i] /= norm;
    }
    // q is (tall, narrow); the result is q reshaped to (rows, cols), or its transpose when rows < cols.
    for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
            const double q =
                rows >= cols ? a[static_cast<std::size_t>(c * tall + r)] : a[static_cast<std::size_t>(r * tall + c)];
            out[r * cols + c] = static_cast<float>(gain * q);
        }
    }
}

}  // namespace

void apply_initializer(const WeightInfo& info, std::uint64_t seed, Tensor& out) {
    float* data = out.data<float>();
    const std::int64_t n = out.numel();
    nng::Random rng(seed);
    const Fans fans = compute_fans(info.shape);
    switch (info.initializer) {
        case NNG_INIT_ZEROS:
            std::memset(data, 0, out.nbytes());
            break;
        case NNG_INIT_ONES:
            std::fill(data, data + n, 1.0f);
            break;
        case NNG_INIT_CONSTANT:
            std::fill(data, data + n, static_cast<float>(info.params[0]));
            break;
        case NNG_INIT_UNIFORM:
            fill_uniform(data, n, info.params[0], info.params[1], rng);
            break;
        case NNG_INIT_NORMAL:
            for (std::int64_t i = 0; i < n; ++i)
                data[i] = static_cast<float>(info.params[0] + info.params[1] * rng.normal());
            break;
        case NNG_INIT_TRUNCATED_NORMAL:
            for (std::int64_t i = 0; i < n; ++i) {
                double z = rng.normal();
                while (std::abs(z) > 2.0) z = rng.normal();
                data[i] = static_cast<float>(info.params[0] + info.params[1] * z);
            }
            break;
        case NNG_INIT_GLOROT_UNIFORM: {
            const double limit = std::sqrt(6.0 / (fans.in + fans.out));
            fill_uniform(data, n, -limit, limit, rng);
            break;
        }
        case NNG_INIT_HE_UNIFORM: {
            const double limit = std::sqrt(6.0 / fans.in);
            fill_uniform(data, n, -limit, limit, rng);
            break;
        }
        case NNG_INIT_ORTHOGONAL:
            if (info.shape.size() < 2)
                throw InputError("weight '" + info.name + "': the orthogonal initializer needs rank 2 or more");
            fill_orthogonal(data, info.shape, info.params[0] == 0.0 ? 1.0 : info.params[0], rng);
            break;
        case NNG_INIT_LSTM_BIAS: {
            // Keras's unit_forget_bias: zeros, then ones for the forget gate (the second block of units).
            std::memset(data, 0, out.nbytes());
            const auto units = static_cast<std::int64_t>(info.params[0]);
            if (units * 4 != n)
                throw InputError("weight '" + info.name + "': an LSTM bias of " + std::to_string(n) + " for " +
                                 std::to_string(units) + " units");
            std::fill(data + units, data + 2 * units, 1.0f);
            break;
        }
        default:
            throw InputError("weight '" + info.name + "': unknown initializer code " +
                             std::to_string(info.initializer));
    }
}

void initialize_weights(const Graph& graph, std::uint64_t seed, std::vector<Tensor>& values) {
    for (std::size_t i = 0; i < graph.weights().size(); ++i) {
        const GraphWeight& w = graph.weights()[i];
        if (w.inline_value) {
            std::memcpy(values[i].raw(), w.inline_value->raw(), w.inline_value->nbytes());
        } else {
            apply_initializer(w.info, nng::derive_seed(seed, w.name.c_str()), values[i]);
        }
    }
}

void load_weights_by_name(const Graph& graph, const std::map<std::string, Tensor>& file, const std::string& source,
                          std::vector<Tensor>& values, bool require_all) {
    for (std::size_t i = 0; i < graph.weights().size(); ++i) {
        const GraphWeight& w = graph.weights()[i];
        auto it = file.find(w.name);
        if (it == file.end()) {
            if (!require_all || w.inline_value) continue;
            throw InputError(source + ": weight '" + w.name + "' is missing (expected F32 " +
                             shape_to_string(w.info.shape) + ")");
        }
        if (it->second.dtype() != DType::F32 || it->second.shape() != w.info.shape) {
            throw InputError(source + ": weight '" + w.name + "' is " + std::string(dtype_name(it->second.dtype())) +
                             " " + shape_to_string(it->second.shape()) + "; the model expects F32 " +
                             shape_to_string(w.info.shape));
        }
        std::memcpy(values[i].raw(), it->second.raw(), it->second.nbytes());
    }
}

}  // namespace nngraph
