// Ops under mixed_bfloat16 (Dense, LSTM, Attention, MultiHeadAttention): forward and backward
// within bfloat16's tolerance of float32, with the same inputs and weights, and visibly not float32
// (the bf16 path ran).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "gradcheck.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/cpu.hpp"
#include "op_runner.hpp"

using nngraph::DType;
using nngraph::Tensor;
using nngraph::testing::OpRunner;

namespace {

// The largest |a - b| over the elements, and the largest |b|, for a tolerance relative to b's scale.
struct Difference {
    double largest = 0.0, scale = 0.0;
};
Difference difference(const Tensor& a, const Tensor& b) {
    Difference d;
    const float* x = a.data<float>();
    const float* y = b.data<float>();
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        d.largest = std::max(d.largest, std::abs(double(x[i]) - double(y[i])));
        d.scale = std::max(d.scale, std::abs(double(y[i])));
    }
    return d;
}

// bf16 keeps 8 significant bits (relative rounding 2^-9); a dot product of K terms rounded once
// each side has a relative error of about 2^-8 · sqrt(K) of its scale at most, here well under 2%.
// `may_equal`: a gradient the mixed path computes in f32 from f32 values (a bias's row sums of dy).
void check_close(const Tensor& bf16, const Tensor& f32, const std::string& what, double tolerance = 0.02,
                 bool may_equal = false) {
    INFO(what);
    const Difference d = difference(bf16, f32);
    CHECK(d.largest <= tolerance * d.scale);
    if (!may_equal) CHECK(d.largest > 0.0);  // rounded to bf16 somewhere: the mixed path ran
}

// One op planned under float32 and under mixed_bfloat16, with the same inputs and weights.
struct PolicyPair {
    OpRunner f32, bf16;

    // `masks[i]`: input i has a random mask (its first step kept), the same in both.
    PolicyPair(const char* op, const std::string& attributes, const std::vector<nngraph::TensorInfo>& inputs,
               const std::vector<bool>& masks = {})
        : f32(op, attributes, inputs, masks), bf16(op, attributes, inputs, masks, true, NNG_PRECISION_MIXED_BFLOAT16) {
        for (std::size_t i = 0; i < f32.inputs().size(); ++i) {
            nngraph::testing::fill_uniform(f32.inputs()[i], -1, 1, 7 + i);
            bf16.inputs()[i] = f32.inputs()[i];
            if (i >= masks.size() || !masks[i]) continue;
            Tensor& mask = f32.input_masks()[i];
            nngraph::testing::fill_uniform(mask, 0.0, 1.7, 17 + i);  // 0 or 1
            for (std::int64_t b = 0; b < mask.dim(0); ++b) mask.data<std::uint8_t>()[b * mask.dim(1)] = 1;
            bf16.input_masks()[i] = mask;
        }
        for (std::size_t k = 0; k < f32.weights().size(); ++k) {
            // Biases away from their initial zeros, so that each one counts.
            Tensor& w = f32.weights()[k];
            const float* v = w.data<float>();
            if (std::all_of(v, v + w.numel(), [](float x) { return x == 0.0f; }))
                nngraph::testing::fill_uniform(w, -0.5, 0.5, 7 + k);
            bf16.weights()[k] = w;
        }
    }

    // Forward (inference and training) and backward (one random gradient for every output) on
    // `threads` threads; every
    // output and gradient within `tolerance`, and different, except the weight gradients in
    // `exact_weights`, which the mixed path also computes in f32, and those in `vanishing_weights`,
    // zero in exact arithmetic, which are held to `tolerance` of the largest weight gradient.
    void compare(double tolerance, const std::set<std::size_t>& exact_weights = {}, int threads = 1,
                 const std::set<std::size_t>& vanishing_weights = {}) {
        // Inference first (planned apart, without the saved buffers), then a training step.
        f32.forward(false, 1, false, threads);
        bf16.forward(false, 1, false, threads);
        for (std::size_t o = 0; o < f32.outputs().size(); ++o)
            check_close(bf16.outputs()[o], f32.outputs()[o], "inference output " + std::to_string(o), tolerance);
        f32.forward(true, 1, false, threads);
        bf16.forward(true, 1, false, threads);
        std::vector<Tensor> dys;
        for (std::size_t o = 0; o < f32.outputs().size(); ++o) {
            check_close(bf16.outputs()[o], f32.outputs()[o], "output " + std::to_string(o), tolerance);
            Tensor dy(DType::F32, f32.outputs()[o].shape());
            nngraph::testing::fill_uniform(dy, -1, 1, 9 + o);
            dys.push_back(std::move(dy));
        }
        f32.backward(dys, 1, {}, threads);
        bf16.backward(dys, 1, {}, threads);
        for (std::size_t i = 0; i < f32.grad_inputs().size(); ++i)
            check_close(bf16.grad_inputs()[i], f32.grad_inputs()[i], "input gradient " + std::to_string(i), tolerance);
        double largest_scale = 0.0;
        for (const Tensor& g : f32.grad_weights()) largest_scale = std::max(largest_scale, difference(g, g).scale);
        for (std::size_t k = 0; k < f32.grad_weights().size(); ++k) {
            const std::string what = "weight gradient " + std::to_string(k);
            if (vanishing_weights.count(k)) {
                INFO(what);
                CHECK(difference(bf16.grad_weights()[k], f32.grad_weights()[k]).largest <= tolerance * largest_scale);
                continue;
            }
            check_close(bf16.grad_weights()[k], f32.grad_weights()[k], what, tolerance, exact_weights.count(k) > 0);
        }
    }
};

// mixed_bfloat16 is refused without AVX512_BF16: nothing to compare there.
bool skip_without_bfloat16() {
    if (nng::cpu::has_bfloat16_dot_product()) return false;
    MESSAGE("this CPU has no AVX512_BF16: mixed_bfloat16 is refused here, nothing to compare");
    return true;
}

}  // namespace

TEST_CASE("Dense under mixed_bfloat16 is within bfloat16 tolerance of float32, forward and backward") {
    if (skip_without_bfloat16()) return;
    for (const std::string activation : {"linear", "relu", "sigmoid"}) {
        CAPTURE(activation);
        PolicyPair dense("Dense", "{units: 24, activation: " + activation + "}", {{DType::F32, {16, 40}}});
        // The bias gradient sums dz in f32 in both: dy itself where z keeps its sign (linear, relu).
        dense.compare(0.02, {1});
    }
    // As wide as a vocabulary: the kernel's gradient reads a plain copy of xᵀ.
    PolicyPair wide("Dense", "{units: 8192, activation: softmax}", {{DType::F32, {6, 40}}});
    wide.compare(0.02, {1});
}

TEST_CASE("Dense under mixed_bfloat16 declares its bf16 copies in the arena, none in float32") {
    const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {8, 12}}};
    OpRunner bf16("Dense", "{units: 5}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(bf16.buffer_bytes("bfloat16 kernel") == 2 * 12 * 5);
    CHECK(bf16.buffer_bytes("bfloat16 input") == 2 * 8 * 12);
    CHECK(bf16.buffer_bytes("bfloat16 pre-activation gradient") == 2 * 8 * 5);
    OpRunner f32("Dense", "{units: 5}", inputs);
    CHECK(f32.buffer_bytes("bfloat16 kernel") == 0);
    CHECK(f32.buffer_bytes("bfloat16 input") == 0);
}

TEST_CASE("LSTM under mixed_bfloat16 is within bfloat16 tolerance of float32, forward and backward, on both paths") {
    if (skip_without_bfloat16()) return;
    struct Case {
        std::string attributes;
        std::int64_t batch;
        int threads;
        bool masked = false;
    };
    // The last output, the sequence with the final states, and a batch split into parts over
    // threads, on the stepwise path (a small batch projects every step's input at once, a larger
    // one step by step, masked or not) and on oneDNN's (use_cudnn: true).
    for (const std::string path : {"", ", use_cudnn: true"}) {
        for (const Case& c : {Case{"{units: 12" + path + "}", 4, 1},
                              Case{"{units: 12, return_sequences: true, return_state: true" + path + "}", 4, 1},
                              Case{"{units: 12, return_sequences: true, go_backwards: true" + path + "}", 32, 2},
                              Case{"{units: 12, return_state: true" + path + "}", 24, 2, true}}) {
            if (c.masked && !path.empty()) continue;  // oneDNN's LSTM takes no mask
            CAPTURE(c.attributes);
            CAPTURE(c.batch);
            CAPTURE(c.masked);
            PolicyPair lstm("LSTM", c.attributes, {{DType::F32, {c.batch, 7, 10}}}, {c.masked});
            lstm.compare(0.03, {}, c.threads);
        }
    }
}

TEST_CASE("LSTM under mixed_bfloat16 keeps its products' operands in bf16, and float32 none") {
    if (skip_without_bfloat16()) return;  // the declaration asks oneDNN's bf16 LSTM for its scratchpad
    const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {4, 7, 10}}};
    // The stepwise path: every step's rows [x, h] (7 * 4 rows of 10 + 12), then room for the
    // weights [W; U] (22, 48), which oneDNN's packed layout may pad.
    OpRunner steps("LSTM", "{units: 12}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(steps.buffer_bytes("bfloat16 steps") >= 2 * (nng::round_up(7 * 4 * 22, 32) + 22 * 48));
    CHECK(steps.buffer_bytes("bfloat16 input") == 0);
    OpRunner steps_f32("LSTM", "{units: 12}", inputs);
    CHECK(steps_f32.buffer_bytes("bfloat16 steps") == 0);
    // oneDNN's path: the input and the sequence.
    OpRunner bf16("LSTM", "{units: 12, use_cudnn: true}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    OpRunner f32("LSTM", "{units: 12, use_cudnn: true}", inputs);  // the same (oneDNN's) path in f32
    CHECK(bf16.buffer_bytes("bfloat16 input") == 2 * 4 * 7 * 10);
    CHECK(bf16.buffer_bytes("sequence") == 2 * 4 * 7 * 12);
    CHECK(bf16.buffer_bytes("input") == 0);  // the f32 time-major input lives for the call only
    CHECK(f32.buffer_bytes("bfloat16 input") == 0);
    CHECK(f32.buffer_bytes("sequence") == 4 * 4 * 7 * 12);
}

TEST_CASE("LSTM training under mixed_bfloat16 saves its gates in bf16 and h in two slots, float32 every step's") {
    if (skip_without_bfloat16()) return;
    // A batch of 16 projects step by step (a smaller one projects every step's input at once and
    // keeps every step's gates in f32): one step's f32 gates (16, 48), then every step's in bf16.
    const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {16, 7, 10}}};
    OpRunner bf16("LSTM", "{units: 12}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    OpRunner f32("LSTM", "{units: 12}", inputs);
    const std::uint64_t step = 16 * 48;
    CHECK(bf16.buffer_bytes("gates") >= 4 * step + 2 * 7 * step);
    CHECK(bf16.buffer_bytes("gates") < 4 * step + 2 * 7 * step + 128);  // the bf16 array 64-byte aligned
    CHECK(f32.buffer_bytes("gates") == 4 * 7 * step);
    CHECK(bf16.buffer_bytes("hidden") == 4 * 2 * 16 * 12);
    CHECK(f32.buffer_bytes("hidden") == 4 * 8 * 16 * 12);
    // The whole sequence as the output keeps every step's h.
    OpRunner sequence("LSTM", "{units: 12, return_sequences: true}", inputs, {}, true, NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(sequence.buffer_bytes("hidden") == 4 * 8 * 16 * 12);
}

TEST_CASE("Attention under mixed_bfloat16 (dense core) is within bfloat16 tolerance of float32, forward and backward") {
    if (skip_without_bfloat16()) return;
    // Dot scores (with a learned scale: its gradient too), scores given by concat, dropout on the
    // probabilities (the same keep bits in both: the same seed).
    for (const std::string attributes : {"{}", "{use_scale: true}", "{score_mode: concat}", "{dropout: 0.25}"}) {
        CAPTURE(attributes);
        PolicyPair attention("Attention", attributes, {{DType::F32, {3, 9, 16}}, {DType::F32, {3, 11, 16}}});
        attention.compare(0.03);
    }
    // One input in every role: query, key and value share one bf16 copy.
    PolicyPair self_attention("Attention", "{}", {{DType::F32, {3, 9, 16}}});
    self_attention.compare(0.03);
}

TEST_CASE(
    "MultiHeadAttention under mixed_bfloat16 (projections and dense core) is within bfloat16 tolerance of "
    "float32, forward and backward") {
    if (skip_without_bfloat16()) return;
    // Self-attention (one input in every role), causal; cross-attention with a key of its own.
    struct Case {
        std::string attributes;
        std::vector<nngraph::TensorInfo> inputs;
    };
    for (const Case& c : {Case{"{num_heads: 2, key_dim: 8, use_causal_mask: true}", {{DType::F32, {2, 10, 12}}}},
                          Case{"{num_heads: 3, key_dim: 6, value_dim: 5}",
                               {{DType::F32, {2, 7, 12}}, {DType::F32, {2, 9, 10}}, {DType::F32, {2, 9, 8}}}}}) {
        CAPTURE(c.attributes);
        PolicyPair attention("MultiHeadAttention", c.attributes, c.inputs);
        // The output bias's gradient is dy's row sums in both. The key bias's vanishes: adding it
        // adds q·b to a whole row of scores, which the softmax ignores (bf16 rounding does not).
        attention.compare(0.03, {attention.f32.weights().size() - 1}, 1, {3});
    }
}

TEST_CASE(
    "Attention and MultiHeadAttention under mixed_bfloat16 in the blockwise core (its sparse patterns, the ring) "
    "and the LSH core are within bfloat16 tolerance of float32, forward and backward") {
    if (skip_without_bfloat16()) return;
    struct Case {
        std::string op, attributes;
        std::vector<nngraph::TensorInfo> inputs;
        int threads;
    };
    // Sequences of several 64-step tiles with partial last ones; widths that are odd or not
    // multiples of 16 (padded pairs and columns); Attention on one and two threads (a group's query tiles
    // shared, their key and value gradients summed). MultiHeadAttention's LSH case has one chunk
    // (buckets longer than the sequence): its bf16 projections move queries across bucket
    // boundaries, and with several chunks its two runs would attend over different keys.
    const std::vector<nngraph::TensorInfo> cross = {{DType::F32, {2, 100, 7}}, {DType::F32, {2, 130, 7}}};
    const std::vector<nngraph::TensorInfo> self = {{DType::F32, {2, 150, 12}}};
    for (const Case& c : {
             Case{"Attention", "{implementation: blockwise}", cross, 1},
             Case{"Attention", "{implementation: blockwise, use_scale: true, dropout: 0.25}", cross, 2},
             Case{"Attention", "{implementation: blockwise, use_causal_mask: true}", self, 2},
             Case{"Attention", "{window: 20, global_tokens: 3}", self, 1},
             Case{"Attention", "{sparsity: {block_size: 16, local_blocks: 2, stride: 3}}", self, 2},
             Case{"Attention", "{implementation: ring, use_causal_mask: true}", self, 1},
             Case{"Attention", "{lsh: {num_hashes: 2, bucket_size: 16}}", self, 2},
             Case{"MultiHeadAttention", "{num_heads: 2, key_dim: 8, lsh: {num_hashes: 2, bucket_size: 256}}", self, 1},
             Case{"MultiHeadAttention", "{num_heads: 2, key_dim: 8, implementation: blockwise}", self, 1},
             Case{"MultiHeadAttention", "{num_heads: 2, key_dim: 5, value_dim: 6, use_causal_mask: true, window: 30}",
                  self, 1},
         }) {
        CAPTURE(c.op);
        CAPTURE(c.attributes);
        PolicyPair attention(c.op.c_str(), c.attributes, c.inputs);
        if (c.op == "Attention") {
            attention.compare(0.03, {}, c.threads);
        } else {
            // As in the dense core's case: the output bias's gradient is dy's row sums in both;
            // the key bias's (weight 3; LSH shares the query's projection, and has none) vanishes
            // in exact arithmetic.
            const bool key_bias = c.attributes.find("lsh") == std::string::npos;
            attention.compare(0.03, {attention.f32.weights().size() - 1}, c.threads,
                              key_bias ? std::set<std::size_t>{3} : std::set<std::size_t>{});
        }
    }
}

TEST_CASE("the blockwise core under mixed_bfloat16 with padding masks: skipped, fallback and uniform rows") {
    if (skip_without_bfloat16()) return;
    // Random query and key masks; then sample 1 loses every key: Attention softmaxes its rows
    // over all keys' score - 1e9 (fallback rows), MultiHeadAttention gives them the values' mean.
    const std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {2, 100, 12}}, {DType::F32, {2, 130, 12}}};
    const auto drop_keys = [](OpRunner& r) {
        Tensor& keys = r.input_masks()[1];
        std::fill_n(keys.data<std::uint8_t>() + keys.dim(1), keys.dim(1), std::uint8_t{0});
    };
    for (const std::string attributes :
         {"{implementation: blockwise}", "{implementation: blockwise, use_causal_mask: true}"}) {
        CAPTURE(attributes);
        PolicyPair attention("Attention", attributes, inputs, {true, true});
        drop_keys(attention.f32);
        drop_keys(attention.bf16);
        attention.compare(0.03, {}, 2);
    }
    PolicyPair heads("MultiHeadAttention", "{num_heads: 2, key_dim: 6, implementation: blockwise}", inputs,
                     {true, true});
    drop_keys(heads.f32);
    drop_keys(heads.bf16);
    heads.compare(0.03, {heads.f32.weights().size() - 1}, 1, {3});
}
