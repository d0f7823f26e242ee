// nngraph predict | grad
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace nngraph::cli {
namespace {

struct PredictOptions {
    std::string model;
    std::optional<std::string> weights, inputs, out;
    std::vector<std::string> texts;
    std::optional<std::string> text_file, format;
    std::int64_t batch_size = 32;
    CommonOptions common;
};

// Runs `step` on tensors read from `file`: a refusal of their shapes or rows names the file.
template <typename Step>
auto naming_file(const std::string& file, Step step) {
    try {
        return step();
    } catch (const InputError& e) {
        throw InputError(file + ": " + e.what());
    }
}

// Weights are checked when loaded, so a non-finite output comes from the inputs: say so rather
// than write NaN silently.
void warn_non_finite(const Tensor& output, const std::string& name, const std::string& inputs_file) {
    if (output.dtype() != DType::F32) return;
    const float* values = output.data<float>();
    const auto bad = std::count_if(values, values + output.numel(), [](float v) { return !std::isfinite(v); });
    if (bad == 0) return;
    std::cerr << "nngraph: warning: " << bad << " of the " << output.numel() << " values of output '" << name
              << "' are not finite (NaN or infinite); check the inputs in " << inputs_file << "\n";
}

// One text's result: the probability of the predicted label, the label a name for one sigmoid
// unit and a class id otherwise.
struct Prediction {
    double probability = 0.0;
    nlohmann::json label;
};

Prediction prediction_of(const float* row, std::int64_t width) {
    if (width == 1) return {row[0], row[0] > 0.5f ? "positive" : "negative"};
    std::int64_t best = 0;
    for (std::int64_t k = 1; k < width; ++k) best = row[k] > row[best] ? k : best;
    return {row[best], best};
}

// `format`: none for the human-readable lines, else "csv" or "jsonl" with each text's 1-based line.
void print_prediction(const Tensor& p, const std::optional<std::string>& format) {
    const std::int64_t width = p.numel() / p.dim(0);
    if (format == "csv") std::cout << "line,probability,label\n";
    for (std::int64_t i = 0; i < p.dim(0); ++i) {
        const Prediction r = prediction_of(p.data<float>() + i * width, width);
        char probability[32];
        std::snprintf(probability, sizeof probability, "%.6f", r.probability);
        const std::string label = r.label.is_string() ? r.label.get<std::string>() : r.label.dump();
        if (format == "csv") {
            std::cout << i + 1 << "," << probability << "," << label << "\n";
        } else if (format == "jsonl") {
            std::cout
                << nlohmann::json{{"line", i + 1}, {"probability", std::stod(probability)}, {"label", r.label}}.dump()
                << "\n";
        } else {
            std::cout << "probability: " << probability << "  label: " << label << "\n";
        }
    }
    std::cout << std::flush;
}

// One text a line (a trailing carriage return dropped); "-" reads standard input.
std::vector<std::string> read_lines(const std::string& file) {
    std::ifstream opened;
    if (file != "-") {
        opened.open(file);
        if (!opened) throw InputError("--text-file: cannot read '" + file + "'");
    }
    std::istream& in = file == "-" ? std::cin : opened;
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
    }
    if (in.bad()) throw InputError("--text-file: reading '" + file + "' failed");
    if (lines.empty()) throw InputError("--text-file: '" + file + "' holds no lines");
    return lines;
}

void run_predict(const PredictOptions& o) {
    Model model = load_model(o.model, o.common);
    const int sources = !o.texts.empty() + o.inputs.has_value() + o.text_file.has_value();
    if (sources != 1) {
        throw InputError("predict needs one of --inputs X.safetensors (with --out), --text \"...\" or --text-file F");
    }
    if (o.format && o.inputs) throw InputError("--format is for text predictions; --inputs writes safetensors");
    if (o.inputs && !o.out) throw InputError("predict --inputs needs --out Y.safetensors");
    prepare_weights(model, o.weights);

    if (o.inputs) {
        const std::vector<Tensor> inputs = model.read_inputs(*o.inputs);
        std::vector<Tensor> outputs = naming_file(*o.inputs, [&] { return model.predict(inputs, o.batch_size); });
        TensorFile file;
        const std::vector<ModelTensor> names = model.outputs();
        for (std::size_t i = 0; i < outputs.size(); ++i) {
            warn_non_finite(outputs[i], names[i].name, *o.inputs);
            file.tensors[names[i].name] = std::move(outputs[i]);
        }
        file.metadata["model"] = model.name();
        // Under mpirun (a sequence-parallel model) every rank holds the same outputs; rank 0 writes them.
        if (training_process().rank == 0) write_safetensors(*o.out, file);
        return;
    }

    if (!o.weights) throw InputError("predict --text needs --weights: the vocabulary is kept beside the weights file");
    const std::filesystem::path vocab_file = vocabulary_path(*o.weights);
    if (!std::filesystem::exists(vocab_file)) {
        throw InputError("no vocabulary beside the weights: expected '" + vocab_file.string() +
                         "', which `nngraph train --save` writes for text data");
    }
    const std::vector<std::string> texts = o.text_file ? read_lines(*o.text_file) : o.texts;
    const std::optional<std::string> format = o.format ? o.format : o.text_file ? "csv" : std::optional<std::string>();
    const Tensor predictions = model.predict_text(texts, Vocabulary::load(vocab_file), o.batch_size);
    if (training_process().rank == 0) print_prediction(predictions, format);
}

struct GradOptions {
    std::string model, inputs, targets, out;
    std::optional<std::string> weights;
    CommonOptions common;
};

void run_grad(const GradOptions& o) {
    Model model = load_model(o.model, o.common);
    prepare_weights(model, o.weights);
    const std::vector<Tensor> inputs = model.read_inputs(o.inputs), targets = model.read_targets(o.targets);
    const Gradients gradients =
        naming_file(o.inputs + " and " + o.targets, [&] { return model.gradients(inputs, targets); });
    TensorFile file;
    const float loss_value[] = {static_cast<float>(gradients.loss)};
    file.tensors["loss"] = Tensor::from<float>({}, loss_value);
    for (const auto& [name, grad] : gradients.weights) file.tensors[name] = grad;
    file.metadata["model"] = model.name();
    file.metadata["loss_function"] = gradients.loss_function;
    if (training_process().rank == 0) write_safetensors(o.out, file);
}

}  // namespace

void add_run_commands(CLI::App& app) {
    auto p = std::make_shared<PredictOptions>();
    CLI::App* predict = app.add_subcommand("predict", "Run a model: write its outputs, or classify text");
    predict->add_option("model", p->model, "Model file (YAML)")->required();
    predict->add_option("--weights", p->weights,
                        "Weights (.safetensors); optional when the model file gives every weight");
    predict->add_option("--inputs", p->inputs, "Inputs by graph input name (.safetensors)");
    predict->add_option("--out", p->out, "Where to write the outputs, by output name (.safetensors)");
    predict->add_option("--text", p->texts, "Text to classify (repeatable); needs the vocabulary beside the weights");
    predict->add_option("--text-file", p->text_file, "Texts to classify, one a line ('-': standard input)");
    predict
        ->add_option("--format", p->format,
                     "Text results as csv (line,probability,label; the default with --text-file) or jsonl")
        ->check(CLI::IsMember({"csv", "jsonl"}));
    predict->add_option("--batch-size", p->batch_size, "Rows per batch")->check(count_in(1, kMaxBatchSize));
    add_common_options(*predict, p->common);
    predict->callback([p] { run_predict(*p); });

    auto g = std::make_shared<GradOptions>();
    CLI::App* grad = app.add_subcommand("grad", "Loss and the gradient of every weight for one batch, dropout off");
    grad->add_option("model", g->model, "Model file (YAML)")->required();
    grad->add_option("--weights", g->weights,
                     "Weights (.safetensors); optional when the model file gives every weight");
    grad->add_option("--inputs", g->inputs, "Inputs by graph input name (.safetensors)")->required();
    grad->add_option("--targets", g->targets, "Targets: 'targets' (.safetensors)")->required();
    grad->add_option("--out", g->out, "Where to write 'loss' and the gradients by weight name (.safetensors)")
        ->required();
    add_common_options(*grad, g->common);
    grad->callback([g] { run_grad(*g); });
}

}  // namespace nngraph::cli
