// nngraph train | evaluate
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "exec/weights.hpp"
#include "nngraph/safetensors.hpp"
#include "train/checkpoint.hpp"
#include "train/datasets.hpp"
#include "train/trainer.hpp"

namespace nngraph::cli {
namespace {

struct TrainOptions {
    std::string model;
    CommonOptions common;
    std::optional<std::string> data, save, resume, log;
    std::optional<int> epochs;
    std::optional<std::int64_t> batch_size;
    std::optional<std::uint64_t> seed;
};

// Keras's ModelCheckpoint(save_best_only=True) monitor: val_accuracy when there is one, else the
// best available of val_loss, accuracy, loss.
struct Monitor {
    std::string name;
    bool higher_is_better = true;

    static Monitor choose(bool has_validation, bool has_accuracy) {
        if (has_accuracy) return {has_validation ? "val_accuracy" : "accuracy", true};
        return {has_validation ? "val_loss" : "loss", false};
    }
    double value(const EpochLog& log) const {
        const Scores& s = name.rfind("val_", 0) == 0 ? *log.validation : log.train;
        return higher_is_better ? *s.accuracy : s.loss;
    }
    bool improves(double candidate, const std::optional<double>& best) const {
        return !best || (higher_is_better ? candidate > *best : candidate < *best);
    }
};

void write_history_row(std::ostream& out, const EpochLog& log) {
    // Keras's CSVLogger columns (its epoch is 0-based), plus the epoch's seconds.
    auto number = [](double v) {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.6g", v);
        return std::string(buffer);
    };
    out << log.epoch - 1;
    if (log.train.accuracy) out << "," << number(*log.train.accuracy);
    out << "," << number(log.train.loss);
    if (log.validation) {
        if (log.validation->accuracy) out << "," << number(*log.validation->accuracy);
        out << "," << number(log.validation->loss);
    }
    out << "," << number(log.seconds) << "\n" << std::flush;
}

void run_train(const TrainOptions& o) {
    auto graph = load_graph(o.model, o.common);
    TrainingConfig config = parse_training_config(graph->spec());
    if (o.epochs) config.epochs = *o.epochs;
    if (o.batch_size) config.batch_size = *o.batch_size;
    std::optional<TrainingState> resumed;
    // A resumed run keeps the checkpoint's seed: it decides the random streams and the shuffles.
    if (o.resume) config.seed = read_training_state(*o.resume).seed;
    if (o.seed) config.seed = *o.seed;

    Executor executor(graph, {o.common.threads, config.seed});
    initialize_weights(*graph, config.seed, executor.weights());
    Trainer trainer(executor, config);
    DataSplits data = load_data(*graph, {o.data ? std::optional<std::filesystem::path>(*o.data) : std::nullopt, config.loss, {}});
    std::cerr << "nngraph: training '" << graph->name() << "' on " << data.description << "\n";

    int first_epoch = 0;
    Monitor monitor = Monitor::choose(data.validation.has_value(), !config.metrics.empty());
    std::optional<double> best;
    if (o.resume) {
        resumed = load_checkpoint(*o.resume, executor, &trainer.optimizer());
        executor.set_step_count(resumed->steps_done);
        first_epoch = resumed->epochs_done;
        if (resumed->monitor == monitor.name) best = resumed->best;
        std::cerr << "nngraph: resuming after epoch " << first_epoch << " from " << *o.resume << "\n";
        if (first_epoch >= config.epochs) {
            std::cerr << "nngraph: the checkpoint has already trained " << first_epoch << " of " << config.epochs << " epochs\n";
            return;
        }
    }
    if (o.save && data.vocabulary) data.vocabulary->save(vocabulary_path(*o.save));

    std::ofstream history;
    if (o.log) {
        const bool append = o.resume && std::filesystem::exists(*o.log);
        history.open(*o.log, append ? std::ios::app : std::ios::trunc);
        if (!history) throw RunError("cannot write the history file '" + *o.log + "'");
        if (!append) {
            history << "epoch";
            if (!config.metrics.empty()) history << ",accuracy";
            history << ",loss";
            if (data.validation) history << (config.metrics.empty() ? "" : ",val_accuracy") << ",val_loss";
            history << ",seconds\n";
        }
    }

    int best_epoch = 0;
    trainer.fit(data.train, data.validation ? &*data.validation : nullptr, first_epoch, std::cout, isatty(STDOUT_FILENO) != 0,
                {.on_epoch_end = [&](const EpochLog& log) {
                    if (history.is_open()) write_history_row(history, log);
                    const double value = monitor.value(log);
                    if (!monitor.improves(value, best)) return true;
                    best = value;
                    best_epoch = log.epoch;
                    if (!o.save) return true;
                    TrainingState state{log.epoch, executor.step_count(), config.seed, best, monitor.name};
                    save_checkpoint(*o.save, executor, &trainer.optimizer(), state);
                    return true;
                }});
    if (best && best_epoch) {
        std::cerr << "nngraph: best " << monitor.name << " " << format_metric(*best) << " at epoch " << best_epoch
                  << (o.save ? ", saved to " + *o.save : std::string()) << "\n";
    }
}

struct EvaluateOptions {
    std::string model, weights;
    CommonOptions common;
    std::optional<std::string> data;
    std::optional<std::int64_t> batch_size;
};

void run_evaluate(const EvaluateOptions& o) {
    auto graph = load_graph(o.model, o.common);
    TrainingConfig config = parse_training_config(graph->spec());
    if (o.batch_size) config.batch_size = *o.batch_size;
    Executor executor(graph, {o.common.threads, config.seed});
    prepare_weights(executor, o.weights);
    Trainer trainer(executor, config);
    DataSplits data = load_data(*graph, {o.data ? std::optional<std::filesystem::path>(*o.data) : std::nullopt, config.loss, {}});
    const Dataset& set = data.validation ? *data.validation : data.train;
    ProgressBar bar(std::cout, false);
    const std::int64_t steps = (set.size() + config.batch_size - 1) / config.batch_size;
    const auto start = std::chrono::steady_clock::now();
    const Scores scores = trainer.evaluate(set);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << steps << "/" << steps << " - " << static_cast<long long>(seconds + 0.5) << "s - "
              << format_time_per_step(seconds / double(steps));
    for (const auto& [name, value] : scores.named()) std::cout << " - " << name << ": " << format_metric(value);
    std::cout << "\n";
}

}  // namespace

void add_train_commands(CLI::App& app) {
    auto t = std::make_shared<TrainOptions>();
    CLI::App* train = app.add_subcommand("train", "Train a model; prints Keras's epoch lines");
    train->add_option("model", t->model, "Model file (YAML)")->required();
    train->add_option("--data", t->data, "Training data: a .safetensors file of inputs and targets, or the aclImdb folder or archive");
    train->add_option("--epochs", t->epochs, "Epochs (overrides the file)")->check(CLI::PositiveNumber);
    train->add_option("--batch-size", t->batch_size, "Batch size (overrides the file)")->check(CLI::PositiveNumber);
    train->add_option("--seed", t->seed, "Seed of initial weights, shuffling and dropout");
    train->add_option("--save", t->save, "Keep the best checkpoint (by val_accuracy) in this .safetensors file");
    train->add_option("--resume", t->resume, "Continue from a checkpoint written by --save");
    train->add_option("--log", t->log, "Write one CSV row per epoch to this file");
    add_common_options(*train, t->common);
    train->callback([t] { run_train(*t); });

    auto e = std::make_shared<EvaluateOptions>();
    CLI::App* evaluate = app.add_subcommand("evaluate", "Loss and metrics of trained weights on the validation data");
    evaluate->add_option("model", e->model, "Model file (YAML)")->required();
    evaluate->add_option("--weights", e->weights, "Weights (.safetensors)")->required();
    evaluate->add_option("--data", e->data, "Data, as for train");
    evaluate->add_option("--batch-size", e->batch_size, "Batch size")->check(CLI::PositiveNumber);
    add_common_options(*evaluate, e->common);
    evaluate->callback([e] { run_evaluate(*e); });
}

}  // namespace nngraph::cli
