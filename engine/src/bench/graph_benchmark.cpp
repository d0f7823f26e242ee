#include "bench/graph_benchmark.hpp"

#include <cmath>

#include "exec/step_threads.hpp"
#include "exec/weights.hpp"
#include "nngraph/random.hpp"
#include "train/losses.hpp"
#include "train/training_config.hpp"

namespace nngraph {
namespace {

// Integer inputs are ids: drawn below the row count of the first weight of the node reading them
// (an Embedding's input_dim), else below the data section's num_words, else below 2.
std::int64_t id_bound(const Graph& graph, TensorId input) {
    std::int64_t bound = 0;
    for (const auto& [node, slot] : graph.tensor(input).consumers) {
        const GraphNode& consumer = graph.node(node);
        if (consumer.weights.empty()) continue;
        const Shape& shape = graph.weights()[static_cast<std::size_t>(consumer.weights.front())].info.shape;
        if (!shape.empty()) bound = bound ? std::min(bound, shape[0]) : shape[0];
    }
    const YAML::Node& data = graph.spec().data;
    if (!bound && data && data.IsMap() && data["num_words"]) bound = data["num_words"].as<std::int64_t>();
    return bound ? bound : 2;
}

void fill_random(Tensor& t, double low, double high, std::uint64_t seed) {
    nng::Random rng(seed);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        const double v = rng.uniform(low, high);
        switch (t.dtype()) {
            case DType::F32:
                t.data<float>()[i] = static_cast<float>(v);
                break;
            case DType::I32:
                t.data<std::int32_t>()[i] = static_cast<std::int32_t>(std::floor(v));
                break;
            case DType::I64:
                t.data<std::int64_t>()[i] = static_cast<std::int64_t>(std::floor(v));
                break;
            case DType::U8:
                t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(std::floor(v));
                break;
        }
    }
}

}  // namespace

GraphBenchmark::GraphBenchmark(std::shared_ptr<const Graph> graph, const GraphBenchOptions& options)
    : train_(options.train) {
    const TrainingConfig config = parse_training_config(graph->spec());
    batch_ = options.batch > 0 ? options.batch : (graph->spec().training ? config.batch_size : 32);
    executor_ = std::make_unique<Executor>(graph, ExecutorOptions{options.threads, options.seed});
    initialize_weights(*graph, options.seed, executor_->weights());

    for (std::size_t i = 0; i < graph->inputs().size(); ++i) {
        const GraphTensor& input = graph->tensor(graph->inputs()[i]);
        Shape shape = input.info.shape;
        shape[0] = batch_;
        inputs_.emplace_back(input.info.dtype, shape);
        const bool ids = input.info.dtype != DType::F32;
        fill_random(inputs_.back(), ids ? 0.0 : -1.0, ids ? double(id_bound(*graph, graph->inputs()[i])) : 1.0,
                    nng::derive_seed(options.seed, i + 1));
    }
    if (train_) {
        if (config.loss.empty())
            throw InputError(graph->spec().file +
                             ": benchmarking a training step needs training.loss in the model file");
        const auto loss = make_loss(config.loss);
        executor_->set_loss(loss);
        optimizer_ = make_optimizer(config.optimizer, executor_->weights(), executor_->weight_grads());
        for (std::size_t o = 0; o < graph->outputs().size(); ++o) {
            Shape prediction = graph->tensor(graph->outputs()[o]).info.shape;
            prediction[0] = batch_;
            const Shape shape = loss->target_shape(prediction);
            targets_.emplace_back(DType::F32, shape);
            const bool class_ids = config.loss == "sparse_categorical_crossentropy";
            const double high = class_ids ? double(prediction.back()) : config.loss == "mse" ? 1.0 : 2.0;
            fill_random(targets_.back(), 0.0, high, nng::derive_seed(options.seed, o + 100));
            if (config.loss != "mse") {
                for (float& v : targets_.back().values<float>()) v = std::floor(v);  // labels: 0/1 or class ids
            }
        }
    }
    for (const Tensor& t : inputs_) batch_ref_.inputs.push_back(&t);
    for (const Tensor& t : targets_) batch_ref_.targets.push_back(&t);
}

GraphBenchmark::~GraphBenchmark() = default;

void GraphBenchmark::step() {
    if (!train_) {
        executor_->run(batch_ref_, StepKind::Infer);
        return;
    }
    executor_->run(batch_ref_, StepKind::Train);
    const StepThreads threads(executor_->options().threads);
    optimizer_->apply(executor_->weights(), executor_->weight_grads());
}

std::size_t GraphBenchmark::weight_bytes() const {
    std::size_t bytes = 0;
    for (const Tensor& w : executor_->weights()) bytes += w.nbytes();
    return bytes;
}

std::size_t GraphBenchmark::optimizer_bytes() const {
    if (!optimizer_) return 0;
    std::size_t bytes = 0;
    for (const Tensor& g : executor_->weight_grads()) bytes += g.empty() ? 0 : g.nbytes();
    std::map<std::string, Tensor> state;
    std::vector<std::string> names(executor_->weights().size(), "w");
    for (std::size_t i = 0; i < names.size(); ++i) names[i] += std::to_string(i);
    optimizer_->save_state(names, state);
    for (const auto& [name, t] : state) bytes += t.nbytes();
    return bytes;
}

}  // namespace nngraph
