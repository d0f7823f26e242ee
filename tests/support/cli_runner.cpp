#include "cli_runner.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "temp_dir.hpp"

extern char** environ;

namespace nngraph::testing {

std::filesystem::path nngraph_binary() {
    // Lets the same tests drive another build, such as one from before a fix.
    if (const char* other = std::getenv("NNGRAPH_TEST_BINARY"); other && *other) return other;
    return std::filesystem::path(NNGRAPH_BINARY_DIR) / "bin" / "nngraph";
}
std::filesystem::path source_dir() { return NNGRAPH_SOURCE_DIR; }

CliResult run_nngraph(const std::vector<std::string>& args, const std::vector<std::string>& environment,
                      const WhileRunning& while_running) {
    TempDir dir;
    const std::string out_path = (dir / "stdout").string(), err_path = (dir / "stderr").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

    const std::string binary = nngraph_binary().string();
    std::vector<char*> argv{const_cast<char*>(binary.c_str())};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    for (const std::string& e : environment) env_strings.push_back(e);
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = 0;
    const int spawned = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) throw std::runtime_error("cannot start " + binary + ": " + std::strerror(spawned));
    if (while_running) while_running(pid, out_path);
    int wait_status = 0;
    waitpid(pid, &wait_status, 0);

    CliResult result;
    if (WIFEXITED(wait_status)) result.status = WEXITSTATUS(wait_status);
    result.crashed = WIFSIGNALED(wait_status);
    result.out = read_bytes(out_path);
    result.err = read_bytes(err_path);
    return result;
}

}  // namespace nngraph::testing
