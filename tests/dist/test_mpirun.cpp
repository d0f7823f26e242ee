// `mpirun -np N nngraph train` as users run it: the same results as one process, a killed rank
// ends the job, ranks that disagree on the model file are refused.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "cli_runner.hpp"
#include "mpirun.hpp"
#include "nngraph/safetensors.hpp"
#include "same_run.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using namespace nngraph::testing;
using Clock = std::chrono::steady_clock;

namespace {

// XOR points without dropout; 901 samples in batches of 100 make 10 steps an epoch, the last one of
// a single row (so with 2 or 3 ranks some ranks hold none), and the 100-row batch splits 34/33/33.
// With this seed the second epoch is the best (with or without a Dropout of rate 0.2 after the
// first layer), so --save keeps the weights after 20 steps.
const char* kModel = R"(name: xor_small
input: {name: point, shape: [2], dtype: float32}
layers:
  - {op: Dense, units: 16, activation: tanh}
  - {op: Dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.05}
  metrics: [accuracy, AUC, precision]  # tallies that must add up across ranks
  batch_size: 100
  epochs: 2
  seed: 6
data: {format: synthetic, task: xor, samples: 901, validation_samples: 300, noise: 0.0}
)";

// `train` of the test model, writing NAME.safetensors and NAME.csv.
std::vector<std::string> train_args(const TempDir& dir, const std::string& name) {
    return {
        "train", (dir / "model.yaml").string(),   "--threads", "1", "--save", (dir / (name + ".safetensors")).string(),
        "--log", (dir / (name + ".csv")).string()};
}

std::vector<std::string> mpirun_args(const std::vector<std::string>& options,
                                     const std::vector<std::string>& nngraph_args) {
    std::vector<std::string> args = options;
    args.push_back(nngraph_binary().string());
    args.insert(args.end(), nngraph_args.begin(), nngraph_args.end());
    return args;
}

// The model with a Dropout after its hidden layer.
std::string with_dropout(std::string model) {
    const std::string hidden = "  - {op: Dense, units: 16, activation: tanh}\n";
    return model.insert(model.find(hidden) + hidden.size(), "  - {op: Dropout, rate: 0.2}\n");
}

}  // namespace

TEST_CASE("2 and 3 ranks train as one process: the same weights after 20 steps, the same epoch lines") {
    // Without dropout, and with dropout, whose draws are keyed by a row's place in the global batch.
    for (const std::string& model : {std::string(kModel), with_dropout(kModel)}) {
        const bool has_dropout = model != kModel;
        CAPTURE(has_dropout);
        TempDir dir;
        write_bytes(dir / "model.yaml", model);
        const CliResult single = run_nngraph(train_args(dir, "one"));
        REQUIRE_MESSAGE(single.status == 0, single.err);
        const TensorFile expected = read_safetensors(dir / "one.safetensors");
        REQUIRE(expected.metadata.at("epochs_done") == "2");  // the best epoch is the last: after 20 steps
        REQUIRE(csv_rows(dir / "one.csv").size() == 2);

        for (int ranks : {2, 3}) {
            CAPTURE(ranks);
            const std::string name = "ranks" + std::to_string(ranks);
            std::vector<std::string> args = train_args(dir, name);
            // 3 ranks average in buckets of about 100 bytes: several per step, the kernels alone.
            if (ranks == 3) args.insert(args.end(), {"--bucket-mb", "0.0001"});
            Mpirun job(dir, mpirun_args({"--oversubscribe", "-np", std::to_string(ranks)}, args));
            const std::optional<int> status = job.wait(std::chrono::seconds(120));
            REQUIRE(status.has_value());
            REQUIRE_MESSAGE(*status == 0, job.err());
            // Rank 0 alone reports.
            CHECK(job.err().find("nngraph: training 'xor_small'") == job.err().rfind("nngraph: training 'xor_small'"));

            check_same_checkpoint(read_safetensors(dir / (name + ".safetensors")), expected, ranks);
            check_same_log(dir / (name + ".csv"), dir / "one.csv");
        }
    }
}

TEST_CASE("a killed rank ends a 2-rank job with a non-zero status, naming the rank, within 60 s") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kModel);
    std::vector<std::string> args = train_args(dir, "killed");
    args.insert(args.end(), {"--epochs", "100000"});
    Mpirun job(dir, mpirun_args({"-np", "2"}, args));
    const pid_t victim = job.rank_process(1, std::chrono::seconds(60));
    REQUIRE(victim > 0);
    // Kill it once training runs: after the first epoch line.
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (job.out().find("Epoch 2/") == std::string::npos && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(job.out().find("Epoch 2/") != std::string::npos);
    const auto killed = Clock::now();
    REQUIRE(kill(victim, SIGKILL) == 0);
    const std::optional<int> status = job.wait(std::chrono::seconds(60));
    REQUIRE_MESSAGE(status.has_value(), "the job still runs 60 s after rank 1 was killed");
    MESSAGE("the job ended " << std::chrono::duration<double>(Clock::now() - killed).count()
                             << " s after rank 1 was killed");
    CHECK(*status != 0);
    CHECK(job.err().find("rank 1") != std::string::npos);
}

TEST_CASE("ranks that read different model files are refused, naming the rank and its file") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kModel);
    write_bytes(dir / "other.yaml", std::string(kModel) + "# one more line\n");
    std::vector<std::string> args = mpirun_args({"-np", "1"}, train_args(dir, "a"));
    args.push_back(":");
    std::vector<std::string> second = train_args(dir, "b");
    second[1] = (dir / "other.yaml").string();
    const std::vector<std::string> rest = mpirun_args({"-np", "1"}, second);
    args.insert(args.end(), rest.begin(), rest.end());
    Mpirun job(dir, args);
    const std::optional<int> status = job.wait(std::chrono::seconds(60));
    REQUIRE(status.has_value());
    CHECK(*status == 2);
    CHECK(job.err().find("rank 1 disagrees with rank 0 on the model file '" + (dir / "other.yaml").string() + "'") !=
          std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir / "a.safetensors"));
}

TEST_CASE("a rank that throws ends the job, naming the rank, with the error's exit status") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kModel);
    std::vector<std::string> args = mpirun_args({"-np", "1"}, train_args(dir, "a"));
    args.push_back(":");
    std::vector<std::string> second = train_args(dir, "b");
    second.insert(second.end(), {"--resume", (dir / "missing.safetensors").string()});
    const std::vector<std::string> rest = mpirun_args({"-np", "1"}, second);
    args.insert(args.end(), rest.begin(), rest.end());
    Mpirun job(dir, args);
    const std::optional<int> status = job.wait(std::chrono::seconds(60));
    REQUIRE(status.has_value());
    CHECK(*status == 2);
    CHECK(job.err().find("nngraph: rank 1 of 2: cannot read safetensors file") != std::string::npos);
}

TEST_CASE("a 2-rank run resumed from its checkpoint ends where one unbroken process does") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kModel);
    REQUIRE(run_nngraph(train_args(dir, "one")).status == 0);
    std::vector<std::string> first = train_args(dir, "half");
    first.insert(first.end(), {"--epochs", "1"});
    Mpirun first_job(dir, mpirun_args({"-np", "2"}, first));
    REQUIRE(first_job.wait(std::chrono::seconds(120)) == std::optional<int>(0));
    std::vector<std::string> second = train_args(dir, "whole");
    second.insert(second.end(), {"--resume", (dir / "half.safetensors").string()});
    Mpirun second_job(dir, mpirun_args({"-np", "2"}, second));
    REQUIRE_MESSAGE(second_job.wait(std::chrono::seconds(120)) == std::optional<int>(0), second_job.err());
    check_same_checkpoint(read_safetensors(dir / "whole.safetensors"), read_safetensors(dir / "one.safetensors"), 2);
}

TEST_CASE("under mpirun without a loadable MPI module the run stops, naming the module and the way out") {
    TempDir dir;
    write_bytes(dir / "model.yaml", kModel);
    const std::string missing = (dir / "absent" / "libnngraph_mpi.so").string();
    const CliResult run =
        run_nngraph(train_args(dir, "absent"), {"OMPI_COMM_WORLD_SIZE=2", "NNGRAPH_MPI_MODULE=" + missing});
    CHECK(run.status != 0);
    CHECK_FALSE(run.crashed);
    CHECK_MESSAGE(run.err.find("the MPI module '" + missing + "' cannot be loaded") != std::string::npos, run.err);
    CHECK_MESSAGE(run.err.find("run nngraph without mpirun") != std::string::npos, run.err);
}
