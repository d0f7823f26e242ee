#include "cli.hpp"

namespace nngraph::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
    command.add_option("--plugins", options.plugin_dirs, "Extra plugin directory or file (searched first; repeatable)");
    command.add_option("--threads", options.threads, "Threads for the arithmetic (default: all cores)")->check(CLI::NonNegativeNumber);
}

std::vector<std::filesystem::path> plugin_dirs(const CommonOptions& options) {
    return {options.plugin_dirs.begin(), options.plugin_dirs.end()};
}

Model load_model(const std::string& model_file, const CommonOptions& options, std::optional<std::uint64_t> seed) {
    return Model::load(model_file, {plugin_dirs(options), options.threads, seed});
}

void prepare_weights(Model& model, const std::optional<std::string>& weights_file) {
    if (weights_file) {
        model.load_weights(*weights_file);
        return;
    }
    for (const ModelWeight& w : model.weights()) {
        if (!w.inline_value) {
            throw InputError("weight '" + w.name + "' has no value: give --weights W.safetensors, or 'weights:' for node '" + w.node +
                             "' in " + model.file().string());
        }
    }
}

}  // namespace nngraph::cli
