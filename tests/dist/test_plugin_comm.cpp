// The communicator as a plugin sees it (nng_comm through the SDK): a probe op exchanges its input
// across the ranks of `mpirun -np 2`, each rank with its own inputs, and in a job of one process.
#include <doctest/doctest.h>

#include "cli_runner.hpp"
#include "mpirun.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

constexpr std::int64_t kRows = 3;

std::string model(bool send_beyond_job) {
    return std::string(
               "name: comm_probe\n"
               "input: {name: x, shape: [2], dtype: float32}\n"
               "layers:\n"
               "  - {op: CommProbe, send_beyond_job: ") +
           (send_beyond_job ? "true" : "false") + "}\n";
}

// Rank `rank`'s inputs: row r starts with 100 * (rank + 1) + r.
float first_column(int rank, std::int64_t row) { return float(100 * (rank + 1) + row); }

void write_inputs(const std::filesystem::path& file, int rank) {
    Tensor x(DType::F32, {kRows, 2});
    for (std::int64_t r = 0; r < kRows; ++r) {
        x.data<float>()[r * 2] = first_column(rank, r);
        x.data<float>()[r * 2 + 1] = -1.0f;
    }
    TensorFile f;
    f.tensors.emplace("x", std::move(x));
    write_safetensors(file, f);
}

std::vector<std::string> predict_args(const TempDir& dir, int rank) {
    return {"predict",   (dir / "model.yaml").string(),
            "--plugins", NNGRAPH_COMM_PROBE_DIR,
            "--inputs",  (dir / ("x" + std::to_string(rank) + ".safetensors")).string(),
            "--out",     (dir / ("y" + std::to_string(rank) + ".safetensors")).string()};
}

// The probe's output: the sum of the first column over the ranks, and what each rank heard.
void check_outputs(const std::filesystem::path& file, int size) {
    constexpr int kMaxRanks = 4;
    const TensorFile f = read_safetensors(file);
    REQUIRE(f.tensors.size() == 1);
    const Tensor& y = f.tensors.begin()->second;
    REQUIRE(y.shape() == Shape{kRows, 1 + 4 * kMaxRanks});
    for (std::int64_t r = 0; r < kRows; ++r) {
        CAPTURE(r);
        const float* row = y.data<float>() + r * (1 + 4 * kMaxRanks);
        float sum = 0.0f;
        for (int k = 0; k < size; ++k) sum += first_column(k, r);
        CHECK(row[0] == sum);
        for (int k = 0; k < kMaxRanks; ++k) {
            CAPTURE(k);
            const float* heard = row + 1 + 4 * k;
            if (k >= size) {
                CHECK((heard[0] == 0.0f && heard[1] == 0.0f && heard[2] == 0.0f && heard[3] == 0.0f));
                continue;
            }
            CHECK(heard[0] == float(k + 1));
            CHECK(heard[1] == float(size));
            CHECK(heard[2] == first_column((k - 1 + size) % size, r));
            CHECK(heard[3] == first_column((k + 1) % size, r));
        }
    }
}

}  // namespace

TEST_CASE("a plugin op exchanges data with the other rank of a 2-rank job through the SDK") {
    TempDir dir;
    write_bytes(dir / "model.yaml", model(false));
    write_inputs(dir / "x0.safetensors", 0);
    write_inputs(dir / "x1.safetensors", 1);
    // One program per rank (MPMD), so that each reads its own inputs; rank 0's outputs show both.
    std::vector<std::string> args{"-np", "1", nngraph_binary().string()};
    for (const std::string& a : predict_args(dir, 0)) args.push_back(a);
    args.insert(args.end(), {":", "-np", "1", nngraph_binary().string()});
    for (const std::string& a : predict_args(dir, 1)) args.push_back(a);
    Mpirun job(dir, args);
    const std::optional<int> status = job.wait(std::chrono::seconds(120));
    REQUIRE(status.has_value());
    REQUIRE_MESSAGE(*status == 0, job.err());
    check_outputs(dir / "y0.safetensors", 2);
}

TEST_CASE("a plugin op in a job of one process talks to itself through the same calls") {
    TempDir dir;
    write_bytes(dir / "model.yaml", model(false));
    write_inputs(dir / "x0.safetensors", 0);
    const CliResult single = run_nngraph(predict_args(dir, 0));
    REQUIRE_MESSAGE(single.status == 0, single.err);
    check_outputs(dir / "y0.safetensors", 1);
}

TEST_CASE("a plugin op that sends to a rank beyond the job fails with the rank and the job's size") {
    TempDir dir;
    write_bytes(dir / "model.yaml", model(true));
    write_inputs(dir / "x0.safetensors", 0);
    const CliResult single = run_nngraph(predict_args(dir, 0));
    CHECK(single.status != 0);
    CHECK_FALSE(single.crashed);
    CHECK_MESSAGE(single.err.find("isend: rank 1 is not in this job of 1 process(es)") != std::string::npos,
                  single.err);
}
