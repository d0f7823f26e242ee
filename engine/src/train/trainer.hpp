// Keras's fit and evaluate over an Executor: seeded shuffling, batches (the last one may be
// smaller), the optimiser step, running loss and accuracy, and the per-epoch log.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "dist/gradient_reducer.hpp"
#include "exec/executor.hpp"
#include "train/callbacks.hpp"
#include "train/metrics.hpp"
#include "train/optimizers.hpp"
#include "train/progress.hpp"
#include "train/training_config.hpp"

namespace nngraph {

struct Dataset {
    std::vector<Tensor> inputs;   // in graph input order, rows = samples
    std::vector<Tensor> targets;  // in graph output order, F32
    std::int64_t size() const { return inputs.empty() ? 0 : inputs.front().dim(0); }
};

// Sums over batches, each score weighed by what it averages over: the loss by rows, or by real
// tokens when the output carries a mask; the accuracy by what it counted.
struct BatchTally {
    double loss = 0.0, loss_weight = 0.0;
    double right = 0.0, counted = 0.0;
    void add(const BatchTally& other) {
        loss += other.loss;
        loss_weight += other.loss_weight;
        right += other.right;
        counted += other.counted;
    }
    Scores scores(bool with_accuracy) const;
};

struct BatchLog {
    int epoch = 0;          // 1-based, as printed
    std::int64_t step = 0;  // 1-based within the epoch
    std::int64_t steps = 0;
    Scores so_far;  // over the epoch's batches up to this one
};

struct EpochLog {
    int epoch = 0;  // 1-based, as printed
    Scores train;
    std::optional<Scores> validation;
    double seconds = 0.0;
    std::int64_t steps = 0;
    bool complete = true;        // false when training stopped within the epoch
    double learning_rate = 0.0;  // the optimizer's rate as the epoch ended

    // As Keras passes them to callbacks: the scores by name, val_ ones too, and learning_rate.
    EpochLogs logs() const;
};

// Called after every batch and every epoch; returning false stops training, as Keras's
// stop_training: a batch callback ends its epoch there, which is still validated and reported.
struct FitCallbacks {
    std::function<bool(const BatchLog&)> on_batch_end;
    std::function<bool(const EpochLog&)> on_epoch_end;
};

class Trainer {
public:
    // Sets the loss on the executor (which decides reverse mode) and creates the optimiser.
    Trainer(Executor& executor, TrainingConfig config);
    ~Trainer();  // takes its gradient hook off the executor, which outlives it
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    const TrainingConfig& config() const { return config_; }
    Optimizer& optimizer() { return *optimizer_; }
    // Trains data-parallel over `comm` (which must outlive the trainer): each rank runs its share of
    // every batch, the gradients are averaged in buckets of `bucket_bytes` before every step, the
    // scores cover all ranks' rows.
    void set_communicator(dist::Communicator& comm, std::size_t bucket_bytes = dist::kDefaultBucketBytes,
                          dist::Overlap overlap = dist::Overlap::DuringBackward);
    // The gradient averages' time so far (no steps with one rank).
    dist::AveragingTime averaging_time() const { return reducer_ ? reducer_->time() : dist::AveragingTime{}; }

    // Runs after the model file's callbacks (training.callbacks), in the order added.
    void add_callback(std::unique_ptr<Callback> callback) { extra_callbacks_.push_back(std::move(callback)); }
    // The callbacks' state to resume from (a checkpoint's), put back as the next fit begins.
    void resume_callbacks(CallbackState state) { resumed_callbacks_ = std::move(state); }
    // The running fit's callbacks' state as the last epoch left it, for a checkpoint.
    CallbackState callback_state() const { return save_callback_states(callbacks_); }
    // The names every epoch's logs hold (EpochLog::logs), with validation data or without.
    std::vector<std::string> log_names(bool with_validation) const;

    // Epochs first_epoch+1 .. config.epochs (1-based), validating after each when given; the
    // callbacks (training.callbacks, then those added) see each epoch before `callbacks`. Returns
    // false when a callback stopped training.
    bool fit(const Dataset& train, const Dataset* validation, int first_epoch, std::ostream& log, bool live,
             const FitCallbacks& callbacks = {});
    // One epoch (0-based index, which seeds its shuffle); progress may be null. When on_batch_end
    // returns false the epoch ends after that batch, its scores cover the batches run, and
    // `stopped` (if given) is set.
    Scores train_epoch(const Dataset& train, int epoch_index, ProgressBar* progress,
                       const std::function<bool(const BatchLog&)>& on_batch_end = {}, bool* stopped = nullptr);
    Scores evaluate(const Dataset& data);

    // Why training stopped at a non-finite loss (TerminateOnNaN): the epoch, the step and the first
    // node whose output was not finite; empty while every loss was finite.
    const std::string& non_finite_stop() const { return non_finite_stop_; }

private:
    std::string first_non_finite_node(const BatchRef& batch);

    void check(const Dataset& data, const char* what) const;
    // Runs one batch, recording what its loss averages over in batch_weight_.
    double run_batch(const BatchRef& batch, StepKind kind);
    // Adds the last run's loss (its mean) and accuracy over `rows` to `tally`.
    void tally_batch(const Dataset& data, const std::int64_t* rows, std::int64_t count, double loss,
                     BatchTally& tally) const;
    void update_metrics(MetricSet& metrics, const Dataset& data, const std::int64_t* rows, std::int64_t count) const;
    // The tallies' loss and accuracy with the metric set's results.
    Scores scores_of(const BatchTally& tally, const MetricSet& metrics) const;
    // One optimiser step on the global batch `rows`, of which this rank runs its share. Returns the
    // tallies over the global batch.
    BatchTally train_step(const Dataset& train, BatchRef& batch, const std::int64_t* rows, std::int64_t count);

    Executor& executor_;
    TrainingConfig config_;
    std::unique_ptr<Optimizer> optimizer_;
    std::optional<AccuracyKind> accuracy_;
    // The other metrics: one step's tallies (added up across ranks), the epoch's, an evaluation's.
    MetricSet step_metrics_, epoch_metrics_, evaluation_metrics_;
    std::string non_finite_stop_;
    // What the last run's loss averaged over (loss_weight.hpp), filled in by the loss as it runs.
    std::shared_ptr<double> batch_weight_ = std::make_shared<double>(0.0);
    dist::Communicator* comm_;
    // The ranks a batch's rows are split over: comm_, or this process alone when every rank holds
    // the whole batch (sequence parallelism: the ranks split the steps instead).
    dist::Communicator* rows_comm_;
    std::unique_ptr<dist::GradientReducer> reducer_;  // with more than one rank
    std::vector<std::unique_ptr<Callback>> extra_callbacks_;
    std::vector<std::unique_ptr<Callback>> callbacks_;  // those of the running fit
    CallbackState resumed_callbacks_;
};

}  // namespace nngraph
