// Ring attention (implementation: ring) equals single-process blockwise attention to 1e-5 on the
// output and every gradient (inputs and weights), under mpirun with 2, 3 and 4 ranks: with and
// without padding masks, causal (zigzag and contiguous layouts), dropout and a window, for both
// Attention and MultiHeadAttention. Each case runs ring_attention_driver, which compares on every
// rank and exits 0 only when all agree.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mpirun.hpp"
#include "temp_dir.hpp"

using namespace nngraph::testing;

namespace {

void check_ring(int ranks, const std::vector<std::string>& driver_args) {
    TempDir dir;
    std::vector<std::string> args{"--oversubscribe", "-np", std::to_string(ranks), NNGRAPH_RING_DRIVER};
    args.insert(args.end(), driver_args.begin(), driver_args.end());
    Mpirun job(dir, args);
    const std::optional<int> status = job.wait(std::chrono::seconds(180));
    REQUIRE(status.has_value());
    INFO(job.out() << job.err());
    CHECK(*status == 0);
    CHECK(job.out().find("output: worst relative error") != std::string::npos);
}

}  // namespace

TEST_CASE("ring attention equals blockwise attention across 2, 3 and 4 ranks") {
    const std::vector<std::vector<std::string>> cases = {
        {},
        {"--masks"},
        {"--causal"},
        {"--causal", "--masks"},
        {"--causal", "--contiguous"},
        {"--dropout"},
        {"--causal", "--dropout", "--masks"},
        {"--window", "50"},
        {"--causal", "--window", "90"},
    };
    for (const char* op : {"Attention", "MultiHeadAttention"}) {
        for (int ranks : {2, 3, 4}) {
            for (const auto& c : cases) {
                std::vector<std::string> args{op};
                args.insert(args.end(), c.begin(), c.end());
                std::string label;
                for (const std::string& a : args) label += a + " ";
                CAPTURE(label);
                CAPTURE(ranks);
                check_ring(ranks, args);
            }
        }
    }
}
