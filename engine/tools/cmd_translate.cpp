// nngraph translate
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "nngraph/translator.hpp"

namespace nngraph::cli {
namespace {

struct TranslateCommandOptions {
    std::string model, weights;
    std::optional<std::string> text, input_file, output_file;
    int beam = 1;
    std::int64_t batch_size = 64;
    bool verbose = false;
    CommonOptions common;
};

std::vector<std::string> read_lines(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw InputError("cannot read '" + file + "'");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
    }
    return lines;
}

void run_translate(const TranslateCommandOptions& o) {
    if (o.text.has_value() == o.input_file.has_value())
        throw InputError("translate needs either --text \"...\" or --input-file F");
    if (o.output_file && !o.input_file) throw InputError("translate --output-file goes with --input-file");
    Model model = load_model(o.model, o.common);
    prepare_weights(model, o.weights);
    const std::filesystem::path vocabulary_file = vocabulary_path(o.weights);
    if (!std::filesystem::exists(vocabulary_file)) {
        throw InputError("no vocabularies beside the weights: expected '" + vocabulary_file.string() +
                         "', which `nngraph train --save` writes for tsv_pairs data");
    }
    Translator translator(model, vocabulary_file);
    const std::vector<std::string> sentences = o.text ? std::vector<std::string>{*o.text} : read_lines(*o.input_file);
    const std::string where = o.input_file ? *o.input_file + ": " : std::string("--text: ");

    const auto start = std::chrono::steady_clock::now();
    std::vector<Translation> translations;
    try {
        translations = translator.translate(sentences, {o.beam, o.batch_size});
    } catch (const InputError& e) {
        throw InputError(where + e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    for (std::size_t i = 0; i < translations.size(); ++i) {
        if (!translations[i].truncated) continue;
        std::cerr << "nngraph: note: " << where << "line " << i + 1 << " has " << translations[i].source_tokens
                  << " tokens; only the first " << translator.source_length()
                  << " (the model's source length) were translated\n";
    }
    std::ofstream file;
    if (o.output_file) {
        file.open(*o.output_file, std::ios::binary | std::ios::trunc);
        if (!file) throw InputError("cannot write '" + *o.output_file + "'");
    }
    std::ostream& out = o.output_file ? static_cast<std::ostream&>(file) : std::cout;
    for (const Translation& t : translations) out << t.text << '\n';
    out.flush();
    if (!out) throw RunError("writing the translations failed");
    if (o.verbose) {
        std::fprintf(stderr, "translated %zu sentences in %.3f s: %.1f sentences/s (%s, %d threads)\n",
                     sentences.size(), seconds, seconds > 0 ? static_cast<double>(sentences.size()) / seconds : 0.0,
                     o.beam > 1 ? ("beam " + std::to_string(o.beam)).c_str() : "greedy", model.threads());
    }
}

}  // namespace

void add_translate_commands(CLI::App& app) {
    auto o = std::make_shared<TranslateCommandOptions>();
    CLI::App* translate = app.add_subcommand("translate", "Translate sentences with an encoder-decoder model");
    translate->add_option("model", o->model, "Model file (YAML)")->required();
    translate->add_option("--weights", o->weights, "Weights (.safetensors), with the vocabularies beside them")
        ->required();
    translate->add_option("--text", o->text, "One sentence to translate");
    translate->add_option("--input-file", o->input_file, "Sentences to translate, one a line (UTF-8)");
    translate->add_option("--output-file", o->output_file,
                          "Where to write the translations (default: standard output)");
    translate->add_option("--beam", o->beam, "Beam width; 1 is greedy")->check(count_in(1, 64));
    translate->add_option("--batch-size", o->batch_size, "Sentences decoded together")->check(count_in(1, 4096));
    translate->add_flag("--verbose", o->verbose, "Print the sentences per second on standard error");
    add_common_options(*translate, o->common);
    translate->callback([o] { run_translate(*o); });
}

}  // namespace nngraph::cli
