#include "gradcheck.hpp"

#include <cmath>
#include <cstdio>

#include "nngraph/random.hpp"

namespace nngraph::testing {

void fill_uniform(Tensor& t, double low, double high, std::uint64_t seed) {
    nng::Random rng(seed);
    const std::int64_t n = t.numel();
    switch (t.dtype()) {
        case DType::F32:
            for (float& v : t.values<float>()) v = static_cast<float>(rng.uniform(low, high));
            break;
        case DType::I32:
            for (std::int32_t& v : t.values<std::int32_t>())
                v = static_cast<std::int32_t>(std::floor(rng.uniform(low, high)));
            break;
        case DType::I64:
            for (std::int64_t& v : t.values<std::int64_t>())
                v = static_cast<std::int64_t>(std::floor(rng.uniform(low, high)));
            break;
        case DType::U8:
            for (std::int64_t i = 0; i < n; ++i)
                t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(std::floor(rng.uniform(low, high)));
            break;
    }
}

namespace {

double projected_loss(const OpRunner& runner, const std::vector<Tensor>& projections) {
    double loss = 0.0;
    for (std::size_t j = 0; j < projections.size(); ++j) {
        if (projections[j].empty()) continue;
        const float* y = runner.outputs()[j].data<float>();
        const float* r = projections[j].data<float>();
        for (std::int64_t k = 0; k < projections[j].numel(); ++k) loss += double(y[k]) * double(r[k]);
    }
    return loss;
}

// Up to `count` distinct element indices of a tensor of `n` elements (all when n <= count).
std::vector<std::int64_t> sample_indices(std::int64_t n, int count, std::uint64_t seed) {
    std::vector<std::int64_t> all(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
    if (n <= count) return all;
    nng::Random rng(seed);
    for (int i = 0; i < count; ++i)
        std::swap(all[static_cast<std::size_t>(i)],
                  all[static_cast<std::size_t>(i) + rng.below(static_cast<std::uint64_t>(n - i))]);
    all.resize(static_cast<std::size_t>(count));
    return all;
}

}  // namespace

GradResult check_gradients(const GradCase& c, const OpRegistry& registry) {
    std::vector<TensorInfo> infos;
    std::vector<bool> masks;
    for (const GradInput& in : c.inputs) {
        infos.push_back({in.dtype, in.shape});
        masks.push_back(in.mask);
    }
    OpRunner runner(registry, c.op, c.attributes, infos, masks, true);
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
        fill_uniform(runner.inputs()[i], c.inputs[i].low, c.inputs[i].high, nng::derive_seed(c.seed, i + 100));
        Tensor& mask = runner.input_masks()[i];
        if (mask.empty()) continue;
        fill_uniform(mask, 0.0, 1.6, nng::derive_seed(c.seed, i + 200));  // about 60% kept
        for (std::int64_t row = 0; row < mask.dim(0); ++row) mask.data<std::uint8_t>()[row * mask.dim(1)] = 1;
    }
    // Weights from their initializers, then nudged so that zero biases and the like are generic.
    runner.initialize_weights(c.seed);
    for (std::size_t k = 0; k < runner.weights().size(); ++k) {
        Tensor noise(DType::F32, runner.weights()[k].shape());
        fill_uniform(noise, -0.1, 0.1, nng::derive_seed(c.seed, k + 300));
        for (std::int64_t e = 0; e < noise.numel(); ++e) runner.weights()[k].data<float>()[e] += noise.data<float>()[e];
    }
    if (c.prepare) c.prepare(runner);

    const std::uint64_t op_seed = nng::derive_seed(c.seed, "op");
    std::vector<Tensor> projections;
    for (std::size_t j = 0; j < runner.outputs().size(); ++j) {
        if (runner.outputs()[j].dtype() != DType::F32) {
            projections.emplace_back();
            continue;
        }
        projections.emplace_back(DType::F32, runner.outputs()[j].shape());
        fill_uniform(projections.back(), -1.0, 1.0, nng::derive_seed(c.seed, j + 400));
    }
    runner.forward(true, op_seed);
    runner.backward(projections, op_seed);
    // Copies: the analytic gradients must survive the forward calls that follow.
    const std::vector<Tensor> analytic_inputs = runner.grad_inputs();
    const std::vector<Tensor> analytic_weights = runner.grad_weights();

    GradResult result;
    auto check_tensor = [&](Tensor& value, const Tensor& analytic, const std::string& what, std::uint64_t sample_seed) {
        for (std::int64_t index : sample_indices(value.numel(), c.samples_per_tensor, sample_seed)) {
            float& x = value.data<float>()[index];
            const float original = x;
            x = static_cast<float>(original + c.step);
            const double step_up = double(x) - double(original);  // the step float actually took
            runner.forward(true, op_seed);
            const double loss_up = projected_loss(runner, projections);
            x = static_cast<float>(original - c.step);
            const double step_down = double(original) - double(x);
            runner.forward(true, op_seed);
            const double loss_down = projected_loss(runner, projections);
            x = original;
            const double numeric = (loss_up - loss_down) / (step_up + step_down);
            const double exact = analytic.data<float>()[index];
            const double error =
                std::abs(exact - numeric) / (c.atol + c.rtol * std::max(std::abs(exact), std::abs(numeric)));
            ++result.checked;
            char line[256];
            std::snprintf(line, sizeof line, "%s[%lld]: backward %.6g, finite difference %.6g\n", what.c_str(),
                          static_cast<long long>(index), exact, numeric);
            if (error > result.worst_error) result.worst_error = error;
            if (error > 1.0) {
                result.ok = false;
                if (result.report.size() < 4000) result.report += line;
            }
        }
    };
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
        if (c.inputs[i].dtype != DType::F32 || !c.inputs[i].differentiable) continue;
        check_tensor(runner.inputs()[i], analytic_inputs[i], "input " + std::to_string(i),
                     nng::derive_seed(c.seed, i + 500));
    }
    for (std::size_t k = 0; k < runner.weights().size(); ++k) {
        if (analytic_weights[k].empty()) continue;
        check_tensor(runner.weights()[k], analytic_weights[k], "weight " + runner.shapes().weights[k].name,
                     nng::derive_seed(c.seed, k + 600));
    }
    char summary[256];
    std::snprintf(summary, sizeof summary, "%s: %d elements checked, worst error %.3g of the tolerance\n",
                  c.label.c_str(), result.checked, result.worst_error);
    result.report = summary + result.report;
    return result;
}

}  // namespace nngraph::testing
