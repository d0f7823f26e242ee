// nngraph import: a Keras 3 .keras file to a model file and a safetensors weights file.
#include <iostream>

#include "cli.hpp"
#include "nngraph/io_atomic_file.hpp"

namespace nngraph::cli {
namespace {

struct ImportOptions {
    std::string keras_file, out;
    std::optional<std::string> weights_out;
};

// Beside the model file, with its stem: model.yaml -> model.safetensors.
std::filesystem::path default_weights_path(const std::filesystem::path& model_file) {
    std::filesystem::path weights = model_file;
    return weights.replace_extension(".safetensors");
}

void run_import(const ImportOptions& o) {
    const std::filesystem::path weights_file =
        o.weights_out ? std::filesystem::path(*o.weights_out) : default_weights_path(o.out);
    if (weights_file == std::filesystem::path(o.out)) {
        throw InputError("import: --out and --weights-out are the same file '" + o.out + "'");
    }
    check_writable_destination(o.out, "the model file");
    check_writable_destination(weights_file, "the weights file");
    KerasImport imported = import_keras(o.keras_file);
    for (const std::string& note : imported.notes) std::cerr << "nngraph: note: " << note << "\n";
    imported.weights.metadata["source"] = std::filesystem::path(o.keras_file).filename().string();
    write_safetensors(weights_file, imported.weights);
    write_file_atomically(o.out, [&](std::ostream& out) { out << imported.model_file; });
    std::cout << "imported " << o.keras_file << ": model " << o.out << ", " << imported.weights.tensors.size()
              << " weights " << weights_file.string() << "\n";
}

}  // namespace

void add_import_commands(CLI::App& app) {
    auto o = std::make_shared<ImportOptions>();
    CLI::App* import = app.add_subcommand("import", "Convert a Keras 3 .keras file to a model file and its weights");
    import->add_option("keras_file", o->keras_file, "The .keras file")->required();
    import->add_option("--out", o->out, "Where to write the model file (YAML)")->required();
    import->add_option("--weights-out", o->weights_out,
                       "Where to write the weights (.safetensors; default: beside --out with its stem)");
    import->callback([o] { run_import(*o);
});
}  // namespace nngraph::cli

}  // namespace nngraph::cli
