// nngraph train | evaluate
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "nngraph/io_atomic_file.hpp"

namespace nngraph::cli {
namespace {

struct TrainOptions {
    std::string model;
    CommonOptions common;
    std::optional<std::string> data, save, resume, log;
    std::optional<int> epochs;
    std::optional<std::int64_t> batch_size;
    std::optional<std::uint64_t> seed;
    bool keep_going_on_nan = false;
    bool weights_only = false;
    std::optional<double> bucket_mb;
    bool no_overlap = false;
};

volatile std::sig_atomic_t stop_signal = 0;

extern "C" void request_stop(int signal) {
    stop_signal = signal;
    // A second Ctrl-C (or SIGTERM) must end the process at once.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
}

// While alive, SIGINT and SIGTERM ask training to stop after the current step instead of killing
// it, so the epoch's line, log row and checkpoint are written.
class StopOnSignal {
public:
    StopOnSignal() {
        stop_signal = 0;
        struct sigaction action {};
        action.sa_handler = request_stop;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &old_int_);
        sigaction(SIGTERM, &action, &old_term_);
    }
    StopOnSignal(const StopOnSignal&) = delete;
    StopOnSignal& operator=(const StopOnSignal&) = delete;
    ~StopOnSignal() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
    }
    bool requested() const { return stop_signal != 0; }
    const char* name() const { return stop_signal == SIGTERM ? "SIGTERM" : "SIGINT"; }

private:
    struct sigaction old_int_ {
    }, old_term_{};
};

void run_train(const TrainOptions& o) {
    Model model = load_model(o.model, o.common, o.seed);
    const bool leader = training_process().rank == 0;  // under mpirun, rank 0 alone writes and reports
    if (o.log) check_writable_destination(*o.log, "--log");
    nngraph::TrainOptions options;
    if (o.data) options.data = *o.data;
    options.epochs = o.epochs;
    options.batch_size = o.batch_size;
    options.seed = o.seed;
    if (o.keep_going_on_nan) options.terminate_on_nan = false;
    if (o.bucket_mb) options.gradient_bucket_bytes = static_cast<std::size_t>(*o.bucket_mb * 1024 * 1024);
    options.overlap_gradient_averaging = !o.no_overlap;
    if (o.save) options.save_best = *o.save;
    options.save_weights_only = o.weights_only;
    if (o.log && leader) options.history_csv = *o.log;
    if (o.resume) options.resume = *o.resume;
    options.log = &std::cout;
    options.live = isatty(STDOUT_FILENO) != 0;
    options.on_start = [&](const TrainStart& start) {
        std::cerr << "nngraph: training '" << model.name() << "' on " << start.data << "\n";
        if (!o.resume) return;
        std::cerr << "nngraph: resuming after epoch " << start.first_epoch << " from " << *o.resume << "\n";
        if (start.first_epoch >= start.epochs) {
            std::cerr << "nngraph: the checkpoint has already trained " << start.first_epoch << " of " << start.epochs
                      << " epochs\n";
        }
    };
    StopOnSignal stop;
    BatchEnd last_batch;
    options.on_batch = [&](const BatchEnd& batch) {
        last_batch = batch;
        return stop.requested() ? Training::Stop : Training::Continue;
    };
    options.on_epoch = [&](const EpochEnd&) { return stop.requested() ? Training::Stop : Training::Continue; };
    const TrainResult result = model.train(options);
    if (leader && result.averaging.steps > 0) {
        const double step = 1e3 / double(result.averaging.steps);
        std::cerr << std::fixed << std::setprecision(3) << "nngraph: gradient averaging "
                  << result.averaging.seconds * step << " ms a step, " << result.averaging.exposed_seconds * step
                  << " ms exposed after backward, "
                  << (result.averaging.seconds - result.averaging.exposed_seconds) * step << " ms hidden behind it ("
                  << (o.no_overlap ? "blocking, after backward" : "overlapped") << ")\n"
                  << std::defaultfloat;
    }
    if (leader && result.best && result.best_epoch) {
        std::cerr << "nngraph: best " << result.monitor << " " << format_metric(*result.best) << " at epoch "
                  << result.best_epoch << (o.save ? ", saved to " + *o.save : std::string()) << "\n";
    }
    if (stop.requested()) {
        std::string kept = "nothing saved (no --save)";
        if (o.save) {
            kept = std::filesystem::exists(*o.save)
                       ? "the best checkpoint is " + *o.save + " (continue with --resume " + *o.save + ")"
                       : "no checkpoint yet: no complete epoch improved on the last";
        }
        const std::string where = last_batch.epoch == 0
                                      ? "before the first step"
                                      : "at epoch " + std::to_string(last_batch.epoch) + ", step " +
                                            std::to_string(last_batch.step) + "/" + std::to_string(last_batch.steps);
        throw Error(std::string("stopped by ") + stop.name() + " " + where + "; " + kept +
                        (o.log ? "; the history is in " + *o.log : std::string()),
                    kExitInterrupted);
    }
    if (!result.non_finite.empty()) {
        throw RunError("training stopped at a non-finite loss (turn this off with --no-terminate-on-nan): " +
                       result.non_finite);
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
    train->add_option("--data", t->data,
                      "Training data: a .safetensors file of inputs and targets, or the aclImdb folder or archive");
    train->add_option("--epochs", t->epochs, "Epochs (overrides the file)")->check(count_in(1, kMaxEpochs));
    train->add_option("--batch-size", t->batch_size, "Batch size (overrides the file)")
        ->check(count_in(1, kMaxBatchSize));
    train->add_option("--seed", t->seed, "Seed of initial weights, shuffling and dropout");
    CLI::Option* save = train->add_option(
        "--save", t->save,
        "Keep the best checkpoint (by val_accuracy, or the model file's ModelCheckpoint) in this .safetensors file");
    train
        ->add_flag("--weights-only", t->weights_only,
                   "--save writes the weights alone (no optimizer state: the file cannot --resume)")
        ->needs(save);
    train->add_option("--resume", t->resume, "Continue from a checkpoint written by --save");
    train->add_option("--log", t->log, "Write one CSV row per epoch to this file (Keras's CSVLogger columns)");
    train->add_flag("--no-terminate-on-nan", t->keep_going_on_nan,
                    "Keep training when a batch's loss is NaN or infinite");
    train
        ->add_option("--bucket-mb", t->bucket_mb,
                     "Under mpirun: gradients are averaged in buckets of this many MiB (default 25)")
        ->check(CLI::PositiveNumber);
    train->add_flag("--no-overlap", t->no_overlap,
                    "Under mpirun: average the gradients after backward in blocking allreduces, not while it runs");
    add_common_options(*train, t->common);
    train->callback([t] { run_train(*t); });

    auto e = std::make_shared<EvaluateOptions>();
    CLI::App* evaluate = app.add_subcommand(
        "evaluate",
        "Loss and metrics of trained weights on the test data (else the validation data); BLEU for translation");
    evaluate->add_option("model", e->model, "Model file (YAML)")->required();
    evaluate->add_option("--weights", e->weights, "Weights (.safetensors)")->required();
    evaluate->add_option("--data", e->data, "Data, as for train");
    evaluate->add_option("--batch-size", e->batch_size, "Batch size")->check(count_in(1, kMaxBatchSize));
    add_common_options(*evaluate, e->common);
    evaluate->callback([e] { run_evaluate(*e); });
}

}  // namespace nngraph::cli
