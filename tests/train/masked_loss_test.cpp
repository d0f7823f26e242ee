// Keras's masked loss on a sequence output: padded positions add nothing, the mean is over the rest.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "train/losses.hpp"

using namespace nngraph;

namespace {

// One sample of 3 steps over 2 classes, the last step padding.
struct Sequence {
    Shape shape{1, 3, 2};
    Shape target_shape{1, 3};
    std::vector<float> probabilities{0.8f, 0.2f, 0.4f, 0.6f, 0.5f, 0.5f};
    std::vector<float> ids{0, 1, 0};
    std::vector<std::uint8_t> mask{1, 1, 0};
    std::vector<float> grad = std::vector<float>(6, 7.0f);  // stale values the loss must overwrite

    LossCall call() {
        LossCall c;
        c.prediction = {DType::F32, shape, probabilities.data()};
        c.targets = {DType::F32, target_shape, ids.data()};
        c.grad = grad.data();
        return c;
    }
};

}  // namespace

TEST_CASE("masked sparse_categorical_crossentropy: the mean over real steps, no gradient at padding") {
    const auto loss = make_loss("sparse_categorical_crossentropy");
    Sequence s;
    const double value = evaluate_masked(*loss, s.call(), s.mask);
    CHECK(value == doctest::Approx((-std::log(0.8) - std::log(0.6)) / 2));
    // d/dp of -log(p_t / sum p), with sum p = 1: 1 - 1/p_t at the target, 1 elsewhere; halved.
    const std::vector<double> expected{(1 - 1 / 0.8) / 2, 0.5, 0.5, (1 - 1 / 0.6) / 2, 0, 0};
    for (std::size_t i = 0; i < 6; ++i) CHECK(s.grad[i] == doctest::Approx(expected[i]).epsilon(1e-6));

    // No mask: every step counts, the padding's -log 0.5 too.
    Sequence all;
    CHECK(evaluate_masked(*loss, all.call(), {}) ==
          doctest::Approx((-std::log(0.8) - std::log(0.6) - std::log(0.5)) / 3));

    Sequence none;
    none.mask = {0, 0, 0};
    CHECK(evaluate_masked(*loss, none.call(), none.mask) == 0.0);
    for (float g : none.grad) CHECK(g == 0.0f);
}

TEST_CASE("masked loss from logits: softmax minus one-hot at real steps, over their count") {
    const auto loss = make_loss("sparse_categorical_crossentropy");
    Sequence s;
    std::vector<float> logits{1.0f, -1.0f, 0.0f, 2.0f, 3.0f, 0.0f};
    // The prediction is the softmax of its logits, as the executor hands them to the loss.
    for (std::size_t row = 0; row < 3; ++row) {
        const double a = std::exp(double(logits[2 * row])), b = std::exp(double(logits[2 * row + 1]));
        s.probabilities[2 * row] = static_cast<float>(a / (a + b));
        s.probabilities[2 * row + 1] = static_cast<float>(b / (a + b));
    }
    LossCall c = s.call();
    c.logits = {DType::F32, s.shape, logits.data()};
    const double value = evaluate_masked(*loss, c, s.mask);
    const double p0 = 1 / (1 + std::exp(-2.0)), p1 = 1 / (1 + std::exp(-2.0));  // softmax of the target class
    CHECK(value == doctest::Approx((-std::log(p0) - std::log(p1)) / 2));
    CHECK(s.grad[0] == doctest::Approx((p0 - 1) / 2));
    CHECK(s.grad[1] == doctest::Approx((1 - p0) / 2));
    CHECK(s.grad[4] == 0.0f);
}

TEST_CASE("a loss honours the call's mask: every loss, from probabilities and from logits") {
    std::vector<float> logits{1.0f, -1.0f, 0.0f, 2.0f, 3.0f, 0.0f};
    for (const char* name : {"sparse_categorical_crossentropy", "mse"}) {
        for (const bool from_logits : {false, true}) {
            if (from_logits && std::string(name) == "mse") continue;
            CAPTURE(name);
            CAPTURE(from_logits);
            const auto loss = make_loss(name);
            Sequence by_position, in_call;
            if (std::string(name) == "mse") {
                by_position.target_shape = in_call.target_shape = by_position.shape;
                by_position.ids = in_call.ids = {0, 1, 1, 0, 0.5f, 0.5f};
            }
            LossCall a = by_position.call(), b = in_call.call();
            if (from_logits) a.logits = b.logits = {DType::F32, by_position.shape, logits.data()};
            b.mask = in_call.mask;
            const double expected = evaluate_masked(*loss, a, by_position.mask);
            CHECK(loss->evaluate(b) == doctest::Approx(expected).epsilon(1e-6));
            for (std::size_t i = 0; i < 6; ++i)
                CHECK(in_call.grad[i] == doctest::Approx(by_position.grad[i]).epsilon(1e-5));
            // Without the mask the padding counts, so the value moves.
            b.mask = {};
            CHECK(loss->evaluate(b) != doctest::Approx(expected).epsilon(1e-3));
        }
    }
}
