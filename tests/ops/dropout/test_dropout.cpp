// Dropout: keep fraction and exact inverted scaling, seeded reproducible masks, noise_shape
// broadcasting, identity outside training, the mask passing through, attribute validation, and
// finite-difference checks of the gradient (the mask fixed by the seed).
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "gradcheck_table.hpp"
#include "nngraph/error.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

// Keep mask of a training forward: y != 0 (inputs are never 0 here), after checking every kept
// value is x / (1 - rate) to float precision.
std::vector<std::uint8_t> kept(OpRunner& runner, double rate) {
    const Tensor &x = runner.inputs()[0], &y = runner.outputs()[0];
    std::vector<std::uint8_t> keep(static_cast<std::size_t>(y.numel()));
    for (std::int64_t i = 0; i < y.numel(); ++i) {
        const float v = y.data<float>()[i];
        keep[static_cast<std::size_t>(i)] = v != 0.0f;
        if (v != 0.0f) REQUIRE(std::abs(v - x.data<float>()[i] / (1.0 - rate)) <= 1e-6 * std::abs(v));
    }
    return keep;
}

double fraction(const std::vector<std::uint8_t>& keep) {
    double n = 0;
    for (std::uint8_t k : keep) n += k;
    return n / static_cast<double>(keep.size());
}

// An input that is never zero: uniform in [0.5, 1.5) with alternating signs.
void fill_nonzero(Tensor& x, std::uint64_t seed) {
    fill_uniform(x, 0.5, 1.5, seed);
    for (std::int64_t i = 0; i < x.numel(); i += 2) x.data<float>()[i] = -x.data<float>()[i];
}

std::vector<std::uint8_t> mask_of(const std::string& attributes, const Shape& shape, std::uint64_t seed, double rate,
                                  int threads = 1, std::int64_t batch_offset = 0) {
    OpRunner runner("Dropout", attributes, {{DType::F32, shape}});
    runner.set_batch_offset(batch_offset);
    fill_nonzero(runner.inputs()[0], 5);
    runner.forward(true, seed, false, threads);
    return kept(runner, rate);
}

}  // namespace

TEST_CASE("Dropout keeps a fraction 1 - rate and scales kept values by 1 / (1 - rate)") {
    for (double rate : {0.1, 0.5, 0.8}) {
        CAPTURE(rate);
        // 409600 elements: the kept fraction's standard deviation is below 7e-4.
        const auto keep = mask_of("{rate: " + std::to_string(rate) + "}", {64, 200, 32}, 11, rate);
        CHECK(std::abs(fraction(keep) - (1.0 - rate)) < 0.004);
    }
}

TEST_CASE(
    "Dropout masks are reproducible: the same seed gives the same mask on any thread count, another seed another") {
    const Shape shape{16, 50, 64};  // above the size that splits the draw between threads
    const auto a = mask_of("{rate: 0.3}", shape, 42, 0.3);
    CHECK(a == mask_of("{rate: 0.3}", shape, 42, 0.3));
    CHECK(a == mask_of("{rate: 0.3}", shape, 42, 0.3, 2));  // element j depends on (seed, j) alone
    // An odd count: the second thread starts in the middle of a random pair, and so do its blocks.
    CHECK(mask_of("{rate: 0.3}", {3, 11077}, 42, 0.3) == mask_of("{rate: 0.3}", {3, 11077}, 42, 0.3, 2));
    const auto b = mask_of("{rate: 0.3}", shape, 43, 0.3);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    // Independent masks differ in 2 * 0.3 * 0.7 = 42% of places.
    CHECK(std::abs(static_cast<double>(differ) / static_cast<double>(a.size()) - 0.42) < 0.03);

    // The seed attribute is mixed into the step's seed: equal seeds agree, others do not.
    const auto s7 = mask_of("{rate: 0.3, seed: 7}", shape, 42, 0.3);
    CHECK(s7 == mask_of("{rate: 0.3, seed: 7}", shape, 42, 0.3));
    CHECK(s7 != mask_of("{rate: 0.3, seed: 8}", shape, 42, 0.3));
    CHECK(s7 != a);
    CHECK(s7 != mask_of("{rate: 0.3, seed: 7}", shape, 43, 0.3));  // a new step draws a new mask
}

TEST_CASE("Dropout draws a part of a batch as the whole batch draws those rows, given the part's offset") {
    // Data-parallel ranks each run rows of one global batch: 7 rows split 3 / 2 / 2, rows of 5 x 3
    // elements (odd, so a part can start in the middle of a random pair).
    const auto whole = mask_of("{rate: 0.4}", {7, 5, 3}, 42, 0.4);
    std::vector<std::uint8_t> parts;
    for (auto [offset, rows] : {std::pair<std::int64_t, std::int64_t>{0, 3}, {3, 2}, {5, 2}}) {
        const auto part = mask_of("{rate: 0.4}", {rows, 5, 3}, 42, 0.4, 2, offset);
        parts.insert(parts.end(), part.begin(), part.end());
    }
    CHECK(parts == whole);
    CHECK(mask_of("{rate: 0.4}", {2, 5, 3}, 42, 0.4, 1, 3) != mask_of("{rate: 0.4}", {2, 5, 3}, 42, 0.4, 1, 0));
    // A mask shared over the batch (noise dim 0 of 1) is the same for every part.
    CHECK(mask_of("{rate: 0.4, noise_shape: [1, 5, 3]}", {2, 5, 3}, 42, 0.4, 1, 3) ==
          mask_of("{rate: 0.4, noise_shape: [1, 5, 3]}", {2, 5, 3}, 42, 0.4, 1, 0));
}

TEST_CASE("Dropout is the identity outside training and in deterministic runs") {
    OpRunner runner("Dropout", "{rate: 0.5}", {{DType::F32, {4, 10, 3}}});
    fill_nonzero(runner.inputs()[0], 1);
    const std::vector<float> x(runner.inputs()[0].values<float>().begin(), runner.inputs()[0].values<float>().end());
    for (const bool deterministic : {false, true}) {
        runner.forward(/*training=*/deterministic, 9, deterministic);
        CHECK(std::equal(x.begin(), x.end(), runner.outputs()[0].data<float>()));
    }
    // After a deterministic training forward, backward passes the gradient unchanged.
    Tensor dy(DType::F32, {4, 10, 3});
    fill_uniform(dy, -1, 1, 2);
    runner.backward({dy}, 9);
    CHECK(std::equal(dy.values<float>().begin(), dy.values<float>().end(), runner.grad_inputs()[0].data<float>()));

    OpRunner zero("Dropout", "{rate: 0}", {{DType::F32, {4, 5}}});
    fill_nonzero(zero.inputs()[0], 1);
    zero.forward(true, 3);
    CHECK(std::equal(zero.inputs()[0].values<float>().begin(), zero.inputs()[0].values<float>().end(),
                     zero.outputs()[0].data<float>()));

    OpRunner all("Dropout", "{rate: 1}", {{DType::F32, {4, 5}}});  // Keras: zeros
    fill_nonzero(all.inputs()[0], 1);
    all.forward(true, 3);
    for (float v : all.outputs()[0].values<float>()) CHECK(v == 0.0f);
}

TEST_CASE("Dropout backward applies the forward's mask and scale") {
    // Small on one thread; above the size that splits the work, on two: a mask element each, and
    // one element for the whole input (the threads then split a single run of it).
    struct Case {
        const char* attributes;
        Shape shape;
        int threads;
    };
    for (const Case& c : {Case{"{rate: 0.25}", {6, 7, 5}, 1}, Case{"{rate: 0.25}", {16, 50, 64}, 2},
                          Case{"{rate: 0.25, noise_shape: [1, 1, 1]}", {16, 50, 64}, 2}}) {
        CAPTURE(c.attributes);
        CAPTURE(c.threads);
        std::int64_t dropped_everything = 0;
        for (std::uint64_t seed = 70; seed < 78; ++seed) {
            OpRunner runner("Dropout", c.attributes, {{DType::F32, c.shape}});
            fill_nonzero(runner.inputs()[0], 4);
            runner.forward(true, seed, false, c.threads);
            const auto keep = kept(runner, 0.25);
            dropped_everything += fraction(keep) == 0.0;
            Tensor dy(DType::F32, c.shape);
            fill_uniform(dy, -1, 1, 8);
            runner.backward({dy}, seed, {}, c.threads);
            const float scale = static_cast<float>(1.0 / 0.75);
            std::int64_t wrong = 0;
            for (std::int64_t i = 0; i < dy.numel(); ++i) {
                wrong += runner.grad_inputs()[0].data<float>()[i] !=
                         (keep[static_cast<std::size_t>(i)] ? dy.data<float>()[i] * scale : 0.0f);
            }
            CHECK(wrong == 0);
            runner.backward({Tensor()}, seed, {}, c.threads);  // no gradient arrives: zero
            std::int64_t nonzero = 0;
            for (float v : runner.grad_inputs()[0].values<float>()) nonzero += v != 0.0f;
            CHECK(nonzero == 0);
        }
        // A single mask element drops everything or nothing: both happen among these seeds.
        if (std::string(c.attributes).find("noise_shape") != std::string::npos) {
            CHECK(dropped_everything > 0);
            CHECK(dropped_everything < 8);
        }
    }
}

TEST_CASE("Dropout's noise_shape shares one mask draw over the broadcast axes") {
    const Shape shape{16, 40, 32};
    // [null, 1, 32]: one mask per (sample, feature), the same at every step.
    const auto keep = mask_of("{rate: 0.5, noise_shape: [null, 1, 32]}", shape, 5, 0.5);
    for (std::int64_t b = 0; b < 16; ++b) {
        for (std::int64_t s = 1; s < 40; ++s) {
            for (std::int64_t f = 0; f < 32; ++f) {
                REQUIRE(keep[static_cast<std::size_t>((b * 40 + s) * 32 + f)] ==
                        keep[static_cast<std::size_t>(b * 40 * 32 + f)]);
            }
        }
    }
    CHECK(std::abs(fraction(keep) - 0.5) < 0.06);  // 512 draws
    // [null, null, 1]: one mask per (sample, step), over all features.
    const auto rows = mask_of("{rate: 0.5, noise_shape: [null, null, 1]}", shape, 5, 0.5);
    for (std::size_t r = 0; r < 16 * 40; ++r) {
        for (std::size_t f = 1; f < 32; ++f) REQUIRE(rows[r * 32 + f] == rows[r * 32]);
    }
    // [1, null, 1]: one mask per step, shared by the batch.
    const auto steps = mask_of("{rate: 0.5, noise_shape: [1, 40, 1]}", shape, 5, 0.5);
    for (std::size_t b = 1; b < 16; ++b) {
        for (std::size_t i = 0; i < 40 * 32; ++i) REQUIRE(steps[b * 40 * 32 + i] == steps[i / 32 * 32]);
    }
    // The full noise shape written out is the default.
    CHECK(mask_of("{rate: 0.5, noise_shape: [16, 40, 32]}", shape, 5, 0.5) == mask_of("{rate: 0.5}", shape, 5, 0.5));
}

TEST_CASE("Dropout passes the input's mask through") {
    OpRunner runner("Dropout", "{rate: 0.5}", {{DType::F32, {2, 3, 4}}}, {true});
    CHECK(runner.shapes().outputs[0].mask_rule == NNG_MASK_FROM_INPUT);
    CHECK(runner.shapes().outputs[0].mask_source == 0);
    OpRunner unmasked("Dropout", "{rate: 0.5}", {{DType::F32, {2, 3, 4}}});
    CHECK(unmasked.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
}

TEST_CASE("Dropout refuses bad attributes, naming them and both shapes") {
    struct Refusal {
        const char* attributes;
        Shape shape;
        const char* message;
    };
    const Refusal refusals[] = {
        {"{rate: 1.5}", {2, 3}, "'rate'"},
        {"{rate: -0.1}", {2, 3}, "'rate'"},
        {"{}", {2, 3}, "rate"},
        {"{rate: 0.5, noise_shape: [2, 0]}", {2, 3}, "noise_shape"},
        {"{rate: 0.5, noise_shape: [null, 1]}",
         {2, 3, 4},
         "noise_shape (None, 1) has 2 dims but the input (2, 3, 4) has 3"},
        {"{rate: 0.5, noise_shape: [null, 2, null]}",
         {2, 3, 4},
         "noise_shape (2, 2, 4) does not broadcast to the input (2, 3, 4)"},
    };
    for (const Refusal& r : refusals) {
        INFO(r.attributes);
        CHECK_THROWS_WITH_AS(OpRunner("Dropout", r.attributes, {{DType::F32, r.shape}}), doctest::Contains(r.message),
                             InputError);
    }
    CHECK_THROWS_WITH_AS(OpRunner("Dropout", "{rate: 0.5}", {{DType::I32, {2, 3}}}), doctest::Contains("float32"),
                         InputError);
}

TEST_CASE("Dropout backward matches finite differences") {
    const std::vector<GradCase> cases = {
        {"rate 0.5 (2, 3, 4)", "Dropout", "{rate: 0.5}", {{{2, 3, 4}}}},
        {"rate 0.2 (4, 6)", "Dropout", "{rate: 0.2}", {{{4, 6}}}},
        {"rate 0.7, seed 3 (3, 5)", "Dropout", "{rate: 0.7, seed: 3}", {{{3, 5}}}},
        {"noise_shape [null, 1, 4]", "Dropout", "{rate: 0.5, noise_shape: [null, 1, 4]}", {{{3, 5, 4}}}},
        {"noise_shape [1, null, 1]", "Dropout", "{rate: 0.4, noise_shape: [1, null, 1]}", {{{3, 5, 4}}}},
        {"rate 0.5 with a mask", "Dropout", "{rate: 0.5}", {{{3, 5, 2}, DType::F32, -1, 1, true}}},
        {"rate 0 (identity)", "Dropout", "{rate: 0}", {{{3, 4}}}},
    };
    nngraph::testing::check_gradient_table(cases);
}
