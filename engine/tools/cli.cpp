#include "cli.hpp"

#include <algorithm>
#include <charconv>

namespace nngraph::cli {

CLI::Validator count_in(std::int64_t low, std::int64_t high) {
    const std::string range = "a whole number from " + std::to_string(low) + " to " + std::to_string(high);
    return CLI::Validator(
        [=](std::string& text) -> std::string {
            std::int64_t value = 0;
            const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
            const bool whole = error == std::errc() && end == text.data() + text.size();
            if (whole && value >= low && value <= high) return {};
            return "must be " + range + ", not '" + text.substr(0, 40) + "'";
        },
        "[" + std::to_string(low) + ".." + std::to_string(high) + "]");
}

std::string closest_command(const CLI::App& app, const std::string& typed) {
    auto distance = [](const std::string& a, const std::string& b) {
        std::vector<std::size_t> row(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= a.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                const std::size_t above = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = above;
            }
        }
        return row[b.size()];
    };
    std::string best;
    std::size_t best_distance = 0;
    for (const CLI::App* command : app.get_subcommands({})) {
        const std::size_t d = distance(typed, command->get_name());
        if (best.empty() || d < best_distance) best = command->get_name(), best_distance = d;
    }
    // Farther than half the word is a different word, not a typo.
    return best_distance * 2 <= std::max(typed.size(), best.size()) ? best : std::string();
}

void add_common_options(CLI::App& command, CommonOptions& options) {
    command.add_option("--plugins", options.plugin_dirs, "Extra plugin directory or file (searched first; repeatable)");
    command.add_option("--threads", options.threads, "Threads for the arithmetic (default: all cores)")
        ->check(count_in(0, max_threads()));
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
            throw InputError("weight '" + w.name +
                             "' has no value: give --weights W.safetensors, or 'weights:' for node '" + w.node +
                             "' in " + model.file().string());
        }
    }
}

}  // namespace nngraph::cli
