// Every model file in graphs/, registered from the files themselves: a training step at the file's
// batch size, and inference batches of 1, the file's batch size and 256.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "allocation_counter.hpp"
#include "bench/graph_benchmark.hpp"
#include "graph/graph.hpp"
#include "train/training_config.hpp"

namespace fs = std::filesystem;
using namespace nngraph;

namespace {

void run_graph(benchmark::State& state, const fs::path& file, std::int64_t batch, bool train) {
    GraphBenchmark bench(Graph::load(file), {batch, train, static_cast<int>(state.range(0)), 1});
    bench.step();  // plans, arena and primitives
    bench.step();
    start_counting_allocations();
    bench.step();
    const std::int64_t allocated = stop_counting_allocations().bytes;
    for (auto _ : state) bench.step();
    state.counters["samples/s"] =
        benchmark::Counter(double(bench.batch()) * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["bytes_allocated_per_step"] = double(allocated);
    state.counters["arena_MB"] = double(bench.executor().stats().arena_bytes) / (1024.0 * 1024.0);
    double flops = 0.0;  // as the ops count it
    for (const Executor::NodeWork& w : bench.executor().last_plan_work())
        flops += double(w.forward_flops + w.backward_flops);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(fs::path(NNGRAPH_SOURCE_DIR) / "graphs")) {
        if (entry.path().extension() == ".yaml") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
        const auto graph = Graph::load(file);
        const std::string name = file.stem().string();
        const TrainingConfig config = parse_training_config(graph->spec());
        if (!config.loss.empty()) {
            benchmark::RegisterBenchmark(
                ("graph/" + name + "/train/batch:" + std::to_string(config.batch_size)).c_str(),
                [file, config](benchmark::State& s) { run_graph(s, file, config.batch_size, true); })
                ->Arg(2)
                ->ArgName("threads")
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
        for (std::int64_t batch : {std::int64_t{1}, config.batch_size, std::int64_t{256}}) {
            benchmark::RegisterBenchmark(("graph/" + name + "/infer/batch:" + std::to_string(batch)).c_str(),
                                         [file, batch](benchmark::State& s) { run_graph(s, file, batch, false); })
                ->Arg(2)
                ->ArgName("threads")
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
