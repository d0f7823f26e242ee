// nngraph::Benchmark: the public face of GraphBenchmark, and the plugin catalog.
#include <unistd.h>

#include <algorithm>

#include "api/model_state.hpp"
#include "bench/graph_benchmark.hpp"
#include "bench/matmul_ceiling.hpp"
#include "plugins/plugin_library.hpp"

namespace nngraph {

struct Benchmark::State {
    std::shared_ptr<const Graph> graph;
    GraphBenchmark bench;
    std::unique_ptr<MatmulCeilingMeter> ceiling_meter;  // set up by the first sample
};

Benchmark::Benchmark(std::unique_ptr<State> state) : state_(std::move(state)) {}
Benchmark::Benchmark(Benchmark&&) noexcept = default;
Benchmark& Benchmark::operator=(Benchmark&&) noexcept = default;
Benchmark::~Benchmark() = default;

void Benchmark::step() { state_->bench.step(); }
std::int64_t Benchmark::batch_size() const { return state_->bench.batch(); }
bool Benchmark::training() const { return state_->bench.training(); }

int Benchmark::threads() const {
    const int chosen = state_->bench.executor().options().threads;
    return chosen > 0 ? chosen : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
}

void Benchmark::set_profiling(bool on) { state_->bench.executor().set_profiling(on); }

std::vector<NodeTiming> Benchmark::profile() const {
    const Graph& graph = *state_->graph;
    const auto& times = state_->bench.executor().profile();
    const auto work = state_->bench.executor().last_plan_work();
    std::vector<NodeTiming> out;
    for (NodeId id : graph.order()) {
        const GraphNode& node = graph.node(id);
        if (node.is_input) continue;
        const auto& t = times.at(static_cast<std::size_t>(id));
        const Executor::NodeWork& w = work.at(static_cast<std::size_t>(id));
        out.push_back({node.name, node.op, t.forward_calls ? t.forward_seconds / double(t.forward_calls) : 0.0,
                       t.backward_calls ? t.backward_seconds / double(t.backward_calls) : 0.0, double(w.forward_flops),
                       double(w.backward_flops), double(w.forward_bytes), double(w.backward_bytes)});
    }
    return out;
}

MemoryFigures Benchmark::memory() const {
    GraphBenchmark& bench = state_->bench;
    MemoryFigures m;
    m.arena_bytes = bench.executor().stats().arena_bytes;
    m.weight_bytes = bench.weight_bytes();
    m.slices = std::max<std::int64_t>(bench.executor().stats().last_run_slices, 1);
    if (bench.training()) {
        m.backward_bytes = bench.executor().last_plan_backward_bytes();
        m.optimizer_bytes = bench.optimizer_bytes();
    }
    return m;
}

std::string Benchmark::memory_report() const { return state_->bench.executor().last_plan_memory_report(); }

std::int64_t Benchmark::counter(const std::string& name) const {
    const auto counters = state_->graph->registry().counters();
    auto it = counters.find(name);
    return it == counters.end() ? 0 : it->second;
}

StepWork Benchmark::work() const {
    StepWork total;
    for (const Executor::NodeWork& w : state_->bench.executor().last_plan_work()) {
        total.flops += double(w.forward_flops + w.backward_flops);
        total.bytes += double(w.forward_bytes + w.backward_bytes);
    }
    return total;
}

MatmulCeilings Benchmark::measure_matmul_ceilings() const {
    const MatmulCeiling c = measure_matmul_ceiling(*state_->graph, state_->bench.executor().options().threads);
    return {c.f32_gflops, c.bf16_gflops};
}

MatmulCeilings Benchmark::sample_matmul_ceilings() {
    if (!state_->ceiling_meter)
        state_->ceiling_meter =
            std::make_unique<MatmulCeilingMeter>(*state_->graph, state_->bench.executor().options().threads);
    const MatmulCeiling c = state_->ceiling_meter->sample();
    return {c.f32_gflops, c.bf16_gflops};
}

Benchmark Model::benchmark(const BenchmarkOptions& options) const {
    if (options.batch_size < 0 || options.batch_size > kMaxBatchSize) {
        throw InputError("a benchmark's batch size is from 1 to " + std::to_string(kMaxBatchSize) +
                         " (or 0 for the model's), not " + std::to_string(options.batch_size));
    }
    return Benchmark(std::unique_ptr<Benchmark::State>(new Benchmark::State{
        state_->graph,
        GraphBenchmark(state_->graph, {options.batch_size, options.train, state_->threads, options.seed})}));
}

PluginCatalog list_plugins(const std::vector<std::filesystem::path>& plugin_dirs) {
    PluginSearch search;
    search.command_line = plugin_dirs;
    const OpRegistry registry = OpRegistry::load(search);
    PluginCatalog catalog;
    for (const auto& [name, op] : registry.ops())
        catalog.ops.push_back({name, op.library->name(), op.plugin_version(), op.plugin_path()});
    catalog.plugins = registry.libraries().size();
    catalog.searched = registry.searched();
    return catalog;
}

}  // namespace nngraph
