// oneDNN's matmul on square f32 matrices: the machine's ceiling that the suites' GFLOP/s counters
// are read against.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

#include "gradcheck.hpp"
#include "nngraph/onednn.hpp"

namespace nngraph::bench {

// C = A·B (or A·Bᵀ) for n x n matrices, n = state.range(0), on `threads` threads.
inline void square_matmul(benchmark::State& state, int threads, bool transpose_b) {
    namespace dnn = nng::onednn;
    dnn::set_num_threads(threads);
    const std::int64_t n = state.range(0);
    Tensor a(DType::F32, {n, n}), b(DType::F32, {n, n}), c(DType::F32, {n, n});
    testing::fill_uniform(a, -1, 1, 1);
    testing::fill_uniform(b, -1, 1, 2);
    const auto f32 = dnnl::memory::data_type::f32;
    const dnn::View va = dnn::view(a.raw(), f32, {n, n}), vc = dnn::view(c.raw(), f32, {n, n});
    const dnn::View vb = transpose_b ? dnn::view(b.raw(), f32, {n, n}).transposed() : dnn::view(b.raw(), f32, {n, n});
    dnn::matmul(va, vb, vc);  // the primitive, created outside the timing
    for (auto _ : state) dnn::matmul(va, vb, vc);
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * double(n) * n * n * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace nngraph::bench
