#include "train/checkpoint.hpp"

#include <cstdio>

#include "exec/weights.hpp"
#include "nngraph/safetensors.hpp"

namespace nngraph {
namespace {

std::vector<std::string> weight_names(const Graph& graph) {
    std::vector<std::string> names;
    for (const GraphWeight& w : graph.weights()) names.push_back(w.name);
    return names;
}

TensorFile weights_file(const Executor& executor) {
    TensorFile file;
    const Graph& graph = executor.graph();
    for (std::size_t i = 0; i < graph.weights().size(); ++i) file.tensors[graph.weights()[i].name] = executor.weights()[i];
    file.metadata["format"] = "nngraph";
    file.metadata["model"] = graph.name();
    return file;
}

std::string metadata(const TensorFile& file, const std::string& key, const std::string& source) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
        throw InputError(source + ": metadata '" + key + "' is missing; is this a checkpoint written by `nngraph train --save`?");
    }
    return it->second;
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Executor& executor, const Optimizer* optimizer,
                     const TrainingState& state) {
    TensorFile file = weights_file(executor);
    if (optimizer) optimizer->save_state(weight_names(executor.graph()), file.tensors);
    file.metadata["epochs_done"] = std::to_string(state.epochs_done);
    file.metadata["steps_done"] = std::to_string(state.steps_done);
    file.metadata["seed"] = std::to_string(state.seed);
    if (state.best) {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "%.17g", *state.best);
        file.metadata["best"] = buffer;
        file.metadata["monitor"] = state.monitor;
    }
    write_safetensors(path, file);
}

namespace {

TrainingState state_of(const TensorFile& file, const std::string& source) {
    TrainingState state;
    try {
        state.epochs_done = std::stoi(metadata(file, "epochs_done", source));
        state.steps_done = std::stoull(metadata(file, "steps_done", source));
        state.seed = std::stoull(metadata(file, "seed", source));
        if (file.metadata.count("best")) {
            state.best = std::stod(file.metadata.at("best"));
            state.monitor = metadata(file, "monitor", source);
        }
    } catch (const std::logic_error&) {
        throw InputError(source + ": the checkpoint's metadata is not readable numbers");
    }
    return state;
}

}  // namespace

TrainingState read_training_state(const std::filesystem::path& path) {
    return state_of(read_safetensors(path), path.string());
}

TrainingState load_checkpoint(const std::filesystem::path& path, Executor& executor, Optimizer* optimizer) {
    const TensorFile file = read_safetensors(path);
    const std::string source = path.string();
    const TrainingState state = state_of(file, source);
    load_weights_by_name(executor.graph(), file.tensors, source, executor.weights());
    if (optimizer) optimizer->load_state(weight_names(executor.graph()), file.tensors, source);
    return state;
}

void save_weights(const std::filesystem::path& path, const Executor& executor) { write_safetensors(path, weights_file(executor)); }

void load_weights(const std::filesystem::path& path, Executor& executor) {
    const TensorFile file = read_safetensors(path);
    load_weights_by_name(executor.graph(), file.tensors, path.string(), executor.weights());
}

}  // namespace nngraph
