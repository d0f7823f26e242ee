// The machine's matmul ceiling, measured in the running process: a 2048-cube product through the
// same Dense op (plugin and oneDNN) the models use, in f32 or under mixed_bfloat16. Benchmarks
// read their achieved GFLOP/s against it, so that a figure means the same on any machine.
#pragma once

#include <memory>

#include "graph/graph.hpp"

namespace nngraph {

class GraphBenchmark;

struct MatmulCeiling {
    double f32_gflops = 0.0;
    double bf16_gflops = 0.0;  // 0 when the CPU has no bfloat16 dot products (the policy is refused)
};

// y = x·W for x and W of n x n through the Dense op that `model` loaded, on `threads` threads (0:
// all), set up once (plan, arena, primitives, one untimed product) and then timed one product at
// a time, so that a benchmark can spread its samples among its own timed steps.
class MatmulCeilingMeter {
public:
    MatmulCeilingMeter(const Graph& model, int threads, std::int64_t n = 2048);
    ~MatmulCeilingMeter();
    MatmulCeilingMeter(MatmulCeilingMeter&&) noexcept;
    MatmulCeilingMeter& operator=(MatmulCeilingMeter&&) noexcept;

    // Times one product in each precision the CPU runs.
    MatmulCeiling sample();

private:
    double time_one_product(GraphBenchmark& product) const;

    std::int64_t n_;
    std::unique_ptr<GraphBenchmark> f32_, bf16_;
};

// The median of `repetitions` samples taken one after another.
MatmulCeiling measure_matmul_ceiling(const Graph& model, int threads, std::int64_t n = 2048, int repetitions = 5);

}  // namespace nngraph
