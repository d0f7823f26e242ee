#include "train/checkpoint.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "exec/weights.hpp"
#include "nngraph/nngraph.hpp"
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
    for (std::size_t i = 0; i < graph.weights().size(); ++i)
        file.tensors[graph.weights()[i].name] = executor.weights()[i];
    file.metadata["format"] = "nngraph";
    file.metadata["model"] = graph.name();
    return file;
}

std::string metadata(const TensorFile& file, const std::string& key, const std::string& source) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
        throw InputError(source + ": metadata '" + key +
                         "' is missing; is this a checkpoint written by `nngraph train --save`?");
    }
    return it->second;
}

// Reads back to the same double.
std::string exact_text(double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.17g", value);
    return buffer;
}

// Callback state lives under this prefix, in the metadata (numbers) and among the tensors.
constexpr const char* kCallbackPrefix = "callbacks.";

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Executor& executor, const Optimizer* optimizer,
                     const TrainingState& state) {
    TensorFile file = weights_file(executor);
    if (optimizer) optimizer->save_state(weight_names(executor.graph()), file.tensors);
    file.metadata["epochs_done"] = std::to_string(state.epochs_done);
    file.metadata["steps_done"] = std::to_string(state.steps_done);
    file.metadata["seed"] = std::to_string(state.seed);
    if (state.best) {
        file.metadata["best"] = exact_text(*state.best);
        file.metadata["monitor"] = state.monitor;
    }
    for (const auto& [key, value] : state.callbacks.numbers) file.metadata[key] = exact_text(value);
    for (const auto& [key, tensor] : state.callbacks.tensors) file.tensors[key] = tensor;
    write_safetensors(path, file);
}

namespace {

// Each field is read whole and checked against what `train --save` can have written: a hand-edited
// or corrupt checkpoint is refused with the field named, before training starts.
template <typename Number>
Number metadata_number(const TensorFile& file, const std::string& key, const std::string& source, Number low,
                       Number high, const char* expected) {
    const std::string text = metadata(file, key, source);
    Number value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || !(value >= low && value <= high)) {
        throw InputError(source + ": the checkpoint's metadata '" + key + "' is '" + text.substr(0, 40) +
                         "'; expected " + expected);
    }
    return value;
}

TrainingState state_of(const TensorFile& file, const std::string& source) {
    TrainingState state;
    const std::string epochs_range = "a whole number from 0 to " + std::to_string(kMaxEpochs);
    state.epochs_done = metadata_number(file, "epochs_done", source, 0, kMaxEpochs, epochs_range.c_str());
    const auto any = std::numeric_limits<std::uint64_t>::max();
    state.steps_done =
        metadata_number(file, "steps_done", source, std::uint64_t{0}, any, "a whole number of 0 or more");
    state.seed = metadata_number(file, "seed", source, std::uint64_t{0}, any, "a whole number of 0 or more");
    if (state.epochs_done > 0 && state.steps_done < static_cast<std::uint64_t>(state.epochs_done)) {
        throw InputError(source + ": the checkpoint's metadata says " + std::to_string(state.epochs_done) +
                         " epochs done in " + std::to_string(state.steps_done) +
                         " steps; every epoch takes at least one step");
    }
    if (file.metadata.count("best")) {
        const double huge = std::numeric_limits<double>::max();
        state.best = metadata_number(file, "best", source, -huge, huge, "a finite number");
        state.monitor = metadata(file, "monitor", source);
        // Any log name may be monitored (val_auc, a metric's own name): letters, digits, underscores.
        const bool log_name = !state.monitor.empty() && state.monitor.size() <= 64 &&
                              std::all_of(state.monitor.begin(), state.monitor.end(),
                                          [](unsigned char c) { return std::isalnum(c) || c == '_'; });
        if (!log_name) {
            throw InputError(source + ": the checkpoint's metadata 'monitor' is '" + state.monitor.substr(0, 40) +
                             "'; expected the name of a log such as val_accuracy or val_loss");
        }
    }
    const double huge = std::numeric_limits<double>::max();
    for (const auto& [key, text] : file.metadata) {
        if (key.rfind(kCallbackPrefix, 0) == 0)
            state.callbacks.numbers[key] = metadata_number(file, key, source, -huge, huge, "a finite number");
    }
    for (const auto& [key, tensor] : file.tensors) {
        if (key.rfind(kCallbackPrefix, 0) == 0) state.callbacks.tensors[key] = tensor;
    }
    return state;
}

// One NaN weight makes every output NaN, silently: such a file is refused with the tensor named.
void check_finite(const TensorFile& file, const std::string& source) {
    for (const auto& [name, tensor] : file.tensors) {
        if (tensor.dtype() != DType::F32) continue;
        const float* values = tensor.data<float>();
        const float* bad = std::find_if(values, values + tensor.numel(), [](float v) { return !std::isfinite(v); });
        if (bad == values + tensor.numel()) continue;
        throw InputError(source + ": tensor '" + name + "' holds " + (std::isnan(*bad) ? "NaN" : "an infinity") +
                         " at element " + std::to_string(bad - values) + " of " + std::to_string(tensor.numel()) +
                         "; weights must be finite numbers");
    }
}

}  // namespace

TrainingState read_training_state(const std::filesystem::path& path) {
    return state_of(read_safetensors(path), path.string());
}

TrainingState load_checkpoint(const std::filesystem::path& path, Executor& executor, Optimizer* optimizer) {
    const TensorFile file = read_safetensors(path);
    const std::string source = path.string();
    const TrainingState state = state_of(file, source);
    check_finite(file, source);
    load_weights_by_name(executor.graph(), file.tensors, source, executor.weights());
    if (optimizer) optimizer->load_state(weight_names(executor.graph()), file.tensors, source);
    return state;
}

void save_weights(const std::filesystem::path& path, const Executor& executor) {
    write_safetensors(path, weights_file(executor));
}

void load_weights(const std::filesystem::path& path, Executor& executor) {
    const TensorFile file = read_safetensors(path);
    check_finite(file, path.string());
    load_weights_by_name(executor.graph(), file.tensors, path.string(), executor.weights());
}

}  // namespace nngraph
