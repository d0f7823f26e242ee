#include "train/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "dist/data_parallel.hpp"
#include "exec/step_threads.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/random.hpp"
#include "train/loss_weight.hpp"
#include "train/losses.hpp"

namespace nngraph {
namespace {

void allreduce_sum(dist::Communicator& comm, BatchTally& tally) {
    double sums[4] = {tally.loss, tally.loss_weight, tally.right, tally.counted};
    comm.allreduce_sum(std::span<double>(sums));
    tally = {sums[0], sums[1], sums[2], sums[3]};
}

}  // namespace

Trainer::Trainer(Executor& executor, TrainingConfig config)
    : executor_(executor), config_(std::move(config)), comm_(&dist::single_process()), rows_comm_(comm_) {
    if (config_.loss.empty()) {
        throw InputError(executor_.graph().spec().file +
                         ": training needs a loss: add 'training: {loss: ...}' to the model file");
    }
    executor_.set_loss(weighing(make_loss(config_.loss), batch_weight_));
    optimizer_ = make_optimizer(config_.optimizer, executor_.weights(), executor_.weight_grads());
    if (!config_.metrics.empty()) {
        if (executor_.graph().outputs().size() != 1)
            throw InputError("the metrics need a model with one output; '" + executor_.graph().name() + "' has " +
                             std::to_string(executor_.graph().outputs().size()));
        step_metrics_ = MetricSet(config_.metrics, config_.loss);
        epoch_metrics_ = MetricSet(config_.metrics, config_.loss);
        evaluation_metrics_ = MetricSet(config_.metrics, config_.loss);
    }
    if (config_.accuracy) {
        if (executor_.graph().outputs().size() != 1)
            throw InputError("the accuracy metric needs a model with one output");
        accuracy_ = resolve_accuracy(config_.loss, executor_.graph().tensor(executor_.graph().outputs()[0]).info.shape);
    }
}

void Trainer::check(const Dataset& data, const char* what) const {
    if (data.size() == 0) throw InputError(std::string("the ") + what + " set is empty");
    if (data.targets.size() != executor_.graph().outputs().size()) {
        throw InputError(std::string("the ") + what + " set has " + std::to_string(data.targets.size()) +
                         " target tensors for a model with " + std::to_string(executor_.graph().outputs().size()) +
                         " outputs");
    }
}

double Trainer::run_batch(const BatchRef& batch, StepKind kind) {
    *batch_weight_ = 0.0;
    return executor_.run(batch, kind);
}

void Trainer::tally_batch(const Dataset& data, const std::int64_t* rows, std::int64_t count, double loss,
                          BatchTally& tally) const {
    // Under an output's mask the loss is a mean over real tokens, so it weighs by them.
    tally.loss += loss * *batch_weight_;
    tally.loss_weight += *batch_weight_;
    if (!accuracy_) return;
    const std::span<const std::uint8_t> mask = executor_.output_mask(0);
    const Tensor& targets = data.targets.front();
    const std::int64_t width = targets.numel() / targets.dim(0);
    if (mask.empty()) {
        tally.right += accuracy_sum(*accuracy_, executor_.output(0), targets.data<float>(), width, rows, count);
        tally.counted += double(count);
        return;
    }
    const AccuracyTally right =
        masked_accuracy(*accuracy_, executor_.output(0), targets.data<float>(), width, rows, count, mask);
    tally.right += right.right;
    tally.counted += right.counted;
}

Scores BatchTally::scores(bool with_accuracy) const {
    Scores s{loss_weight > 0 ? loss / loss_weight : 0.0, {}};
    if (with_accuracy) s.accuracy = counted > 0 ? right / counted : 0.0;
    return s;
}

Scores Trainer::scores_of(const BatchTally& tally, const MetricSet& metrics) const {
    Scores s = tally.scores(accuracy_.has_value());
    s.metrics = metrics.results();
    return s;
}

void Trainer::update_metrics(MetricSet& metrics, const Dataset& data, const std::int64_t* rows,
                             std::int64_t count) const {
    const Tensor& targets = data.targets.front();
    metrics.update(executor_.output(0), targets.data<float>(), targets.numel() / targets.dim(0), rows, count,
                   executor_.output_mask(0));
}

Scores Trainer::train_epoch(const Dataset& train, int epoch_index, ProgressBar* progress,
                            const std::function<bool(const BatchLog&)>& on_batch_end, bool* stopped) {
    check(train, "training");
    const std::int64_t n = train.size();
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    if (config_.shuffle) {
        // Fisher-Yates from a stream of (seed, epoch): a resumed run shuffles exactly as an unbroken one.
        nng::Random rng(
            nng::derive_seed(nng::derive_seed(config_.seed, "shuffle"), static_cast<std::uint64_t>(epoch_index)));
        for (std::int64_t i = n - 1; i > 0; --i)
            std::swap(order[static_cast<std::size_t>(i)], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
    }
    BatchRef batch;
    for (const Tensor& t : train.inputs) batch.inputs.push_back(&t);
    for (const Tensor& t : train.targets) batch.targets.push_back(&t);

    const std::int64_t batch_size = config_.batch_size;
    const std::int64_t steps = nng::ceil_div(n, batch_size);
    BatchTally epoch;
    epoch_metrics_.reset();
    for (std::int64_t step = 0; step < steps; ++step) {
        const std::int64_t begin = step * batch_size;
        const std::int64_t count = std::min(batch_size, n - begin);
        const BatchTally step_tally = train_step(train, batch, order.data() + begin, count);
        if (!std::isfinite(step_tally.loss) && config_.terminate_on_nan) {
            char value[32];
            std::snprintf(value, sizeof value, "%g", step_tally.scores(false).loss);
            non_finite_stop_ = "epoch " + std::to_string(epoch_index + 1) + ", step " + std::to_string(step + 1) + "/" +
                               std::to_string(steps) + ": the loss is " + value + "; " + first_non_finite_node(batch);
            if (stopped) *stopped = true;
            break;
        }
        epoch.add(step_tally);
        if (!progress && !on_batch_end) continue;
        const Scores so_far = scores_of(epoch, epoch_metrics_);
        if (progress) progress->update(step + 1, so_far);
        if (on_batch_end && !on_batch_end(BatchLog{epoch_index + 1, step + 1, steps, so_far})) {
            if (stopped) *stopped = true;
            break;
        }
    }
    return scores_of(epoch, epoch_metrics_);
}

std::string Trainer::first_non_finite_node(const BatchRef& batch) {
    const Graph& graph = executor_.graph();
    std::optional<NodeId> first;
    executor_.set_forward_observer([&](NodeId node, std::span<const nng_tensor> outputs) {
        for (const nng_tensor& t : outputs) {
            if (first || t.dtype != NNG_F32 || !t.data) continue;
            std::int64_t count = 1;
            for (int d = 0; d < t.shape.rank; ++d) count *= t.shape.dims[d];
            const float* values = static_cast<const float*>(t.data);
            if (!std::all_of(values, values + count, [](float v) { return std::isfinite(v); })) first = node;
        }
    });
    // The optimiser has not applied the failing step, so the same batch without dropout shows where
    // the values first went wrong.
    try {
        executor_.run(batch, StepKind::Evaluate);
    } catch (...) {
        executor_.set_forward_observer({});
        throw;
    }
    executor_.set_forward_observer({});
    if (!first) return "every node's output is finite, so the targets or the loss are not";
    const GraphNode& node = graph.node(*first);
    return "the first node whose output is not finite is '" + node.name + "' (" + node.op + ")";
}

Trainer::~Trainer() {
    if (reducer_) executor_.set_on_gradient_ready({});
}

void Trainer::set_communicator(dist::Communicator& comm, std::size_t bucket_bytes, dist::Overlap overlap) {
    comm_ = &comm;
    const SequenceParallelism* sequence = executor_.options().sequence.get();
    rows_comm_ = sequence ? &dist::single_process() : &comm;
    reducer_.reset();
    executor_.set_on_gradient_ready({});
    if (comm.size() == 1) return;
    reducer_ = std::make_unique<dist::GradientReducer>(comm, executor_.weight_grads(), bucket_bytes, overlap);
    for (std::size_t w = 0; sequence && w < sequence->partial_grads.size(); ++w)
        reducer_->sum_over_ranks(w, !sequence->partial_grads[w]);
    // Backward hands each gradient over as soon as it is final, so buckets go out while it runs on.
    executor_.set_on_gradient_ready([this](WeightId w) { reducer_->ready(static_cast<std::size_t>(w)); });
}

BatchTally Trainer::train_step(const Dataset& train, BatchRef& batch, const std::int64_t* rows, std::int64_t count) {
    const dist::Share mine = dist::share_of(count, rows_comm_->rank(), rows_comm_->size());
    BatchTally tally;
    *batch_weight_ = 0.0;
    // The weight is asked for once the loss has run, before backward hands over any gradient.
    if (reducer_) reducer_->begin([weight = batch_weight_.get()] { return *weight; });
    if (mine.count > 0) {
        batch.rows = std::span<const std::int64_t>(rows + mine.offset, static_cast<std::size_t>(mine.count));
        batch.global_offset = mine.offset;
        const double loss = run_batch(batch, StepKind::Train);
        tally_batch(train, rows + mine.offset, mine.count, loss, tally);
        if (!step_metrics_.empty()) update_metrics(step_metrics_, train, rows + mine.offset, mine.count);
    } else {
        // A rank without rows in a small last batch adds nothing, and keeps its random streams in step.
        for (Tensor& g : executor_.weight_grads()) {
            if (!g.empty()) std::memset(g.raw(), 0, g.nbytes());
        }
        executor_.set_step_count(executor_.step_count() + 1);
        if (reducer_) {
            for (std::size_t w = executor_.weight_grads().size(); w-- > 0;) reducer_->ready(w);
        }
    }
    if (reducer_) reducer_->finish();
    allreduce_sum(*rows_comm_, tally);
    if (!step_metrics_.empty()) {
        for (std::span<double> state : step_metrics_.states()) rows_comm_->allreduce_sum(state);
        epoch_metrics_.add(step_metrics_);
        step_metrics_.reset();
    }
    // TerminateOnNaN stops before a non-finite step reaches the weights, so the best checkpoint and
    // the weights in memory stay those of the last finite step.
    if (std::isfinite(tally.loss) || !config_.terminate_on_nan) {
        const StepThreads threads(executor_.options().threads);
        optimizer_->apply(executor_.weights(), executor_.weight_grads());
    }
    return tally;
}

Scores Trainer::evaluate(const Dataset& data) {
    check(data, "evaluation");
    BatchRef batch;
    for (const Tensor& t : data.inputs) batch.inputs.push_back(&t);
    for (const Tensor& t : data.targets) batch.targets.push_back(&t);
    const std::int64_t n = data.size();
    const std::uint64_t first_step = executor_.step_count();
    // Each rank scores its contiguous share of the set; the sums over all ranks are the whole set's.
    const dist::Share mine = dist::share_of(n, rows_comm_->rank(), rows_comm_->size());
    std::vector<std::int64_t> rows(static_cast<std::size_t>(mine.count));
    std::iota(rows.begin(), rows.end(), mine.offset);
    BatchTally tally;
    evaluation_metrics_.reset();
    for (std::int64_t begin = 0; begin < mine.count; begin += config_.batch_size) {
        const std::int64_t count = std::min(config_.batch_size, mine.count - begin);
        batch.rows = std::span<const std::int64_t>(rows.data() + begin, static_cast<std::size_t>(count));
        const double loss = run_batch(batch, StepKind::Evaluate);
        tally_batch(data, rows.data() + begin, count, loss, tally);
        if (!evaluation_metrics_.empty()) update_metrics(evaluation_metrics_, data, rows.data() + begin, count);
    }
    allreduce_sum(*rows_comm_, tally);
    for (std::span<double> state : evaluation_metrics_.states()) rows_comm_->allreduce_sum(state);
    // Every rank counts the steps one process would have run, so the random streams stay in step.
    executor_.set_step_count(first_step + static_cast<std::uint64_t>(nng::ceil_div(n, config_.batch_size)));
    return scores_of(tally, evaluation_metrics_);
}

EpochLogs EpochLog::logs() const {
    EpochLogs out;
    for (const auto& [name, value] : train.named()) out[name] = value;
    if (validation) {
        for (const auto& [name, value] : validation->named("val_")) out[name] = value;
    }
    out["learning_rate"] = learning_rate;
    return out;
}

std::vector<std::string> Trainer::log_names(bool with_validation) const {
    EpochLog sample;
    if (accuracy_) sample.train.accuracy = 0.0;
    sample.train.metrics = step_metrics_.results();
    if (with_validation) sample.validation = sample.train;
    std::vector<std::string> names;
    for (const auto& [name, value] : sample.logs()) names.push_back(name);
    return names;
}

bool Trainer::fit(const Dataset& train, const Dataset* validation, int first_epoch, std::ostream& log, bool live,
                  const FitCallbacks& callbacks) {
    // Every rank runs the callbacks on the same reduced logs, so they decide alike; files are rank 0's.
    callbacks_ = make_callbacks(config_.callbacks, comm_->rank() == 0);
    std::vector<std::unique_ptr<Callback>>& keras_callbacks = callbacks_;
    for (auto& c : extra_callbacks_) keras_callbacks.push_back(std::move(c));
    extra_callbacks_.clear();
    CallbackContext context{*optimizer_, executor_.weights(), log};
    const std::vector<std::string> names = log_names(validation != nullptr);
    for (auto& c : keras_callbacks) c->on_train_begin(names, context);
    restore_callback_states(keras_callbacks, resumed_callbacks_, context);
    resumed_callbacks_ = {};
    auto end_training = [&](bool completed) {
        for (auto& c : keras_callbacks) c->on_train_end(context);
        return completed;
    };

    ProgressBar progress(log, live);
    const std::int64_t steps = nng::ceil_div(train.size(), config_.batch_size);
    for (int epoch = first_epoch; epoch < config_.epochs; ++epoch) {
        progress.begin_epoch(epoch + 1, config_.epochs, steps);
        EpochLog entry;
        entry.epoch = epoch + 1;
        entry.steps = steps;
        bool stopped = false;
        entry.train = train_epoch(train, epoch, &progress, callbacks.on_batch_end, &stopped);
        entry.complete = !stopped;
        if (!non_finite_stop_.empty()) {
            progress.abandon_epoch();
            return end_training(false);
        }
        if (validation) entry.validation = evaluate(*validation);
        entry.seconds = progress.elapsed_seconds();
        entry.learning_rate = optimizer_->learning_rate();
        progress.end_epoch(entry.train, entry.validation);
        const EpochLogs logs = entry.logs();
        for (auto& c : keras_callbacks) c->on_epoch_end(epoch, logs, context);
        if (context.stop_training) stopped = true;
        if (callbacks.on_epoch_end && !callbacks.on_epoch_end(entry)) stopped = true;
        if (stopped) return end_training(false);
    }
    return end_training(true);
}

}  // namespace nngraph
