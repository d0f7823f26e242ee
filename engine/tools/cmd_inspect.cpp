// nngraph summary | dot | plugins
#include <iomanip>
#include <iostream>

#include <algorithm>

#include "cli.hpp"

namespace nngraph::cli {

void add_inspect_commands(CLI::App& app) {
    struct Options {
        std::string model;
        CommonOptions common;
    };
    auto summary_options = std::make_shared<Options>();
    CLI::App* summary_cmd =
        app.add_subcommand("summary", "Print the Keras-style table of layers, output shapes and parameters");
    summary_cmd->add_option("model", summary_options->model, "Model file (YAML)")->required();
    add_common_options(*summary_cmd, summary_options->common);
    summary_cmd->callback(
        [summary_options] { std::cout << load_model(summary_options->model, summary_options->common).summary(); });

    struct DotCommand {
        Options files;
        DotOptions drawing;
        bool no_attributes = false;
    };
    auto dot_options = std::make_shared<DotCommand>();
    CLI::App* dot_cmd = app.add_subcommand("dot", "Print the graph in Graphviz dot format");
    dot_cmd->add_option("model", dot_options->files.model, "Model file (YAML)")->required();
    dot_cmd->add_option("--rankdir", dot_options->drawing.rankdir, "Graphviz's direction: TB (default), LR, BT or RL")
        ->check(CLI::IsMember({"TB", "LR", "BT", "RL"}));
    dot_cmd->add_flag("--no-attributes", dot_options->no_attributes, "Leave the nodes' attributes out of the labels");
    add_common_options(*dot_cmd, dot_options->files.common);
    dot_cmd->callback([dot_options] {
        DotOptions drawing = dot_options->drawing;
        drawing.attributes = !dot_options->no_attributes;
        std::cout << load_model(dot_options->files.model, dot_options->files.common).dot(drawing);
    });

    auto plugin_options = std::make_shared<CommonOptions>();
    CLI::App* plugins_cmd = app.add_subcommand("plugins", "List every op with its plugin file and version");
    add_common_options(*plugins_cmd, *plugin_options);
    plugins_cmd->callback([plugin_options] {
        const PluginCatalog catalog = list_plugins(plugin_dirs(*plugin_options));
        int op_width = 2, plugin_width = 6, version_width = 7;
        for (const PluginOp& op : catalog.ops) {
            op_width = std::max(op_width, static_cast<int>(op.op.size()));
            plugin_width = std::max(plugin_width, static_cast<int>(op.plugin.size()));
            version_width = std::max(version_width, static_cast<int>(op.version.size()));
        }
        auto row = [&](const std::string& op, const std::string& plugin, const std::string& version,
                       const std::string& file) {
            std::cout << std::left << std::setw(op_width + 2) << op << std::setw(plugin_width + 2) << plugin
                      << std::setw(version_width + 2) << version << file << "\n";
        };
        row("op", "plugin", "version", "file");
        for (const PluginOp& op : catalog.ops) row(op.op, op.plugin, op.version, op.file.string());
        std::cout << catalog.ops.size() << " ops from " << catalog.plugins << " plugins; searched:";
        for (const auto& dir : catalog.searched) std::cout << " " << dir.string();
        std::cout << "\n";
    });
}

}  // namespace nngraph::cli
