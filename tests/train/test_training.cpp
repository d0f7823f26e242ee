// Training: Keras's losses and optimisers in their exact equations, accuracy as Keras means it,
// the training loop on a real graph, the epoch log, and resuming to the same result.
#include <doctest/doctest.h>

#include <cmath>
#include <regex>
#include <sstream>

#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "nngraph/error.hpp"
#include "temp_dir.hpp"
#include "train/checkpoint.hpp"
#include "train/datasets.hpp"
#include "train/losses.hpp"
#include "train/metrics.hpp"
#include "train/progress.hpp"
#include "train/trainer.hpp"
#include "training_section.hpp"

using namespace nngraph;
using doctest::Approx;

namespace {

// A loss call over row-major values of shape `shape`.
struct LossInputs {
    Shape shape;
    std::vector<float> prediction, logits, targets, grad;
    Shape target_shape;

    LossCall call(bool with_logits, bool with_grad) {
        grad.assign(prediction.size(), 0.0f);
        LossCall c;
        c.prediction = {DType::F32, shape, prediction.data()};
        if (with_logits) c.logits = {DType::F32, shape, logits.data()};
        c.targets = {DType::F32, target_shape.empty() ? shape : target_shape, targets.data()};
        c.grad = with_grad ? grad.data() : nullptr;
        return c;
    }
};

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

}  // namespace

TEST_CASE("binary_crossentropy from probabilities clips at 1e-7 and averages over everything") {
    LossInputs in{{2, 1}, {0.9f, 0.2f}, {}, {1.0f, 0.0f}};
    const double loss = make_loss("binary_crossentropy")->evaluate(in.call(false, true));
    CHECK(loss == Approx(-(std::log(0.9) + std::log(0.8)) / 2).epsilon(1e-6));
    CHECK(in.grad[0] == Approx((0.9 - 1.0) / (0.9 * 0.1) / 2).epsilon(1e-5));
    CHECK(in.grad[1] == Approx((0.2 - 0.0) / (0.2 * 0.8) / 2).epsilon(1e-5));

    LossInputs saturated{{1, 1}, {1.0f}, {}, {0.0f}};
    CHECK(make_loss("binary_crossentropy")->evaluate(saturated.call(false, true)) ==
          Approx(-std::log(1e-7)).epsilon(1e-6));
    CHECK(saturated.grad[0] == 0.0f);  // clipped: no gradient, as Keras
}

TEST_CASE("binary_crossentropy after a sigmoid works from the logits: exact, stable, gradient p - y") {
    LossInputs in{{2, 2}, {}, {2.0f, -1.0f, 100.0f, -30.0f}, {1.0f, 0.0f, 0.0f, 1.0f}};
    for (float z : in.logits) in.prediction.push_back(static_cast<float>(sigmoid(z)));
    const auto bce = make_loss("binary_crossentropy");
    CHECK(bce->works_from_logits(NNG_OUTPUT_SIGMOID_LOGITS));
    CHECK_FALSE(bce->works_from_logits(NNG_OUTPUT_SOFTMAX_LOGITS));
    const double loss = bce->evaluate(in.call(true, true));
    const double expected =
        (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-1.0)) + 100.0 + std::log1p(std::exp(-100.0)) + 30.0) / 4;
    CHECK(loss == Approx(expected).epsilon(1e-6));
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(in.grad[i] == Approx((sigmoid(in.logits[i]) - in.targets[i]) / 4).epsilon(1e-5));
}

TEST_CASE("categorical_crossentropy normalises, clips and sums; sparse takes class ids; from logits it is p - y") {
    LossInputs in{{2, 3}, {0.2f, 0.6f, 0.2f, 1.0f, 1.0f, 2.0f}, {}, {0, 1, 0, 0, 0, 1}};
    const double loss = make_loss("categorical_crossentropy")->evaluate(in.call(false, true));
    CHECK(loss == Approx((-std::log(0.6) - std::log(0.5)) / 2).epsilon(1e-6));

    LossInputs sparse{{2, 3}, in.prediction, {}, {1.0f, 2.0f}, {}, {2}};
    CHECK(make_loss("sparse_categorical_crossentropy")->evaluate(sparse.call(false, true)) ==
          Approx(loss).epsilon(1e-9));
    for (std::size_t i = 0; i < 6; ++i) CHECK(sparse.grad[i] == Approx(in.grad[i]).epsilon(1e-6));
    CHECK(make_loss("sparse_categorical_crossentropy")->target_shape({5, 3}) == Shape{5});

    LossInputs logits{{1, 3}, {}, {1.0f, 2.0f, 3.0f}, {0, 0, 1}};
    const double sum = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    for (float z : logits.logits) logits.prediction.push_back(static_cast<float>(std::exp(z) / sum));
    CHECK(make_loss("categorical_crossentropy")->evaluate(logits.call(true, true)) ==
          Approx(std::log(sum) - 3.0).epsilon(1e-6));
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(logits.grad[i] == Approx(logits.prediction[i] - logits.targets[i]).epsilon(1e-5));

    LossInputs bad{{1, 3}, {0.2f, 0.3f, 0.5f}, {}, {3.0f}, {}, {1}};
    CHECK_THROWS_WITH_AS(make_loss("sparse_categorical_crossentropy")->evaluate(bad.call(false, false)),
                         doctest::Contains("target 3.000000 is not a class id in [0, 3)"), RunError);
}

TEST_CASE("sparse_categorical_crossentropy from logits stays exact where the target's probability underflows") {
    // softmax([60, -60]) puts exp(-120), below any float, on class 1: its loss comes from the logits.
    LossInputs far{{2, 2}, {1.0f, 0.0f, 0.5f, 0.5f}, {60.0f, -60.0f, 0.0f, 0.0f}, {1.0f, 0.0f}, {}, {2}};
    const double expected = (120.0 + std::log1p(std::exp(-120.0)) + std::log(2.0)) / 2;
    CHECK(make_loss("sparse_categorical_crossentropy")->evaluate(far.call(true, true)) ==
          Approx(expected).epsilon(1e-9));
    CHECK(far.grad[0] == Approx(0.5));
    CHECK(far.grad[1] == Approx(-0.5));
    CHECK(far.grad[2] == Approx(-0.25));
    CHECK(far.grad[3] == Approx(0.25));
}

TEST_CASE("mse is the mean of squared differences") {
    LossInputs in{{2, 2}, {1, 2, 3, 4}, {}, {0, 2, 5, 4}};
    CHECK(make_loss("mse")->evaluate(in.call(false, true)) == Approx((1.0 + 0 + 4 + 0) / 4));
    CHECK(in.grad[2] == Approx(2.0 * (3 - 5) / 4));
    CHECK_THROWS_WITH_AS(make_loss("hinge"),
                         doctest::Contains("unknown loss 'hinge'; known losses: binary_crossentropy"), InputError);
}

TEST_CASE("adam follows Keras's update exactly") {
    std::vector<Tensor> weights{Tensor::from<float>({2}, std::vector<float>{1.0f, -2.0f})};
    std::vector<Tensor> grads{Tensor(DType::F32, {2})};
    OptimizerConfig config{"adam", 0.1};
    auto adam = make_optimizer(config, weights, grads);
    double theta[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
    const double g_steps[3][2] = {{0.5, -1.0}, {-0.3, 0.2}, {0.1, 4.0}};
    for (int t = 1; t <= 3; ++t) {
        for (int i = 0; i < 2; ++i) grads[0].data<float>()[i] = static_cast<float>(g_steps[t - 1][i]);
        adam->apply(weights, grads);
        const double alpha = 0.1 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
        for (int i = 0; i < 2; ++i) {
            const double g = g_steps[t - 1][i];
            m[i] += (g - m[i]) * (1 - 0.9);
            v[i] += (g * g - v[i]) * (1 - 0.999);
            theta[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
            CHECK(weights[0].data<float>()[i] == Approx(theta[i]).epsilon(1e-6));
        }
    }
    CHECK(adam->iterations() == 3);
}

TEST_CASE("weight_decay shrinks each weight by weight_decay * learning_rate before the update, as Keras does") {
    for (const char* name : {"adam", "sgd"}) {
        CAPTURE(name);
        const auto start = [] {
            return std::vector<Tensor>{Tensor::from<float>({2}, std::vector<float>{1.0f, -2.0f})};
        };
        std::vector<Tensor> decayed = start(), prescaled = start(), undecayed = start();
        const std::vector<Tensor> grads{Tensor::from<float>({2}, std::vector<float>{0.5f, -1.0f})};
        OptimizerConfig with{name, 0.1}, without{name, 0.1};
        with.weight_decay = 0.4;
        make_optimizer(with, decayed, grads)->apply(decayed, grads);
        make_optimizer(without, undecayed, grads)->apply(undecayed, grads);
        // The plain update from weights scaled by 1 - 0.4 * 0.1 first.
        for (float& w : prescaled[0].values<float>()) w *= 0.96f;
        make_optimizer(without, prescaled, grads)->apply(prescaled, grads);
        for (int i = 0; i < 2; ++i) {
            CHECK(decayed[0].data<float>()[i] == Approx(prescaled[0].data<float>()[i]).epsilon(1e-6));
            CHECK(std::abs(decayed[0].data<float>()[i] - undecayed[0].data<float>()[i]) > 0.03f);
        }
    }
}

namespace {

// The training section of a one-layer model file whose optimizer is `optimizer` (YAML flow map).
TrainingConfig training_with(const std::string& optimizer) {
    return testing::training_section("loss: mse\n  optimizer: " + optimizer);
}

std::string training_error(const std::string& optimizer) {
    try {
        training_with(optimizer);
    } catch (const InputError& e) {
        return e.what();
    }
    FAIL("the training section parsed without an error");
    return {};
}

}  // namespace

TEST_CASE("learning-rate schedules follow Keras's equations, read as Keras serializes them") {
    const double pi = 3.14159265358979323846;
    SUBCASE("ExponentialDecay, smooth and staircase") {
        for (bool staircase : {false, true}) {
            CAPTURE(staircase);
            const OptimizerConfig c =
                training_with(
                    "{name: adam, learning_rate: {class_name: ExponentialDecay, config: {initial_learning_rate: 0.1, "
                    "decay_steps: 4, decay_rate: 0.5, staircase: " +
                    std::string(staircase ? "true" : "false") + "}}}")
                    .optimizer;
            REQUIRE(c.schedule);
            for (int step : {0, 1, 3, 4, 6, 9}) {
                CAPTURE(step);
                const double p = staircase ? std::floor(step / 4.0) : step / 4.0;
                CHECK(c.learning_rate_at(step) == Approx(0.1 * std::pow(0.5, p)).epsilon(1e-12));
            }
        }
    }
    SUBCASE("CosineDecay, with and without a warm-up, flat after decay_steps") {
        const OptimizerConfig plain =
            training_with(
                "{name: sgd, learning_rate: {module: keras.optimizers.schedules, class_name: CosineDecay, "
                "config: {initial_learning_rate: 0.2, decay_steps: 10, alpha: 0.1, warmup_target: null}, "
                "registered_name: null}}")
                .optimizer;
        const auto cosine = [&](double step, double from) {
            return from * (0.9 * 0.5 * (1 + std::cos(pi * step / 10)) + 0.1);
        };
        for (int step : {0, 3, 5, 10, 25}) {
            CAPTURE(step);
            CHECK(plain.learning_rate_at(step) == Approx(cosine(std::min(step, 10), 0.2)).epsilon(1e-12));
        }
        CHECK(plain.learning_rate_at(10) == Approx(0.02));
        const OptimizerConfig warm = training_with(
                                         "{name: adam, learning_rate: {class_name: CosineDecay, config: "
                                         "{initial_learning_rate: 0.0, decay_steps: 10, "
                                         "warmup_target: 0.4, warmup_steps: 4}}}")
                                         .optimizer;
        CHECK(warm.learning_rate_at(0) == Approx(0.0));
        CHECK(warm.learning_rate_at(1) == Approx(0.1));
        CHECK(warm.learning_rate_at(3) == Approx(0.3));
        for (int step : {4, 9, 14, 30}) {
            CAPTURE(step);
            const double after = std::min(step, 14) - 4.0;
            CHECK(warm.learning_rate_at(step) == Approx(0.4 * 0.5 * (1 + std::cos(pi * after / 10))).epsilon(1e-12));
        }
    }
    SUBCASE("PiecewiseConstantDecay: a boundary step still takes the earlier value") {
        const OptimizerConfig c = training_with(
                                      "{name: adam, learning_rate: {class_name: PiecewiseConstantDecay, config: "
                                      "{boundaries: [2, 5], values: [1.0, 0.5, 0.1]}}}")
                                      .optimizer;
        const double expected[] = {1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1};
        for (int step = 0; step < 8; ++step) CHECK(c.learning_rate_at(step) == expected[step]);
    }
    SUBCASE("a constant learning_rate stays one") {
        const OptimizerConfig c = training_with("{name: adam, learning_rate: 0.003}").optimizer;
        CHECK_FALSE(c.schedule);
        CHECK(c.learning_rate_at(1000) == 0.003);
    }
}

TEST_CASE("a bad learning-rate schedule is refused with where and what was expected") {
    CHECK(training_error("{name: adam, learning_rate: {class_name: StepDecay, config: {}}}")
              .find("unknown learning_rate schedule 'StepDecay'; known: ExponentialDecay, CosineDecay") !=
          std::string::npos);
    CHECK(training_error("{name: adam, learning_rate: {class_name: ExponentialDecay, config: {initial_learning_rate: "
                         "0.1, decay_steps: 5}}}")
              .find("ExponentialDecay needs 'decay_rate'") != std::string::npos);
    CHECK(training_error("{name: adam, learning_rate: {class_name: CosineDecay, config: {initial_learning_rate: 0.1, "
                         "decay_steps: 0}}}")
              .find("decay_steps must be above 0") != std::string::npos);
    CHECK(training_error("{name: adam, learning_rate: {class_name: CosineDecay, config: {initial_learning_rate: 0.1, "
                         "decay_steps: 5, beta: 1}}}")
              .find("unknown key 'beta' in CosineDecay's config") != std::string::npos);
    const std::string values = training_error(
        "{name: adam, learning_rate: {class_name: PiecewiseConstantDecay, config: {boundaries: [2], values: [1.0]}}}");
    CHECK(values.find("model.yaml:7:") != std::string::npos);
    CHECK(values.find("one more value than boundaries (1 boundaries, 1 values)") != std::string::npos);
    CHECK(training_error("{name: adam, learning_rate: {class_name: CosineDecay}}").find("needs class_name") !=
          std::string::npos);
}

TEST_CASE("the optimizers take each update's learning rate from the schedule, weight_decay included") {
    for (const char* name : {"adam", "sgd"}) {
        CAPTURE(name);
        // ExponentialDecay halving every step: rates 0.1, 0.05, 0.025, each used for the decay and
        // the update of its step, against Keras's equations in double.
        OptimizerConfig scheduled{name, -1};
        scheduled.weight_decay = 0.5;
        scheduled.schedule = LearningRateSchedule{LearningRateSchedule::Kind::exponential_decay, 0.1, 1, 0.5};
        std::vector<Tensor> weights{Tensor::from<float>({2}, std::vector<float>{1.0f, -2.0f})};
        std::vector<Tensor> grads{Tensor::from<float>({2}, std::vector<float>{0.5f, -1.0f})};
        auto optimizer = make_optimizer(scheduled, weights, grads);
        double theta[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
        for (int t = 1; t <= 3; ++t) {
            const double lr = 0.1 * std::pow(0.5, t - 1);
            optimizer->apply(weights, grads);
            for (int i = 0; i < 2; ++i) {
                const double g = grads[0].data<float>()[i];
                theta[i] *= 1 - 0.5 * lr;
                if (std::string(name) == "sgd") {
                    theta[i] -= lr * g;
                } else {
                    m[i] += (g - m[i]) * 0.1;
                    v[i] += (g * g - v[i]) * 0.001;
                    theta[i] -= lr * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t)) * m[i] /
                                (std::sqrt(v[i]) + 1e-7);
                }
                CHECK(weights[0].data<float>()[i] == Approx(theta[i]).epsilon(1e-6));
            }
        }
    }
}

TEST_CASE("sgd with momentum and with Nesterov follows Keras's update exactly") {
    for (bool nesterov : {false, true}) {
        CAPTURE(nesterov);
        std::vector<Tensor> weights{Tensor::from<float>({1}, std::vector<float>{1.0f})};
        std::vector<Tensor> grads{Tensor(DType::F32, {1})};
        auto sgd = make_optimizer({"sgd", 0.1, 0.9, 0.999, 1e-7, 0.9, nesterov}, weights, grads);
        double theta = 1.0, m = 0.0;
        for (double g : {0.5, -0.25, 1.0}) {
            grads[0].data<float>()[0] = static_cast<float>(g);
            sgd->apply(weights, grads);
            m = 0.9 * m - 0.1 * g;
            theta += nesterov ? 0.9 * m - 0.1 * g : m;
            CHECK(weights[0].data<float>()[0] == Approx(theta).epsilon(1e-6));
        }
    }
}

TEST_CASE("accuracy is Keras's: threshold 0.5 for one unit, argmax otherwise") {
    CHECK(resolve_accuracy("binary_crossentropy", {-1, 1}) == AccuracyKind::Binary);
    CHECK(resolve_accuracy("categorical_crossentropy", {-1, 4}) == AccuracyKind::Categorical);
    CHECK(resolve_accuracy("sparse_categorical_crossentropy", {-1, 4}) == AccuracyKind::SparseCategorical);
    const Shape four_by_one{4, 1};
    std::vector<float> p{0.2f, 0.5f, 0.51f, 0.9f}, y{0, 1, 1, 0};
    CHECK(accuracy_sum(AccuracyKind::Binary, {DType::F32, four_by_one, p.data()}, y.data(), 1, nullptr, 4) == 2.0);
    const Shape two_by_three{2, 3};
    std::vector<float> q{0.1f, 0.7f, 0.2f, 0.5f, 0.3f, 0.2f}, onehot{0, 1, 0, 0, 0, 1}, ids{1, 0};
    CHECK(accuracy_sum(AccuracyKind::Categorical, {DType::F32, two_by_three, q.data()}, onehot.data(), 3, nullptr, 2) ==
          1.0);
    CHECK(accuracy_sum(AccuracyKind::SparseCategorical, {DType::F32, two_by_three, q.data()}, ids.data(), 1, nullptr,
                       2) == 2.0);
}

TEST_CASE("the epoch line is Keras's") {
    CHECK(format_metric(0.87654321) == "0.8765");
    CHECK(format_metric(0.000123456) == "1.2346e-04");
    CHECK(format_time_per_step(0.0104) == "10ms/step");
    CHECK(format_time_per_step(0.00025) == "250us/step");
    std::ostringstream out;
    ProgressBar bar(out, false);
    bar.begin_epoch(3, 10, 391);
    bar.update(391, {0.3254, 0.8612});
    bar.end_epoch({0.3254, 0.8612}, Scores{0.30421, 0.871});
    const std::regex line(
        R"(Epoch 3/10\n391/391 - \d+s - \d+us/step - accuracy: 0\.8612 - loss: 0\.3254 - val_accuracy: 0\.8710 - val_loss: 0\.3042\n)");
    CHECK(std::regex_match(out.str(), line));
}

TEST_CASE("on a terminal the progress bar redraws in place") {
    std::ostringstream out;
    ProgressBar bar(out, true);
    bar.begin_epoch(1, 2, 10);
    bar.update(10, {0.5, 0.75});
    bar.end_epoch({0.5, 0.75}, std::nullopt);
    const std::string text = out.str();
    CHECK(text.find("\r\033[K10/10 \u2501\u2501") != std::string::npos);
    CHECK(text.find(" - accuracy: 0.7500 - loss: 0.5000") != std::string::npos);
    CHECK(text.find("\r\033[K10/10 - ") != std::string::npos);  // the bar is replaced by the epoch line
}

namespace {

std::vector<Tensor> train_xor(int epochs, const std::filesystem::path* save_after_first,
                              const std::filesystem::path* resume_from, std::vector<EpochLog>* logs = nullptr) {
    auto graph = Graph::load(std::filesystem::path(NNGRAPH_SOURCE_DIR) / "graphs/mlp_xor.yaml");
    TrainingConfig config = parse_training_config(graph->spec());
    config.epochs = epochs;
    Executor executor(graph, {1, config.seed});
    initialize_weights(*graph, config.seed, executor.weights());
    Trainer trainer(executor, config);
    const DataSplits data = load_data(*graph, {std::nullopt, config.loss, {}});
    int first_epoch = 0;
    if (resume_from) {
        const TrainingState state = load_checkpoint(*resume_from, executor, &trainer.optimizer());
        executor.set_step_count(state.steps_done);
        first_epoch = state.epochs_done;
    }
    std::ostringstream log;
    trainer.fit(data.train, &*data.validation, first_epoch, log, false, {.on_epoch_end = [&](const EpochLog& entry) {
                    if (logs) logs->push_back(entry);
                    if (save_after_first && entry.epoch == 1) {
                        save_checkpoint(*save_after_first, executor, &trainer.optimizer(),
                                        {entry.epoch, executor.step_count(), config.seed, {}, {}});
                    }
                    return true;
                }});
    return executor.weights();
}

}  // namespace

TEST_CASE("the XOR MLP in graphs/ trains to a low loss and high accuracy") {
    std::vector<EpochLog> logs;
    train_xor(30, nullptr, nullptr, &logs);
    REQUIRE(logs.size() == 30);
    CHECK(logs.front().train.loss > 0.3);
    CHECK(logs.back().train.loss < 0.08);
    CHECK(*logs.back().validation->accuracy > 0.97);
}

TEST_CASE("resuming from a checkpoint gives exactly the uninterrupted run's weights") {
    testing::TempDir dir;
    const std::filesystem::path checkpoint = dir / "after_epoch_1.safetensors";
    const std::vector<Tensor> straight = train_xor(3, &checkpoint, nullptr);
    const std::vector<Tensor> resumed = train_xor(3, nullptr, &checkpoint);
    REQUIRE(straight.size() == resumed.size());
    for (std::size_t w = 0; w < straight.size(); ++w) {
        CHECK(std::memcmp(straight[w].raw(), resumed[w].raw(), straight[w].nbytes()) == 0);
    }
}
