#include "bench/matmul_ceiling.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/graph_benchmark.hpp"
#include "graph/bfloat16_support.hpp"

namespace nngraph {
namespace {

std::unique_ptr<GraphBenchmark> square_product(const Graph& model, const char* policy, int threads, std::int64_t n) {
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
    auto product =
        std::make_unique<GraphBenchmark>(Graph::from_spec(std::move(spec)), GraphBenchOptions{n, false, threads, 1});
    product->step();  // plans, arena and primitives
    return product;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

}  // namespace

MatmulCeilingMeter::MatmulCeilingMeter(const Graph& model, int threads, std::int64_t n)
    : n_(n), f32_(square_product(model, "float32", threads, n)) {
    if (bfloat16_support().usable()) bf16_ = square_product(model, "mixed_bfloat16", threads, n);
}

MatmulCeilingMeter::~MatmulCeilingMeter() = default;
MatmulCeilingMeter::MatmulCeilingMeter(MatmulCeilingMeter&&) noexcept = default;
MatmulCeilingMeter& MatmulCeilingMeter::operator=(MatmulCeilingMeter&&) noexcept = default;

double MatmulCeilingMeter::time_one_product(GraphBenchmark& product) const {
    const auto start = std::chrono::steady_clock::now();
    product.step();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return 2.0 * double(n_) * double(n_) * double(n_) * 1e-9 / seconds;
}

MatmulCeiling MatmulCeilingMeter::sample() {
    MatmulCeiling ceiling;
    ceiling.f32_gflops = time_one_product(*f32_);
    if (bf16_) ceiling.bf16_gflops = time_one_product(*bf16_);
    return ceiling;
}

MatmulCeiling measure_matmul_ceiling(const Graph& model, int threads, std::int64_t n, int repetitions) {
    MatmulCeilingMeter meter(model, threads, n);
    std::vector<double> f32, bf16;
    for (int r = 0; r < repetitions; ++r) {
        const MatmulCeiling s = meter.sample();
        f32.push_back(s.f32_gflops);
        bf16.push_back(s.bf16_gflops);
    }
    return {median(f32), median(bf16)};
}

}  // namespace nngraph
