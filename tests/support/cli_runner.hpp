// Runs the nngraph command line as a child process, as a user would, and captures what it says.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace nngraph::testing {

struct CliResult {
    int status = -1;       // exit status; -1 when the process did not exit normally
    bool crashed = false;  // killed by a signal (a crash, an abort)
    std::string out, err;
};

// Called once the child runs, with its pid and the file its standard output goes to (to watch its
// progress, or signal it); the runner then waits for the child to end.
using WhileRunning = std::function<void(pid_t child, const std::filesystem::path& stdout_file)>;

// `nngraph <args...>` from the build tree; arguments are passed verbatim (no shell splitting).
CliResult run_nngraph(const std::vector<std::string>& args, const std::vector<std::string>& environment = {},
                      const WhileRunning& while_running = {});

// The built nngraph binary (or $NNGRAPH_TEST_BINARY when set) and the repository's source folder.
std::filesystem::path nngraph_binary();
std::filesystem::path source_dir();

}  // namespace nngraph::testing
