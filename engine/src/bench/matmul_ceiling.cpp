#include "bench/matmul_ceiling.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/graph_benchmark.hpp"
#include "graph/bfloat16_support.hpp"

namespace nngraph {
namespace {

double dense_gflops(const Graph& model, const char* policy, int threads, std::int64_t n, int repetitions) {
    const RegisteredOp* dense = model.registry().find("Dense");
    if (!dense) throw InputError("measuring the matmul ceiling needs the Dense op, which no plugin loaded provides");
    const std::string size = std::to_string(n);
    ModelSpec spec = parse_model("name: matmul_ceiling\ndtype_policy: " + std::string(policy) +
                                     "\ninputs: [{name: x, shape: [" + size +
                                     "]}]\n"
                                     "nodes: [{name: product, op: Dense, inputs: [x], units: " +
                                     size + ", use_bias: false}]\noutputs: [product]\n",
                                 "<matmul ceiling>", dense->plugin_path().parent_path());
    spec.plugin_dirs = {dense->plugin_path().parent_path()};
    GraphBenchmark bench(Graph::from_spec(std::move(spec)), {n, false, threads, 1});
    bench.step();  // plans, arena and primitives
    std::vector<double> seconds;
    for (int r = 0; r < repetitions; ++r) {
        const auto start = std::chrono::steady_clock::now();
        bench.step();
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    return 2.0 * double(n) * double(n) * double(n) * 1e-9 / seconds[seconds.size() / 2];
}

}  // namespace

MatmulCeiling measure_matmul_ceiling(const Graph& model, int threads, std::int64_t n, int repetitions) {
    MatmulCeiling ceiling;
    ceiling.f32_gflops = dense_gflops(model, "float32", threads, n, repetitions);
    if (bfloat16_support().usable())
        ceiling.bf16_gflops = dense_gflops(model, "mixed_bfloat16", threads, n, repetitions);
    return ceiling;
}

}  // namespace nngraph
