// Runs the nngraph command line as a child process, as a user would, and captures what it says.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nngraph::testing {

struct CliResult {
    int status = -1;       // exit status; -1 when the process did not exit normally
    bool crashed = false;  // killed by a signal (a crash, an abort)
    std::string out, err;
};

// `nngraph <args...>` from the build tree; arguments are passed verbatim (no shell splitting).
CliResult run_nngraph(const std::vector<std::string>& args, const std::vector<std::string>& environment = {});

// The built nngraph binary and the repository's source folder.
std::filesystem::path nngraph_binary();
std::filesystem::path source_dir();

}  // namespace nngraph::testing
