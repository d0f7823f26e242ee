// nngraph::Model: the public API over the graph, the executor and the trainer.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <thread>

#include "api/model_state.hpp"
#include "dist/data_parallel.hpp"
#include "dist/gradient_reducer.hpp"
#include "graph/summary.hpp"
#include "nngraph/arithmetic.hpp"
#include "nngraph/io_atomic_file.hpp"
#include "train/callbacks.hpp"
#include "train/checkpoint.hpp"
#include "train/losses.hpp"

namespace nngraph {

namespace {

Metrics metrics_of(const Scores& scores) { return {scores.loss, scores.accuracy, scores.metrics}; }

ModelTensor model_tensor(const GraphTensor& t) { return {t.name, t.info.dtype, t.info.shape}; }

// What --save keeps: the model file's ModelCheckpoint, else the best epoch by val_accuracy when
// there is one, else the best available of val_loss, accuracy, loss.
ModelCheckpointConfig checkpoint_rule(const TrainingConfig& config, bool has_validation) {
    if (config.checkpoint) return *config.checkpoint;
    ModelCheckpointConfig rule;
    const bool has_accuracy = config.accuracy;
    rule.monitor.name =
        has_accuracy ? (has_validation ? "val_accuracy" : "accuracy") : (has_validation ? "val_loss" : "loss");
    return rule;
}

std::vector<const Tensor*> pointers(const std::vector<Tensor>& tensors) {
    std::vector<const Tensor*> out;
    for (const Tensor& t : tensors) out.push_back(&t);
    return out;
}

// A count given by the user, checked against its bound before anything is sized by it.
template <typename Count>
void check_count(const char* what, Count value, Count low, Count high) {
    if (value < low || value > high) {
        throw InputError(std::string(what) + " must be from " + std::to_string(low) + " to " + std::to_string(high) +
                         ", not " + std::to_string(value));
    }
}

// Runs `step` on this rank of `comm`'s job: a rank that fails ends the whole job, naming itself,
// rather than leaving the others waiting in a collective.
template <class Step>
auto ending_job_on_failure(dist::Communicator& comm, Step step) {
    if (comm.size() == 1) return step();
    try {
        return step();
    } catch (const Error& e) {
        comm.abort(e.what(), e.exit_status());
    } catch (const std::exception& e) {
        comm.abort(e.what(), 1);
    }
}

}  // namespace

int max_threads() { return kMaxThreadsPerCore * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

Model::Model(std::unique_ptr<State> state) : state_(std::move(state)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::filesystem::path& model_file, const ModelOptions& options) {
    check_count("threads", options.threads, 0, max_threads());
    PluginSearch search;
    search.command_line = options.plugin_dirs;
    auto state = std::make_unique<State>();
    state->graph = Graph::load(model_file, search);
    state->config = parse_training_config(state->graph->spec());
    state->threads = options.threads;
    state->seed = state->weight_seed = options.seed.value_or(state->config.seed);
    if (state->graph->spec().sequence_parallel != SequenceParallelRequest::Off) {
        const dist::Communicator& world = dist::world();
        if (auto plan = plan_sequence_parallelism(*state->graph, world.size(), world.rank()))
            state->sequence = std::make_shared<const SequenceParallelism>(std::move(*plan));
    }
    return Model(std::move(state));
}

const std::string& Model::name() const { return state_->graph->name(); }
const std::filesystem::path& Model::file() const { return state_->graph->spec().path; }
std::uint64_t Model::seed() const { return state_->seed; }
int Model::threads() const { return state_->threads; }

std::vector<ModelTensor> Model::inputs() const {
    std::vector<ModelTensor> out;
    for (TensorId t : state_->graph->inputs()) out.push_back(model_tensor(state_->graph->tensor(t)));
    return out;
}

std::vector<ModelTensor> Model::outputs() const {
    std::vector<ModelTensor> out;
    for (TensorId t : state_->graph->outputs()) out.push_back(model_tensor(state_->graph->tensor(t)));
    return out;
}

std::vector<ModelNode> Model::nodes() const {
    const Graph& graph = *state_->graph;
    std::vector<ModelNode> out;
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        ModelNode& entry = out.emplace_back();
        entry.name = node.name;
        entry.op = node.op;
        for (TensorId t : node.inputs) entry.inputs.push_back(graph.tensor(t).name);
        for (TensorId t : node.outputs) entry.outputs.push_back(model_tensor(graph.tensor(t)));
        for (WeightId w : node.weights) entry.weights.push_back(graph.weights()[static_cast<std::size_t>(w)].name);
    }
    return out;
}

std::vector<ModelWeight> Model::weights() const {
    const Graph& graph = *state_->graph;
    std::vector<ModelWeight> out;
    for (const GraphWeight& w : graph.weights()) {
        out.push_back({w.name, graph.node(w.node).name, w.info.shape, w.info.trainable, w.inline_value.has_value()});
    }
    return out;
}

ParameterCount Model::parameters() const {
    const std::int64_t trainable = state_->graph->parameter_count(true);
    const std::int64_t frozen = state_->graph->parameter_count(false);
    return {trainable + frozen, trainable, frozen};
}

std::string Model::summary(const SummaryOptions& options) const {
    const Graph& graph = *state_->graph;
    return nngraph::summary(
        graph, options.line_length ? options.line_length : summary_line_length(graph, options.terminal_columns));
}
std::string Model::dot(const DotOptions& options) const {
    return to_dot(*state_->graph, options.rankdir, options.attributes);
}

void Model::load_weights(const std::filesystem::path& file) { nngraph::load_weights(file, state_->executor()); }
void Model::save_weights(const std::filesystem::path& file) const { nngraph::save_weights(file, state_->executor()); }

Tensor Model::weight(const std::string& name) const {
    return state_->executor().weights()[static_cast<std::size_t>(state_->weight_id(name))];
}

void Model::set_weight(const std::string& name, const Tensor& value) {
    Tensor& target = state_->executor().weights()[static_cast<std::size_t>(state_->weight_id(name))];
    if (value.dtype() != target.dtype() || value.shape() != target.shape()) {
        throw InputError("weight '" + name + "' is " + std::string(dtype_name(target.dtype())) + " " +
                         shape_to_string(target.shape()) + ", not " + std::string(dtype_name(value.dtype())) + " " +
                         shape_to_string(value.shape()));
    }
    std::memcpy(target.raw(), value.raw(), value.nbytes());
}

std::vector<Tensor> Model::read_inputs(const std::filesystem::path& file) const {
    const Graph& graph = *state_->graph;
    const TensorFile tensors = read_safetensors(file);
    std::vector<Tensor> inputs;
    for (TensorId t : graph.inputs()) {
        const GraphTensor& input = graph.tensor(t);
        auto it = tensors.tensors.find(input.name);
        if (it == tensors.tensors.end()) {
            throw InputError(file.string() + ": no tensor '" + input.name + "' for graph input '" + input.name + "'");
        }
        inputs.push_back(convert_dtype(it->second, input.info.dtype, file.string() + ": '" + input.name + "'"));
    }
    return inputs;
}

std::vector<Tensor> Model::read_targets(const std::filesystem::path& file) const {
    const Graph& graph = *state_->graph;
    const TensorFile tensors = read_safetensors(file);
    std::vector<Tensor> targets;
    for (std::size_t i = 0; i < graph.outputs().size(); ++i) {
        const std::string name =
            graph.outputs().size() == 1 ? "targets" : "targets." + graph.tensor(graph.outputs()[i]).name;
        auto it = tensors.tensors.find(name);
        if (it == tensors.tensors.end()) throw InputError(file.string() + ": no tensor '" + name + "'");
        targets.push_back(it->second);
    }
    return targets;
}

std::vector<Tensor> Model::predict(const std::vector<Tensor>& given, std::int64_t batch_size) {
    const Graph& graph = *state_->graph;
    Executor& executor = state_->executor();
    check_count("the batch size", batch_size, std::int64_t{1}, kMaxBatchSize);
    if (given.size() != graph.inputs().size()) {
        throw InputError("model '" + graph.name() + "' has " + std::to_string(graph.inputs().size()) +
                         " inputs; predict got " + std::to_string(given.size()) + " tensors");
    }
    std::vector<Tensor> inputs;
    for (std::size_t i = 0; i < given.size(); ++i) {
        const GraphTensor& input = graph.tensor(graph.inputs()[i]);
        inputs.push_back(convert_dtype(given[i], input.info.dtype, "input '" + input.name + "'"));
    }
    const std::int64_t n = inputs.front().rank() ? inputs.front().dim(0) : 0;
    if (n == 0) throw InputError("the inputs hold no rows");
    std::vector<Tensor> outputs;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
    BatchRef batch;
    batch.inputs = pointers(inputs);
    // The ranks of a sequence-parallel job, which every step talks to.
    dist::Communicator& ranks = state_->sequence ? dist::world() : dist::single_process();
    for (std::int64_t begin = 0; begin < n; begin += batch_size) {
        const std::int64_t count = std::min(batch_size, n - begin);
        batch.rows = std::span<const std::int64_t>(rows.data() + begin, static_cast<std::size_t>(count));
        ending_job_on_failure(ranks, [&] { executor.run(batch, StepKind::Infer); });
        for (std::size_t o = 0; o < graph.outputs().size(); ++o) {
            TensorView view = executor.output(o);
            // An output that holds this rank's steps is made whole from every rank's.
            Tensor whole;
            if (state_->sequence && state_->sequence->sharded[static_cast<std::size_t>(graph.outputs()[o])]) {
                whole = whole_sequence(view, state_->sequence->shard, ranks);
                view = {whole.dtype(), whole.shape(), whole.raw()};
            }
            if (outputs.size() <= o) {
                Shape shape(view.shape.begin(), view.shape.end());
                shape[0] = n;
                outputs.emplace_back(view.dtype, shape);
            }
            const std::size_t row_bytes = outputs[o].nbytes() / static_cast<std::size_t>(n);
            std::memcpy(static_cast<std::byte*>(outputs[o].raw()) + row_bytes * static_cast<std::size_t>(begin),
                        view.data, row_bytes * static_cast<std::size_t>(count));
        }
    }
    return outputs;
}

Tensor Model::predict_text(const std::vector<std::string>& texts, const Vocabulary& vocabulary,
                           std::int64_t batch_size) {
    const Graph& graph = *state_->graph;
    if (graph.inputs().size() != 1 || graph.outputs().size() != 1) {
        throw InputError("predicting from text needs a model with one input and one output; '" + graph.name() +
                         "' has " + std::to_string(graph.inputs().size()) + " and " +
                         std::to_string(graph.outputs().size()));
    }
    if (texts.empty()) throw InputError("predicting from text needs at least one text");
    const GraphTensor& input = graph.tensor(graph.inputs()[0]);
    if (input.info.shape.size() != 2 || input.info.shape[1] != vocabulary.maxlen()) {
        throw InputError("the vocabulary encodes " + std::to_string(vocabulary.maxlen()) + " ids, but input '" +
                         input.name + "' has shape " + shape_to_string(input.info.shape));
    }
    Tensor tokens(DType::I32, {static_cast<std::int64_t>(texts.size()), vocabulary.maxlen()});
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const std::vector<std::int32_t> ids = vocabulary.encode(texts[i]);
        std::copy(ids.begin(), ids.end(),
                  tokens.data<std::int32_t>() + static_cast<std::int64_t>(i) * vocabulary.maxlen());
    }
    return std::move(predict({tokens}, batch_size).front());
}

Gradients Model::gradients(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets) {
    State& s = *state_;
    const Graph& graph = *s.graph;
    if (s.config.loss.empty()) {
        throw InputError(graph.spec().file + ": gradients use the model file's training.loss, and it gives none");
    }
    const Dataset batch_data = s.dataset({inputs, targets}, "the gradient batch");
    if (batch_data.size() == 0) throw InputError("the gradient batch holds no rows");
    s.executor().set_loss(make_loss(s.config.loss));
    BatchRef batch;
    batch.inputs = pointers(batch_data.inputs);
    batch.targets = pointers(batch_data.targets);
    Gradients out;
    out.loss_function = s.config.loss;
    if (!s.sequence) {
        out.loss = s.executor().run(batch, StepKind::Gradient);
    } else {
        // Each rank's gradients come from its steps: the reducer sums them over the ranks.
        dist::GradientReducer reducer(dist::world(), s.executor().weight_grads(), dist::kDefaultBucketBytes,
                                      dist::Overlap::AfterBackward);
        for (std::size_t w = 0; w < graph.weights().size(); ++w)
            reducer.sum_over_ranks(w, !s.sequence->partial_grads[w]);
        reducer.begin([] { return 1.0; });
        ending_job_on_failure(dist::world(), [&] {
            out.loss = s.executor().run(batch, StepKind::Gradient);
            for (std::size_t w = graph.weights().size(); w-- > 0;) reducer.ready(w);
            reducer.finish();
        });
    }
    for (std::size_t w = 0; w < graph.weights().size(); ++w) {
        const Tensor& grad = s.executor().weight_grads()[w];
        if (!grad.empty()) out.weights.emplace(graph.weights()[w].name, grad);
    }
    return out;
}

Evaluation Model::evaluate(const EvaluateOptions& options) {
    State& s = *state_;
    TrainingConfig config = s.config;
    if (options.batch_size) config.batch_size = *options.batch_size;
    check_count("the batch size", config.batch_size, std::int64_t{1}, kMaxBatchSize);
    config.seed = s.seed;
    Trainer trainer(s.executor(), config);
    const DataSplits data = s.data(options.samples, std::nullopt, options.data, options.cache_dir);
    const Dataset& set = data.test ? *data.test : data.validation ? *data.validation : data.train;
    Evaluation result;
    result.samples = set.size();
    result.steps = nng::ceil_div(set.size(), config.batch_size);
    const auto start = std::chrono::steady_clock::now();
    result.metrics = metrics_of(trainer.evaluate(set));
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<std::pair<std::string, double>> more;
    if (data.test && data.test_scores) more = data.test_scores(s.executor(), config.batch_size);
    for (const auto& [name, value] : more) {
        if (name == "bleu") result.metrics.bleu = value;
    }
    if (options.log) {
        std::ostream& out = *options.log;
        out << result.steps << "/" << result.steps << " - " << static_cast<long long>(result.seconds + 0.5) << "s - "
            << format_time_per_step(result.seconds / double(result.steps));
        for (const auto& [name, value] :
             Scores{result.metrics.loss, result.metrics.accuracy, result.metrics.others}.named()) {
            out << " - " << name << ": " << format_metric(value);
        }
        // BLEU is a percentage, printed as sacrebleu prints it.
        char text[32];
        for (const auto& [name, value] : more) {
            std::snprintf(text, sizeof text, "%.2f", value);
            out << " - " << name << ": " << text;
        }
        out << "\n";
    }
    return result;
}

namespace {

std::uint64_t file_fingerprint(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && !in) throw InputError("cannot read the model file '" + file + "'");
    return dist::fingerprint(bytes.data(), bytes.size());
}

// Every rank must start from the same model, weights and data, or they would train diverged copies.
void check_ranks_agree(dist::Communicator& comm, const std::string& file, std::uint64_t weight_seed,
                       const Executor& executor, const DataSplits& data, const TrainOptions& options,
                       const TrainingConfig& config) {
    if (comm.size() == 1) return;
    const std::uint64_t settings[] = {config.seed, std::uint64_t(config.batch_size), std::uint64_t(config.epochs)};
    std::vector<dist::Fingerprint> fingerprints = {
        {"model file", "'" + file + "'", file_fingerprint(file)},
        {options.resume ? "weights" : "initial weights",
         options.resume ? "from '" + options.resume->string() + "'" : "(seed " + std::to_string(weight_seed) + ")",
         dist::fingerprint(executor.weights())},
        {"training data", "(" + data.description + ")",
         dist::fingerprint(data.train.targets, dist::fingerprint(data.train.inputs))},
        {"training settings", "(seed, batch size, epochs)", dist::fingerprint(settings, sizeof settings)},
    };
    if (data.validation) {
        fingerprints.push_back(
            {"validation data", "(" + data.description + ")",
             dist::fingerprint(data.validation->targets, dist::fingerprint(data.validation->inputs))});
    }
    dist::check_ranks_agree(comm, fingerprints);
}

// Rank 0's decision, the same on every rank: callbacks run on rank 0 alone.
bool leader_decides(dist::Communicator& comm, bool go_on) {
    if (comm.size() == 1) return go_on;
    std::byte flag = go_on ? std::byte{1} : std::byte{0};
    comm.broadcast(std::span(&flag, 1), 0);
    return flag == std::byte{1};
}

}  // namespace

TrainResult Model::train(const TrainOptions& options) {
    dist::Communicator& comm = dist::world();
    return ending_job_on_failure(comm, [&] { return train_with(comm, options); });
}

TrainResult Model::train_with(dist::Communicator& comm, const TrainOptions& options) {
    State& s = *state_;
    const bool leader = comm.rank() == 0;
    TrainingConfig config = s.config;
    if (options.epochs) config.epochs = *options.epochs;
    if (options.batch_size) config.batch_size = *options.batch_size;
    if (options.terminate_on_nan) config.terminate_on_nan = *options.terminate_on_nan;
    check_count("epochs", config.epochs, 1, kMaxEpochs);
    check_count("the batch size", config.batch_size, std::int64_t{1}, kMaxBatchSize);
    if (options.save_best) check_writable_destination(*options.save_best, "the best checkpoint");
    // A resumed run keeps the checkpoint's seed: it decides the random streams and the shuffles.
    config.seed = options.resume ? read_training_state(*options.resume).seed : s.seed;
    if (options.seed) config.seed = *options.seed;
    s.use_seed(config.seed);
    Executor& executor = s.executor();
    Trainer trainer(executor, config);
    trainer.set_communicator(
        comm, options.gradient_bucket_bytes.value_or(dist::kDefaultBucketBytes),
        options.overlap_gradient_averaging ? dist::Overlap::DuringBackward : dist::Overlap::AfterBackward);
    const DataSplits data = s.data(options.samples, options.validation_samples, options.data, options.cache_dir);

    TrainResult result;
    const ModelCheckpointConfig rule = checkpoint_rule(config, data.validation.has_value());
    const Monitor& monitor = rule.monitor;
    monitor.check_available(trainer.log_names(data.validation.has_value()), "ModelCheckpoint");
    result.monitor = monitor.name;
    std::optional<std::filesystem::path> save_path = options.save_best;
    if (!save_path && rule.filepath) save_path = *rule.filepath;
    const bool weights_only = options.save_weights_only || rule.save_weights_only;
    if (!options.save_best && save_path) check_writable_destination(*save_path, "ModelCheckpoint's filepath");
    result.best = rule.initial_value_threshold;
    int first_epoch = 0;
    if (options.resume) {
        const TrainingState resumed = load_checkpoint(*options.resume, executor, &trainer.optimizer());
        executor.set_step_count(resumed.steps_done);
        first_epoch = resumed.epochs_done;
        if (resumed.monitor == monitor.name) result.best = resumed.best;
        trainer.resume_callbacks(resumed.callbacks);
    }
    check_ranks_agree(comm, s.graph->spec().file, s.weight_seed, executor, data, options, config);
    if (leader && options.on_start) options.on_start({data.description, first_epoch, config.epochs});
    if (first_epoch >= config.epochs) return result;
    if (leader && save_path && data.save_vocabulary) data.save_vocabulary(vocabulary_path(*save_path));
    if (leader && options.history_csv)
        trainer.add_callback(
            std::make_unique<CsvLogger>(CsvLoggerConfig{*options.history_csv, ',', options.resume.has_value()}));

    FitCallbacks callbacks;
    if (options.on_batch || comm.size() > 1) {
        callbacks.on_batch_end = [&](const BatchLog& log) {
            const bool go_on =
                !leader || !options.on_batch ||
                options.on_batch({log.epoch, log.step, log.steps, metrics_of(log.so_far)}) == Training::Continue;
            return leader_decides(comm, go_on);
        };
    }
    callbacks.on_epoch_end = [&](const EpochLog& log) {
        EpochEnd& entry = result.history.emplace_back();
        entry = {log.epoch,   config.epochs, metrics_of(log.train), std::nullopt,
                 log.seconds, log.steps,     log.learning_rate};
        if (log.validation) entry.validation = metrics_of(*log.validation);
        const double value = monitor.value(log.logs(), "ModelCheckpoint");
        const bool improved = monitor.improves(value, result.best);
        if (improved) {
            result.best = value;
            result.best_epoch = log.epoch;
        }
        // A checkpoint says its epochs are done: one stopped within an epoch is not saved.
        if (log.complete && (improved || !rule.save_best_only) && leader && save_path) {
            if (weights_only)
                nngraph::save_weights(*save_path, executor);
            else
                save_checkpoint(*save_path, executor, &trainer.optimizer(),
                                {log.epoch, executor.step_count(), config.seed, result.best, monitor.name,
                                 trainer.callback_state()});
        }
        return leader_decides(comm, !leader || !options.on_epoch || options.on_epoch(entry) == Training::Continue);
    };
    std::ostream discard(nullptr);
    std::ostream& log = leader && options.log ? *options.log : discard;
    result.stopped = !trainer.fit(data.train, data.validation ? &*data.validation : nullptr, first_epoch, log,
                                  leader && options.live, callbacks);
    result.non_finite = trainer.non_finite_stop();
    const dist::AveragingTime averaging = trainer.averaging_time();
    result.averaging = {averaging.steps, averaging.seconds, averaging.exposed_seconds};
    return result;
}

TrainingProcess training_process() {
    const dist::Communicator& comm = dist::world();
    return {comm.rank(), comm.size()};
}

std::filesystem::path vocabulary_path(const std::filesystem::path& weights_file) {
    std::filesystem::path p = weights_file;
    p.replace_extension(".vocab.json");
    return p;
}

}  // namespace nngraph
