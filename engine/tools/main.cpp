// The nngraph command line. Exit status: 0 success, 2 bad usage or bad input files, 1 a failure while running,
// 130 training stopped by Ctrl-C or SIGTERM.
#include <exception>
#include <iostream>

#include "cli.hpp"
#include "nngraph/error.hpp"

int main(int argc, char** argv) {
    CLI::App app{"nngraph: neural networks as YAML graph files, operators as plugins, oneDNN underneath"};
    app.name("nngraph");
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("nngraph ") + NNGRAPH_VERSION);
    nngraph::cli::add_inspect_commands(app);
    nngraph::cli::add_train_commands(app);
    nngraph::cli::add_run_commands(app);
    nngraph::cli::add_bench_commands(app);
    nngraph::cli::add_import_commands(app);
    nngraph::cli::add_translate_commands(app);
    // The first word that is not a flag names the command; CLI11 alone would only say one is required.
    for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.empty() || word[0] == '-') continue;
        const CLI::App& known = app;
        std::string commands;
        bool found = false;
        for (const CLI::App* command : known.get_subcommands({})) {
            commands += (commands.empty() ? "" : ", ") + command->get_name();
            found = found || command->get_name() == word;
        }
        if (found) break;
        const std::string closest = nngraph::cli::closest_command(app, word);
        std::cerr << "nngraph: error: unknown command '" << word.substr(0, 40) << "'"
                  << (closest.empty() ? std::string() : ": did you mean '" + closest + "'?")
                  << " (commands: " << commands << ")\n";
        return 2;
    }
    try {
        app.parse(argc, argv);
        return 0;
    } catch (const CLI::ParseError& e) {
        // --help and --version are "errors" with exit code 0; usage errors become status 2.
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    } catch (const nngraph::Error& e) {
        std::cerr << (e.exit_status() == nngraph::cli::kExitInterrupted ? "nngraph: " : "nngraph: error: ") << e.what()
                  << "\n";
        return e.exit_status();
    } catch (const std::exception& e) {
        std::cerr << "nngraph: error: " << e.what() << "\n";
        return 1;
    }
}
