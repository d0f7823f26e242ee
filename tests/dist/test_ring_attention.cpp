// Ring attention (implementation: ring) equals single-process blockwise attention to 1e-5 on the
// output and every gradient (inputs and weights, the latter summed over the ranks), under mpirun
// with 2, 3 and 4 ranks: with and without padding masks, causal (zigzag and contiguous layouts),
// dropout and a window, for both Attention and MultiHeadAttention; and under mixed_bfloat16. Each
// case runs ring_attention_driver, which compares on every rank and exits 0 only when all agree.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mpirun.hpp"
#include "nngraph/cpu.hpp"
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

TEST_CASE("ring attention equals blockwise attention when pairs split a piece into key chunks") {
    // Pieces of 4,160 steps: a chunk of 4,096 keys and one of 64. Weight gradients here sum every
    // key's gradient over thousands of query rows, in float and in another order (chunk by chunk,
    // rank by rank) than one process's tile by tile, which parts them by up to 3e-5 of max(1, |v|);
    // outputs and input gradients keep 1e-5.
    const std::vector<std::string> weights{"--weight-tolerance", "5e-5"};
    for (const std::vector<std::string>& c : std::vector<std::vector<std::string>>{
             {"MultiHeadAttention", "--causal", "--masks"}, {"Attention", "--dropout", "--masks"}}) {
        std::vector<std::string> args = c;
        args.insert(args.end(), {"--contiguous", "--piece", "4160"});
        args.insert(args.end(), weights.begin(), weights.end());
        CAPTURE(args[0]);
        check_ring(2, args);
    }
}

TEST_CASE("under mixed_bfloat16 ring attention equals blockwise attention across 2 and 4 ranks") {
    // Both round their tile products' operands to bf16, but at tiles cut at other places (each
    // rank's share, blocks passed around the ring), so their f32 sums part by up to 4.2e-3 of
    // max(1, |v|) over these cases; a missing or misplaced block parts them by far more.
    if (!nng::cpu::has_bfloat16_dot_product()) {
        MESSAGE("this CPU has no AVX512_BF16: mixed_bfloat16 is refused here, nothing to compare");
        return;
    }
    const std::vector<std::vector<std::string>> cases = {
        {"--masks"}, {"--causal", "--dropout", "--masks"}, {"--window", "50"}};
    for (const char* op : {"Attention", "MultiHeadAttention"}) {
        for (int ranks : {2, 4}) {
            for (const auto& c : cases) {
                std::vector<std::string> args{op};
                args.insert(args.end(), c.begin(), c.end());
                args.insert(args.end(), {"--bfloat16", "1e-2"});
                CAPTURE(args[0]);
                CAPTURE(args[1]);
                CAPTURE(ranks);
                check_ring(ranks, args);
            }
        }
    }
}
