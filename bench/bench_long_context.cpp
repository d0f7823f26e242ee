// Long-context attention: one head of width 64 (Attention with scale 1/8, batch 1, self-attention),
// forward + backward, over 1,024 to 65,536 steps, for every core: dense (as far as memory allows),
// blockwise, a sliding window, block-sparse and adaptive span; and Linformer, which is an option of
// MultiHeadAttention (one head of 64, projections included); Reformer's LSH attention (chunks of 64,
// 1 and 4 hash rounds) beside blockwise, as one head of 64 and as MultiHeadAttention's 4 heads of
// 16 (projections included in both). Besides the time, each run reports
//   io_MB      inputs + outputs + their gradients (the op's unavoidable memory),
//   op_MB      that plus the op's saved buffers and declared scratch,
//   peak_MB    the growth of the process's peak resident memory over the run (VmHWM after
//              clearing it, minus the resident memory before the op's tensors were made): what
//              the op really touched, its temporary buffers included,
//   peak/io    the ratio the long-context cores keep under 2.
// Large blocks are mapped and unmapped one by one (mallopt), so memory freed by one run is not
// reused unseen by the next; still, the plugin's per-thread tile buffers only grow, so run each
// variant in a process of its own (--benchmark_filter=long_context/blockwise/) for its peaks.
//
// tile/onednn_matmul measures one oneDNN matmul call of a 64 x 64 x 64 tile product on one
// thread: the alternative to the tiled core's own kernels, whose whole tile step (two products,
// the online softmax) it should beat to be worth calling.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <fstream>
#include <string>

#include "gradcheck.hpp"
#include "matmul_bench.hpp"
#include "nngraph/onednn.hpp"
#include "op_runner.hpp"

using namespace nngraph;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

// A /proc/self/status field in bytes (VmRSS, VmHWM).
double status_bytes(const std::string& field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) * 1024.0;
    }
    return 0.0;
}
// Resets VmHWM to the current resident size (Linux 4.0 and later).
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

double bytes_of(const std::vector<Tensor>& tensors) {
    double sum = 0.0;
    for (const Tensor& t : tensors) sum += double(t.nbytes());
    return sum;
}

struct Variant {
    std::string name, attributes;
    std::int64_t max_steps;
    std::string op = "Attention";  // MultiHeadAttention: self-attention on one input
};

void run(benchmark::State& state, const Variant& v) {
    const std::int64_t steps = state.range(0);
    const int threads = 2;
    reset_peak();
    const double before = status_bytes("VmRSS");
    const TensorInfo x{DType::F32, {1, steps, 64}};
    const bool self = v.op != "Attention";
    OpRunner runner(v.op, v.attributes, self ? std::vector<TensorInfo>{x} : std::vector<TensorInfo>{x, x}, {}, true);
    for (std::size_t i = 0; i < runner.inputs().size(); ++i) fill_uniform(runner.inputs()[i], -1.0, 1.0, i + 1);
    runner.initialize_weights(3);
    Tensor dy(DType::F32, {1, steps, 64});
    fill_uniform(dy, -1.0, 1.0, 4);
    const auto step = [&] {
        runner.forward(true, 5, false, threads);
        runner.backward({dy}, 5, {}, threads);
    };
    step();  // primitives and buffers
    for (auto _ : state) step();
    const double peak = status_bytes("VmHWM") - before;
    const double io =
        bytes_of(runner.inputs()) + bytes_of(runner.outputs()) + bytes_of(runner.grad_inputs()) + double(dy.nbytes());
    const double op = io + double(runner.declared_bytes());
    constexpr double kMB = 1024.0 * 1024.0;
    state.counters["io_MB"] = io / kMB;
    state.counters["op_MB"] = op / kMB;
    state.counters["peak_MB"] = peak / kMB;
    state.counters["peak/io"] = peak / io;
    state.counters["steps/s"] =
        benchmark::Counter(double(steps) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void tile_matmul(benchmark::State& state) { bench::square_matmul(state, 1, true); }

}  // namespace

int main(int argc, char** argv) {
    mallopt(M_MMAP_THRESHOLD, 1 << 16);
    mallopt(M_TRIM_THRESHOLD, 1 << 16);
    const std::vector<Variant> variants = {
        {"dense", "{scale: 0.125}", 16384},
        {"blockwise", "{scale: 0.125, implementation: blockwise}", 65536},
        {"window_256", "{scale: 0.125, window: 256}", 65536},
        {"window_256_causal", "{scale: 0.125, window: 256, use_causal_mask: true}", 65536},
        {"block_sparse_64x2_stride_16", "{scale: 0.125, sparsity: {block_size: 64, local_blocks: 2, stride: 16}}",
         65536},
        {"adaptive_span_256", "{scale: 0.125, adaptive_span: {max_span: 256, ramp: 32, init: 256}}", 65536},
        // One head of 64 with its projections; E and F are (256, steps) weights (not in io_MB).
        {"linformer_256", "{num_heads: 1, key_dim: 64, linformer: {k: 256}}", 65536, "MultiHeadAttention"},
        {"lsh_1x64", "{scale: 0.125, lsh: {num_hashes: 1, bucket_size: 64}}", 65536},
        {"lsh_4x64", "{scale: 0.125, lsh: {num_hashes: 4, bucket_size: 64}}", 65536},
        {"heads_4x16_blockwise", "{num_heads: 4, key_dim: 16, implementation: blockwise}", 65536, "MultiHeadAttention"},
        {"heads_4x16_lsh_4x64", "{num_heads: 4, key_dim: 16, lsh: {num_hashes: 4, bucket_size: 64}}", 65536,
         "MultiHeadAttention"},
    };
    for (const Variant& v : variants) {
        auto* b =
            benchmark::RegisterBenchmark(("long_context/" + v.name).c_str(), [v](benchmark::State& s) { run(s, v); });
        for (std::int64_t steps = 1024; steps <= v.max_steps; steps *= 2) b->Arg(steps);
        b->ArgName("steps")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
    }
    benchmark::RegisterBenchmark("tile/onednn_matmul", tile_matmul)
        ->Arg(64)
        ->ArgName("n")
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
