// Every op at the IMDB shapes (batch 64, 200 steps, width 32, LSTM 100 units), forward (inference)
// and forward+backward (training), driven through the plugin ABI; Attention and
// MultiHeadAttention over sequence lengths 128 to 4096; oneDNN's own matmul as the ceiling, and
// the dense attention core's products and symmetric softmax at the IMDB shapes on one thread.
#include <benchmark/benchmark.h>

#include <chrono>

#include "allocation_counter.hpp"
#include "gradcheck.hpp"
#include "matmul_bench.hpp"
#include "nngraph/onednn.hpp"
#include "op_runner.hpp"
#include "symmetric_softmax.hpp"

using namespace nngraph;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

struct OpBench {
    std::string name;
    std::string op, attributes;
    std::vector<TensorInfo> inputs;
    double id_bound = 0;       // integer inputs: ids below this
    double forward_flops = 0;  // arithmetic of one forward, when known
    double backward_flops = 0;
};

void run_op(benchmark::State& state, const OpBench& b, bool with_backward) {
    const int threads = static_cast<int>(state.range(0));
    nng::onednn::set_num_threads(threads);
    OpRunner runner(b.op, b.attributes, b.inputs, {}, with_backward);
    for (std::size_t i = 0; i < b.inputs.size(); ++i) {
        const bool ids = b.inputs[i].dtype != DType::F32;
        fill_uniform(runner.inputs()[i], ids ? 0.0 : -1.0, ids ? b.id_bound : 1.0, i + 1);
    }
    std::vector<Tensor> grads;
    for (const Tensor& out : runner.outputs()) {
        grads.emplace_back(out.dtype(), out.shape());
        if (out.dtype() == DType::F32) fill_uniform(grads.back(), -1.0, 1.0, 7);
    }
    auto step = [&] {
        runner.forward(with_backward, 3, false, threads);
        if (with_backward) runner.backward(grads, 3, {}, threads);
    };
    step();
    start_counting_allocations();
    step();
    const std::int64_t allocated = stop_counting_allocations().bytes;
    for (auto _ : state) step();
    const double flops = b.forward_flops + (with_backward ? b.backward_flops : 0.0);
    if (flops > 0)
        state.counters["GFLOP/s"] =
            benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["samples/s"] =
        benchmark::Counter(double(b.inputs[0].shape[0]) * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["bytes_allocated_per_step"] = double(allocated);
}

std::vector<OpBench> imdb_cases() {
    const std::int64_t B = 64, T = 200, D = 32, U = 100;
    const TensorInfo sequence{DType::F32, {B, T, D}};
    const double attention_forward = 4.0 * B * T * T * D;
    const double lstm_forward = 2.0 * B * T * (D + U) * 4 * U;
    return {
        {"Embedding/5000x32", "Embedding", "{input_dim: 5000, output_dim: 32}", {{DType::I32, {B, T}}}, 5000},
        {"Dropout/0.5", "Dropout", "{rate: 0.5}", {sequence}},
        {"Attention/self", "Attention", "{}", {sequence, sequence}, 0, attention_forward, 2 * attention_forward},
        {"MultiHeadAttention/2x16",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 16}",
         {sequence},
         0,
         4.0 * B * T * T * D + 2.0 * B * T * D * D * 4,
         2 * (4.0 * B * T * T * D + 2.0 * B * T * D * D * 4)},
        {"GlobalAveragePooling1D", "GlobalAveragePooling1D", "{}", {sequence}},
        {"MaxPooling1D/2", "MaxPooling1D", "{pool_size: 2}", {sequence}},
        {"LayerNormalization", "LayerNormalization", "{}", {sequence}},
        {"LSTM/100/last", "LSTM", "{units: 100}", {sequence}, 0, lstm_forward, 2 * lstm_forward},
        {"LSTM/100/sequences",
         "LSTM",
         "{units: 100, return_sequences: true}",
         {sequence},
         0,
         lstm_forward,
         2 * lstm_forward},
        {"Dense/350/relu",
         "Dense",
         "{units: 350, activation: relu}",
         {{DType::F32, {B, U}}},
         0,
         2.0 * B * U * 350,
         4.0 * B * U * 350},
        {"Dense/1/sigmoid",
         "Dense",
         "{units: 1, activation: sigmoid}",
         {{DType::F32, {B, D}}},
         0,
         2.0 * B * D,
         4.0 * B * D},
        {"Add", "Add", "{}", {sequence, sequence}},
    };
}

void matmul_ceiling(benchmark::State& state) { bench::square_matmul(state, static_cast<int>(state.range(1)), false); }

// One thread's products in the dense attention core at the IMDB shapes: C (G, M, N) = A·B (or
// A·Bᵀ) for G samples through sgemm_each_group, as a part of the batch runs them. Read against
// the one-thread ceiling: how close the products alone come to it.
void attention_products(benchmark::State& state) {
    namespace dnn = nng::onednn;
    dnn::set_num_threads(1);
    const std::int64_t m = state.range(0), n = state.range(1), k = state.range(2), groups = 32;
    const bool transpose_b = state.range(3) != 0;
    Tensor a(DType::F32, {groups, m, k}), b(DType::F32, {groups, k, n}), c(DType::F32, {groups, m, n});
    fill_uniform(a, -1, 1, 1);
    fill_uniform(b, -1, 1, 2);
    const auto f32 = dnnl::memory::data_type::f32;
    const dnn::View va = dnn::view(a.raw(), f32, {groups, m, k}), vc = dnn::view(c.raw(), f32, {groups, m, n});
    const dnn::View vb =
        transpose_b ? dnn::view(b.raw(), f32, {groups, n, k}).transposed() : dnn::view(b.raw(), f32, {groups, k, n});
    if (!dnn::sgemm_each_group(va, vb, vc)) {
        state.SkipWithError("sgemm_each_group refused the views");
        return;
    }
    for (auto _ : state) dnn::sgemm_each_group(va, vb, vc);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(groups * m * n * k) * 1e-9 * double(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

// Attention [x, x]'s softmax at the IMDB shapes on one thread, a part of the dense core at a
// time: 3 samples of 200 x 200 scores s = x·xᵀ through symmetric_softmax (forward, division
// deferred), or their dL/dP through symmetrized_softmax_backward. Each iteration copies its input
// in outside the timed span, so that it is in cache as the part's product leaves it; backward
// reads the exponentials of a different part of a 64-sample batch each time, as training reads
// them back from memory.
void symmetric_softmax_kernel(benchmark::State& state) {
    const bool backward = state.range(0) != 0;
    const std::int64_t part = 3, batch = 64, t = 200, d = 32, scores = t * t;
    Tensor x(DType::F32, {batch, t, d}), saved(DType::F32, {batch, t, t}), input(DType::F32, {part, t, t});
    Tensor work(DType::F32, {part, t, t}), sums(DType::F32, {batch, t});
    Tensor scratch(DType::F32, {nngraph_attention::symmetric_softmax_scratch(t)});
    fill_uniform(x, -0.25, 0.25, 3);
    namespace dnn = nng::onednn;
    const auto f32 = dnnl::memory::data_type::f32;
    const dnn::View vx = dnn::view(x.raw(), f32, {batch, t, d});
    dnn::matmul(vx, vx.transposed(), dnn::view(saved.raw(), f32, {batch, t, t}));  // x·xᵀ, as the core's product
    float* s = saved.data<float>();
    std::copy(s, s + input.numel(), input.data<float>());
    for (std::int64_t g = 0; g < batch; ++g) {  // the saved exponentials backward reads
        if (!nngraph_attention::symmetric_softmax(s + g * scores, t, sums.data<float>() + g * t,
                                                  scratch.data<float>())) {
            state.SkipWithError("symmetric_softmax refused the Gram matrix");
            return;
        }
    }
    if (backward) fill_uniform(input, -1, 1, 4);  // dL/dP
    std::int64_t first = 0;                       // the part's first sample in the batch
    for (auto _ : state) {
        std::copy(input.data<float>(), input.data<float>() + input.numel(), work.data<float>());
        const auto start = std::chrono::steady_clock::now();
        for (std::int64_t g = 0; g < part; ++g) {
            float* w = work.data<float>() + g * scores;
            float* row_sums = sums.data<float>() + (first + g) * t;
            if (backward)
                nngraph_attention::symmetrized_softmax_backward(s + (first + g) * scores, w, row_sums, t);
            else
                benchmark::DoNotOptimize(nngraph_attention::symmetric_softmax(w, t, row_sums, scratch.data<float>()));
        }
        benchmark::ClobberMemory();
        state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        first = (first + part) % (batch - part + 1);
    }
    state.counters["per_sample"] = benchmark::Counter(double(part) * double(state.iterations()),
                                                      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

int main(int argc, char** argv) {
    for (const OpBench& b : imdb_cases()) {
        benchmark::RegisterBenchmark(("op/" + b.name + "/forward").c_str(),
                                     [b](benchmark::State& s) { run_op(s, b, false); })
            ->Arg(2)
            ->ArgName("threads")
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        benchmark::RegisterBenchmark(("op/" + b.name + "/forward_backward").c_str(),
                                     [b](benchmark::State& s) { run_op(s, b, true); })
            ->Arg(2)
            ->ArgName("threads")
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
    // One head of width 64 over long sequences (batch 1): the long-context scaling.
    for (std::int64_t steps = 128; steps <= 4096; steps *= 2) {
        const TensorInfo x{DType::F32, {1, steps, 64}};
        const double forward = 4.0 * steps * steps * 64;
        const OpBench attention{
            "Attention/steps:" + std::to_string(steps), "Attention", "{}", {x, x}, 0, forward, 2 * forward};
        benchmark::RegisterBenchmark(("op/" + attention.name + "/forward_backward").c_str(),
                                     [attention](benchmark::State& s) { run_op(s, attention, true); })
            ->Arg(2)
            ->ArgName("threads")
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        const OpBench mha{"MultiHeadAttention/1x64/steps:" + std::to_string(steps),
                          "MultiHeadAttention",
                          "{num_heads: 1, key_dim: 64}",
                          {x},
                          0,
                          forward + 8.0 * steps * 64 * 64,
                          2 * (forward + 8.0 * steps * 64 * 64)};
        benchmark::RegisterBenchmark(("op/" + mha.name + "/forward_backward").c_str(),
                                     [mha](benchmark::State& s) { run_op(s, mha, true); })
            ->Arg(2)
            ->ArgName("threads")
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
    benchmark::RegisterBenchmark("onednn/matmul_ceiling", matmul_ceiling)
        ->Args({2048, 2})
        ->Args({2048, 1})
        ->ArgNames({"n", "threads"})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    // q·kᵀ and dL/dP = dout·vᵀ; P·v and dq = dS·k; doutᵀ·P, the dv product's first half.
    benchmark::RegisterBenchmark("onednn/attention_products", attention_products)
        ->Args({200, 200, 32, 1})
        ->Args({200, 32, 200, 0})
        ->Args({32, 200, 200, 0})
        ->ArgNames({"m", "n", "k", "transposed_b"})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark("attention/symmetric_softmax", symmetric_softmax_kernel)
        ->Arg(0)
        ->Arg(1)
        ->ArgName("backward")
        ->Unit(benchmark::kMicrosecond)
        ->UseManualTime();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
