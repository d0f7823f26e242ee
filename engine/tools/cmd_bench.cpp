// nngraph bench: time a model's training step or inference batch, like `caffe time`.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>

#include <nlohmann/json.hpp>

#include "allocation_counter.hpp"
#include "cli.hpp"

namespace nngraph::cli {
namespace {

// Each timed step is kept for the median: a bound keeps that vector and the run finite.
constexpr int kMaxRepetitions = 100'000;
// Products timed for the matmul ceiling, spread evenly among the timed steps.
constexpr int kCeilingSamples = 5;

struct BenchOptions {
    std::string model;
    CommonOptions common;
    std::int64_t batch_size = 0;
    std::string mode = "train";
    int warmup = 5;
    int repetitions = 30;
    bool json = false;
    bool profile = false;
    bool memory = false;
};

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_bytes() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return double(usage.ru_maxrss) * 1024.0;  // Linux reports kilobytes
}

// This process's CPU time over all its threads, as Google Benchmark's cpu_time counts it.
double process_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Google Benchmark's time units: the largest in which `seconds` is at least 100, so the whole
// numbers compare.py prints keep three significant digits.
std::pair<const char*, double> time_unit_for(double seconds) {
    for (const auto& [unit, per_second] : {std::pair<const char*, double>{"s", 1.0}, {"ms", 1e3}, {"us", 1e6}}) {
        if (seconds * per_second >= 100.0) return {unit, per_second};
    }
    return {"ns", 1e9};
}

double fraction(double achieved, double ceiling) { return ceiling > 0 ? achieved / ceiling : 0.0; }

std::string megabytes(double bytes) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f MB", bytes / (1024.0 * 1024.0));
    return buffer;
}

void run_bench(const BenchOptions& o) {
    const Model model = load_model(o.model, o.common);
    if (o.mode != "train" && o.mode != "infer") throw InputError("--mode is train or infer, not '" + o.mode + "'");
    Benchmark bench = model.benchmark({o.batch_size, o.mode == "train", 1});
    bench.sample_matmul_ceilings();  // sets the products up, before the warm-up steps
    for (int i = 0; i < o.warmup; ++i) bench.step();
    const std::int64_t primitives_before = bench.counter("onednn.primitives_created");
    if (o.profile) bench.set_profiling(true);

    std::vector<double> seconds, cpu_seconds, ceiling_f32, ceiling_bf16;
    const int ceiling_samples = std::min(o.repetitions, kCeilingSamples);
    AllocationCount allocations;
    const bool counted = allocation_counting_available();
    for (int r = 0; r < o.repetitions; ++r) {
        if (r == 0) start_counting_allocations();
        // The process CPU clock is a system call (a microsecond or so): read outside the wall-clock span.
        const double cpu_start = process_cpu_seconds();
        const auto start = std::chrono::steady_clock::now();
        bench.step();
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        cpu_seconds.push_back(process_cpu_seconds() - cpu_start);
        if (r == 0) allocations = stop_counting_allocations();
        // The ceiling is sampled among the steps, so that both see the machine in the same state
        // (clock, neighbours); an untimed step after each product brings the model back into cache.
        if ((r + 1) * ceiling_samples / o.repetitions > r * ceiling_samples / o.repetitions) {
            const MatmulCeilings sample = bench.sample_matmul_ceilings();
            ceiling_f32.push_back(sample.f32_gflops);
            ceiling_bf16.push_back(sample.bf16_gflops);
            if (r + 1 < o.repetitions) bench.step();
        }
    }
    const std::int64_t primitives_after = bench.counter("onednn.primitives_created");
    const double median = median_of(seconds);
    std::vector<double> deviations;
    for (double s : seconds) deviations.push_back(std::abs(s - median));
    const double mad = median_of(deviations);
    const auto [fastest, slowest] = std::minmax_element(seconds.begin(), seconds.end());
    const double samples_per_second = double(bench.batch_size()) / median;
    const int threads = bench.threads();
    const std::string name = model.name() + "/" + o.mode + "/batch:" + std::to_string(bench.batch_size()) +
                             "/threads:" + std::to_string(threads);
    // Read before the memory figures: counting the optimiser's state copies it.
    const double peak_rss = peak_rss_bytes();
    const MemoryFigures memory = bench.memory();
    // The work the ops count, read against the matmul ceiling sampled among the timed steps.
    const StepWork work = bench.work();
    const MatmulCeilings ceiling{median_of(ceiling_f32), median_of(ceiling_bf16)};
    const auto [slowest_f32, fastest_f32] = std::minmax_element(ceiling_f32.begin(), ceiling_f32.end());
    const double achieved_gflops = work.flops * 1e-9 / median;

    if (o.json) {
        // Google Benchmark's JSON layout: one iteration run per repetition, then the aggregates.
        char date[64];
        const std::time_t now = std::time(nullptr);
        std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S%z", std::localtime(&now));
        char host[256] = {};
        gethostname(host, sizeof host - 1);
        nlohmann::json out;
        out["context"] = {{"date", date},
                          {"host_name", host},
                          {"executable", "nngraph bench"},
                          {"num_cpus", sysconf(_SC_NPROCESSORS_ONLN)},
                          {"library_build_type", "release"},
                          {"model", o.model}};
        // Named copies rather than a structured binding, which lambdas capture only from clang 16.
        const std::pair<const char*, double> chosen_unit = time_unit_for(median);
        const char* const unit = chosen_unit.first;
        const double per_second = chosen_unit.second;
        // Every figure of one repetition; an aggregate row holds the same statistic of each, as
        // Google Benchmark aggregates its counters.
        struct Row {
            double real, cpu, samples_per_second, gflops;
        };
        std::vector<Row> rows;
        for (int r = 0; r < o.repetitions; ++r) {
            const std::size_t i = static_cast<std::size_t>(r);
            rows.push_back(
                {seconds[i], cpu_seconds[i], double(bench.batch_size()) / seconds[i], work.flops * 1e-9 / seconds[i]});
        }
        auto entry = [&](const std::string& run_name, const Row& row, const char* run_type) {
            nlohmann::json b = {{"name", run_name},
                                {"family_index", 0},
                                {"per_family_instance_index", 0},
                                {"run_name", name},
                                {"run_type", run_type},
                                {"repetitions", o.repetitions},
                                {"threads", threads},
                                {"iterations", 1},
                                {"real_time", row.real * per_second},
                                {"cpu_time", row.cpu * per_second},
                                {"time_unit", unit},
                                {"samples_per_second", row.samples_per_second},
                                {"gflops", row.gflops},
                                {"fraction_of_f32_ceiling", fraction(row.gflops, ceiling.f32_gflops)},
                                {"fraction_of_bf16_ceiling", fraction(row.gflops, ceiling.bf16_gflops)}};
            return b;
        };
        // Figures that do not vary by repetition: on the iteration rows, and as themselves on the
        // median, min and max rows (their deviation is 0).
        auto constant_counters = [&](nlohmann::json& b, double scale) {
            b["batch_size"] = double(bench.batch_size()) * scale;
            b["peak_rss_bytes"] = peak_rss * scale;
            b["arena_bytes"] = double(memory.arena_bytes) * scale;
            b["inference_slices"] = double(memory.slices) * scale;
            b["bytes_allocated_per_step"] = double(allocations.bytes) * scale;
            b["allocations_per_step"] = double(allocations.calls) * scale;
            b["aligned_allocations_per_step"] = double(allocations.aligned_calls) * scale;
            b["aligned_bytes_per_step"] = double(allocations.aligned_bytes) * scale;
            b["primitives_created"] = double(primitives_after) * scale;
            b["gflop_per_step"] = work.flops * 1e-9 * scale;
            b["bytes_per_step"] = work.bytes * scale;
            b["ceiling_f32_gflops"] = ceiling.f32_gflops * scale;
            b["ceiling_bf16_gflops"] = ceiling.bf16_gflops * scale;
        };
        for (int r = 0; r < o.repetitions; ++r) {
            nlohmann::json b = entry(name, rows[static_cast<std::size_t>(r)], "iteration");
            b["repetition_index"] = r;
            constant_counters(b, 1.0);
            out["benchmarks"].push_back(b);
        }
        auto statistic = [&](const char* aggregate, double Row::*field) {
            std::vector<double> values;
            for (const Row& row : rows) values.push_back(row.*field);
            const std::string a = aggregate;
            if (a == "min") return *std::min_element(values.begin(), values.end());
            if (a == "max") return *std::max_element(values.begin(), values.end());
            const double middle = median_of(values);
            if (a == "median") return middle;
            for (double& v : values) v = std::abs(v - middle);
            return median_of(values);
        };
        for (const char* aggregate : {"median", "min", "max", "mad"}) {
            const Row row{statistic(aggregate, &Row::real), statistic(aggregate, &Row::cpu),
                          statistic(aggregate, &Row::samples_per_second), statistic(aggregate, &Row::gflops)};
            nlohmann::json b = entry(name + "_" + aggregate, row, "aggregate");
            b["aggregate_name"] = aggregate;
            b["aggregate_unit"] = "time";
            constant_counters(b, std::string(aggregate) == "mad" ? 0.0 : 1.0);
            out["benchmarks"].push_back(b);
        }
        std::cout << out.dump(2) << "\n";
        return;
    }

    std::printf("nngraph bench %s: %s, batch %lld, %d thread%s\n", o.model.c_str(),
                o.mode == "train" ? "training step" : "inference batch", static_cast<long long>(bench.batch_size()),
                threads, threads == 1 ? "" : "s");
    std::printf("steps:       %d warm-up, %d timed\n", o.warmup, o.repetitions);
    std::printf("step time:   median %.3f ms (min %.3f, max %.3f, median absolute deviation %.3f)\n", median * 1e3,
                *fastest * 1e3, *slowest * 1e3, mad * 1e3);
    std::printf("throughput:  %.0f samples/s\n", samples_per_second);
    std::printf("work:        %.4f GFLOP and %s moved a step (%.1f FLOP a byte); %.1f GFLOP/s achieved\n",
                work.flops * 1e-9, megabytes(work.bytes).c_str(), work.bytes > 0 ? work.flops / work.bytes : 0.0,
                achieved_gflops);
    std::printf(
        "ceiling:     2048-cube matmul through Dense, %d products among the timed steps: f32 median %.1f "
        "GFLOP/s (%.1f to %.1f)",
        ceiling_samples, ceiling.f32_gflops, *slowest_f32, *fastest_f32);
    if (ceiling.bf16_gflops > 0) std::printf(", bf16 median %.1f GFLOP/s", ceiling.bf16_gflops);
    std::printf("; this step runs at %.3f of the f32 ceiling", fraction(achieved_gflops, ceiling.f32_gflops));
    if (ceiling.bf16_gflops > 0)
        std::printf(" and %.3f of the bf16 one", fraction(achieved_gflops, ceiling.bf16_gflops));
    std::printf("\n");
    std::printf("memory:      peak RSS %s; arena %s", megabytes(peak_rss).c_str(),
                megabytes(double(memory.arena_bytes)).c_str());
    if (memory.slices > 1) std::printf(" (the batch in %lld slices)", static_cast<long long>(memory.slices));
    if (bench.training())
        std::printf(" (activations backward needs %s)", megabytes(double(memory.backward_bytes)).c_str());
    std::printf(", weights %s", megabytes(double(memory.weight_bytes)).c_str());
    if (bench.training())
        std::printf(", gradients and optimizer state %s", megabytes(double(memory.optimizer_bytes)).c_str());
    std::printf("\noneDNN:      %lld primitives created (%lld during the timed steps)\n",
                static_cast<long long>(primitives_after), static_cast<long long>(primitives_after - primitives_before));
    if (counted) {
        std::printf("heap:        %lld allocations (largest %lld bytes), %lld bytes in all, in one steady-state step\n",
                    static_cast<long long>(allocations.calls), static_cast<long long>(allocations.largest),
                    static_cast<long long>(allocations.bytes));
        std::printf(
            "aligned:     %lld blocks, %lld bytes in all, in that step (posix_memalign and aligned_alloc: "
            "oneDNN's own buffers, outside the arena)\n",
            static_cast<long long>(allocations.aligned_calls), static_cast<long long>(allocations.aligned_bytes));
    } else {
        std::printf("heap:        not counted in this build (AddressSanitizer owns operator new)\n");
    }

    if (o.memory) std::printf("\nMemory plan: %s", bench.memory_report().c_str());

    if (o.profile) {
        const std::vector<NodeTiming> profile = bench.profile();
        std::size_t width = 4;
        for (const NodeTiming& t : profile) width = std::max(width, t.node.size());
        std::printf(
            "\nAverage time per node (ms), its work (MFLOP), rate (GFLOP/s) and fraction of the f32 ceiling:\n"
            "%-*s  %-22s %9s %9s %9s %9s %9s %9s %9s %9s\n",
            static_cast<int>(width), "node", "op", "forward", "backward", "fwd MFLOP", "bwd MFLOP", "fwd GF/s",
            "bwd GF/s", "fwd frac", "bwd frac");
        double forward = 0, backward = 0;
        const auto rate = [](double flops, double seconds) { return seconds > 0 ? flops * 1e-9 / seconds : 0.0; };
        for (const NodeTiming& t : profile) {
            forward += t.forward_seconds;
            backward += t.backward_seconds;
            const double f = rate(t.forward_flops, t.forward_seconds), b = rate(t.backward_flops, t.backward_seconds);
            std::printf("%-*s  %-22s %9.3f %9.3f %9.2f %9.2f %9.1f %9.1f %9.3f %9.3f\n", static_cast<int>(width),
                        t.node.c_str(), t.op.c_str(), t.forward_seconds * 1e3, t.backward_seconds * 1e3,
                        t.forward_flops * 1e-6, t.backward_flops * 1e-6, f, b, fraction(f, ceiling.f32_gflops),
                        fraction(b, ceiling.f32_gflops));
        }
        std::printf("%-*s  %-22s %9.3f %9.3f\n", static_cast<int>(width), "total", "", forward * 1e3, backward * 1e3);
        std::printf(
            "Average forward pass: %.3f ms; backward pass: %.3f ms; the rest of the step (loss, optimizer, batch "
            "copy): %.3f ms\n",
            forward * 1e3, backward * 1e3, std::max(0.0, median - forward - backward) * 1e3);
    }
}

}  // namespace

void add_bench_commands(CLI::App& app) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* bench = app.add_subcommand("bench", "Time a model's training step or inference batch");
    bench->add_option("model", o->model, "Model file (YAML)")->required();
    bench->add_option("--batch-size", o->batch_size, "Batch size (default: the file's training.batch_size, else 32)")
        ->check(count_in(1, kMaxBatchSize));
    bench->add_option("--mode", o->mode, "train (forward, loss, backward, optimizer) or infer")
        ->check(CLI::IsMember({"train", "infer"}));
    bench->add_option("--warmup", o->warmup, "Untimed steps first")->check(count_in(0, kMaxRepetitions));
    bench->add_option("--repetitions", o->repetitions, "Timed steps")->check(count_in(1, kMaxRepetitions));
    bench->add_flag("--json", o->json, "Print Google Benchmark's JSON layout");
    bench->add_flag("--profile", o->profile, "Also print the time of every node's forward and backward");
    bench->add_flag("--memory", o->memory, "Also print the step's memory plan: the buffers alive at its peak");
    add_common_options(*bench, o->common);
    bench->callback([o] { run_bench(*o); });
}

}  // namespace nngraph::cli
