// Embedding: rows gathered by id (int32, int64, float32 ids), Keras's initializer and mask, the
// out-of-range error, the scatter-add backward, and finite-difference checks of the gradient.
#include <doctest/doctest.h>

#include <cmath>

#include "gradcheck_table.hpp"
#include "nngraph/error.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

// A 5 x 3 table whose row r is (10r, 10r + 1, 10r + 2).
void set_table(OpRunner& runner) {
    float* w = runner.weights()[0].data<float>();
    for (int r = 0; r < 5; ++r) {
        for (int k = 0; k < 3; ++k) w[r * 3 + k] = static_cast<float>(10 * r + k);
    }
}

template <class T>
void check_lookup(DType dtype, std::vector<T> ids, std::vector<int> rows) {
    OpRunner runner("Embedding", "{input_dim: 5, output_dim: 3}", {{dtype, {2, 3}}});
    set_table(runner);
    std::copy(ids.begin(), ids.end(), runner.inputs()[0].data<T>());
    runner.forward(false);
    const Tensor& y = runner.outputs()[0];
    REQUIRE(y.shape() == Shape{2, 3, 3});
    for (std::size_t i = 0; i < rows.size(); ++i) {
        for (int k = 0; k < 3; ++k)
            CHECK(y.data<float>()[i * 3 + static_cast<std::size_t>(k)] == static_cast<float>(10 * rows[i] + k));
    }
}

std::string forward_error(const std::string& attributes, DType dtype, const std::function<void(Tensor&)>& fill) {
    OpRunner runner("Embedding", attributes, {{dtype, {2, 3}}});
    fill(runner.inputs()[0]);
    try {
        runner.forward(false);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("Embedding gathers the row of every id, for int32, int64 and float32 ids") {
    check_lookup<std::int32_t>(DType::I32, {0, 4, 2, 1, 1, 3}, {0, 4, 2, 1, 1, 3});
    check_lookup<std::int64_t>(DType::I64, {3, 3, 0, 4, 2, 1}, {3, 3, 0, 4, 2, 1});
    // Keras casts float ids to int32: truncation toward zero.
    check_lookup<float>(DType::F32, {2.7f, -0.5f, 4.0f, 0.0f, 1.9f, 3.2f}, {2, 0, 4, 0, 1, 3});
}

TEST_CASE("Embedding takes ids of any rank and appends output_dim") {
    OpRunner runner("Embedding", "{input_dim: 5, output_dim: 3, mask_zero: true}", {{DType::I32, {2, 2, 2}}});
    set_table(runner);
    const std::vector<std::int32_t> ids = {1, 0, 2, 3, 0, 0, 4, 1};
    std::copy(ids.begin(), ids.end(), runner.inputs()[0].data<std::int32_t>());
    runner.forward(true);
    CHECK(runner.outputs()[0].shape() == Shape{2, 2, 2, 3});
    CHECK(runner.outputs()[0].data<float>()[7 * 3 + 2] == 12.0f);  // id 1 at (1, 1, 1)
    REQUIRE(runner.shapes().outputs[0].mask_rule == NNG_MASK_COMPUTED);
    CHECK(runner.shapes().outputs[0].mask_shape == Shape{2, 2, 2});
    const std::uint8_t* mask = runner.output_masks()[0].data<std::uint8_t>();
    for (std::size_t i = 0; i < ids.size(); ++i) CHECK(mask[i] == (ids[i] != 0 ? 1 : 0));

    OpRunner flat("Embedding", "{input_dim: 5, output_dim: 3}", {{DType::I32, {4}}});
    CHECK(flat.shapes().outputs[0].tensor.shape == Shape{4, 3});
}

TEST_CASE("Embedding with mask_zero marks padding; without it there is no mask") {
    OpRunner masked("Embedding", "{input_dim: 5, output_dim: 3, mask_zero: true}", {{DType::I64, {2, 3}}});
    const std::vector<std::int64_t> ids = {0, 0, 3, 4, 0, 1};
    std::copy(ids.begin(), ids.end(), masked.inputs()[0].data<std::int64_t>());
    masked.forward(false);
    const std::vector<std::uint8_t> expected = {0, 0, 1, 1, 0, 1};
    const Tensor& mask = masked.output_masks()[0];
    REQUIRE(mask.shape() == Shape{2, 3});
    CHECK(std::vector<std::uint8_t>(mask.data<std::uint8_t>(), mask.data<std::uint8_t>() + 6) == expected);
    // Keras compares the ids as given: a float id 0.5 looks up row 0 but is not padding.
    OpRunner floats("Embedding", "{input_dim: 5, output_dim: 3, mask_zero: true}", {{DType::F32, {1, 2}}});
    floats.inputs()[0].data<float>()[0] = 0.5f;
    floats.inputs()[0].data<float>()[1] = 0.0f;
    floats.forward(false);
    CHECK(floats.output_masks()[0].data<std::uint8_t>()[0] == 1);
    CHECK(floats.output_masks()[0].data<std::uint8_t>()[1] == 0);

    OpRunner plain("Embedding", "{input_dim: 5, output_dim: 3}", {{DType::I32, {2, 3}}});
    CHECK(plain.shapes().outputs[0].mask_rule == NNG_MASK_NONE);
}

TEST_CASE("Embedding declares Keras's weight and initializer") {
    OpRunner runner("Embedding", "{input_dim: 50, output_dim: 8}", {{DType::I32, {2, 3}}});
    REQUIRE(runner.shapes().weights.size() == 1);
    const WeightInfo& w = runner.shapes().weights[0];
    CHECK(w.name == "embeddings");
    CHECK(w.shape == Shape{50, 8});
    CHECK(w.initializer == NNG_INIT_UNIFORM);
    CHECK(w.params[0] == -0.05);
    CHECK(w.params[1] == 0.05);
    CHECK(w.trainable);
    runner.initialize_weights(7);
    float low = 1, high = -1;
    for (float v : runner.weights()[0].values<float>()) {
        low = std::min(low, v);
        high = std::max(high, v);
    }
    CHECK(low >= -0.05f);
    CHECK(high <= 0.05f);
    CHECK(high - low > 0.09f);  // 400 draws spread over the interval

    OpRunner normal("Embedding", "{input_dim: 5, output_dim: 2, embeddings_initializer: normal}",
                    {{DType::I32, {1, 1}}});
    CHECK(normal.shapes().weights[0].initializer == NNG_INIT_NORMAL);
    CHECK(normal.shapes().weights[0].params[1] == 0.05);
    OpRunner glorot("Embedding", "{input_dim: 5, output_dim: 2, embeddings_initializer: glorot_uniform}",
                    {{DType::I32, {1, 1}}});
    CHECK(glorot.shapes().weights[0].initializer == NNG_INIT_GLOROT_UNIFORM);
}

TEST_CASE("Embedding refuses bad attributes, naming them") {
    struct Refusal {
        const char* attributes;
        Shape shape;
        const char* message;
    };
    const Refusal refusals[] = {
        {"{input_dim: 0, output_dim: 3}", {2, 3}, "input_dim"},
        {"{input_dim: 5, output_dim: -2}", {2, 3}, "output_dim"},
        {"{input_dim: 5}", {2, 3}, "output_dim"},
        {"{input_dim: 5, output_dim: 3, embeddings_initializer: lecun}", {2, 3}, "embeddings_initializer"},
    };
    for (const Refusal& r : refusals) {
        INFO(r.attributes);
        CHECK_THROWS_WITH_AS(OpRunner("Embedding", r.attributes, {{DType::I32, r.shape}}), doctest::Contains(r.message),
                             InputError);
    }
    CHECK_THROWS_WITH_AS(OpRunner("Embedding", "{input_dim: 5, output_dim: 3}", {{DType::U8, {2, 3}}}),
                         doctest::Contains("int32, int64 or float32"), InputError);
}

TEST_CASE("an id outside [0, input_dim) is an error naming the id, its position and input_dim") {
    const std::string high = forward_error("{input_dim: 5, output_dim: 3}", DType::I32, [](Tensor& ids) {
        const std::vector<std::int32_t> v = {0, 1, 2, 3, 4, 7};
        std::copy(v.begin(), v.end(), ids.data<std::int32_t>());
    });
    CHECK(high.find("id 7 at position (1, 2)") != std::string::npos);
    CHECK(high.find("input_dim = 5") != std::string::npos);
    const std::string negative = forward_error("{input_dim: 5, output_dim: 3}", DType::I64, [](Tensor& ids) {
        const std::vector<std::int64_t> v = {0, -1, 2, 3, 4, 1};
        std::copy(v.begin(), v.end(), ids.data<std::int64_t>());
    });
    CHECK(negative.find("id -1 at position (0, 1)") != std::string::npos);
    const std::string nan = forward_error("{input_dim: 5, output_dim: 3}", DType::F32, [](Tensor& ids) {
        std::fill(ids.data<float>(), ids.data<float>() + 6, 1.0f);
        ids.data<float>()[4] = std::nanf("");
    });
    CHECK(nan.find("at position (1, 1)") != std::string::npos);
    const std::string five = forward_error("{input_dim: 5, output_dim: 3}", DType::F32, [](Tensor& ids) {
        std::fill(ids.data<float>(), ids.data<float>() + 6, 5.0f);
    });
    CHECK(five.find("at position (0, 0)") != std::string::npos);
}

TEST_CASE("with ids enough for two threads, the error names the first id out of range") {
    // Each thread meets a bad id; the second thread's comes first in its half, the first one's
    // later in its own half but earlier overall.
    OpRunner runner("Embedding", "{input_dim: 50, output_dim: 4}", {{DType::I32, {64, 200}}});
    std::int32_t* ids = runner.inputs()[0].data<std::int32_t>();
    std::fill(ids, ids + 64 * 200, 1);
    ids[10 * 200 + 7] = 70;
    ids[50 * 200 + 3] = 60;
    std::string error = "(no error)";
    try {
        runner.forward(false, 1, false, 2);
    } catch (const std::exception& e) {
        error = e.what();
    }
    CHECK(error.find("id 70 at position (10, 7)") != std::string::npos);
}

TEST_CASE("Embedding backward scatter-adds the output gradient into the rows of the ids, and overwrites") {
    OpRunner runner("Embedding", "{input_dim: 5, output_dim: 3}", {{DType::I32, {2, 3}}});
    const std::vector<std::int32_t> ids = {4, 1, 4, 0, 4, 1};
    std::copy(ids.begin(), ids.end(), runner.inputs()[0].data<std::int32_t>());
    runner.forward(true);
    Tensor dy(DType::F32, {2, 3, 3});
    for (std::int64_t i = 0; i < dy.numel(); ++i) dy.data<float>()[i] = static_cast<float>(i + 1);
    for (int round = 0; round < 2; ++round) {  // a second backward gives the same, not twice as much
        runner.backward({dy});
        const float* dw = runner.grad_weights()[0].data<float>();
        for (int k = 0; k < 3; ++k) {
            CHECK(dw[0 * 3 + k] == static_cast<float>(9 + k + 1));                   // position 3
            CHECK(dw[1 * 3 + k] == static_cast<float>((3 + k + 1) + (15 + k + 1)));  // positions 1, 5
            CHECK(dw[2 * 3 + k] == 0.0f);
            CHECK(dw[3 * 3 + k] == 0.0f);
            CHECK(dw[4 * 3 + k] == static_cast<float>((k + 1) + (6 + k + 1) + (12 + k + 1)));  // positions 0, 2, 4
        }
    }
    runner.backward({Tensor()});  // no gradient arrives: zero
    for (float v : runner.grad_weights()[0].values<float>()) CHECK(v == 0.0f);
}

TEST_CASE("Embedding backward on two threads writes every row, each call anew") {
    // Every id below 50 occurs (2400 positions, id = 7 i mod 50, ids 0 and 7 a third of them
    // more); rows 50 to 59 never do. Two calls with different dy: the second must replace the first.
    OpRunner runner("Embedding", "{input_dim: 60, output_dim: 40}", {{DType::I32, {8, 300}}});
    std::int32_t* ids = runner.inputs()[0].data<std::int32_t>();
    for (std::int64_t i = 0; i < 2400; ++i) ids[i] = static_cast<std::int32_t>(i % 3 == 0 ? (i % 2) * 7 : 7 * i % 50);
    runner.forward(true, 1, false, 2);
    for (const std::uint64_t seed : {5u, 6u}) {
        CAPTURE(seed);
        Tensor dy(DType::F32, {8, 300, 40});
        fill_uniform(dy, -1, 1, seed);
        std::vector<double> expected(60 * 40, 0.0);
        for (std::int64_t i = 0; i < 2400; ++i)
            for (int k = 0; k < 40; ++k)
                expected[static_cast<std::size_t>(ids[i] * 40 + k)] += dy.data<float>()[i * 40 + k];
        runner.backward({dy}, 1, {}, 2);
        const float* dw = runner.grad_weights()[0].data<float>();
        double worst = 0;
        for (std::size_t j = 0; j < expected.size(); ++j) worst = std::max(worst, std::abs(expected[j] - dw[j]));
        CHECK(worst < 1e-4);
    }
}

TEST_CASE("Embedding at the IMDB shapes matches a loop in double, on one thread and on two alike") {
    // 64 x 200 ids into 5000 x 32, a third of them padding: large enough for the threaded paths.
    OpRunner runner("Embedding", "{input_dim: 5000, output_dim: 32, mask_zero: true}", {{DType::I32, {64, 200}}});
    fill_uniform(runner.inputs()[0], 0, 5000, 3);
    for (int i = 0; i < 64 * 200; i += 3) runner.inputs()[0].data<std::int32_t>()[i] = 0;
    runner.initialize_weights(2);
    const float* table = runner.weights()[0].data<float>();
    const std::int32_t* ids = runner.inputs()[0].data<std::int32_t>();
    Tensor dy(DType::F32, {64, 200, 32});
    fill_uniform(dy, -1, 1, 4);
    std::vector<double> expected(5000 * 32, 0.0);
    for (std::int64_t i = 0; i < 64 * 200; ++i) {
        for (int k = 0; k < 32; ++k)
            expected[static_cast<std::size_t>(ids[i] * 32 + k)] += dy.data<float>()[i * 32 + k];
    }
    std::vector<Tensor> results;
    for (const int threads : {1, 2}) {
        CAPTURE(threads);
        runner.forward(true, 1, false, threads);
        for (std::int64_t i = 0; i < 64 * 200; ++i) {
            REQUIRE(runner.output_masks()[0].data<std::uint8_t>()[i] == (ids[i] != 0));
            for (int k = 0; k < 32; ++k)
                REQUIRE(runner.outputs()[0].data<float>()[i * 32 + k] == table[ids[i] * 32 + k]);
        }
        runner.backward({dy}, 1, {}, threads);
        const float* dw = runner.grad_weights()[0].data<float>();
        double worst = 0;
        for (std::size_t j = 0; j < expected.size(); ++j) worst = std::max(worst, std::abs(expected[j] - dw[j]));
        CHECK(worst < 1e-3);
        results.push_back(runner.grad_weights()[0]);
    }
    // Each row sums its positions in the same order whatever the thread count: equal to the bit.
    CHECK(std::equal(results[0].values<float>().begin(), results[0].values<float>().end(),
                     results[1].values<float>().begin()));
}

TEST_CASE("Embedding backward matches finite differences") {
    const std::vector<GradCase> cases = {
        {"int32 ids (3, 4) into 7 x 5", "Embedding", "{input_dim: 7, output_dim: 5}", {{{3, 4}, DType::I32, 0, 7}}},
        {"int32 ids (2, 5) into 6 x 40: a block of 32 columns and a rest",
         "Embedding",
         "{input_dim: 6, output_dim: 40}",
         {{{2, 5}, DType::I32, 0, 6}}},
        {"int64 ids (2, 6) into 4 x 3, mask_zero",
         "Embedding",
         "{input_dim: 4, output_dim: 3, mask_zero: true}",
         {{{2, 6}, DType::I64, 0, 4}}},
        {"int32 ids of rank 3 into 6 x 2",
         "Embedding",
         "{input_dim: 6, output_dim: 2}",
         {{{2, 3, 2}, DType::I32, 0, 6}}},
        {"int32 ids (5,) into 3 x 4", "Embedding", "{input_dim: 3, output_dim: 4}", {{{5}, DType::I32, 0, 3}}},
        {"float ids (2, 4) into 5 x 3",
         "Embedding",
         "{input_dim: 5, output_dim: 3}",
         {{{2, 4}, DType::F32, 0, 4.9, false, false}}},
    };
    nngraph::testing::check_gradient_table(cases);
}
