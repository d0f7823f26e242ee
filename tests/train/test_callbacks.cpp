// Keras's callbacks: EarlyStopping, ReduceLROnPlateau and CSVLogger against Keras 3's rules written
// out, their options read as Keras names them, and the trainer running them.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "nngraph/error.hpp"
#include "temp_dir.hpp"
#include "train/callbacks.hpp"
#include "train/datasets.hpp"
#include "train/trainer.hpp"
#include "train/training_config.hpp"
#include "training_section.hpp"

using namespace nngraph;
using doctest::Approx;

namespace {

// One weight, an SGD optimizer and a log: what a callback acts on.
struct Host {
    std::vector<Tensor> weights{Tensor::from<float>({1}, std::vector<float>{0.0f})};
    std::vector<Tensor> grads{Tensor(DType::F32, {1})};
    std::unique_ptr<Optimizer> optimizer;
    std::ostringstream log;
    CallbackContext context;

    explicit Host(double learning_rate = 0.1)
        : optimizer(make_optimizer({"sgd", learning_rate}, weights, grads)), context{*optimizer, weights, log} {}

    // Runs `callback` over epochs whose `monitor` takes `values` in turn, the weight holding the
    // epoch's index; returns the epochs run before it asked to stop.
    int run(Callback& callback, const std::string& monitor, const std::vector<double>& values) {
        callback.on_train_begin({"loss", monitor, "learning_rate"}, context);
        int epochs = 0;
        for (std::size_t e = 0; e < values.size() && !context.stop_training; ++e, ++epochs) {
            weights[0].data<float>()[0] = static_cast<float>(e);
            callback.on_epoch_end(static_cast<int>(e), {{monitor, values[e]}, {"loss", 1.0}}, context);
        }
        callback.on_train_end(context);
        return epochs;
    }
};

TrainingConfig training(const std::string& callbacks) {
    return testing::training_section("loss: mse\n  callbacks: " + callbacks);
}

std::string training_error(const std::string& callbacks) {
    try {
        training(callbacks);
    } catch (const InputError& e) {
        return e.what();
    }
    return "parsed";
}

}  // namespace

TEST_CASE("EarlyStopping stops when patience epochs in a row fail to beat the best by min_delta") {
    // Keras: wait += 1 each epoch; an improvement (current - min_delta beating the best) resets it;
    // it stops once wait >= patience.
    EarlyStoppingConfig c;
    c.monitor.name = "val_loss";
    c.patience = 2;
    c.verbose = 1;
    Host host;
    EarlyStopping stopper(c);
    // 1.0 best, 0.9 best, 0.95 (wait 1), 0.92 (wait 2: stop after epoch index 3).
    CHECK(host.run(stopper, "val_loss", {1.0, 0.9, 0.95, 0.92, 0.5, 0.4}) == 4);
    CHECK(stopper.stopped_epoch() == 3);
    CHECK(host.log.str() == "Epoch 4: early stopping\n");

    // With min_delta 0.05, 0.9 -> 0.87 is no improvement.
    c.monitor.min_delta = 0.05;
    c.verbose = 0;
    Host strict;
    EarlyStopping by_delta(c);
    CHECK(strict.run(by_delta, "val_loss", {1.0, 0.9, 0.87, 0.86, 0.5}) == 4);

    // mode max (accuracy goes up by default too).
    EarlyStoppingConfig acc;
    acc.monitor.name = "val_accuracy";
    acc.patience = 1;
    Host up;
    EarlyStopping on_accuracy(acc);
    CHECK(up.run(on_accuracy, "val_accuracy", {0.5, 0.6, 0.55, 0.9}) == 3);
}

TEST_CASE("EarlyStopping restores the best epoch's weights, and waits for start_from_epoch and the baseline") {
    EarlyStoppingConfig c;
    c.monitor.name = "val_loss";
    c.patience = 2;
    c.restore_best_weights = true;
    c.verbose = 1;
    Host host;
    EarlyStopping stopper(c);
    CHECK(host.run(stopper, "val_loss", {0.8, 0.3, 0.4, 0.5, 0.1}) == 4);
    CHECK(host.weights[0].data<float>()[0] == 1.0f);  // epoch index 1 had the lowest val_loss
    CHECK(host.log.str().find("Restoring model weights from the end of the best epoch: 2.") != std::string::npos);

    // Epochs before start_from_epoch are not watched at all.
    c.start_from_epoch = 3;
    Host late;
    EarlyStopping warm(c);
    CHECK(late.run(warm, "val_loss", {0.1, 0.2, 0.3, 0.9, 1.0, 1.1, 1.2}) == 6);
    CHECK(late.weights[0].data<float>()[0] == 3.0f);

    // Improving on the best without beating the baseline does not reset the wait, so the first
    // epoch without improvement stops (Keras checks patience only then).
    EarlyStoppingConfig b;
    b.monitor.name = "val_loss";
    b.patience = 2;
    Host free;
    EarlyStopping without_baseline(b);
    CHECK(free.run(without_baseline, "val_loss", {0.9, 0.8, 0.85, 0.7}) == 4);
    b.baseline = 0.5;
    Host base;
    EarlyStopping with_baseline(b);
    CHECK(base.run(with_baseline, "val_loss", {0.9, 0.8, 0.85, 0.7}) == 3);
}

TEST_CASE("ReduceLROnPlateau multiplies the rate by factor after patience epochs, with cooldown and min_lr") {
    ReduceLROnPlateauConfig c;
    c.monitor.name = "val_loss";
    c.factor = 0.5;
    c.patience = 2;
    c.cooldown = 1;
    c.min_lr = 0.03;
    c.verbose = 1;
    Host host(0.1);
    ReduceLROnPlateau reducer(c);
    reducer.on_train_begin({"loss", "val_loss", "learning_rate"}, host.context);
    // Keras's rule written out: in cooldown the counter drops and wait is 0; an improvement by more
    // than min_delta (1e-4) resets wait; else, out of cooldown, wait grows and at patience the rate
    // becomes max(rate * factor, min_lr) when above min_lr, starting the cooldown.
    const std::vector<double> losses = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5};
    std::vector<double> rates;
    for (std::size_t e = 0; e < losses.size(); ++e) {
        reducer.on_epoch_end(static_cast<int>(e), {{"val_loss", losses[e]}}, host.context);
        rates.push_back(host.optimizer->learning_rate());
    }
    // e0 best; e1 wait 1; e2 wait 2 -> 0.05, cooldown 1; e3 the cooldown ends, so wait 1; e4 wait 2 ->
    // 0.03 (min_lr); e5 wait 1; e6 wait 2, but the rate is at min_lr; e7 improves; e8-e10 wait 1, 2, 3.
    const std::vector<double> expected = {0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03};
    REQUIRE(rates.size() == expected.size());
    for (std::size_t e = 0; e < rates.size(); ++e) CHECK(rates[e] == Approx(expected[e]));
    CHECK(host.log.str().find("Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05.") != std::string::npos);

    // The optimizer then updates at the reduced rate.
    host.grads[0].data<float>()[0] = 1.0f;
    const float before = host.weights[0].data<float>()[0];
    host.optimizer->apply(host.weights, host.grads);
    CHECK(host.weights[0].data<float>()[0] == Approx(before - 0.03));
}

TEST_CASE("a callback whose monitor training does not log is refused before the first epoch") {
    EarlyStoppingConfig c;
    c.monitor.name = "val_auc";
    Host host;
    EarlyStopping stopper(c);
    CHECK_THROWS_WITH_AS(stopper.on_train_begin({"accuracy", "learning_rate", "loss"}, host.context),
                         "EarlyStopping monitors 'val_auc', which training does not log (it logs: accuracy, "
                         "learning_rate, loss; a val_ metric needs validation data)",
                         InputError);
    ReduceLROnPlateauConfig r;
    r.monitor.name = "loss";
    OptimizerConfig scheduled{"sgd", -1};
    scheduled.schedule = LearningRateSchedule{LearningRateSchedule::Kind::exponential_decay, 0.1, 1, 0.5};
    auto optimizer = make_optimizer(scheduled, host.weights, host.grads);
    CallbackContext context{*optimizer, host.weights, host.log};
    ReduceLROnPlateau reducer(r);
    CHECK_THROWS_WITH_AS(reducer.on_train_begin({"loss"}, context), doctest::Contains("not a schedule"), InputError);
}

TEST_CASE("CSVLogger writes epoch, then every log sorted by name, and appends without a second header") {
    testing::TempDir dir;
    const std::filesystem::path file = dir / "history.csv";
    Host host;
    {
        CsvLogger logger({file, ',', false});
        logger.on_epoch_end(0, {{"val_loss", 0.5}, {"loss", 0.25}, {"accuracy", 0.75}, {"learning_rate", 0.001}},
                            host.context);
        logger.on_epoch_end(1, {{"val_loss", 0.125}, {"loss", 0.1}, {"accuracy", 1.0}, {"learning_rate", 0.001}},
                            host.context);
    }
    {
        CsvLogger logger({file, ';', true});
        logger.on_epoch_end(2, {{"loss", 0.3}}, host.context);
    }
    std::ifstream in(file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text ==
          "epoch,accuracy,learning_rate,loss,val_loss\n"
          "0,0.75,0.001,0.25,0.5\n"
          "1,1,0.001,0.1,0.125\n"
          "2;0.3\n");
}

TEST_CASE("training.callbacks are read as Keras serializes them, in order, with their errors located") {
    const TrainingConfig config = training(
        "[{module: keras.callbacks, class_name: EarlyStopping, config: {monitor: val_accuracy, min_delta: -0.01, "
        "patience: 3, mode: max, restore_best_weights: true, start_from_epoch: 2, baseline: null}, "
        "registered_name: null}, "
        "{class_name: ReduceLROnPlateau, config: {monitor: loss, factor: 0.2, patience: 4, cooldown: 1, min_lr: "
        "0.0001, min_delta: 0.001}}, "
        "{class_name: CSVLogger, config: {filename: h.csv, separator: ';', append: true}}, "
        "{class_name: ModelCheckpoint, config: {filepath: best.safetensors, monitor: val_loss, mode: min, "
        "save_best_only: false}}, {class_name: TerminateOnNaN}]");
    REQUIRE(config.callbacks.size() == 3);
    const auto& early = std::get<EarlyStoppingConfig>(config.callbacks[0]);
    CHECK(early.monitor.name == "val_accuracy");
    CHECK(early.monitor.min_delta == 0.01);  // Keras takes its absolute value
    CHECK(early.monitor.mode == Monitor::Mode::max);
    CHECK(early.patience == 3);
    CHECK(early.restore_best_weights);
    CHECK(early.start_from_epoch == 2);
    CHECK_FALSE(early.baseline);
    const auto& reduce = std::get<ReduceLROnPlateauConfig>(config.callbacks[1]);
    CHECK(reduce.factor == 0.2);
    CHECK(reduce.cooldown == 1);
    CHECK(reduce.monitor.min_delta == 0.001);
    const auto& csv = std::get<CsvLoggerConfig>(config.callbacks[2]);
    CHECK(csv.separator == ';');
    CHECK(csv.append);
    REQUIRE(config.checkpoint);
    CHECK(config.checkpoint->monitor.name == "val_loss");
    CHECK_FALSE(config.checkpoint->save_best_only);
    CHECK(config.checkpoint->filepath == "best.safetensors");

    CHECK(training_error("[{class_name: EarlyStopping, config: {patience: 2, mode: up}}]").find("model.yaml:7:") !=
          std::string::npos);
    CHECK(training_error("[{class_name: EarlyStopping, config: {patience: 2, mode: up}}]")
              .find("EarlyStopping mode must be auto, min or max, not 'up'") != std::string::npos);
    CHECK(training_error("[{class_name: LambdaCallback}]")
              .find("unknown callback 'LambdaCallback'; known callbacks: EarlyStopping") != std::string::npos);
    CHECK(training_error("[{class_name: ReduceLROnPlateau, config: {factor: 1.5}}]")
              .find("factor must be above 0 and below 1") != std::string::npos);
    CHECK(training_error("[{class_name: EarlyStopping, config: {patient: 2}}]").find("unknown key 'patient'") !=
          std::string::npos);
}

TEST_CASE("the trainer runs the model file's callbacks: EarlyStopping ends fit, ReduceLROnPlateau lowers the rate") {
    auto graph = Graph::load(std::filesystem::path(NNGRAPH_SOURCE_DIR) / "graphs/mlp_xor.yaml");
    TrainingConfig config = parse_training_config(graph->spec());
    config.epochs = 30;
    EarlyStoppingConfig early;
    early.monitor.name = "val_loss";
    early.monitor.min_delta = 10.0;  // nothing improves by that much: stops after epoch index 1
    early.patience = 1;
    ReduceLROnPlateauConfig reduce;
    reduce.monitor.name = "loss";
    reduce.monitor.min_delta = 10.0;
    reduce.patience = 1;
    reduce.factor = 0.5;
    config.callbacks = {early, reduce};
    Executor executor(graph, {1, config.seed});
    initialize_weights(*graph, config.seed, executor.weights());
    Trainer trainer(executor, config);
    const double initial_rate = trainer.optimizer().learning_rate();
    const DataSplits data = load_data(*graph, {std::nullopt, config.loss, {}});
    std::vector<EpochLog> logs;
    std::ostringstream log;
    const bool completed =
        trainer.fit(data.train, &*data.validation, 0, log, false, {.on_epoch_end = [&](const EpochLog& entry) {
                        logs.push_back(entry);
                        return true;
                    }});
    CHECK_FALSE(completed);
    REQUIRE(logs.size() == 2);
    CHECK(logs[0].learning_rate == Approx(initial_rate));
    CHECK(logs[0].logs().at("learning_rate") == Approx(initial_rate));
    CHECK(logs[0].logs().count("val_accuracy") == 1);
    CHECK(trainer.optimizer().learning_rate() == Approx(initial_rate * 0.5));
}
