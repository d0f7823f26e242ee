// The pooling ops: global mean (masked as Keras) and max, windowed max and mean with Keras's output
// lengths and padding, in both data formats, against hand-computed values and loops in double;
// shapes, masks, attribute errors and finite-difference checks of every backward.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "gradcheck_table.hpp"
#include "nngraph/error.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

void set_values(Tensor& t, const std::vector<float>& values) {
    REQUIRE(static_cast<std::int64_t>(values.size()) == t.numel());
    std::copy(values.begin(), values.end(), t.data<float>());
}

std::vector<float> values_of(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

// Each row's op, built with its attributes on a float32 input of its shape, is refused with an
// error containing its message.
struct Refusal {
    const char *op, *attributes;
    Shape shape;
    const char* message;
};
void check_refusals(const std::vector<Refusal>& refusals) {
    for (const Refusal& r : refusals) {
        INFO(r.attributes);
        CHECK_THROWS_WITH_AS(OpRunner(r.op, r.attributes, {{DType::F32, r.shape}}), doctest::Contains(r.message),
                             InputError);
    }
}

// Keras's windowed pooling in double, with its backward: the value of x at (b, step, f) in either
// data format, windows as compute_pooling_output_shape and TensorFlow's "same" padding place them.
struct Reference {
    std::int64_t batch, steps, features, out_steps, pad_left;
    bool channels_first, max;
    int pool, stride;

    Reference(const Shape& in, bool first, bool is_max, int pool_size, int strides, bool same)
        : batch(in[0]),
          steps(first ? in[2] : in[1]),
          features(first ? in[1] : in[2]),
          channels_first(first),
          max(is_max),
          pool(pool_size),
          stride(strides) {
        out_steps = same ? (steps - 1) / stride + 1 : (steps - pool) / stride + 1;
        pad_left = same ? std::max<std::int64_t>((out_steps - 1) * stride + pool - steps, 0) / 2 : 0;
    }
    std::int64_t at(std::int64_t b, std::int64_t s, std::int64_t f, std::int64_t n) const {
        return channels_first ? (b * features + f) * n + s : (b * n + s) * features + f;
    }
    // Visits the input steps of output step o (padding excluded).
    template <class F>
    void window(std::int64_t o, F&& visit) const {
        for (std::int64_t s = o * stride - pad_left; s < o * stride - pad_left + pool; ++s) {
            if (s >= 0 && s < steps) visit(s);
        }
    }
    std::vector<double> forward(const Tensor& x) const {
        std::vector<double> y(static_cast<std::size_t>(batch * out_steps * features));
        for (std::int64_t b = 0; b < batch; ++b) {
            for (std::int64_t f = 0; f < features; ++f) {
                for (std::int64_t o = 0; o < out_steps; ++o) {
                    double best = -std::numeric_limits<double>::infinity(), sum = 0;
                    int count = 0;
                    window(o, [&](std::int64_t s) {
                        const double v = x.data<float>()[at(b, s, f, steps)];
                        best = std::max(best, v);
                        sum += v;
                        ++count;
                    });
                    y[static_cast<std::size_t>(at(b, o, f, out_steps))] = max ? best : sum / count;
                }
            }
        }
        return y;
    }
    // dx for dy: the max's step takes dy (the first of ties), or every step of the window dy / count.
    std::vector<double> backward(const Tensor& x, const Tensor& dy) const {
        std::vector<double> dx(static_cast<std::size_t>(x.numel()), 0.0);
        for (std::int64_t b = 0; b < batch; ++b) {
            for (std::int64_t f = 0; f < features; ++f) {
                for (std::int64_t o = 0; o < out_steps; ++o) {
                    const double g = dy.data<float>()[at(b, o, f, out_steps)];
                    std::int64_t best = -1, count = 0;
                    window(o, [&](std::int64_t s) {
                        if (best < 0 || x.data<float>()[at(b, s, f, steps)] > x.data<float>()[at(b, best, f, steps)])
                            best = s;
                        ++count;
                    });
                    if (max)
                        dx[static_cast<std::size_t>(at(b, best, f, steps))] += g;
                    else
                        window(o, [&](std::int64_t s) {
                            dx[static_cast<std::size_t>(at(b, s, f, steps))] += g / static_cast<double>(count);
                        });
                }
            }
        }
        return dx;
    }
};

void check_close(const std::vector<double>& expected, const Tensor& actual, double tolerance) {
    REQUIRE(static_cast<std::int64_t>(expected.size()) == actual.numel());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        REQUIRE(std::abs(expected[i] - actual.data<float>()[i]) <= tolerance);
    }
}

}  // namespace

// ---- Global pooling ------------------------------------------------------------------------------------

TEST_CASE("GlobalAveragePooling1D is the mean over steps, in both data formats, with keepdims") {
    // x[b, s, f] for b < 2, s < 3, f < 2.
    const std::vector<float> x = {1, 2, 3, 4, 5, 9, -1, 0, 2, 2, 5, 1};
    OpRunner last("GlobalAveragePooling1D", "{}", {{DType::F32, {2, 3, 2}}});
    set_values(last.inputs()[0], x);
    last.forward(false);
    CHECK(last.outputs()[0].shape() == Shape{2, 2});
    CHECK(values_of(last.outputs()[0]) == std::vector<float>{3, 5, 2, 1});
    CHECK(last.shapes().outputs[0].mask_rule == NNG_MASK_NONE);

    OpRunner keep("GlobalAveragePooling1D", "{keepdims: true}", {{DType::F32, {2, 3, 2}}});
    CHECK(keep.shapes().outputs[0].tensor.shape == Shape{2, 1, 2});

    // channels_first: x[b, f, s].
    OpRunner first("GlobalAveragePooling1D", "{data_format: channels_first, keepdims: true}",
                   {{DType::F32, {2, 2, 3}}});
    set_values(first.inputs()[0], {1, 3, 5, 2, 4, 9, -1, 2, 5, 0, 2, 1});
    first.forward(false);
    CHECK(first.outputs()[0].shape() == Shape{2, 2, 1});
    CHECK(values_of(first.outputs()[0]) == std::vector<float>{3, 5, 2, 1});
}

TEST_CASE("GlobalAveragePooling1D with a mask averages the unmasked steps only, as Keras") {
    OpRunner runner("GlobalAveragePooling1D", "{}", {{DType::F32, {2, 3, 2}}}, {true});
    set_values(runner.inputs()[0], {1, 2, 100, 100, 5, 8, 100, 100, 2, 2, 4, 0});
    const std::vector<std::uint8_t> mask = {1, 0, 1, 0, 1, 1};
    std::copy(mask.begin(), mask.end(), runner.input_masks()[0].data<std::uint8_t>());
    runner.forward(true);
    CHECK(values_of(runner.outputs()[0]) == std::vector<float>{3, 5, 3, 1});
    CHECK(runner.shapes().outputs[0].mask_rule == NNG_MASK_NONE);  // Keras's compute_mask gives None

    Tensor dy(DType::F32, {2, 2});
    set_values(dy, {2, 4, 6, 8});
    runner.backward({dy});
    CHECK(values_of(runner.grad_inputs()[0]) == std::vector<float>{1, 2, 0, 0, 1, 2, 0, 0, 3, 4, 3, 4});

    // channels_first with the same mask over (batch, steps).
    OpRunner first("GlobalAveragePooling1D", "{data_format: channels_first}", {{DType::F32, {2, 3, 3}}}, {true});
    REQUIRE(first.input_masks()[0].shape() == Shape{2, 3});
    set_values(first.inputs()[0], {1, 100, 5, 2, 100, 8, 0, 100, 0, 100, 2, 4, 100, 2, 0, 100, 3, 3});
    std::copy(mask.begin(), mask.end(), first.input_masks()[0].data<std::uint8_t>());
    first.forward(false);
    CHECK(values_of(first.outputs()[0]) == std::vector<float>{3, 5, 0, 3, 1, 3});
}

TEST_CASE("GlobalAveragePooling1D of an all-masked sample is 0 / 0 as in Keras, and passes no gradient") {
    OpRunner runner("GlobalAveragePooling1D", "{}", {{DType::F32, {2, 2, 1}}}, {true});
    set_values(runner.inputs()[0], {1, 2, 3, 4});
    const std::vector<std::uint8_t> mask = {0, 0, 1, 1};
    std::copy(mask.begin(), mask.end(), runner.input_masks()[0].data<std::uint8_t>());
    runner.forward(true);
    CHECK(std::isnan(runner.outputs()[0].data<float>()[0]));
    CHECK(runner.outputs()[0].data<float>()[1] == 3.5f);
    Tensor dy(DType::F32, {2, 1});
    set_values(dy, {1, 1});
    runner.backward({dy});
    CHECK(values_of(runner.grad_inputs()[0]) == std::vector<float>{0, 0, 0.5f, 0.5f});
}

TEST_CASE("a mask whose shape does not fit the steps is an error naming both shapes") {
    // channels_first (batch, features, steps) = (2, 3, 4): the op runner's mask is (2, 3), not (2, 4).
    OpRunner runner("GlobalAveragePooling1D", "{data_format: channels_first}", {{DType::F32, {2, 3, 4}}}, {true});
    CHECK_THROWS_WITH_AS(
        runner.forward(false),
        doctest::Contains("mask has shape (2, 3) but the input (2, 3, 4) needs (batch, steps) = (2, 4)"), RunError);
}

TEST_CASE("GlobalMaxPooling1D is the max over steps; ties share the gradient; masks are neither used nor passed") {
    OpRunner runner("GlobalMaxPooling1D", "{}", {{DType::F32, {2, 3, 2}}}, {true});
    set_values(runner.inputs()[0], {1, 7, 5, 7, -2, 7, -3, -1, -4, -1, -5, 0});
    std::fill(runner.input_masks()[0].data<std::uint8_t>(), runner.input_masks()[0].data<std::uint8_t>() + 6, 0);
    runner.forward(true);
    CHECK(values_of(runner.outputs()[0]) == std::vector<float>{5, 7, -3, 0});
    CHECK(runner.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
    Tensor dy(DType::F32, {2, 2});
    set_values(dy, {1, 3, 2, 4});
    runner.backward({dy});
    // Feature 1 of sample 0 ties three ways: each step takes a third.
    CHECK(values_of(runner.grad_inputs()[0]) == std::vector<float>{0, 1, 1, 1, 0, 1, 2, 0, 0, 0, 0, 4});

    OpRunner first("GlobalMaxPooling1D", "{data_format: channels_first, keepdims: true}", {{DType::F32, {1, 2, 3}}});
    set_values(first.inputs()[0], {1, 4, 4, -1, -2, -3});
    first.forward(true);
    CHECK(first.outputs()[0].shape() == Shape{1, 2, 1});
    CHECK(values_of(first.outputs()[0]) == std::vector<float>{4, -1});
    Tensor dy1(DType::F32, {1, 2, 1});
    set_values(dy1, {2, 5});
    first.backward({dy1});
    CHECK(values_of(first.grad_inputs()[0]) == std::vector<float>{0, 1, 1, 5, 0, 0});
}

TEST_CASE("global poolings need rank-3 float input") {
    check_refusals({
        {"GlobalAveragePooling1D", "{}", {2, 3}, "rank 3: (batch, steps, features)"},
        {"GlobalMaxPooling1D", "{data_format: channels_first}", {2, 3, 4, 5}, "rank 3: (batch, features, steps)"},
        {"GlobalAveragePooling1D", "{data_format: channels_middle}", {2, 3, 4}, "data_format"},
    });
}

// ---- Windowed pooling ----------------------------------------------------------------------------------

TEST_CASE("MaxPooling1D and AveragePooling1D have Keras's output lengths for valid and same") {
    struct Row {
        std::string attributes;
        std::int64_t steps, expected;
    };
    const std::vector<Row> rows = {
        {"{}", 5, 2},               // floor((5 - 2) / 2) + 1
        {"{padding: same}", 5, 3},  // floor((5 - 1) / 2) + 1
        {"{pool_size: 3, strides: 1}", 5, 3},
        {"{pool_size: 3, strides: 1, padding: same}", 5, 5},
        {"{pool_size: 2, strides: 3}", 8, 3},
        {"{pool_size: 4, strides: 3, padding: same}", 8, 3},
        {"{pool_size: [3]}", 9, 3},
        {"{pool_size: 5, padding: same}", 3, 1},  // a window wider than the input
    };
    for (const char* op : {"MaxPooling1D", "AveragePooling1D"}) {
        for (const Row& row : rows) {
            CAPTURE(op);
            CAPTURE(row.attributes);
            OpRunner last(op, row.attributes, {{DType::F32, {2, row.steps, 3}}});
            CHECK(last.shapes().outputs[0].tensor.shape == Shape{2, row.expected, 3});
            const std::string first_attributes = row.attributes.substr(0, row.attributes.size() - 1) +
                                                 (row.attributes == "{}" ? "" : ", ") + "data_format: channels_first}";
            OpRunner first(op, first_attributes, {{DType::F32, {2, 3, row.steps}}});
            CHECK(first.shapes().outputs[0].tensor.shape == Shape{2, 3, row.expected});
        }
    }
}

TEST_CASE("windowed pooling by hand: same padding is split smaller half first and excluded from means") {
    // One feature, steps x = 1..5. pool 3, stride 1, same: padding 1 left, 1 right.
    OpRunner avg("AveragePooling1D", "{pool_size: 3, strides: 1, padding: same}", {{DType::F32, {1, 5, 1}}});
    set_values(avg.inputs()[0], {1, 2, 3, 4, 5});
    avg.forward(false);
    CHECK(values_of(avg.outputs()[0]) == std::vector<float>{1.5f, 2, 3, 4, 4.5f});
    // pool 2, stride 2, same on 5 steps: padding 0 left, 1 right; the last window is step 4 alone.
    OpRunner avg2("AveragePooling1D", "{padding: same}", {{DType::F32, {1, 5, 1}}});
    set_values(avg2.inputs()[0], {1, 2, 3, 4, 5});
    avg2.forward(false);
    CHECK(values_of(avg2.outputs()[0]) == std::vector<float>{1.5f, 3.5f, 5});
    OpRunner max("MaxPooling1D", "{padding: same}", {{DType::F32, {1, 5, 1}}});
    set_values(max.inputs()[0], {-1, -2, -3, -4, -5});
    max.forward(true);
    CHECK(values_of(max.outputs()[0]) == std::vector<float>{-1, -3, -5});  // a padded step is never the max
    OpRunner valid("MaxPooling1D", "{pool_size: 2, strides: 1}", {{DType::F32, {1, 4, 2}}});
    set_values(valid.inputs()[0], {1, 8, 3, 2, 2, 5, 0, 1});
    valid.forward(false);
    CHECK(values_of(valid.outputs()[0]) == std::vector<float>{3, 8, 3, 5, 2, 5});
}

TEST_CASE("windowed pooling forward and backward agree with a loop in double for every geometry") {
    for (const bool is_max : {true, false}) {
        for (const bool channels_first : {false, true}) {
            for (const bool same : {false, true}) {
                for (int pool = 1; pool <= 4; ++pool) {
                    for (int stride = 0; stride <= 3; ++stride) {  // 0: strides null (pool_size)
                        for (std::int64_t steps : {5, 8, 11}) {
                            if (!same && steps < pool) continue;
                            const std::string attributes =
                                "{pool_size: " + std::to_string(pool) +
                                (stride ? ", strides: " + std::to_string(stride) : std::string()) +
                                ", padding: " + (same ? "same" : "valid") +
                                ", data_format: " + (channels_first ? "channels_first" : "channels_last") + "}";
                            CAPTURE(attributes);
                            CAPTURE(steps);
                            const Shape shape = channels_first ? Shape{3, 4, steps} : Shape{3, steps, 4};
                            OpRunner runner(is_max ? "MaxPooling1D" : "AveragePooling1D", attributes,
                                            {{DType::F32, shape}});
                            fill_uniform(runner.inputs()[0], -1, 1,
                                         static_cast<std::uint64_t>(pool * 100 + stride * 10 + steps));
                            runner.forward(true);
                            const Reference ref(shape, channels_first, is_max, pool, stride ? stride : pool, same);
                            check_close(ref.forward(runner.inputs()[0]), runner.outputs()[0], 1e-6);
                            Tensor dy(DType::F32, runner.outputs()[0].shape());
                            fill_uniform(dy, -1, 1, 99);
                            runner.backward({dy});
                            check_close(ref.backward(runner.inputs()[0], dy), runner.grad_inputs()[0], 1e-6);
                            // Inference gives the same values without a workspace.
                            const std::vector<float> trained = values_of(runner.outputs()[0]);
                            runner.forward(false);
                            CHECK(values_of(runner.outputs()[0]) == trained);
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("windowed pooling refuses bad attributes and inputs too short, naming them") {
    check_refusals({
        {"MaxPooling1D", "{pool_size: 0}", {2, 5, 3}, "'pool_size'"},
        {"MaxPooling1D", "{pool_size: [2, 2]}", {2, 5, 3}, "one integer"},
        {"AveragePooling1D", "{strides: -1}", {2, 5, 3}, "'strides'"},
        {"AveragePooling1D", "{padding: causal}", {2, 5, 3}, "padding"},
        {"MaxPooling1D", "{pool_size: 6}", {2, 5, 3}, "pooling 5 steps of the input (2, 5, 3) with pool_size 6"},
        {"MaxPooling1D", "{}", {2, 5}, "rank 3"},
    });
}

TEST_CASE("windowed poolings neither use nor pass a mask (Keras 3 gives them no masking)") {
    OpRunner runner("AveragePooling1D", "{}", {{DType::F32, {1, 4, 1}}}, {true});
    set_values(runner.inputs()[0], {1, 3, 5, 7});
    std::fill(runner.input_masks()[0].data<std::uint8_t>(), runner.input_masks()[0].data<std::uint8_t>() + 4, 0);
    runner.forward(false);
    CHECK(values_of(runner.outputs()[0]) == std::vector<float>{2, 6});
    CHECK(runner.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
}

TEST_CASE("the poolings give the same on one thread and on two at the IMDB shapes") {
    for (const char* op : {"GlobalAveragePooling1D", "GlobalMaxPooling1D", "MaxPooling1D", "AveragePooling1D"}) {
        CAPTURE(op);
        const bool masked = std::string(op) == "GlobalAveragePooling1D";
        OpRunner runner(op, "{}", {{DType::F32, {64, 200, 32}}}, {masked});
        fill_uniform(runner.inputs()[0], -1, 1, 5);
        if (masked) fill_uniform(runner.input_masks()[0], 0, 2, 6);
        Tensor dy(DType::F32, runner.outputs()[0].shape());
        fill_uniform(dy, -1, 1, 7);
        std::vector<std::vector<float>> results;
        for (const int threads : {1, 2}) {
            runner.forward(true, 1, false, threads);
            runner.backward({dy}, 1, {}, threads);
            results.push_back(values_of(runner.outputs()[0]));
            results.push_back(values_of(runner.grad_inputs()[0]));
        }
        CHECK(results[0] == results[2]);
        CHECK(results[1] == results[3]);
    }
}

// ---- Gradient checks -----------------------------------------------------------------------------------

TEST_CASE("pooling backward matches finite differences") {
    const std::vector<GradCase> cases = {
        {"GlobalAveragePooling1D", "GlobalAveragePooling1D", "{}", {{{3, 5, 4}}}},
        {"GlobalAveragePooling1D keepdims", "GlobalAveragePooling1D", "{keepdims: true}", {{{2, 4, 3}}}},
        {"GlobalAveragePooling1D channels_first",
         "GlobalAveragePooling1D",
         "{data_format: channels_first}",
         {{{2, 3, 5}}}},
        {"GlobalAveragePooling1D masked", "GlobalAveragePooling1D", "{}", {{{4, 6, 3}, DType::F32, -1, 1, true}}},
        {"GlobalAveragePooling1D masked channels_first",
         "GlobalAveragePooling1D",
         "{data_format: channels_first, keepdims: true}",
         {{{3, 4, 4}, DType::F32, -1, 1, true}}},
        {"GlobalMaxPooling1D", "GlobalMaxPooling1D", "{}", {{{3, 5, 4}}}, 1e-3},
        {"GlobalMaxPooling1D channels_first keepdims",
         "GlobalMaxPooling1D",
         "{data_format: channels_first, keepdims: true}",
         {{{2, 3, 6}}},
         1e-3},
        {"MaxPooling1D valid", "MaxPooling1D", "{}", {{{2, 7, 3}}}, 1e-3},
        {"MaxPooling1D same pool 3 stride 2",
         "MaxPooling1D",
         "{pool_size: 3, strides: 2, padding: same}",
         {{{2, 8, 3}}},
         1e-3},
        {"MaxPooling1D overlapping, channels_first",
         "MaxPooling1D",
         "{pool_size: 3, strides: 1, data_format: channels_first}",
         {{{2, 3, 6}}},
         1e-3},
        {"AveragePooling1D valid", "AveragePooling1D", "{pool_size: 2}", {{{2, 7, 3}}}},
        {"AveragePooling1D same pool 4 stride 3",
         "AveragePooling1D",
         "{pool_size: 4, strides: 3, padding: same}",
         {{{2, 8, 3}}}},
        {"AveragePooling1D overlapping same, channels_first",
         "AveragePooling1D",
         "{pool_size: 3, strides: 1, padding: same, data_format: channels_first}",
         {{{2, 3, 5}}}},
    };
    nngraph::testing::check_gradient_table(cases);
}
