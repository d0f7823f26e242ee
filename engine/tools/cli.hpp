// Pieces the nngraph commands share: common flags, loading a model and its weights.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "nngraph/nngraph.hpp"

namespace nngraph::cli {

// Exit status when Ctrl-C or SIGTERM stopped the command (as a shell reports SIGINT).
inline constexpr int kExitInterrupted = 130;

struct CommonOptions {
    std::vector<std::string> plugin_dirs;
    int threads = 0;
};

// A whole number from `low` to `high`, refused with the range in plain words.
CLI::Validator count_in(std::int64_t low, std::int64_t high);

// The known command nearest to a mistyped one (edit distance), or empty when none is close.
std::string closest_command(const CLI::App& app, const std::string& typed);

// --plugins DIR (repeatable) and --threads N.
void add_common_options(CLI::App& command, CommonOptions& options);
std::vector<std::filesystem::path> plugin_dirs(const CommonOptions& options);
Model load_model(const std::string& model_file, const CommonOptions& options,
                 std::optional<std::uint64_t> seed = std::nullopt);

// Weights from `weights_file`, or from the model file's inline `weights:` when no file is given;
// a weight with neither is an InputError naming it.
void prepare_weights(Model& model, const std::optional<std::string>& weights_file);

// Registration of each command group.
void add_inspect_commands(CLI::App& app);    // summary, dot, plugins
void add_train_commands(CLI::App& app);      // train, evaluate
void add_run_commands(CLI::App& app);        // predict, grad
void add_bench_commands(CLI::App& app);      // bench
void add_translate_commands(CLI::App& app);  // translate
void add_import_commands(CLI::App& app);     // import

}  // namespace nngraph::cli
