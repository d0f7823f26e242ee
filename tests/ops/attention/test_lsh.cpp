// LSH attention (lsh: {num_hashes, bucket_size}) against a plain double-precision reference that
// hashes with the same rotations (lsh_hashing.hpp), sorts, chunks and merges the rounds by their
// log-sum-exp; its gradients are central differences of that reference with the sorted orders
// held fixed (the op's backward treats the hashing as constant too):
//   - one bucket and one chunk: dense shared-QK attention with the self rule, outputs and gradients;
//   - several buckets, chunks (an odd count included) and rounds, with masks and causality;
//   - MultiHeadAttention with lsh: no key projection, equal to its projections around the reference;
//   - rotations fixed at inference and drawn afresh per training step; 1 and 2 threads agree;
//   - memory linear in the steps; attribute errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "lsh_hashing.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/error.hpp"

using nngraph::DType;
using nngraph::Tensor;
using nngraph::TensorInfo;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;
namespace lsh = nngraph_attention::lsh;

namespace {

constexpr double kTolerance = 1e-5;

TensorInfo seq(std::int64_t batch, std::int64_t steps, std::int64_t dim) { return {DType::F32, {batch, steps, dim}}; }

// One problem: G = batch * heads groups of T steps; masks (batch, T), empty when absent.
struct Problem {
    std::int64_t batch = 1, heads = 1, steps = 0, dk = 0, dv = 0, hashes = 1, bucket_size = 0;
    double alpha = 1.0;
    bool causal = false;
    bool replace = false;  // MultiHeadAttention's masking (-1e9 in place), else Attention's (score - 1e9)
    std::uint64_t seed = 0;
    std::vector<std::uint8_t> query_mask, key_mask;

    std::int64_t groups() const { return batch * heads; }
    bool query_kept(std::int64_t b, std::int64_t i) const { return query_mask.empty() || query_mask[b * steps + i]; }
    bool key_kept(std::int64_t b, std::int64_t j) const { return key_mask.empty() || key_mask[b * steps + j]; }
};

// Per (group, round): the positions sorted by (bucket, position), buckets from the rotations.
std::vector<std::vector<std::int64_t>> sorted_orders(const Problem& p, const std::vector<double>& q) {
    const std::int64_t buckets = lsh::bucket_count(p.steps, p.bucket_size), half = buckets / 2;
    std::vector<std::vector<std::int64_t>> orders;
    for (std::int64_t g = 0; g < p.groups(); ++g) {
        for (std::int64_t round = 0; round < p.hashes; ++round) {
            std::vector<std::int64_t> bucket(p.steps, 0), order(p.steps);
            for (std::int64_t j = 0; j < p.steps && buckets > 1; ++j) {
                std::vector<double> products(half, 0.0);
                for (std::int64_t c = 0; c < half; ++c)
                    for (std::int64_t e = 0; e < p.dk; ++e)
                        products[c] += q[(g * p.steps + j) * p.dk + e] *
                                       lsh::rotation(p.seed, g % p.heads, round, p.hashes, p.dk, half, e, c);
                bucket[j] = lsh::bucket_of(products.data(), half);
            }
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(),
                             [&](std::int64_t a, std::int64_t b) { return bucket[a] < bucket[b]; });
            orders.push_back(order);
        }
    }
    return orders;
}

// The attention of every query over the keys its chunks let it see, all rounds in one softmax.
std::vector<double> attend(const Problem& p, const std::vector<double>& q, const std::vector<double>& v,
                           const std::vector<std::vector<std::int64_t>>& orders) {
    const std::int64_t T = p.steps, chunk = std::min(p.bucket_size, T), chunks = nng::ceil_div(T, chunk);
    std::vector<double> out(p.groups() * T * p.dv, 0.0);
    for (std::int64_t g = 0; g < p.groups(); ++g) {
        const std::int64_t b = g / p.heads;
        std::vector<std::vector<double>> unit(T, std::vector<double>(p.dk));
        for (std::int64_t j = 0; j < T; ++j) {
            double sum = 0.0;
            for (std::int64_t e = 0; e < p.dk; ++e) sum += q[(g * T + j) * p.dk + e] * q[(g * T + j) * p.dk + e];
            for (std::int64_t e = 0; e < p.dk; ++e)
                unit[j][e] = q[(g * T + j) * p.dk + e] / std::sqrt(sum + lsh::kNormEpsilon);
        }
        for (std::int64_t i = 0; i < T; ++i) {
            if (!p.replace && !p.query_kept(b, i)) continue;    // Attention: a masked query's row is zero
            std::vector<std::pair<double, std::int64_t>> seen;  // (score, key) over every round
            for (std::int64_t round = 0; round < p.hashes; ++round) {
                const std::vector<std::int64_t>& order = orders[g * p.hashes + round];
                const std::int64_t k = (std::find(order.begin(), order.end(), i) - order.begin()) / chunk;
                std::vector<std::int64_t> window;
                if (chunks > 1) {
                    const std::int64_t prev = (k + chunks - 1) % chunks;
                    for (std::int64_t s = prev * chunk; s < std::min(T, (prev + 1) * chunk); ++s)
                        window.push_back(order[s]);
                }
                for (std::int64_t s = k * chunk; s < std::min(T, (k + 1) * chunk); ++s) window.push_back(order[s]);
                for (const std::int64_t j : window) {
                    double x = 0.0;
                    for (std::int64_t e = 0; e < p.dk; ++e) x += q[(g * T + i) * p.dk + e] * unit[j][e];
                    x *= p.alpha;
                    const bool allowed = (!p.replace || p.query_kept(b, i)) && p.key_kept(b, j) && !(p.causal && j > i);
                    if (!allowed)
                        x = p.replace ? -1e9 : x - 1e9;
                    else if (j == i)
                        x = lsh::kSelfScore;
                    seen.emplace_back(x, j);
                }
            }
            double m = -INFINITY, l = 0.0;
            for (const auto& [x, j] : seen) m = std::max(m, x);
            for (const auto& [x, j] : seen) l += std::exp(x - m);
            for (const auto& [x, j] : seen)
                for (std::int64_t e = 0; e < p.dv; ++e)
                    out[(g * T + i) * p.dv + e] += std::exp(x - m) / l * v[(g * T + j) * p.dv + e];
        }
    }
    return out;
}

std::vector<double> values(const Tensor& t) {
    std::vector<double> v;
    for (const float f : t.values<float>()) v.push_back(f);
    return v;
}

void check_close(const Tensor& got, const std::vector<double>& want, const std::string& what) {
    REQUIRE(static_cast<std::size_t>(got.numel()) == want.size());
    double worst = 0.0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double err = std::abs(double(got.data<float>()[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
        if (err > worst) worst = err, at = i;
    }
    INFO(what << ": worst relative error " << worst << " at " << at << " (got " << got.data<float>()[at] << ", want "
              << want[at] << ")");
    CHECK(worst <= kTolerance);
}

// dL/dx of L = <weights, f(x)> by central differences in double.
template <typename F>
std::vector<double> numeric_gradient(std::vector<double> x, const std::vector<double>& weights, F f) {
    constexpr double h = 1e-5;
    std::vector<double> grad(x.size());
    const auto loss = [&] {
        const std::vector<double> y = f(x);
        return std::inner_product(y.begin(), y.end(), weights.begin(), 0.0);
    };
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = loss();
        x[i] = keep - h;
        const double down = loss();
        x[i] = keep;
        grad[i] = (up - down) / (2 * h);
    }
    return grad;
}

std::vector<std::uint8_t> mask_of(const Tensor& t) {
    if (t.numel() == 0) return {};
    const auto v = t.values<std::uint8_t>();
    return {v.begin(), v.end()};
}

std::string lsh_attributes(const Problem& p, const std::string& extra = "") {
    return "{lsh: {num_hashes: " + std::to_string(p.hashes) + ", bucket_size: " + std::to_string(p.bucket_size) +
           "}, use_causal_mask: " + (p.causal ? "true" : "false") + (extra.empty() ? "" : ", " + extra) + "}";
}

// Attention with lsh on [query, value] against the reference: output, and both inputs' gradients.
void check_attention(const std::string& label, Problem p, bool masked, const std::string& extra = "") {
    CAPTURE(label);
    p.seed = 11;
    OpRunner r("Attention", lsh_attributes(p, extra), {seq(p.batch, p.steps, p.dk), seq(p.batch, p.steps, p.dv)},
               {masked, masked});
    fill_uniform(r.inputs()[0], -1.5, 1.5, 3);
    fill_uniform(r.inputs()[1], -1.0, 1.0, 4);
    if (masked) {
        for (int i = 0; i < 2; ++i) {
            fill_uniform(r.input_masks()[i], 0.0, 1.8, 5 + i);
            for (std::int64_t b = 0; b < p.batch; ++b) r.input_masks()[i].data<std::uint8_t>()[b * p.steps] = 1;
        }
        p.query_mask = mask_of(r.input_masks()[0]);
        p.key_mask = mask_of(r.input_masks()[1]);
    }
    r.forward(true, p.seed, false, 2);
    const std::vector<double> q = values(r.inputs()[0]), v = values(r.inputs()[1]);
    const auto orders = sorted_orders(p, q);
    check_close(r.outputs()[0], attend(p, q, v, orders), label + ": output");

    Tensor weights(DType::F32, r.outputs()[0].shape());
    fill_uniform(weights, -1.0, 1.0, 9);
    r.backward({weights}, p.seed, {}, 2);
    const std::vector<double> w = values(weights);
    check_close(r.grad_inputs()[0],
                numeric_gradient(q, w, [&](const std::vector<double>& x) { return attend(p, x, v, orders); }),
                label + ": query gradient");
    check_close(r.grad_inputs()[1],
                numeric_gradient(v, w, [&](const std::vector<double>& x) { return attend(p, q, x, orders); }),
                label + ": value gradient");
}

Problem attention_problem(std::int64_t batch, std::int64_t steps, std::int64_t dk, std::int64_t dv, std::int64_t hashes,
                          std::int64_t bucket_size, bool causal = false) {
    Problem p;
    p.batch = batch;
    p.steps = steps;
    p.dk = dk;
    p.dv = dv;
    p.hashes = hashes;
    p.bucket_size = bucket_size;
    p.causal = causal;
    return p;
}

}  // namespace

TEST_CASE("LSH with one bucket and one chunk is dense shared-QK attention with the self rule") {
    check_attention("no masks", attention_problem(2, 13, 5, 3, 1, 16), false);
    check_attention("masks", attention_problem(2, 13, 5, 3, 1, 13), true);
    check_attention("causal", attention_problem(2, 13, 5, 3, 1, 20, true), false);
    check_attention("causal, masks, 2 rounds", attention_problem(2, 17, 4, 6, 2, 17, true), true);
    Problem scaled = attention_problem(1, 9, 4, 4, 1, 9);
    scaled.alpha = 0.5;
    check_attention("scale", scaled, true, "scale: 0.5");
}

TEST_CASE("LSH with several buckets, chunks and rounds equals the reference with the same rotations") {
    check_attention("6 buckets, 6 chunks", attention_problem(2, 48, 6, 5, 1, 8), false);
    check_attention("5 chunks (odd), 2 rounds", attention_problem(2, 40, 6, 5, 2, 8), false);
    check_attention("a partial last chunk, 4 rounds", attention_problem(1, 45, 8, 4, 4, 8), false);
    check_attention("masks, 3 rounds", attention_problem(2, 48, 6, 5, 3, 8), true);
    check_attention("causal, 2 rounds", attention_problem(2, 40, 6, 5, 2, 8, true), false);
    check_attention("causal, masks, 4 rounds, width 16", attention_problem(1, 64, 16, 16, 4, 16, true), true);
    check_attention("two chunks", attention_problem(2, 20, 4, 3, 2, 10), true);
}

TEST_CASE("MultiHeadAttention with lsh has no key projection and equals its projections around the reference") {
    Problem p;
    p.batch = 2;
    p.heads = 2;
    p.steps = 24;
    p.dk = 4;
    p.dv = 3;
    p.hashes = 2;
    p.bucket_size = 6;
    p.replace = true;
    p.causal = true;
    p.seed = 21;
    p.alpha = 1.0 / std::sqrt(4.0);
    const std::int64_t in = 5, out = 5;
    OpRunner r("MultiHeadAttention",
               lsh_attributes(p, "num_heads: 2, key_dim: 4, value_dim: 3, bias_initializer: glorot_uniform"),
               {seq(p.batch, p.steps, in)}, {true});
    for (const auto& w : r.shapes().weights) CHECK(w.name.rfind("key.", 0) == std::string::npos);
    REQUIRE(r.weights().size() == 6);  // query, value and output kernels and biases
    r.initialize_weights(7);
    fill_uniform(r.inputs()[0], -1.0, 1.0, 8);
    fill_uniform(r.input_masks()[0], 0.0, 1.8, 9);
    for (std::int64_t b = 0; b < p.batch; ++b) r.input_masks()[0].data<std::uint8_t>()[b * p.steps] = 1;
    p.query_mask = p.key_mask = mask_of(r.input_masks()[0]);
    const std::vector<double> wq = values(r.weights()[0]), bq = values(r.weights()[1]), wv = values(r.weights()[2]),
                              bv = values(r.weights()[3]), wo = values(r.weights()[4]), bo = values(r.weights()[5]);
    const std::int64_t T = p.steps, H = p.heads;
    // x (B, T, in) -> (B·heads, T, dim), heads apart.
    const auto project = [&](const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
                             std::int64_t dim) {
        std::vector<double> y(p.groups() * T * dim);
        for (std::int64_t s = 0; s < p.batch; ++s)
            for (std::int64_t h = 0; h < H; ++h)
                for (std::int64_t t = 0; t < T; ++t)
                    for (std::int64_t e = 0; e < dim; ++e) {
                        double sum = b[h * dim + e];
                        for (std::int64_t i = 0; i < in; ++i) sum += x[(s * T + t) * in + i] * w[(i * H + h) * dim + e];
                        y[((s * H + h) * T + t) * dim + e] = sum;
                    }
        return y;
    };
    const std::vector<double> x0 = values(r.inputs()[0]);
    const auto orders = sorted_orders(p, project(x0, wq, bq, p.dk));
    const auto model = [&](const std::vector<double>& x) {
        const std::vector<double> o = attend(p, project(x, wq, bq, p.dk), project(x, wv, bv, p.dv), orders);
        std::vector<double> y(p.batch * T * out);
        for (std::int64_t s = 0; s < p.batch; ++s)
            for (std::int64_t t = 0; t < T; ++t)
                for (std::int64_t c = 0; c < out; ++c) {
                    double sum = bo[c];
                    for (std::int64_t h = 0; h < H; ++h)
                        for (std::int64_t e = 0; e < p.dv; ++e)
                            sum += o[((s * H + h) * T + t) * p.dv + e] * wo[(h * p.dv + e) * out + c];
                    y[(s * T + t) * out + c] = sum;
                }
        return y;
    };
    r.forward(true, p.seed, false, 2);
    check_close(r.outputs()[0], model(x0), "output");
    Tensor weights(DType::F32, r.outputs()[0].shape());
    fill_uniform(weights, -1.0, 1.0, 10);
    r.backward({weights}, p.seed, {}, 2);
    check_close(r.grad_inputs()[0], numeric_gradient(x0, values(weights), model), "input gradient");
}

TEST_CASE("LSH rotations are fixed at inference and drawn afresh every training step") {
    const auto run = [](bool training, std::uint64_t seed) {
        OpRunner r("Attention", "{lsh: {num_hashes: 1, bucket_size: 8}}", {seq(1, 64, 8), seq(1, 64, 8)});
        fill_uniform(r.inputs()[0], -1.0, 1.0, 1);
        fill_uniform(r.inputs()[1], -1.0, 1.0, 2);
        r.forward(training, seed, false, 1);
        return values(r.outputs()[0]);
    };
    CHECK(run(false, 1) == run(false, 2));
    CHECK(run(true, 1) == run(true, 1));
    CHECK(run(true, 1) != run(true, 2));
}

TEST_CASE("LSH attention gives the same result on 1 and 2 threads") {
    const auto run = [](int threads) {
        OpRunner r("Attention", "{lsh: {num_hashes: 3, bucket_size: 16}, use_causal_mask: true}",
                   {seq(2, 150, 16), seq(2, 150, 8)}, {true, true});
        fill_uniform(r.inputs()[0], -1.0, 1.0, 1);
        fill_uniform(r.inputs()[1], -1.0, 1.0, 2);
        for (int i = 0; i < 2; ++i) {
            fill_uniform(r.input_masks()[i], 0.0, 1.8, 3 + i);
            r.input_masks()[i].data<std::uint8_t>()[0] = 1;
        }
        r.forward(true, 5, false, threads);
        Tensor weights(DType::F32, r.outputs()[0].shape());
        fill_uniform(weights, -1.0, 1.0, 6);
        r.backward({weights}, 5, {}, threads);
        std::vector<std::vector<double>> all = {values(r.outputs()[0])};
        for (const Tensor& g : r.grad_inputs()) all.push_back(values(g));
        return all;
    };
    CHECK(run(1) == run(2));
}

TEST_CASE("LSH attention's memory grows linearly with the steps") {
    const auto bytes = [](std::int64_t steps) {
        OpRunner r("Attention", "{lsh: {num_hashes: 2, bucket_size: 32}}", {seq(1, steps, 16), seq(1, steps, 16)});
        return r.declared_bytes();
    };
    const double small = static_cast<double>(bytes(2048)), large = static_cast<double>(bytes(8192));
    CHECK(large / small < 4.5);  // quadratic would be 16
    CHECK(large < 8192.0 * 8192.0 * 4.0 / 16.0);
}

TEST_CASE("lsh attributes and inputs are checked") {
    const auto message = [](const std::string& op, const std::string& attributes, std::vector<TensorInfo> inputs) {
        try {
            OpRunner r(op, attributes, inputs);
        } catch (const nngraph::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::vector<TensorInfo> two = {seq(1, 8, 4), seq(1, 8, 4)};
    CHECK(message("Attention", "{lsh: {num_hashes: 2}}", two) == "no error");
    CHECK(message("Attention", "{lsh: {num_hashes: 0}}", two).find("lsh.num_hashes") != std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1, bucket_size: 0}}", two).find("lsh.bucket_size") !=
          std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}, window: 2}", two).find("one pattern") != std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}, implementation: blockwise}", two).find("implementation") !=
          std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}, dropout: 0.1}", two).find("dropout") != std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}, score_mode: concat}", two).find("score_mode") !=
          std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}}", {seq(1, 8, 4), seq(1, 8, 4), seq(1, 8, 4)})
              .find("no key input") != std::string::npos);
    CHECK(message("Attention", "{lsh: {num_hashes: 1}}", {seq(1, 8, 4), seq(1, 9, 4)}).find("one length") !=
          std::string::npos);
    CHECK(message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, lsh: {num_hashes: 1}}",
                  {seq(1, 8, 4), seq(1, 8, 4), seq(1, 8, 4)})
              .find("no key input") != std::string::npos);
    CHECK(message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, lsh: {num_hashes: 1}, linformer: {k: 2}}", two)
              .find("linformer.k") != std::string::npos);
}
