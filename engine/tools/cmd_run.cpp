// nngraph predict | grad
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "nngraph/imdb.hpp"
#include "nngraph/safetensors.hpp"
#include "train/checkpoint.hpp"
#include "train/datasets.hpp"
#include "train/losses.hpp"
#include "train/training_config.hpp"

namespace nngraph::cli {
namespace {

struct PredictOptions {
    std::string model;
    std::optional<std::string> weights, inputs, out;
    std::vector<std::string> texts;
    std::int64_t batch_size = 32;
    CommonOptions common;
};

// Runs the model over all rows of `inputs` in batches; returns every graph output, rows concatenated.
std::vector<Tensor> predict_all(Executor& executor, const std::vector<Tensor>& inputs, std::int64_t batch_size) {
    const Graph& graph = executor.graph();
    const std::int64_t n = inputs.empty() ? 0 : inputs.front().dim(0);
    if (n == 0) throw InputError("the inputs hold no rows");
    std::vector<Tensor> outputs;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
    BatchRef batch;
    for (const Tensor& t : inputs) batch.inputs.push_back(&t);
    for (std::int64_t begin = 0; begin < n; begin += batch_size) {
        const std::int64_t count = std::min(batch_size, n - begin);
        batch.rows = std::span<const std::int64_t>(rows.data() + begin, static_cast<std::size_t>(count));
        executor.run(batch, StepKind::Infer);
        for (std::size_t o = 0; o < graph.outputs().size(); ++o) {
            const TensorView view = executor.output(o);
            if (outputs.size() <= o) {
                Shape shape(view.shape.begin(), view.shape.end());
                shape[0] = n;
                outputs.emplace_back(view.dtype, shape);
            }
            const std::size_t row_bytes = outputs[o].nbytes() / static_cast<std::size_t>(n);
            std::memcpy(static_cast<std::byte*>(outputs[o].raw()) + row_bytes * static_cast<std::size_t>(begin), view.data,
                        row_bytes * static_cast<std::size_t>(count));
        }
    }
    return outputs;
}

void run_predict(const PredictOptions& o) {
    auto graph = load_graph(o.model, o.common);
    if (o.texts.empty() == !o.inputs) throw InputError("predict needs either --inputs X.safetensors (with --out) or --text \"...\"");
    if (o.inputs && !o.out) throw InputError("predict --inputs needs --out Y.safetensors");
    Executor executor(graph, {o.common.threads, 0});
    prepare_weights(executor, o.weights);

    if (o.inputs) {
        const std::vector<Tensor> inputs = read_inputs(*graph, *o.inputs);
        std::vector<Tensor> outputs = predict_all(executor, inputs, o.batch_size);
        TensorFile file;
        for (std::size_t i = 0; i < outputs.size(); ++i) file.tensors[graph->tensor(graph->outputs()[i]).name] = std::move(outputs[i]);
        file.metadata["model"] = graph->name();
        write_safetensors(*o.out, file);
        return;
    }

    if (!o.weights) throw InputError("predict --text needs --weights: the vocabulary is kept beside the weights file");
    const std::filesystem::path vocab_file = vocabulary_path(*o.weights);
    if (!std::filesystem::exists(vocab_file)) {
        throw InputError("no vocabulary beside the weights: expected '" + vocab_file.string() +
                         "', which `nngraph train --save` writes for text data");
    }
    const Vocabulary vocabulary = Vocabulary::load(vocab_file);
    if (graph->inputs().size() != 1 || graph->outputs().size() != 1) {
        throw InputError("predict --text needs a model with one input and one output");
    }
    const GraphTensor& input = graph->tensor(graph->inputs()[0]);
    if (input.info.shape.size() != 2 || input.info.shape[1] != vocabulary.maxlen()) {
        throw InputError("the vocabulary encodes " + std::to_string(vocabulary.maxlen()) + " ids, but input '" + input.name +
                         "' has shape " + shape_to_string(input.info.shape));
    }
    Tensor tokens(DType::I32, {static_cast<std::int64_t>(o.texts.size()), vocabulary.maxlen()});
    for (std::size_t i = 0; i < o.texts.size(); ++i) {
        const std::vector<std::int32_t> ids = vocabulary.encode(o.texts[i]);
        std::copy(ids.begin(), ids.end(), tokens.data<std::int32_t>() + static_cast<std::int64_t>(i) * vocabulary.maxlen());
    }
    const std::vector<Tensor> outputs = predict_all(executor, {convert_dtype(tokens, input.info.dtype, "tokens")}, o.batch_size);
    const Tensor& p = outputs[0];
    const std::int64_t width = p.numel() / p.dim(0);
    for (std::int64_t i = 0; i < p.dim(0); ++i) {
        const float* row = p.data<float>() + i * width;
        if (width == 1) {
            std::printf("probability: %.6f  label: %s\n", row[0], row[0] > 0.5f ? "positive" : "negative");
        } else {
            std::int64_t best = 0;
            for (std::int64_t k = 1; k < width; ++k) best = row[k] > row[best] ? k : best;
            std::printf("probability: %.6f  label: %lld\n", row[best], static_cast<long long>(best));
        }
    }
}

struct GradOptions {
    std::string model, inputs, targets, out;
    std::optional<std::string> weights;
    CommonOptions common;
};

void run_grad(const GradOptions& o) {
    auto graph = load_graph(o.model, o.common);
    const TrainingConfig config = parse_training_config(graph->spec());
    if (config.loss.empty()) throw InputError(graph->spec().file + ": grad uses the model file's training.loss, and it gives none");
    Executor executor(graph, {o.common.threads, config.seed});
    prepare_weights(executor, o.weights);
    executor.set_loss(make_loss(config.loss));

    const std::vector<Tensor> inputs = read_inputs(*graph, o.inputs);
    const TensorFile target_file = read_safetensors(o.targets);
    std::vector<Tensor> targets;
    for (std::size_t i = 0; i < graph->outputs().size(); ++i) {
        const std::string name = graph->outputs().size() == 1 ? "targets" : "targets." + graph->tensor(graph->outputs()[i]).name;
        auto it = target_file.tensors.find(name);
        if (it == target_file.tensors.end()) throw InputError(o.targets + ": no tensor '" + name + "'");
        targets.push_back(fit_targets(*graph, i, config.loss, it->second, o.targets + ": '" + name + "'"));
    }
    BatchRef batch;
    for (const Tensor& t : inputs) batch.inputs.push_back(&t);
    for (const Tensor& t : targets) batch.targets.push_back(&t);
    const double loss = executor.run(batch, StepKind::Gradient);

    TensorFile file;
    const float loss_value[] = {static_cast<float>(loss)};
    file.tensors["loss"] = Tensor::from<float>({}, loss_value);
    for (std::size_t w = 0; w < graph->weights().size(); ++w) {
        if (!executor.weight_grads()[w].empty()) file.tensors[graph->weights()[w].name] = executor.weight_grads()[w];
    }
    file.metadata["model"] = graph->name();
    file.metadata["loss_function"] = config.loss;
    write_safetensors(o.out, file);
}

}  // namespace

void add_run_commands(CLI::App& app) {
    auto p = std::make_shared<PredictOptions>();
    CLI::App* predict = app.add_subcommand("predict", "Run a model: write its outputs, or classify text");
    predict->add_option("model", p->model, "Model file (YAML)")->required();
    predict->add_option("--weights", p->weights, "Weights (.safetensors); optional when the model file gives every weight");
    predict->add_option("--inputs", p->inputs, "Inputs by graph input name (.safetensors)");
    predict->add_option("--out", p->out, "Where to write the outputs, by output name (.safetensors)");
    predict->add_option("--text", p->texts, "Text to classify (repeatable); needs the vocabulary beside the weights");
    predict->add_option("--batch-size", p->batch_size, "Rows per batch")->check(CLI::PositiveNumber);
    add_common_options(*predict, p->common);
    predict->callback([p] { run_predict(*p); });

    auto g = std::make_shared<GradOptions>();
    CLI::App* grad = app.add_subcommand("grad", "Loss and the gradient of every weight for one batch, dropout off");
    grad->add_option("model", g->model, "Model file (YAML)")->required();
    grad->add_option("--weights", g->weights, "Weights (.safetensors); optional when the model file gives every weight");
    grad->add_option("--inputs", g->inputs, "Inputs by graph input name (.safetensors)")->required();
    grad->add_option("--targets", g->targets, "Targets: 'targets' (.safetensors)")->required();
    grad->add_option("--out", g->out, "Where to write 'loss' and the gradients by weight name (.safetensors)")->required();
    add_common_options(*grad, g->common);
    grad->callback([g] { run_grad(*g); });
}

}  // namespace nngraph::cli
