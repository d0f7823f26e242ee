// The long-context cores against the dense core and against plain loops:
//   - blockwise equals dense (outputs, input and weight gradients, to 1e-5) with and without
//     masks, causal and not, with dropout under a fixed seed, fully masked rows included, over
//     lengths that cut tiles of 64 in every way, and on a second call that masks a whole query tile;
//   - a sliding window (with global tokens) and block-sparse attention equal dense attention under
//     the matching explicit (query, key) mask, built here as a loop in double; patterns wide enough
//     to allow everything equal the dense op, gradients included;
//   - Linformer (MultiHeadAttention's linformer.k) equals its equations in double;
//   - adaptive span equals softmax with the soft mask m(x) = clamp((R + z - x) / R, 0, 1)
//     renormalised, in double;
//   - attribute errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "nngraph/error.hpp"

using nngraph::DType;
using nngraph::Shape;
using nngraph::Tensor;
using nngraph::TensorInfo;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

constexpr double kTolerance = 1e-5;
// A weight's gradient sums the per-position gradients over batch and steps (1,110 rows in the
// largest case), so the two cores' float32 accumulation orders, themselves within 1e-5, can part
// by about 1e-5 of that sum (MultiHeadAttention's value.bias comes closest); outputs and input
// gradients keep kTolerance.
constexpr double kWeightGradientTolerance = 3e-5;

double worst_error(const Tensor& got, const std::vector<double>& want, std::size_t& at) {
    REQUIRE(static_cast<std::size_t>(got.numel()) == want.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double err = std::abs(double(got.data<float>()[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
        if (err > worst) worst = err, at = i;
    }
    return worst;
}

std::vector<double> values(const Tensor& t) {
    std::vector<double> v;
    for (float f : t.values<float>()) v.push_back(f);
    return v;
}

void check_close(const Tensor& got, const std::vector<double>& want, const std::string& what,
                 double tolerance = kTolerance) {
    std::size_t at = 0;
    const double worst = worst_error(got, want, at);
    INFO(what << ": worst relative error " << worst << " at " << at << " (got " << got.data<float>()[at] << ", want "
              << want[at] << ")");
    CHECK(worst <= tolerance);
}

// Random masks keeping step 0 of every sample, unless a case empties one on purpose.
void random_mask(Tensor& mask, std::uint64_t seed) {
    fill_uniform(mask, 0.0, 1.7, seed);
    for (std::int64_t b = 0; b < mask.dim(0); ++b) mask.data<std::uint8_t>()[b * mask.dim(1)] = 1;
}

struct Setup {
    std::string op;
    std::vector<TensorInfo> inputs;
    std::vector<bool> masks;
    // Runs after random inputs, masks and weights: pins what a case needs (an emptied mask).
    std::function<void(OpRunner&)> prepare;
};

void fill(OpRunner& r, const Setup& s, std::uint64_t seed) {
    for (std::size_t i = 0; i < s.inputs.size(); ++i) {
        fill_uniform(r.inputs()[i], -1.0, 1.0, seed + i);
        if (i < s.masks.size() && s.masks[i]) random_mask(r.input_masks()[i], seed + 20 + i);
    }
    r.initialize_weights(seed);
    for (std::size_t k = 0; k < r.weights().size(); ++k) {
        Tensor noise(DType::F32, r.weights()[k].shape());
        fill_uniform(noise, -0.2, 0.2, seed * 31 + k);
        for (std::int64_t e = 0; e < noise.numel(); ++e) r.weights()[k].data<float>()[e] += noise.data<float>()[e];
    }
    if (s.prepare) s.prepare(r);
}

// Gives `rb` the inputs, masks and weights of `ra`.
void copy_arguments(const Setup& s, OpRunner& ra, OpRunner& rb) {
    for (std::size_t i = 0; i < s.inputs.size(); ++i) {
        rb.inputs()[i] = ra.inputs()[i];
        if (i < s.masks.size() && s.masks[i]) rb.input_masks()[i] = ra.input_masks()[i];
    }
    REQUIRE(ra.weights().size() == rb.weights().size());
    for (std::size_t k = 0; k < ra.weights().size(); ++k) rb.weights()[k] = ra.weights()[k];
}

// Runs `ra` and `rb` (two attribute sets of one op, given the same arguments) in training
// (dropout drawing), `ra` on `a_threads` threads and `rb` on 2, and checks outputs and every
// gradient agree.
void compare_runs(const std::string& label, OpRunner& ra, OpRunner& rb, std::uint64_t seed, int a_threads) {
    ra.forward(true, seed, false, a_threads);
    rb.forward(true, seed, false, 2);
    check_close(rb.outputs()[0], values(ra.outputs()[0]), label + ": output");
    std::vector<Tensor> grads;
    grads.emplace_back(DType::F32, ra.outputs()[0].shape());
    fill_uniform(grads.back(), -1.0, 1.0, seed + 99);
    ra.backward(grads, seed, {}, a_threads);
    rb.backward(grads, seed, {}, 2);
    for (std::size_t i = 0; i < ra.grad_inputs().size(); ++i) {
        check_close(rb.grad_inputs()[i], values(ra.grad_inputs()[i]),
                    label + ": gradient of input " + std::to_string(i));
    }
    for (std::size_t k = 0; k < ra.grad_weights().size(); ++k) {
        check_close(rb.grad_weights()[k], values(ra.grad_weights()[k]),
                    label + ": gradient of " + ra.shapes().weights[k].name, kWeightGradientTolerance);
    }
}

// Runs `a` and `b` (two attribute sets of one op) on the same inputs, masks, weights and seed, in
// training (dropout drawing), and checks outputs and every gradient agree. Both run on 2 threads
// unless `a_threads` says otherwise.
void check_same(const std::string& label, const Setup& s, const std::string& a, const std::string& b,
                std::uint64_t seed = 5, int a_threads = 2) {
    CAPTURE(label);
    OpRunner ra(s.op, a, s.inputs, s.masks, true), rb(s.op, b, s.inputs, s.masks, true);
    fill(ra, s, seed);
    copy_arguments(s, ra, rb);
    compare_runs(label, ra, rb, seed, a_threads);
}

TensorInfo seq(std::int64_t batch, std::int64_t steps, std::int64_t dim) { return {DType::F32, {batch, steps, dim}}; }

// Empties sample 1's mask of input `i`: every key (or query) of that sample masked.
std::function<void(OpRunner&)> empty_mask(std::size_t i) {
    return [i](OpRunner& r) {
        Tensor& m = r.input_masks()[i];
        std::fill(m.data<std::uint8_t>() + m.dim(1), m.data<std::uint8_t>() + 2 * m.dim(1), std::uint8_t{0});
    };
}

}  // namespace

TEST_CASE("blockwise Attention equals dense: outputs and gradients") {
    const std::string blockwise = "implementation: blockwise";
    const auto both = [&](const std::string& label, const Setup& s, const std::string& extra) {
        const std::string sep = extra.empty() ? "" : ", ";
        check_same(label, s, "{" + extra + "}", "{" + extra + sep + blockwise + "}");
    };
    both("self, 150 steps", {"Attention", {seq(2, 150, 16), seq(2, 150, 16)}, {}}, "");
    both("[query, value, key], Tq 70, Tv 130", {"Attention", {seq(2, 70, 8), seq(2, 130, 12), seq(2, 130, 8)}, {}}, "");
    both("Tq 200, Tv 5", {"Attention", {seq(1, 200, 4), seq(1, 5, 4)}, {}}, "");
    both("query and value masks", {"Attention", {seq(3, 100, 8), seq(3, 100, 8)}, {true, true}}, "");
    both("causal with masks", {"Attention", {seq(2, 140, 8), seq(2, 140, 8)}, {true, true}}, "use_causal_mask: true");
    both("causal, Tq < Tv", {"Attention", {seq(2, 70, 8), seq(2, 130, 8)}, {}}, "use_causal_mask: true");
    both("use_scale and a constant scale", {"Attention", {seq(2, 90, 8), seq(2, 90, 8), seq(2, 90, 8)}, {true, true}},
         "use_scale: true, scale: 0.35");
    both("dropout, fixed seed", {"Attention", {seq(2, 130, 8), seq(2, 100, 8)}, {}}, "dropout: 0.3, seed: 4");
    both("dropout, masks, causal", {"Attention", {seq(2, 150, 8), seq(2, 150, 8)}, {true, true}},
         "dropout: 0.25, use_causal_mask: true");
    both("a sample whose every key is masked",
         {"Attention", {seq(2, 80, 8), seq(2, 80, 8)}, {true, true}, empty_mask(1)}, "");
    both("every key masked, causal, dropout",
         {"Attention", {seq(2, 80, 8), seq(2, 80, 8)}, {false, true}, empty_mask(1)},
         "use_causal_mask: true, dropout: 0.2");
    // Widths that are multiples of 16 let the blockwise core read whole key and value tiles in place.
    both("width 64, masks, causal, dropout", {"Attention", {seq(2, 150, 64), seq(2, 150, 64)}, {true, true}},
         "use_causal_mask: true, dropout: 0.2");
    both("width 32 and 48, use_scale",
         {"Attention", {seq(2, 130, 32), seq(2, 140, 48), seq(2, 140, 32)}, {true, true, true}}, "use_scale: true");
    // Over 2^17 scores a sample: the dense backward takes the batch in several chunks, one thread each.
    both("dense backward in chunks: masks, use_scale, dropout",
         {"Attention", {seq(3, 600, 8), seq(3, 600, 8)}, {true, true}, empty_mask(1)}, "use_scale: true, dropout: 0.1");
    // 16 samples of 40000 scores: the dense forward's parts and its backward's chunks hold 2 or 3
    // samples each, in runs of equal work for the two threads.
    both("dense parts and chunks of 2 and 3 samples: masks, dropout",
         {"Attention", {seq(16, 200, 8), seq(16, 200, 8)}, {true, true}, empty_mask(1)}, "dropout: 0.1");
}

// On two threads the dense forward gives each thread blocks of query rows (one sample) or a few
// groups at a time (a batch of over 2^19 scores), with single-threaded primitives, instead of
// threading each primitive over the whole problem. Same results as one thread.
TEST_CASE("dense forward split into query blocks or groups equals one thread") {
    const auto split = [&](const std::string& label, const Setup& s, const std::string& attrs) {
        check_same(label + " (1 thread vs 2)", s, attrs, attrs, 7, 1);
    };
    split("self, 200 steps", {"Attention", {seq(1, 200, 32), seq(1, 200, 32)}, {}}, "{}");
    split("odd rows, [query, value, key], masks",
          {"Attention", {seq(1, 71, 8), seq(1, 90, 8), seq(1, 90, 8)}, {true, true, true}}, "{}");
    split("causal, dropout, use_scale", {"Attention", {seq(1, 150, 8), seq(1, 150, 8)}, {true, true}},
          "{use_causal_mask: true, dropout: 0.3, seed: 2, use_scale: true}");
    split("concat scores", {"Attention", {seq(1, 64, 8), seq(1, 80, 8)}, {true, true}}, "{score_mode: concat}");
    const auto no_keys = [](OpRunner& r) {
        std::ranges::fill(r.input_masks()[1].values<std::uint8_t>(), std::uint8_t{0});
    };
    split("every key masked", {"Attention", {seq(1, 80, 8), seq(1, 80, 8)}, {false, true}, no_keys}, "{dropout: 0.2}");
    split("MultiHeadAttention, one head, mask, dropout", {"MultiHeadAttention", {seq(1, 120, 12)}, {true}},
          "{num_heads: 1, key_dim: 8, dropout: 0.25, use_causal_mask: true}");
    split("groups: 8 samples of 260 steps, masks, causal, dropout",
          {"Attention", {seq(8, 260, 8), seq(8, 260, 8)}, {true, true}, empty_mask(1)},
          "{use_causal_mask: true, dropout: 0.3, seed: 2, use_scale: true}");
    split("groups: concat scores", {"Attention", {seq(8, 250, 4), seq(8, 270, 4)}, {true, true}},
          "{score_mode: concat}");
    split("groups: MultiHeadAttention, 2 heads of 5 samples, mask, dropout",
          {"MultiHeadAttention", {seq(5, 240, 8)}, {true}}, "{num_heads: 2, key_dim: 4, dropout: 0.2}");
}

TEST_CASE("blockwise MultiHeadAttention equals dense: outputs and gradients") {
    const auto both = [&](const std::string& label, const Setup& s, const std::string& attrs) {
        check_same(label, s, "{" + attrs + "}", "{" + attrs + ", implementation: blockwise}");
    };
    both("self-attention, 2 heads", {"MultiHeadAttention", {seq(2, 100, 12)}, {}}, "num_heads: 2, key_dim: 8");
    // Enough groups (batch x heads) for threads to take whole groups.
    both("8 groups, masks, causal", {"MultiHeadAttention", {seq(4, 130, 12)}, {true}},
         "num_heads: 2, key_dim: 8, use_causal_mask: true");
    both("12 groups, window, dropout", {"MultiHeadAttention", {seq(6, 150, 12)}, {true}},
         "num_heads: 2, key_dim: 8, dropout: 0.2");
    both("masks (masked queries attend uniformly)", {"MultiHeadAttention", {seq(2, 100, 12)}, {true}},
         "num_heads: 2, key_dim: 8");
    both("cross with three masked inputs",
         {"MultiHeadAttention", {seq(2, 70, 6), seq(2, 130, 5), seq(2, 130, 7)}, {true, true, true}},
         "num_heads: 3, key_dim: 4, value_dim: 5");
    both("causal with a mask", {"MultiHeadAttention", {seq(2, 140, 8)}, {true}},
         "num_heads: 2, key_dim: 4, use_causal_mask: true");
    both("dropout: fully masked rows are zero", {"MultiHeadAttention", {seq(2, 120, 8)}, {true}},
         "num_heads: 2, key_dim: 4, dropout: 0.3, seed: 2");
    both("a sample whose every key is masked",
         {"MultiHeadAttention", {seq(2, 70, 6), seq(2, 80, 6)}, {false, true}, empty_mask(1)},
         "num_heads: 2, key_dim: 4");
    both("every key masked, dropout",
         {"MultiHeadAttention", {seq(2, 70, 6), seq(2, 80, 6)}, {false, true}, empty_mask(1)},
         "num_heads: 2, key_dim: 4, dropout: 0.2");
    both("dense backward in chunks", {"MultiHeadAttention", {seq(3, 370, 8)}, {true}},
         "num_heads: 2, key_dim: 4, use_causal_mask: true");
}

TEST_CASE("ring attention without a sequence shard is blockwise attention on the whole sequence") {
    // One process, 2 threads: the ring core's pairs and merges with a single block, cross-attention
    // lengths and every kind of fully masked row included (the sharded cases run under mpirun, in
    // tests/dist/test_ring_attention.cpp).
    const auto both = [&](const std::string& label, const Setup& s, const std::string& attrs) {
        check_same(label, s, "{" + attrs + ", implementation: blockwise}", "{" + attrs + ", implementation: ring}");
    };
    both("Attention, masks, causal, dropout", {"Attention", {seq(2, 150, 8), seq(2, 150, 8)}, {true, true}},
         "use_causal_mask: true, dropout: 0.3, seed: 4, use_scale: true");
    both("Attention, every key of a sample masked",
         {"Attention", {seq(2, 70, 6), seq(2, 90, 6)}, {true, true}, empty_mask(1)}, "score_mode: dot");
    both("MultiHeadAttention cross, window", {"MultiHeadAttention", {seq(2, 70, 6), seq(2, 130, 5)}, {true, true}},
         "num_heads: 3, key_dim: 4, window: 20");
    both("MultiHeadAttention, masked queries attend uniformly", {"MultiHeadAttention", {seq(2, 100, 12)}, {true}},
         "num_heads: 2, key_dim: 8, use_causal_mask: true");
}

// Buffers and gradients keep what the last call wrote (the executor reuses them between steps and
// ops), so every row of the query gradient must be written, zeros included. The second call masks
// the first 64 query steps of sample 1, a whole query tile that the first call kept.
TEST_CASE("blockwise equals dense when a later call masks a whole query tile") {
    const std::vector<Setup> setups = {{"MultiHeadAttention", {seq(2, 70, 6)}, {true}},
                                       {"Attention", {seq(2, 70, 6), seq(2, 70, 6)}, {true, true}}};
    for (const Setup& s : setups) {
        const std::string dense = s.op == "Attention" ? "{}" : "{num_heads: 2, key_dim: 4}";
        const std::string blockwise = s.op == "Attention" ? "{implementation: blockwise}"
                                                          : "{num_heads: 2, key_dim: 4, implementation: blockwise}";
        CAPTURE(s.op);
        OpRunner ra(s.op, dense, s.inputs, s.masks, true), rb(s.op, blockwise, s.inputs, s.masks, true);
        fill(ra, s, 5);
        std::ranges::fill(ra.input_masks()[0].values<std::uint8_t>(), std::uint8_t{1});
        copy_arguments(s, ra, rb);
        compare_runs(s.op + ", every step kept", ra, rb, 5, 2);
        Tensor& mask = ra.input_masks()[0];
        std::fill(mask.data<std::uint8_t>() + mask.dim(1), mask.data<std::uint8_t>() + mask.dim(1) + 64,
                  std::uint8_t{0});
        copy_arguments(s, ra, rb);
        compare_runs(s.op + ", sample 1's first query tile masked", ra, rb, 6, 2);
    }
}

TEST_CASE("patterns that allow every pair equal dense attention, gradients included") {
    const Setup s{"Attention", {seq(2, 130, 8), seq(2, 130, 8)}, {true, true}};
    check_same("window >= steps", s, "{}", "{window: 200}");
    check_same("causal window >= steps", s, "{use_causal_mask: true}", "{use_causal_mask: true, window: 130}");
    check_same("one local block", s, "{}", "{sparsity: {block_size: 256}}");
    check_same("every block local", s, "{dropout: 0.2}", "{dropout: 0.2, sparsity: {block_size: 16, local_blocks: 9}}");
    check_same("every block a summary block", s, "{}", "{sparsity: {block_size: 16, local_blocks: 1, stride: 1}}");
    const Setup m{"MultiHeadAttention", {seq(2, 90, 8)}, {true}};
    check_same("MultiHeadAttention, window >= steps", m, "{num_heads: 2, key_dim: 4}",
               "{num_heads: 2, key_dim: 4, window: 100}");
}

// ---- patterns against an explicit mask, in double ----

namespace {

// keras.layers.Attention with an explicit (query, key) mask `allowed` besides the value mask:
// scores of disallowed pairs - 1e9, masked queries' rows zero; `log_weight` is added to allowed
// pairs' scores (adaptive span's log m).
std::vector<double> attention_with_mask(OpRunner& r, bool causal,
                                        const std::function<bool(std::int64_t, std::int64_t)>& allowed,
                                        const std::function<double(std::int64_t, std::int64_t)>& log_weight = {}) {
    const Tensor &q = r.inputs()[0], &v = r.inputs()[1];
    const std::int64_t B = q.dim(0), tq = q.dim(1), tv = v.dim(1), d = q.dim(2), dv = v.dim(2);
    const Tensor &qm = r.input_masks()[0], &vm = r.input_masks()[1];
    const auto kept = [](const Tensor& m, std::int64_t b, std::int64_t t) {
        return m.empty() || m.data<std::uint8_t>()[b * m.dim(1) + t] != 0;
    };
    std::vector<double> out;
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t i = 0; i < tq; ++i) {
            std::vector<double> s(static_cast<std::size_t>(tv));
            double top = -INFINITY;
            for (std::int64_t j = 0; j < tv; ++j) {
                double score = 0.0;
                for (std::int64_t e = 0; e < d; ++e)
                    score +=
                        double(q.data<float>()[(b * tq + i) * d + e]) * double(v.data<float>()[(b * tv + j) * dv + e]);
                const bool ok = allowed(i, j) && (!causal || j <= i);
                if (ok && log_weight) score += log_weight(i, j);
                // Keras subtracts 1e9 in float32, where a score's own value is lost in the rounding.
                if (!ok || !kept(vm, b, j)) score = double(float(score) - 1e9f);
                s[static_cast<std::size_t>(j)] = score;
                top = std::max(top, score);
            }
            double sum = 0.0;
            for (double& x : s) sum += (x = std::exp(x - top));
            for (std::int64_t e = 0; e < dv; ++e) {
                double o = 0.0;
                for (std::int64_t j = 0; j < tv; ++j)
                    o += s[static_cast<std::size_t>(j)] / sum * double(v.data<float>()[(b * tv + j) * dv + e]);
                out.push_back(kept(qm, b, i) ? o : 0.0);
            }
        }
    }
    return out;
}

void check_pattern(const std::string& label, const std::string& attributes, std::int64_t steps, bool causal,
                   const std::function<bool(std::int64_t, std::int64_t)>& allowed) {
    CAPTURE(label);
    const std::vector<TensorInfo> inputs = {seq(2, steps, 8), seq(2, steps, 8)};
    OpRunner r("Attention", attributes, inputs, {true, true}, false);
    fill(r, {"Attention", inputs, {true, true}}, 17);
    r.forward(false, 1, false, 2);
    check_close(r.outputs()[0], attention_with_mask(r, causal, allowed), label);
}

}  // namespace

TEST_CASE("a sliding window equals attention under the window's explicit mask") {
    for (const std::int64_t w : {0, 3, 17, 64, 100}) {
        const auto window = [w](std::int64_t i, std::int64_t j) { return std::abs(i - j) <= w; };
        check_pattern("window " + std::to_string(w), "{window: " + std::to_string(w) + "}", 200, false, window);
        check_pattern("causal window " + std::to_string(w),
                      "{use_causal_mask: true, window: " + std::to_string(w) + "}", 200, true, window);
    }
    const auto global = [](std::int64_t i, std::int64_t j) { return i < 5 || j < 5 || std::abs(i - j) <= 9; };
    check_pattern("window 9, 5 global tokens", "{window: 9, global_tokens: 5}", 180, false, global);
    check_pattern("causal window 9, 5 global tokens", "{window: 9, global_tokens: 5, use_causal_mask: true}", 180, true,
                  global);
    const auto wide_global = [](std::int64_t i, std::int64_t j) { return i < 70 || j < 70 || std::abs(i - j) <= 2; };
    check_pattern("window 2, 70 global tokens", "{window: 2, global_tokens: 70}", 200, false, wide_global);
}

TEST_CASE("block-sparse attention equals attention under the blocks' explicit mask") {
    const auto blocks = [](std::int64_t size, std::int64_t local, std::int64_t stride) {
        return [=](std::int64_t i, std::int64_t j) {
            const std::int64_t bi = i / size, bj = j / size;
            return std::abs(bi - bj) < local || (stride > 0 && bj % stride == stride - 1);
        };
    };
    check_pattern("blocks of 16, local only", "{sparsity: {block_size: 16}}", 200, false, blocks(16, 1, 0));
    check_pattern("blocks of 16, 2 local, stride 3", "{sparsity: {block_size: 16, local_blocks: 2, stride: 3}}", 200,
                  false, blocks(16, 2, 3));
    check_pattern("causal, blocks of 32, stride 2", "{use_causal_mask: true, sparsity: {block_size: 32, stride: 2}}",
                  230, true, blocks(32, 1, 2));
    check_pattern("blocks of 64, stride 2", "{sparsity: {block_size: 64, stride: 2}}", 300, false, blocks(64, 1, 2));
    check_pattern("blocks of 5, 3 local, stride 4", "{sparsity: {block_size: 5, local_blocks: 3, stride: 4}}", 150,
                  false, blocks(5, 3, 4));
}

TEST_CASE("adaptive span renormalises the attention weights by the soft mask of the learned span") {
    for (const bool causal : {false, true}) {
        CAPTURE(causal);
        const std::vector<TensorInfo> inputs = {seq(2, 160, 8), seq(2, 160, 8)};
        const std::string attrs = std::string("{adaptive_span: {max_span: 100, ramp: 16, init: 20.5}") +
                                  (causal ? ", use_causal_mask: true}" : "}");
        OpRunner r("Attention", attrs, inputs, {true, true}, false);
        fill(r, {"Attention", inputs, {true, true}}, 23);
        REQUIRE(r.shapes().weights.size() == 1);
        CHECK(r.shapes().weights[0].name == "span");
        const double z = r.weights()[0].data<float>()[0], R = 16.0;
        CHECK(z != 20.5);  // the noise moved it off the initial value
        const auto m = [&](std::int64_t i, std::int64_t j) {
            return std::clamp((R + z - double(std::abs(i - j))) / R, 0.0, 1.0);
        };
        r.forward(false, 1, false, 2);
        check_close(r.outputs()[0],
                    attention_with_mask(
                        r, causal, [&](std::int64_t i, std::int64_t j) { return m(i, j) > 0.0; },
                        [&](std::int64_t i, std::int64_t j) { return std::log(m(i, j)); }),
                    "adaptive span");
    }
}

TEST_CASE("long-context attributes are checked") {
    auto message = [](const std::string& op, const std::string& attributes) {
        try {
            OpRunner r(op, attributes, {seq(2, 8, 4), seq(2, 8, 4)});
        } catch (const nngraph::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(message("Attention", "{window: -1}").find("window") != std::string::npos);
    CHECK(message("Attention", "{global_tokens: 2}").find("global_tokens") != std::string::npos);
    CHECK(message("Attention", "{window: 2, sparsity: {block_size: 4}}").find("one pattern") != std::string::npos);
    CHECK(message("Attention", "{sparsity: {block_size: 0}}").find("sparsity.block_size") != std::string::npos);
    CHECK(message("Attention", "{sparsity: {block_size: 4, local_blocks: 0}}").find("sparsity.local_blocks") !=
          std::string::npos);
    CHECK(message("Attention", "{adaptive_span: {max_span: 0}}").find("adaptive_span.max_span") != std::string::npos);
    CHECK(message("Attention", "{adaptive_span: {max_span: 8, init: 9}}").find("adaptive_span.init") !=
          std::string::npos);
    CHECK(message("Attention", "{implementation: sparse}").find("implementation") != std::string::npos);
    CHECK(message("Attention", "{implementation: ring, sparsity: {block_size: 4}}").find("ring takes only a window") !=
          std::string::npos);
    CHECK(message("Attention", "{implementation: blockwise, score_mode: concat}").find("score_mode") !=
          std::string::npos);
    CHECK(message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, window: -3}").find("window") != std::string::npos);
    CHECK(message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, linformer: {k: 0}}").find("linformer.k") !=
          std::string::npos);
    CHECK(message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, linformer: {k: 2}, use_causal_mask: true}")
              .find("linformer.k") != std::string::npos);
    CHECK(
        message("MultiHeadAttention", "{num_heads: 1, key_dim: 4, linformer: {k: 2}, window: 3}").find("linformer.k") !=
        std::string::npos);
}

TEST_CASE("blockwise saves two floats per query row, not the score matrix") {
    OpRunner dense("Attention", "{}", {seq(2, 300, 8), seq(2, 300, 8)});
    OpRunner blockwise("Attention", "{implementation: blockwise}", {seq(2, 300, 8), seq(2, 300, 8)});
    // Dense: the probabilities, and the deferred division's 1 / sum a row in its own 64-byte block.
    const std::size_t inverse_sums = (2 * 300 * sizeof(float) + 63) / 64 * 64;
    CHECK(dense.buffer_bytes("attention saved") == 2 * 300 * 300 * sizeof(float) + inverse_sums);
    CHECK(blockwise.buffer_bytes("attention saved") == 2 * 600 * sizeof(float));
    CHECK(blockwise.buffer_bytes("attention scratch") == 0);
}

TEST_CASE("Linformer projects keys and values along the steps: MultiHeadAttention with linformer.k, in double") {
    // Self-attention, 2 heads of 3, 40 steps projected to 6 rows; masked keys and values zeroed
    // before the projection, masked queries attending uniformly (Keras's fully masked rows).
    const std::int64_t B = 2, T = 40, D = 5, n = 2, h = 3, k = 6;
    OpRunner r("MultiHeadAttention", "{num_heads: 2, key_dim: 3, linformer: {k: 6}}", {seq(B, T, D)}, {true}, false);
    fill(r, {"MultiHeadAttention", {seq(B, T, D)}, {true}}, 31);
    const auto w = [&](const std::string& name) {
        for (std::size_t i = 0; i < r.weights().size(); ++i) {
            if (r.shapes().weights[i].name == name) return r.weights()[i].data<float>();
        }
        FAIL("no weight " << name);
        return static_cast<float*>(nullptr);
    };
    REQUIRE(r.shapes().weights.size() == 10);
    CHECK(r.shapes().weights[8].shape == Shape{k, T});
    const float* x = r.inputs()[0].data<float>();
    const std::uint8_t* mask = r.input_masks()[0].data<std::uint8_t>();
    // Projection of `name` for sample b, step t, head, dim e.
    const auto project = [&](const std::string& name, std::int64_t b, std::int64_t t, std::int64_t head,
                             std::int64_t e) {
        double acc = w(name + ".bias")[head * h + e];
        for (std::int64_t f = 0; f < D; ++f)
            acc += double(x[(b * T + t) * D + f]) * w(name + ".kernel")[(f * n + head) * h + e];
        return acc;
    };
    std::vector<double> want;
    for (std::int64_t b = 0; b < B; ++b) {
        std::vector<double> joined(static_cast<std::size_t>(T * n * h));
        for (std::int64_t head = 0; head < n; ++head) {
            std::vector<double> kp(static_cast<std::size_t>(k * h), 0.0), vp(static_cast<std::size_t>(k * h), 0.0);
            for (std::int64_t row = 0; row < k; ++row)
                for (std::int64_t t = 0; t < T; ++t) {
                    if (!mask[b * T + t]) continue;
                    for (std::int64_t e = 0; e < h; ++e) {
                        kp[static_cast<std::size_t>(row * h + e)] +=
                            w("linformer.e")[row * T + t] * project("key", b, t, head, e);
                        vp[static_cast<std::size_t>(row * h + e)] +=
                            w("linformer.f")[row * T + t] * project("value", b, t, head, e);
                    }
                }
            for (std::int64_t i = 0; i < T; ++i) {
                std::vector<double> s(static_cast<std::size_t>(k));
                double top = -INFINITY, sum = 0.0;
                for (std::int64_t row = 0; row < k; ++row) {
                    double score = 0.0;
                    for (std::int64_t e = 0; e < h; ++e)
                        score += project("query", b, i, head, e) / std::sqrt(3.0) *
                                 kp[static_cast<std::size_t>(row * h + e)];
                    s[static_cast<std::size_t>(row)] = mask[b * T + i] ? score : -1e9;
                    top = std::max(top, s[static_cast<std::size_t>(row)]);
                }
                for (double& v : s) sum += (v = std::exp(v - top));
                for (std::int64_t e = 0; e < h; ++e) {
                    double o = 0.0;
                    for (std::int64_t row = 0; row < k; ++row)
                        o += s[static_cast<std::size_t>(row)] / sum * vp[static_cast<std::size_t>(row * h + e)];
                    joined[static_cast<std::size_t>((i * n + head) * h + e)] = o;
                }
            }
        }
        for (std::int64_t i = 0; i < T; ++i)
            for (std::int64_t f = 0; f < D; ++f) {
                double acc = w("attention_output.bias")[f];
                for (std::int64_t m = 0; m < n * h; ++m)
                    acc += joined[static_cast<std::size_t>(i * n * h + m)] * w("attention_output.kernel")[m * D + f];
                want.push_back(acc);
            }
    }
    r.forward(false, 1, false, 2);
    check_close(r.outputs()[0], want, "linformer");
}
