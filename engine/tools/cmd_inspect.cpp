// nngraph summary | dot | plugins
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>

#include "cli.hpp"

namespace nngraph::cli {
namespace {

// The terminal's width as Python's shutil.get_terminal_size finds it (Keras fits its summary to
// it): $COLUMNS, else standard output's terminal, else 80.
int terminal_columns() {
    if (const char* env = std::getenv("COLUMNS")) {
        int value = 0;
        const auto [end, error] = std::from_chars(env, env + std::strlen(env), value);
        if (error == std::errc() && *end == '\0' && value > 0) return value;
    }
    winsize size{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
    return 80;
}

}  // namespace

void add_inspect_commands(CLI::App& app) {
    struct Options {
        std::string model;
        CommonOptions common;
    };
    struct SummaryCommand {
        Options files;
        SummaryOptions table;
    };
    auto summary_options = std::make_shared<SummaryCommand>();
    CLI::App* summary_cmd =
        app.add_subcommand("summary", "Print the Keras-style table of layers, output shapes and parameters");
    summary_cmd->add_option("model", summary_options->files.model, "Model file (YAML)")->required();
    summary_cmd
        ->add_option("--line-length", summary_options->table.line_length,
                     "Width of the table (Keras's line_length; default 88, or 108 with 'Connected to', at most the "
                     "terminal's width less 4)")
        ->check(CLI::Range(8, 1000));
    add_common_options(*summary_cmd, summary_options->files.common);
    summary_cmd->callback([summary_options] {
        SummaryOptions table = summary_options->table;
        table.terminal_columns = terminal_columns();
        std::cout << load_model(summary_options->files.model, summary_options->files.common).summary(table);
    });

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
