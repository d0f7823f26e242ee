// Accuracy on a (steps, classes) output, as Keras's per-sample mean over the steps.
#include <doctest/doctest.h>

#include <vector>

#include "train/metrics.hpp"

using namespace nngraph;

TEST_CASE("sequence accuracy: one argmax per step, each sample the mean over its steps") {
    const Shape shape{2, 3, 2};
    // Argmaxes: sample 0 takes 0, 1, 0; sample 1 takes 1, 0, 1.
    std::vector<float> p{0.9f, 0.1f, 0.2f, 0.8f, 0.6f, 0.4f, 0.3f, 0.7f, 0.5f, 0.4f, 0.1f, 0.9f};
    std::vector<float> ids{0, 1, 1, 1, 0, 1};  // sample 0: 2 of 3 right; sample 1: 3 of 3
    CHECK(accuracy_sum(AccuracyKind::SparseCategorical, {DType::F32, shape, p.data()}, ids.data(), 3, nullptr, 2) ==
          doctest::Approx(2.0 / 3 + 1.0));
    std::vector<float> onehot{1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1};
    CHECK(accuracy_sum(AccuracyKind::Categorical, {DType::F32, shape, p.data()}, onehot.data(), 6, nullptr, 2) ==
          doctest::Approx(2.0 / 3 + 1.0));
    // Rows picked by index: sample 1 alone.
    const std::int64_t second[] = {1};
    const Shape one{1, 3, 2};
    CHECK(accuracy_sum(AccuracyKind::SparseCategorical, {DType::F32, one, p.data() + 6}, ids.data(), 3, second, 1) ==
          doctest::Approx(1.0));
}

TEST_CASE("masked accuracy counts real steps only, each weighing the same across samples") {
    const Shape shape{2, 3, 2};
    std::vector<float> p{0.9f, 0.1f, 0.2f, 0.8f, 0.6f, 0.4f, 0.3f, 0.7f, 0.5f, 0.4f, 0.1f, 0.9f};
    std::vector<float> ids{0, 1, 1, 1, 0, 1};
    // Sample 0's wrong last step is padding; sample 1 has one real step, right.
    const std::vector<std::uint8_t> mask{1, 1, 0, 1, 0, 0};
    const AccuracyTally tally = masked_accuracy(AccuracyKind::SparseCategorical, {DType::F32, shape, p.data()},
                                                ids.data(), 3, nullptr, 2, mask);
    CHECK(tally.right == 3.0);
    CHECK(tally.counted == 3.0);
    // Sample 1's steps wrong where they are real: 2 right of 3 real steps (not the mean of 1 and 0).
    std::vector<float> other{0, 1, 1, 0, 1, 0};
    const std::vector<std::uint8_t> longer{1, 1, 0, 1, 0, 0};
    const AccuracyTally mixed = masked_accuracy(AccuracyKind::SparseCategorical, {DType::F32, shape, p.data()},
                                                other.data(), 3, nullptr, 2, longer);
    CHECK(mixed.right == 2.0);
    CHECK(mixed.counted == 3.0);
}
