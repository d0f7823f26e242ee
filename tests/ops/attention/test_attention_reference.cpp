// Attention and MultiHeadAttention forward against independent references: Keras's equations as
// plain loops in double, on random inputs and weights, with masks, causal masking and scales.
// Also dropout's statistics and the shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "nngraph/error.hpp"

using nngraph::DType;
using nngraph::Shape;
using nngraph::Tensor;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

constexpr double kTolerance = 1e-5;

// A (batch, steps, features) tensor read in double.
struct Seq {
    std::int64_t batch = 0, steps = 0, dim = 0;
    std::vector<double> x;

    explicit Seq(const Tensor& t) : batch(t.dim(0)), steps(t.dim(1)), dim(t.dim(2)) {
        for (float f : t.values<float>()) x.push_back(f);
    }
    double at(std::int64_t b, std::int64_t t, std::int64_t d) const {
        return x[static_cast<std::size_t>((b * steps + t) * dim + d)];
    }
};

bool kept(const Tensor& mask, std::int64_t b, std::int64_t t) {
    return mask.empty() || mask.data<std::uint8_t>()[b * mask.dim(1) + t] != 0;
}

// Random masks with step 0 always kept (no row is fully masked unless a test wants one).
void random_mask(Tensor& mask, std::uint64_t seed) {
    fill_uniform(mask, 0.0, 1.7, seed);
    for (std::int64_t b = 0; b < mask.dim(0); ++b) mask.data<std::uint8_t>()[b * mask.dim(1)] = 1;
}

void softmax_row(std::vector<double>& s) {
    double m = -INFINITY;
    for (double v : s) m = std::max(m, v);
    double sum = 0.0;
    for (double& v : s) sum += (v = std::exp(v - m));
    for (double& v : s) v /= sum;
}

void check_close(const Tensor& got, const std::vector<double>& want, const std::string& what) {
    REQUIRE(static_cast<std::size_t>(got.numel()) == want.size());
    double worst = 0.0;
    std::size_t worst_at = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double err = std::abs(double(got.data<float>()[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
        if (err > worst) worst = err, worst_at = i;
    }
    INFO(what << ": worst relative error " << worst << " at " << worst_at << " (got " << got.data<float>()[worst_at]
              << ", want " << want[worst_at] << ")");
    CHECK(worst <= kTolerance);
}

// Random weights: the initializers, then noise so that ones and zeros become generic values.
void randomize_weights(OpRunner& r, std::uint64_t seed) {
    r.initialize_weights(seed);
    for (std::size_t k = 0; k < r.weights().size(); ++k) {
        Tensor noise(DType::F32, r.weights()[k].shape());
        fill_uniform(noise, -0.3, 0.3, seed * 31 + k);
        for (std::int64_t e = 0; e < noise.numel(); ++e) r.weights()[k].data<float>()[e] += noise.data<float>()[e];
    }
}

const Tensor& weight(OpRunner& r, const std::string& name) {
    for (std::size_t k = 0; k < r.weights().size(); ++k) {
        if (r.shapes().weights[k].name == name) return r.weights()[k];
    }
    throw std::runtime_error("no weight " + name);
}

// ---- keras.layers.Attention in double --------------------------------------------------------------

struct AttentionCase {
    std::string label, attributes;
    std::int64_t batch = 2, tq = 5, tv = 5, dim = 4, dv = 4;
    bool key = false, query_mask = false, value_mask = false;
    bool use_scale = false, concat = false, causal = false;
    double constant = 1.0;  // the `scale` attribute
};

std::vector<double> attention_reference(const AttentionCase& c, OpRunner& r) {
    const Seq q(r.inputs()[0]), v(r.inputs()[1]), k(c.key ? r.inputs()[2] : r.inputs()[1]);
    const Tensor &qm = r.input_masks()[0], &vm = r.input_masks()[1];
    const double learned = c.use_scale ? weight(r, "scale").data<float>()[0] : 1.0;
    const double w = c.concat ? weight(r, "concat_score_weight").data<float>()[0] : 1.0;
    std::vector<double> out;
    for (std::int64_t b = 0; b < c.batch; ++b) {
        for (std::int64_t i = 0; i < c.tq; ++i) {
            std::vector<double> s(static_cast<std::size_t>(c.tv));
            for (std::int64_t j = 0; j < c.tv; ++j) {
                double score = 0.0;
                for (std::int64_t d = 0; d < c.dim; ++d) {
                    score +=
                        c.concat ? std::tanh(learned * (q.at(b, i, d) + k.at(b, j, d))) : q.at(b, i, d) * k.at(b, j, d);
                }
                score = c.concat ? w * score : score * learned;
                score *= c.constant;
                // Keras: where(padding, scores - 1e9, scores), padding = not (value mask and causal)
                if (!kept(vm, b, j) || (c.causal && j > i)) score -= 1e9;
                s[static_cast<std::size_t>(j)] = score;
            }
            softmax_row(s);
            for (std::int64_t e = 0; e < c.dv; ++e) {
                double o = 0.0;
                for (std::int64_t j = 0; j < c.tv; ++j) o += s[static_cast<std::size_t>(j)] * v.at(b, j, e);
                out.push_back(kept(qm, b, i) ? o : 0.0);
            }
        }
    }
    return out;
}

void run_attention_case(const AttentionCase& c, std::uint64_t seed, int threads = 1) {
    CAPTURE(c.label);
    CAPTURE(threads);
    std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {c.batch, c.tq, c.dim}},
                                               {DType::F32, {c.batch, c.tv, c.dv}}};
    if (c.key) inputs.push_back({DType::F32, {c.batch, c.tv, c.dim}});
    OpRunner r("Attention", c.attributes, inputs, {c.query_mask, c.value_mask, false}, false);
    for (std::size_t i = 0; i < inputs.size(); ++i) fill_uniform(r.inputs()[i], -1.0, 1.0, seed + i);
    if (c.query_mask) random_mask(r.input_masks()[0], seed + 10);
    if (c.value_mask) random_mask(r.input_masks()[1], seed + 11);
    randomize_weights(r, seed);
    r.forward(false, 1, false, threads);
    check_close(r.outputs()[0], attention_reference(c, r), c.label);
    // The output carries the query mask (Keras's compute_mask), and no mask without one.
    if (c.query_mask) {
        CHECK(r.shapes().outputs[0].mask_rule == NNG_MASK_FROM_INPUT);
        CHECK(r.shapes().outputs[0].mask_source == 0);
    } else {
        CHECK(r.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
    }
}

// ---- keras.layers.MultiHeadAttention in double --------------------------------------------------------

struct MhaCase {
    std::string label;
    std::int64_t batch = 2, tq = 5, tv = 6, dq = 6, dv_in = 5, dk_in = 4;
    int inputs = 2;  // 1: self-attention, 2: [query, value], 3: [query, value, key]
    std::int64_t heads = 2, key_dim = 3, value_dim = 3;
    Shape output_shape;  // empty: the query's last dim
    bool use_bias = true, causal = false;
    bool masks = false;
    double dropout = 0.0;  // only as an attribute: inference runs without it

    std::string attributes() const {
        std::string a = "{num_heads: " + std::to_string(heads) + ", key_dim: " + std::to_string(key_dim) +
                        ", value_dim: " + std::to_string(value_dim) + ", use_bias: " + (use_bias ? "true" : "false") +
                        ", use_causal_mask: " + (causal ? "true" : "false") + ", dropout: " + std::to_string(dropout);
        if (!output_shape.empty()) {
            a += ", output_shape: [";
            for (std::size_t i = 0; i < output_shape.size(); ++i)
                a += (i ? ", " : "") + std::to_string(output_shape[i]);
            a += "]";
        }
        return a + "}";
    }
};

std::vector<double> mha_reference(const MhaCase& c, OpRunner& r) {
    const int vi = c.inputs >= 2 ? 1 : 0, ki = c.inputs == 3 ? 2 : vi;
    const Seq xq(r.inputs()[0]), xv(r.inputs()[static_cast<std::size_t>(vi)]),
        xk(r.inputs()[static_cast<std::size_t>(ki)]);
    const Tensor& qm = r.input_masks()[0];
    const Tensor& vm = r.input_masks()[static_cast<std::size_t>(vi)];
    const Tensor empty;
    const Tensor& km = ki != vi ? r.input_masks()[static_cast<std::size_t>(ki)] : empty;
    const std::int64_t n = c.heads, h = c.key_dim, hv = c.value_dim;
    // The projections, (B, T, n, dim), by Keras's einsum "abc,cde->abde" plus bias "de".
    const auto project = [&](const Seq& x, const char* name, std::int64_t dim) {
        const Tensor& kernel = weight(r, std::string(name) + ".kernel");
        const float* bias = c.use_bias ? weight(r, std::string(name) + ".bias").data<float>() : nullptr;
        std::vector<double> y(static_cast<std::size_t>(x.batch * x.steps * n * dim));
        for (std::int64_t b = 0; b < x.batch; ++b)
            for (std::int64_t t = 0; t < x.steps; ++t)
                for (std::int64_t o = 0; o < n * dim; ++o) {
                    double acc = bias ? bias[o] : 0.0;
                    for (std::int64_t f = 0; f < x.dim; ++f)
                        acc += x.at(b, t, f) * kernel.data<float>()[f * n * dim + o];
                    y[static_cast<std::size_t>((b * x.steps + t) * n * dim + o)] = acc;
                }
        return y;
    };
    const std::vector<double> Q = project(xq, "query", h), K = project(xk, "key", h), V = project(xv, "value", hv);
    std::int64_t out = 1;
    for (std::int64_t d : (c.output_shape.empty() ? Shape{c.dq} : c.output_shape)) out *= d;
    const Tensor& wo = weight(r, "attention_output.kernel");
    const float* bo = c.use_bias ? weight(r, "attention_output.bias").data<float>() : nullptr;
    std::vector<double> y;
    for (std::int64_t b = 0; b < c.batch; ++b) {
        for (std::int64_t i = 0; i < c.tq; ++i) {
            std::vector<double> o(static_cast<std::size_t>(n * hv), 0.0);  // heads joined
            for (std::int64_t head = 0; head < n; ++head) {
                std::vector<double> s(static_cast<std::size_t>(c.tv));
                for (std::int64_t j = 0; j < c.tv; ++j) {
                    double score = 0.0;
                    for (std::int64_t d = 0; d < h; ++d) {
                        score += Q[static_cast<std::size_t>(((b * c.tq + i) * n + head) * h + d)] /
                                 std::sqrt(double(h)) *
                                 K[static_cast<std::size_t>(((b * c.tv + j) * n + head) * h + d)];
                    }
                    // Keras: attention mask = query mask & value mask & key mask & causal; masked -> -1e9
                    const bool allowed = kept(qm, b, i) && kept(vm, b, j) && kept(km, b, j) && (!c.causal || j <= i);
                    s[static_cast<std::size_t>(j)] = allowed ? score : -1e9;
                }
                softmax_row(s);
                for (std::int64_t e = 0; e < hv; ++e) {
                    double acc = 0.0;
                    for (std::int64_t j = 0; j < c.tv; ++j)
                        acc += s[static_cast<std::size_t>(j)] *
                               V[static_cast<std::size_t>(((b * c.tv + j) * n + head) * hv + e)];
                    o[static_cast<std::size_t>(head * hv + e)] = acc;
                }
            }
            for (std::int64_t f = 0; f < out; ++f) {
                double acc = bo ? bo[f] : 0.0;
                for (std::int64_t m = 0; m < n * hv; ++m)
                    acc += o[static_cast<std::size_t>(m)] * wo.data<float>()[m * out + f];
                y.push_back(acc);
            }
        }
    }
    return y;
}

void run_mha_case(const MhaCase& c, std::uint64_t seed) {
    CAPTURE(c.label);
    std::vector<nngraph::TensorInfo> inputs = {{DType::F32, {c.batch, c.tq, c.dq}}};
    if (c.inputs >= 2) inputs.push_back({DType::F32, {c.batch, c.tv, c.dv_in}});
    if (c.inputs == 3) inputs.push_back({DType::F32, {c.batch, c.tv, c.dk_in}});
    const std::vector<bool> masks(inputs.size(), c.masks);
    OpRunner r("MultiHeadAttention", c.attributes(), inputs, masks, false);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        fill_uniform(r.inputs()[i], -1.0, 1.0, seed + i);
        if (c.masks) random_mask(r.input_masks()[i], seed + 10 + i);
    }
    randomize_weights(r, seed);
    r.forward(false);
    Shape expected = {c.batch, c.tq};
    for (std::int64_t d : (c.output_shape.empty() ? Shape{c.dq} : c.output_shape)) expected.push_back(d);
    CHECK(r.outputs()[0].shape() == expected);
    check_close(r.outputs()[0], mha_reference(c, r), c.label);
}

}  // namespace

TEST_CASE("Attention forward matches Keras's equations in double") {
    const std::vector<AttentionCase> cases = {
        {"dot, [query, value]", "{}"},
        {"dot, [query, value, key], Tq != Tv, dv != dim", "{}", 2, 3, 7, 4, 5, true},
        {"use_scale", "{use_scale: true}", 2, 5, 5, 4, 4, false, false, false, true},
        {"constant scale", "{scale: 0.5}", 2, 5, 6, 4, 4, true, false, false, false, false, false, 0.5},
        {"use_scale and constant scale", "{use_scale: true, scale: 0.7}", 2, 4, 4, 3, 3, false, false, false, true,
         false, false, 0.7},
        {"concat", "{score_mode: concat}", 2, 4, 5, 3, 3, true, false, false, false, true},
        {"concat with use_scale and constant", "{score_mode: concat, use_scale: true, scale: 0.5}", 2, 4, 5, 3, 2, true,
         false, false, true, true, false, 0.5},
        {"value mask", "{}", 3, 5, 6, 4, 4, true, false, true},
        {"query mask", "{}", 3, 5, 6, 4, 4, true, true, false},
        {"both masks", "{}", 3, 6, 6, 4, 4, false, true, true},
        {"causal", "{use_causal_mask: true}", 2, 6, 6, 4, 4, false, false, false, false, false, true},
        {"causal, Tq < Tv, both masks, scaled", "{use_causal_mask: true, scale: 0.5}", 2, 4, 7, 4, 3, true, true, true,
         false, false, true, 0.5},
        {"dropout attribute has no effect in inference", "{dropout: 0.5, seed: 3}", 2, 5, 5, 4, 4, false, true, true},
    };
    std::uint64_t seed = 1;
    for (const AttentionCase& c : cases) run_attention_case(c, seed += 7);
}

TEST_CASE("Attention inference split into parts, one a thread with its own rows of scores, matches in double") {
    // Large enough that inference splits the problem: blocks of whole samples (over 2^19 scores,
    // at least two samples a thread) or, for one sample on two threads, blocks of query rows;
    // each thread then keeps only its current part's scores. On one thread, blocks of samples.
    const std::vector<AttentionCase> cases = {
        {"samples in parts, both masks", "{}", 6, 300, 300, 4, 4, false, true, true},
        {"samples in parts, causal, scaled", "{use_causal_mask: true, scale: 0.5}", 5, 300, 360, 3, 5, true, false,
         true, false, false, true, 0.5},
        {"one sample in blocks of query rows, both masks, causal", "{use_causal_mask: true}", 1, 64, 64, 4, 4, false,
         true, true, false, false, true},
    };
    std::uint64_t seed = 500;
    for (int threads : {1, 2}) {
        for (const AttentionCase& c : cases) run_attention_case(c, seed += 7, threads);
    }
}

TEST_CASE("MultiHeadAttention forward matches Keras's equations in double") {
    std::vector<MhaCase> cases;
    MhaCase base;
    auto add = [&](const std::string& label, auto&& change) {
        MhaCase c = base;
        c.label = label;
        change(c);
        cases.push_back(c);
    };
    add("cross, [query, value]", [](MhaCase&) {});
    add("self-attention, [query]", [](MhaCase& c) { c.inputs = 1, c.tv = c.tq; });
    add("cross, [query, value, key]", [](MhaCase& c) { c.inputs = 3; });
    add("value_dim != key_dim", [](MhaCase& c) { c.inputs = 3, c.value_dim = 5, c.heads = 3; });
    add("output_shape int", [](MhaCase& c) { c.output_shape = {7}; });
    add("output_shape list", [](MhaCase& c) { c.output_shape = {2, 3}; });
    add("without bias", [](MhaCase& c) { c.use_bias = false, c.inputs = 3; });
    add("masks on every input (masked queries attend uniformly)", [](MhaCase& c) { c.masks = true, c.inputs = 3; });
    add("self-attention with a mask", [](MhaCase& c) { c.masks = true, c.inputs = 1, c.tv = c.tq; });
    add("causal", [](MhaCase& c) { c.causal = true, c.inputs = 1, c.tv = c.tq; });
    add("causal, Tq < Tv, masks", [](MhaCase& c) { c.causal = true, c.masks = true, c.tq = 4, c.tv = 7; });
    add("one head, key_dim 8", [](MhaCase& c) { c.heads = 1, c.key_dim = 8, c.value_dim = 8; });
    std::uint64_t seed = 100;
    for (const MhaCase& c : cases) run_mha_case(c, seed += 13);
}

TEST_CASE("MultiHeadAttention with dropout zeroes fully masked rows, as Keras's Softmax layer does") {
    // With dropout > 0 Keras softmaxes through its Softmax layer, which zeroes masked positions:
    // a masked query's row then attends to nothing, and its output is the output projection of
    // the value bias only... projected: O = 0, so output = attention_output.bias.
    OpRunner r("MultiHeadAttention", "{num_heads: 2, key_dim: 3, dropout: 0.25}", {{DType::F32, {1, 3, 4}}}, {true},
               false);
    fill_uniform(r.inputs()[0], -1.0, 1.0, 5);
    randomize_weights(r, 5);
    std::uint8_t* mask = r.input_masks()[0].data<std::uint8_t>();
    mask[0] = 1, mask[1] = 0, mask[2] = 1;
    r.forward(false);
    const float* y = r.outputs()[0].data<float>();
    const float* bias = weight(r, "attention_output.bias").data<float>();
    for (int f = 0; f < 4; ++f) CHECK(y[4 + f] == doctest::Approx(bias[f]).epsilon(1e-6));
    // Without dropout (Keras's dot_product_attention path) the same row is a uniform average.
    OpRunner plain("MultiHeadAttention", "{num_heads: 2, key_dim: 3}", {{DType::F32, {1, 3, 4}}}, {true}, false);
    plain.inputs()[0] = r.inputs()[0];
    for (std::size_t k = 0; k < r.weights().size(); ++k) plain.weights()[k] = r.weights()[k];
    std::copy_n(mask, 3, plain.input_masks()[0].data<std::uint8_t>());
    plain.forward(false);
    MhaCase c;
    c.batch = 1, c.tq = c.tv = 3, c.dq = 4, c.inputs = 1, c.masks = true;
    check_close(plain.outputs()[0], mha_reference(c, plain), "uniform masked row");
}

TEST_CASE("Attention dropout keeps about 1 - rate of the probabilities, scaled by 1 / (1 - rate)") {
    // With value = identity (Tv = dim), each output row is its row of dropped probabilities.
    const std::int64_t batch = 4, tq = 32, tv = 32;
    const double rate = 0.3;
    OpRunner r("Attention", "{dropout: 0.3, seed: 11}", {{DType::F32, {batch, tq, tv}}, {DType::F32, {batch, tv, tv}}},
               {}, true);
    fill_uniform(r.inputs()[0], -0.5, 0.5, 3);
    float* v = r.inputs()[1].data<float>();
    std::fill(v, v + batch * tv * tv, 0.0f);
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t j = 0; j < tv; ++j) v[(b * tv + j) * tv + j] = 1.0f;
    r.forward(false);
    const Tensor probabilities = r.outputs()[0];
    r.forward(true, 42);
    const Tensor dropped = r.outputs()[0];
    r.forward(true, 42);
    CHECK(std::equal(dropped.values<float>().begin(), dropped.values<float>().end(),
                     r.outputs()[0].values<float>().begin()));
    std::int64_t zeros = 0;
    for (std::int64_t e = 0; e < dropped.numel(); ++e) {
        const float d = dropped.data<float>()[e], p = probabilities.data<float>()[e];
        if (d == 0.0f) {
            ++zeros;
        } else {
            CHECK(d == doctest::Approx(p / (1.0 - rate)).epsilon(1e-5));
        }
    }
    const double fraction = double(zeros) / double(dropped.numel());
    CHECK(fraction > rate - 0.04);
    CHECK(fraction < rate + 0.04);
    // Another step's seed draws another mask; the deterministic mode draws none.
    r.forward(true, 43);
    CHECK(!std::equal(dropped.values<float>().begin(), dropped.values<float>().end(),
                      r.outputs()[0].values<float>().begin()));
    r.forward(true, 43, true);
    CHECK(std::equal(probabilities.values<float>().begin(), probabilities.values<float>().end(),
                     r.outputs()[0].values<float>().begin()));
}

TEST_CASE("shape errors name both shapes") {
    auto message = [](const std::string& op, const std::string& attributes,
                      const std::vector<nngraph::TensorInfo>& inputs) {
        try {
            OpRunner r(op, attributes, inputs);
        } catch (const nngraph::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    std::string m =
        message("Attention", "{}", {{DType::F32, {2, 5, 4}}, {DType::F32, {2, 6, 4}}, {DType::F32, {2, 7, 4}}});
    CHECK_MESSAGE(m.find("(2, 7, 4)") != std::string::npos, m);
    CHECK_MESSAGE(m.find("(2, 6, 4)") != std::string::npos, m);
    CHECK_MESSAGE(m.find("steps") != std::string::npos, m);
    m = message("Attention", "{}", {{DType::F32, {2, 5, 4}}, {DType::F32, {2, 6, 3}}});
    CHECK_MESSAGE(m.find("(2, 5, 4)") != std::string::npos, m);
    CHECK_MESSAGE(m.find("(2, 6, 3)") != std::string::npos, m);
    m = message("Attention", "{}", {{DType::F32, {2, 5, 4}}, {DType::F32, {3, 5, 4}}});
    CHECK_MESSAGE(m.find("(2, 5, 4)") != std::string::npos, m);
    CHECK_MESSAGE(m.find("(3, 5, 4)") != std::string::npos, m);
    m = message("Attention", "{}", {{DType::F32, {2, 5}}, {DType::F32, {2, 5, 4}}});
    CHECK_MESSAGE(m.find("(2, 5)") != std::string::npos, m);
    m = message("MultiHeadAttention", "{num_heads: 2, key_dim: 4}",
                {{DType::F32, {2, 5, 4}}, {DType::F32, {2, 6, 4}}, {DType::F32, {2, 7, 3}}});
    CHECK_MESSAGE(m.find("(2, 7, 3)") != std::string::npos, m);
    CHECK_MESSAGE(m.find("(2, 6, 4)") != std::string::npos, m);
    m = message("MultiHeadAttention", "{num_heads: 2, key_dim: 4, attention_axes: [2]}", {{DType::F32, {2, 5, 4}}});
    CHECK_MESSAGE(m.find("attention_axes") != std::string::npos, m);
    m = message("MultiHeadAttention", "{num_heads: 0, key_dim: 4}", {{DType::F32, {2, 5, 4}}});
    CHECK_MESSAGE(m.find("num_heads") != std::string::npos, m);
    m = message("Attention", "{dropout: 1.0}", {{DType::F32, {2, 5, 4}}, {DType::F32, {2, 5, 4}}});
    CHECK_MESSAGE(m.find("dropout") != std::string::npos, m);
}

TEST_CASE("weights carry Keras's names, shapes and initializers") {
    OpRunner a("Attention", "{use_scale: true, score_mode: concat}",
               {{DType::F32, {2, 3, 4}}, {DType::F32, {2, 3, 4}}});
    REQUIRE(a.shapes().weights.size() == 2);
    CHECK(a.shapes().weights[0].name == "scale");
    CHECK(a.shapes().weights[0].shape.empty());
    CHECK(a.shapes().weights[1].name == "concat_score_weight");
    CHECK(a.weights()[0].data<float>()[0] == 1.0f);
    CHECK(a.weights()[1].data<float>()[0] == 1.0f);
    OpRunner plain("Attention", "{}", {{DType::F32, {2, 3, 4}}, {DType::F32, {2, 3, 4}}});
    CHECK(plain.shapes().weights.empty());

    OpRunner m("MultiHeadAttention", "{num_heads: 2, key_dim: 3, value_dim: 5}",
               {{DType::F32, {2, 4, 6}}, {DType::F32, {2, 5, 7}}, {DType::F32, {2, 5, 8}}});
    const std::vector<std::pair<std::string, Shape>> expected = {{"query.kernel", {6, 2, 3}},
                                                                 {"query.bias", {2, 3}},
                                                                 {"key.kernel", {8, 2, 3}},
                                                                 {"key.bias", {2, 3}},
                                                                 {"value.kernel", {7, 2, 5}},
                                                                 {"value.bias", {2, 5}},
                                                                 {"attention_output.kernel", {2, 5, 6}},
                                                                 {"attention_output.bias", {6}}};
    REQUIRE(m.shapes().weights.size() == expected.size());
    for (std::size_t k = 0; k < expected.size(); ++k) {
        CHECK(m.shapes().weights[k].name == expected[k].first);
        CHECK(m.shapes().weights[k].shape == expected[k].second);
    }
    CHECK(m.shapes().outputs[0].tensor.shape == Shape{2, 4, 6});
}
