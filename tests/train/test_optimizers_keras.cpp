// AdamW, RMSprop, Adagrad and gradient clipping against Keras 3's equations written out in double,
// and their options read as Keras's optimizer get_config writes them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "graph/model_file.hpp"
#include "nngraph/error.hpp"
#include "train/optimizers.hpp"
#include "train/training_config.hpp"
#include "training_section.hpp"

using namespace nngraph;
using doctest::Approx;

namespace {

// Two weights of two values each, and the gradients of three steps.
struct Run {
    std::vector<Tensor> weights{Tensor::from<float>({2}, std::vector<float>{1.0f, -2.0f}),
                                Tensor::from<float>({2}, std::vector<float>{0.5f, 3.0f})};
    std::vector<Tensor> grads{Tensor(DType::F32, {2}), Tensor(DType::F32, {2})};
    static constexpr double g_steps[3][4] = {{0.5, -1.0, 2.0, 0.25}, {-0.3, 0.2, -4.0, 1.0}, {0.1, 4.0, 0.5, -0.5}};
    double theta[4] = {1.0, -2.0, 0.5, 3.0};

    void set_step(int t) {
        for (int i = 0; i < 4; ++i) grads[i / 2].data<float>()[i % 2] = static_cast<float>(g_steps[t][i]);
    }
    void check() const {
        for (int i = 0; i < 4; ++i) CHECK(weights[i / 2].data<float>()[i % 2] == Approx(theta[i]).epsilon(1e-5));
    }
};

TrainingConfig training_with(const std::string& optimizer) {
    return testing::training_section("loss: mse\n  optimizer: " + optimizer);
}

}  // namespace

TEST_CASE("adamw is adam with weight_decay 0.004 by default, applied before the update") {
    Run run;
    OptimizerConfig config{"adamw", 0.1};
    auto adamw = make_optimizer(config, run.weights, run.grads);
    double m[4] = {}, v[4] = {};
    for (int t = 1; t <= 3; ++t) {
        run.set_step(t - 1);
        adamw->apply(run.weights, run.grads);
        const double alpha = 0.1 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
        for (int i = 0; i < 4; ++i) {
            const double g = Run::g_steps[t - 1][i];
            run.theta[i] *= 1 - 0.004 * 0.1;
            m[i] += (g - m[i]) * 0.1;
            v[i] += (g * g - v[i]) * 0.001;
            run.theta[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
        }
        run.check();
    }
    CHECK(training_with("AdamW").optimizer.name == "adamw");
}

TEST_CASE("rmsprop follows Keras: plain, with momentum, centered") {
    for (const double momentum : {0.0, 0.5}) {
        for (const bool centered : {false, true}) {
            CAPTURE(momentum);
            CAPTURE(centered);
            Run run;
            OptimizerConfig config{"rmsprop", 0.01};
            config.rho = 0.8;
            config.momentum = momentum;
            config.centered = centered;
            auto rmsprop = make_optimizer(config, run.weights, run.grads);
            double vel[4] = {}, mom[4] = {}, avg[4] = {};
            for (int t = 0; t < 3; ++t) {
                run.set_step(t);
                rmsprop->apply(run.weights, run.grads);
                for (int i = 0; i < 4; ++i) {
                    const double g = Run::g_steps[t][i];
                    vel[i] = 0.8 * vel[i] + 0.2 * g * g;
                    double denominator = vel[i] + 1e-7;
                    if (centered) {
                        avg[i] = 0.8 * avg[i] + 0.2 * g;
                        denominator = vel[i] - avg[i] * avg[i] + 1e-7;
                    }
                    const double step = 0.01 * g / std::sqrt(denominator);
                    if (momentum > 0) {
                        mom[i] = momentum * mom[i] + step;
                        run.theta[i] -= mom[i];
                    } else {
                        run.theta[i] -= step;
                    }
                }
                run.check();
            }
        }
    }
}

TEST_CASE("adagrad accumulates squared gradients from initial_accumulator_value") {
    Run run;
    OptimizerConfig config{"adagrad", 0.05};
    config.initial_accumulator_value = 0.3;
    auto adagrad = make_optimizer(config, run.weights, run.grads);
    double s[4] = {0.3, 0.3, 0.3, 0.3};
    for (int t = 0; t < 3; ++t) {
        run.set_step(t);
        adagrad->apply(run.weights, run.grads);
        for (int i = 0; i < 4; ++i) {
            const double g = Run::g_steps[t][i];
            s[i] += g * g;
            run.theta[i] -= 0.05 * g / std::sqrt(s[i] + 1e-7);
        }
        run.check();
    }
}

TEST_CASE("clipnorm, global_clipnorm and clipvalue clip the gradients as Keras does, for every optimizer") {
    for (const char* name : {"sgd", "adam", "rmsprop", "adagrad"}) {
        for (const char* clipping : {"clipnorm", "global_clipnorm", "clipvalue"}) {
            CAPTURE(name);
            CAPTURE(clipping);
            // The clipped optimizer on the raw gradients must equal the plain one on gradients clipped
            // by Keras's clip_by_norm, clip_by_global_norm or clip, computed here in double.
            Run clipped, reference;
            OptimizerConfig with{name, 0.1}, without{name, 0.1};
            const double limit = 1.5;
            if (std::string(clipping) == "clipnorm") with.clipnorm = limit;
            if (std::string(clipping) == "global_clipnorm") with.global_clipnorm = limit;
            if (std::string(clipping) == "clipvalue") with.clipvalue = limit;
            auto a = make_optimizer(with, clipped.weights, clipped.grads);
            auto b = make_optimizer(without, reference.weights, reference.grads);
            bool some_clipped = false;
            for (int t = 0; t < 3; ++t) {
                clipped.set_step(t);
                double g[4];
                std::copy(Run::g_steps[t], Run::g_steps[t] + 4, g);
                const double norms[2] = {std::hypot(g[0], g[1]), std::hypot(g[2], g[3])};
                const double global = std::hypot(norms[0], norms[1]);
                for (int i = 0; i < 4; ++i) {
                    double clipped_g = g[i];
                    if (std::string(clipping) == "clipnorm") clipped_g = g[i] * limit / std::max(norms[i / 2], limit);
                    if (std::string(clipping) == "global_clipnorm") clipped_g = g[i] * limit / std::max(global, limit);
                    if (std::string(clipping) == "clipvalue") clipped_g = std::clamp(g[i], -limit, limit);
                    some_clipped = some_clipped || clipped_g != g[i];
                    reference.grads[i / 2].data<float>()[i % 2] = static_cast<float>(clipped_g);
                }
                a->apply(clipped.weights, clipped.grads);
                b->apply(reference.weights, reference.grads);
                for (int i = 0; i < 4; ++i) {
                    CHECK(clipped.weights[i / 2].data<float>()[i % 2] ==
                          Approx(reference.weights[i / 2].data<float>()[i % 2]).epsilon(1e-5));
                    // The gradients themselves are left as backward wrote them.
                    CHECK(clipped.grads[i / 2].data<float>()[i % 2] == static_cast<float>(Run::g_steps[t][i]));
                }
            }
            CHECK(some_clipped);
        }
    }
}

TEST_CASE("the optimizer options are read as Keras writes them, unset clipping as null") {
    const OptimizerConfig rmsprop =
        training_with(
            "{name: rmsprop, learning_rate: 0.002, rho: 0.8, momentum: 0.1, centered: true, epsilon: 1e-6, "
            "clipnorm: null, clipvalue: 0.5, global_clipnorm: null, weight_decay: null}")
            .optimizer;
    CHECK(rmsprop.name == "rmsprop");
    CHECK(rmsprop.rho == 0.8);
    CHECK(rmsprop.centered);
    CHECK(rmsprop.clipvalue == 0.5);
    CHECK(rmsprop.clipnorm == 0.0);
    CHECK(training_with("{name: adagrad, initial_accumulator_value: 0.2}").optimizer.initial_accumulator_value == 0.2);
    CHECK(training_with("{name: SGD}").optimizer.name == "sgd");

    auto error = [](const std::string& optimizer) -> std::string {
        try {
            training_with(optimizer);
        } catch (const InputError& e) {
            return e.what();
        }
        return "parsed";
    };
    CHECK(
        error("{name: adam, clipnorm: 1, clipvalue: 1}").find("only one of clipnorm, clipvalue and global_clipnorm") !=
        std::string::npos);
    CHECK(error("{name: adam, clipnorm: -1}").find("clipnorm must be above 0") != std::string::npos);
    CHECK(error("{name: nadam}")
              .find("unknown optimizer 'nadam'; known optimizers: adam, adamw, sgd, rmsprop, "
                    "adagrad") != std::string::npos);
    CHECK(error("{name: adam, amsgrad: true}").find("optimizer amsgrad: true is not supported") != std::string::npos);
    CHECK(error("{name: adam, nadam_decay: 1}").find("unknown key 'nadam_decay'") != std::string::npos);
    // Everything Keras 3's Adam.get_config writes, at its defaults.
    CHECK(training_with("{name: adam, learning_rate: 0.001, weight_decay: null, clipnorm: null, global_clipnorm: "
                        "null, clipvalue: null, use_ema: false, ema_momentum: 0.99, ema_overwrite_frequency: null, "
                        "loss_scale_factor: null, gradient_accumulation_steps: null, beta_1: 0.9, beta_2: 0.999, "
                        "epsilon: 1.0e-07, amsgrad: false}")
              .optimizer.name == "adam");
    std::vector<Tensor> w, g;
    OptimizerConfig both{"sgd", 0.1};
    both.clipnorm = both.global_clipnorm = 1.0;
    CHECK_THROWS_AS(make_optimizer(both, w, g), InputError);
}
