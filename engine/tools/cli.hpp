// Pieces the nngraph commands share: common flags, loading a model and its weights.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec/executor.hpp"
#include "graph/graph.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph::cli {

struct CommonOptions {
    std::vector<std::string> plugin_dirs;
    int threads = 0;
};

// --plugins DIR (repeatable) and --threads N.
void add_common_options(CLI::App& command, CommonOptions& options);
std::shared_ptr<const Graph> load_graph(const std::string& model_file, const CommonOptions& options);

// Weights from `weights_file`, or from the model file's inline `weights:` when no file is given;
// a weight with neither is an InputError naming it.
void prepare_weights(Executor& executor, const std::optional<std::string>& weights_file);

// Reads graph inputs from a safetensors file by input name, converted to the declared dtypes.
std::vector<Tensor> read_inputs(const Graph& graph, const std::filesystem::path& path);

// The vocabulary file kept beside a weights file: W.safetensors -> W.vocab.json.
std::filesystem::path vocabulary_path(const std::filesystem::path& weights_file);

// Registration of each command group.
void add_inspect_commands(CLI::App& app);  // summary, dot, plugins
void add_train_commands(CLI::App& app);    // train, evaluate
void add_run_commands(CLI::App& app);      // predict, grad
void add_bench_commands(CLI::App& app);    // bench

}  // namespace nngraph::cli
