// nngraph train | evaluate
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli.hpp"

namespace nngraph::cli {
namespace {

struct TrainOptions {
    std::string model;
    CommonOptions common;
    std::optional<std::string> data, save, resume, log;
    std::optional<int> epochs;
    std::optional<std::int64_t> batch_size;
    std::optional<std::uint64_t> seed;
    std::optional<double> bucket_mb;
};

// Keras's CSVLogger: a header from the first epoch's columns (its epoch is 0-based), then one row
// per epoch, plus the epoch's seconds. A resumed run appends to an existing file.
class HistoryFile {
public:
    HistoryFile(const std::optional<std::string>& path, bool append) {
        if (!path) return;
        append_ = append && std::filesystem::exists(*path);
        out_.open(*path, append_ ? std::ios::app : std::ios::trunc);
        if (!out_) throw RunError("cannot write the history file '" + *path + "'");
    }

    void write(const EpochEnd& epoch) {
        if (!out_.is_open()) return;
        if (!append_) {
            out_ << "epoch" << (epoch.train.accuracy ? ",accuracy" : "") << ",loss";
            if (epoch.validation) out_ << (epoch.validation->accuracy ? ",val_accuracy" : "") << ",val_loss";
            out_ << ",seconds\n";
            append_ = true;
        }
        auto number = [](double v) {
            char buffer[32];
            std::snprintf(buffer, sizeof buffer, "%.6g", v);
            return std::string(buffer);
        };
        out_ << epoch.epoch - 1;
        if (epoch.train.accuracy) out_ << "," << number(*epoch.train.accuracy);
        out_ << "," << number(epoch.train.loss);
        if (epoch.validation) {
            if (epoch.validation->accuracy) out_ << "," << number(*epoch.validation->accuracy);
            out_ << "," << number(epoch.validation->loss);
        }
        out_ << "," << number(epoch.seconds) << "\n" << std::flush;
    }

private:
    std::ofstream out_;
    bool append_ = false;
};

void run_train(const TrainOptions& o) {
    Model model = load_model(o.model, o.common, o.seed);
    const bool leader = training_process().rank == 0;  // under mpirun, rank 0 alone writes and reports
    HistoryFile history(leader ? o.log : std::nullopt, o.resume.has_value());
    nngraph::TrainOptions options;
    if (o.data) options.data = *o.data;
    options.epochs = o.epochs;
    options.batch_size = o.batch_size;
    options.seed = o.seed;
    if (o.bucket_mb) options.gradient_bucket_bytes = static_cast<std::size_t>(*o.bucket_mb * 1024 * 1024);
    if (o.save) options.save_best = *o.save;
    if (o.resume) options.resume = *o.resume;
    options.log = &std::cout;
    options.live = isatty(STDOUT_FILENO) != 0;
    options.on_start = [&](const TrainStart& start) {
        std::cerr << "nngraph: training '" << model.name() << "' on " << start.data << "\n";
        if (!o.resume) return;
        std::cerr << "nngraph: resuming after epoch " << start.first_epoch << " from " << *o.resume << "\n";
        if (start.first_epoch >= start.epochs) {
            std::cerr << "nngraph: the checkpoint has already trained " << start.first_epoch << " of " << start.epochs << " epochs\n";
        }
    };
    options.on_epoch = [&](const EpochEnd& epoch) {
        history.write(epoch);
        return Training::Continue;
    };
    const TrainResult result = model.train(options);
    if (leader && result.best && result.best_epoch) {
        std::cerr << "nngraph: best " << result.monitor << " " << format_metric(*result.best) << " at epoch " << result.best_epoch
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
    Model model = load_model(o.model, o.common);
    prepare_weights(model, o.weights);
    nngraph::EvaluateOptions options;
    if (o.data) options.data = *o.data;
    options.batch_size = o.batch_size;
    options.log = &std::cout;
    model.evaluate(options);
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
    train->add_option("--bucket-mb", t->bucket_mb, "Under mpirun: gradients are averaged in buckets of this many MiB (default 25)")
        ->check(CLI::PositiveNumber);
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
