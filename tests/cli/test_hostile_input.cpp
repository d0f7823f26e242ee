// Hostile input at the command line: every refusal exits 2 with a message that says what was wrong
// and what was expected; nothing crashes, and nothing fails late.
#include <doctest/doctest.h>

#include "cli_runner.hpp"
#include "temp_dir.hpp"

using namespace nngraph::testing;

namespace {

bool says(const CliResult& r, const std::string& text) { return r.err.find(text) != std::string::npos; }

}  // namespace

TEST_CASE("count flags are bounded and say their range in plain words") {
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    for (const Case& c : std::vector<Case>{
             {{"train", model, "--epochs", "0"}, "--epochs: must be a whole number from 1 to 1000000, not '0'"},
             {{"train", model, "--epochs", "99999999999"}, "--epochs: must be a whole number from 1 to 1000000"},
             {{"train", model, "--batch-size", "-3"}, "--batch-size: must be a whole number from 1 to 1048576, not '-3'"},
             {{"predict", model, "--batch-size", "1e9"}, "--batch-size: must be a whole number from 1 to 1048576, not '1e9'"},
             {{"summary", model, "--threads", "100000"}, "--threads: must be a whole number from 0 to "},
             {{"bench", model, "--repetitions", "0"}, "--repetitions: must be a whole number from 1 to 100000"},
         }) {
        const CliResult r = run_nngraph(c.args);
        CAPTURE(r.err);
        CHECK_FALSE(r.crashed);
        CHECK(r.status == 2);
        CHECK(says(r, c.message));
        CHECK_FALSE(says(r, "179769"));
    }
}

TEST_CASE("an unknown command is named, with the closest known one") {
    const CliResult typo = run_nngraph({"trian", "model.yaml"});
    CHECK(typo.status == 2);
    CHECK(says(typo, "unknown command 'trian': did you mean 'train'?"));
    CHECK(says(typo, "commands: summary, dot, plugins, train, evaluate, predict, grad, bench"));
    const CliResult far = run_nngraph({"xyzzyq"});
    CHECK(far.status == 2);
    CHECK(says(far, "unknown command 'xyzzyq' (commands: "));
}

TEST_CASE("--save and --log destinations are checked before the first epoch") {
    TempDir dir;
    const std::string model = (source_dir() / "graphs/mlp_xor.yaml").string();
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::string missing = (dir / "missing" / "w.safetensors").string();
    for (const Case& c : std::vector<Case>{
             {{"--save", missing}, "cannot write '" + missing + "': the directory '" + (dir / "missing").string() + "' does not exist"},
             {{"--save", dir.path().string()}, "cannot write '" + dir.path().string() + "': it is a directory"},
             {{"--log", dir.path().string()}, "--log: cannot write '" + dir.path().string() + "': it is a directory"},
             {{"--log", "/proc/history.csv"}, "--log: cannot write '/proc/history.csv': no file can be created in '/proc'"},
             {{"--save", "/sys/w.safetensors"}, "no file can be created in '/sys'"},
         }) {
        std::vector<std::string> args{"train", model, "--epochs", "2"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        const CliResult r = run_nngraph(args);
        CAPTURE(r.err);
        CHECK(r.status == 2);
        CHECK(says(r, c.message));
        CHECK(r.out.find("Epoch 1/2") == std::string::npos);
    }
}
