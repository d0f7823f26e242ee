#include "graph_gradcheck.hpp"

#include <cmath>
#include <cstdio>

#include "exec/weights.hpp"
#include "graph/graph.hpp"
#include "nngraph/random.hpp"
#include "train/losses.hpp"
#include "train/training_config.hpp"

namespace nngraph::testing {

GradResult check_graph_gradients(const GraphGradCase& c) {
    auto graph = Graph::from_spec(parse_model(c.model_yaml, c.label + ".yaml", "."));
    const TrainingConfig config = parse_training_config(graph->spec());
    Executor executor(graph, {1, c.seed});
    initialize_weights(*graph, c.seed, executor.weights());
    for (std::size_t k = 0; k < executor.weights().size(); ++k) {
        Tensor noise(DType::F32, executor.weights()[k].shape());
        fill_uniform(noise, -0.1, 0.1, nng::derive_seed(c.seed, k + 10));
        for (std::int64_t e = 0; e < noise.numel(); ++e)
            executor.weights()[k].data<float>()[e] += noise.data<float>()[e];
    }
    const auto loss = make_loss(config.loss);
    executor.set_loss(loss);

    std::vector<Tensor> inputs, targets;
    for (std::size_t i = 0; i < graph->inputs().size(); ++i) {
        const GraphTensor& t = graph->tensor(graph->inputs()[i]);
        Shape shape = t.info.shape;
        shape[0] = c.batch;
        inputs.emplace_back(t.info.dtype, shape);
        fill_uniform(inputs.back(), c.input_low, c.input_high, nng::derive_seed(c.seed, i + 20));
    }
    for (std::size_t o = 0; o < graph->outputs().size(); ++o) {
        Shape prediction = graph->tensor(graph->outputs()[o]).info.shape;
        prediction[0] = c.batch;
        targets.emplace_back(DType::F32, loss->target_shape(prediction));
        fill_uniform(targets.back(), 0.0, 1.0, nng::derive_seed(c.seed, o + 30));
    }
    BatchRef batch;
    for (const Tensor& t : inputs) batch.inputs.push_back(&t);
    for (const Tensor& t : targets) batch.targets.push_back(&t);

    executor.run(batch, StepKind::Gradient);
    const std::vector<Tensor> analytic = executor.weight_grads();

    GradResult result;
    for (std::size_t w = 0; w < graph->weights().size(); ++w) {
        if (analytic[w].empty()) continue;
        Tensor& value = executor.weights()[w];
        nng::Random pick(nng::derive_seed(c.seed, w + 40));
        const int samples = static_cast<int>(std::min<std::int64_t>(c.samples_per_weight, value.numel()));
        for (int s = 0; s < samples; ++s) {
            const auto index = static_cast<std::int64_t>(
                value.numel() <= c.samples_per_weight ? s : pick.below(static_cast<std::uint64_t>(value.numel())));
            float& x = value.data<float>()[index];
            const float original = x;
            x = static_cast<float>(original + c.step);
            const double up_step = double(x) - original;
            const double up = executor.run(batch, StepKind::Evaluate);
            x = static_cast<float>(original - c.step);
            const double down_step = double(original) - x;
            const double down = executor.run(batch, StepKind::Evaluate);
            x = original;
            const double numeric = (up - down) / (up_step + down_step);
            const double exact = analytic[w].data<float>()[index];
            const double error =
                std::abs(exact - numeric) / (c.atol + c.rtol * std::max(std::abs(exact), std::abs(numeric)));
            ++result.checked;
            result.worst_error = std::max(result.worst_error, error);
            if (error > 1.0) {
                result.ok = false;
                char line[256];
                std::snprintf(line, sizeof line, "%s[%lld]: executor %.6g, finite difference %.6g\n",
                              graph->weights()[w].name.c_str(), static_cast<long long>(index), exact, numeric);
                if (result.report.size() < 4000) result.report += line;
            }
        }
    }
    char summary[256];
    std::snprintf(summary, sizeof summary, "%s: %d weight elements checked, worst error %.3g of the tolerance\n",
                  c.label.c_str(), result.checked, result.worst_error);
    result.report = summary + result.report;
    return result;
}

}  // namespace nngraph::testing
