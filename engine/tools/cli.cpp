#include "cli.hpp"

#include "exec/weights.hpp"
#include "nngraph/safetensors.hpp"
#include "train/checkpoint.hpp"
#include "train/datasets.hpp"

namespace nngraph::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
    command.add_option("--plugins", options.plugin_dirs, "Extra plugin directory or file (searched first; repeatable)");
    command.add_option("--threads", options.threads, "Threads for the arithmetic (default: all cores)")->check(CLI::NonNegativeNumber);
}

std::shared_ptr<const Graph> load_graph(const std::string& model_file, const CommonOptions& options) {
    PluginSearch search;
    for (const auto& dir : options.plugin_dirs) search.command_line.emplace_back(dir);
    return Graph::load(model_file, search);
}

void prepare_weights(Executor& executor, const std::optional<std::string>& weights_file) {
    const Graph& graph = executor.graph();
    initialize_weights(graph, 0, executor.weights());
    if (weights_file) {
        load_weights(*weights_file, executor);
        return;
    }
    for (const GraphWeight& w : graph.weights()) {
        if (!w.inline_value) {
            throw InputError("weight '" + w.name + "' has no value: give --weights W.safetensors, or 'weights:' for node '" +
                             graph.node(w.node).name + "' in " + graph.spec().file);
        }
    }
}

std::vector<Tensor> read_inputs(const Graph& graph, const std::filesystem::path& path) {
    TensorFile file = read_safetensors(path);
    std::vector<Tensor> inputs;
    for (TensorId t : graph.inputs()) {
        const GraphTensor& input = graph.tensor(t);
        auto it = file.tensors.find(input.name);
        if (it == file.tensors.end()) {
            throw InputError(path.string() + ": no tensor '" + input.name + "' for graph input '" + input.name + "'");
        }
        inputs.push_back(convert_dtype(it->second, input.info.dtype, path.string() + ": '" + input.name + "'"));
    }
    return inputs;
}

std::filesystem::path vocabulary_path(const std::filesystem::path& weights_file) {
    std::filesystem::path p = weights_file;
    p.replace_extension(".vocab.json");
    return p;
}

}  // namespace nngraph::cli
