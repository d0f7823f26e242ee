// `mpirun` started from a test, as users start it, with the environment Open MPI needs as root.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

extern char** environ;

namespace nngraph::testing {

class Mpirun {
public:
    // Starts `mpirun <args>` with stdout and stderr into files of `dir`.
    Mpirun(const TempDir& dir, const std::vector<std::string>& args)
        : out_(dir / "mpirun.out"), err_(dir / "mpirun.err") {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::vector<std::string> strings{NNGRAPH_MPIEXEC};
        strings.insert(strings.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (std::string& s : strings) argv.push_back(s.data());
        argv.push_back(nullptr);
        // Open MPI refuses root without the first two; the tests may run as root in a container.
        // Each job gets a session directory of its own: jobs sharing /tmp/ompi.<host>.<uid> race,
        // one removing it as it ends while another makes its own directory in it.
        std::vector<std::string> env{"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                     "OMPI_MCA_orte_tmpdir_base="};
        env.back() += session_.path().string();
        for (char** e = environ; *e; ++e) env.emplace_back(*e);
        std::vector<char*> envp;
        for (std::string& e : env) envp.push_back(e.data());
        envp.push_back(nullptr);
        const int spawned = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        REQUIRE_MESSAGE(spawned == 0, "cannot start " << NNGRAPH_MPIEXEC);
    }
    ~Mpirun() {
        if (!finished_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }

    // The exit status, or nothing when it has not ended within `limit` (it is then killed).
    std::optional<int> wait(std::chrono::seconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        int status = 0;
        while (waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        finished_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    // The process mpirun launched as `rank`, once it runs; -1 if none appears within `limit`.
    pid_t rank_process(int rank, std::chrono::seconds limit) const {
        const std::string wanted = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
                const std::string name = entry.path().filename();
                if (name.find_first_not_of("0123456789") != std::string::npos) continue;
                std::istringstream stat(read_bytes(entry.path() / "stat"));
                std::string pid, command, state;
                pid_t parent = 0;
                stat >> pid >> command >> state >> parent;
                if (parent != pid_) continue;
                std::string environment = read_bytes(entry.path() / "environ");
                std::replace(environment.begin(), environment.end(), '\0', '\n');
                if (("\n" + environment).find("\n" + wanted + "\n") != std::string::npos) return std::stoi(name);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return -1;
    }

    std::string out() const { return read_bytes(out_); }
    std::string err() const { return read_bytes(err_); }

private:
    TempDir session_;  // made before the job starts, removed after it ends
    std::filesystem::path out_, err_;
    pid_t pid_ = -1;
    bool finished_ = false;
};

}  // namespace nngraph::testing
