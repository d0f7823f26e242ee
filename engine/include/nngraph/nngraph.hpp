// nngraph's C++ API: load a model file, inspect it, load and save its weights, predict, compute
// gradients, evaluate, train and benchmark it. The `nngraph` command is a client of this header.
//
//   nngraph::Model model = nngraph::Model::load("graphs/imdb_attention.yaml");
//   model.load_weights("imdb.safetensors");
//   const auto vocabulary = nngraph::Vocabulary::load(nngraph::vocabulary_path("imdb.safetensors"));
//   nngraph::Tensor p = model.predict_text({"A wonderful film."}, vocabulary);
//
// Every failure is an nngraph::InputError (bad usage, a bad file) or nngraph::RunError (see
// error.hpp), with a message naming what was wrong, where, and what was expected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nngraph/error.hpp"
#include "nngraph/imdb.hpp"
#include "nngraph/safetensors.hpp"
#include "nngraph/tensor.hpp"
#include "nngraph/translator.hpp"

namespace nngraph {

namespace dist {
class Communicator;
}

// Bounds on the counts a user gives (command line or model file): beyond them a run would exhaust
// the machine long before it finished, so they are refused as bad input.
inline constexpr int kMaxEpochs = 1'000'000;
inline constexpr std::int64_t kMaxBatchSize = std::int64_t{1} << 20;
// Threads for the arithmetic: at most this many per core (OpenMP overflows its stacks far beyond).
inline constexpr int kMaxThreadsPerCore = 4;
int max_threads();  // kMaxThreadsPerCore times the machine's cores

struct ModelOptions {
    // Plugin directories or files searched before the model file's `plugins:`, NNGRAPH_PLUGIN_PATH
    // and the installed plugins (the command line's --plugins).
    std::vector<std::filesystem::path> plugin_dirs;
    int threads = 0;  // 0: all cores; at most max_threads()
    // Seeds the initial weights, dropout and shuffling; unset: the model file's training.seed.
    std::optional<std::uint64_t> seed;
};

// A graph input or output; shape[0] is -1, the batch.
struct ModelTensor {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
};

struct ModelWeight {
    std::string name;  // "<node>.<weight>", as in weight files
    std::string node;
    Shape shape;
    bool trainable = true;
    bool inline_value = false;  // the model file gives its value (`weights:`)
};

struct ModelNode {
    std::string name;
    std::string op;                    // "InputLayer" for graph inputs
    std::vector<std::string> inputs;   // tensor names
    std::vector<ModelTensor> outputs;  // with their load-time shapes
    std::vector<std::string> weights;  // weight names
};

struct ParameterCount {
    std::int64_t total = 0, trainable = 0, non_trainable = 0;
};

// A loss and, when the model file asks for it, Keras's accuracy.
struct Metrics {
    double loss = 0.0;
    std::optional<double> accuracy;
    std::map<std::string, double> others;  // the model file's other metrics by Keras name (auc, ...)
    // Translation models (SPEC section 7), from evaluate: corpus BLEU in percent of greedy decoding
    // on the test split.
    std::optional<double> bleu;
};
// Keras's number format for metrics: 4 decimals, or scientific below 1e-3.
std::string format_metric(double value);

// In-memory samples: inputs in graph input order, targets in graph output order; rows are samples.
struct Samples {
    std::vector<Tensor> inputs;
    std::vector<Tensor> targets;
};

struct BatchEnd {
    int epoch = 0;           // 1-based
    std::int64_t step = 0;   // 1-based within the epoch
    std::int64_t steps = 0;  // batches in the epoch
    Metrics so_far;          // over the epoch's batches up to this one
};

struct EpochEnd {
    int epoch = 0;  // 1-based
    int epochs = 0;
    Metrics train;
    std::optional<Metrics> validation;
    double seconds = 0.0;
    std::int64_t steps = 0;
    double learning_rate = 0.0;  // the optimizer's rate as the epoch ended
};

enum class Training { Continue, Stop };

// What training is about to do, once its data is loaded and any checkpoint resumed.
// How wide `nngraph summary` prints Keras's table (Keras's line_length).
struct SummaryOptions {
    int line_length = 0;        // 0: Keras's default, 88 (108 with "Connected to") ...
    int terminal_columns = 80;  // ... at most this less 4, as Keras fits the terminal
};

// How `nngraph dot` draws the graph.
struct DotOptions {
    std::string rankdir = "TB";  // Graphviz's: TB, LR, BT or RL
    bool attributes = true;      // each node's attributes as the model file gives them
};

struct TrainStart {
    std::string data;     // "IMDB (...): 25000 training, 25000 validation reviews"
    int first_epoch = 0;  // epochs a resumed checkpoint had already done
    int epochs = 0;       // the last epoch to run
};

struct TrainOptions {
    // Where the data comes from, first given first: `samples`, then `data` (a .safetensors file of
    // inputs and targets, or the aclImdb folder or archive), then the model file's `data:` section.
    std::optional<Samples> samples;
    std::optional<Samples> validation_samples;  // with `samples`; none: no validation
    std::optional<std::filesystem::path> data;
    std::filesystem::path cache_dir;  // encoded IMDB cache; empty: the default
    // Override the model file's training section; the seed also overrides a resumed checkpoint's.
    std::optional<int> epochs;
    std::optional<std::int64_t> batch_size;
    std::optional<std::uint64_t> seed;
    // Keras's TerminateOnNaN (stop at the first non-finite loss); unset: the model file's
    // training.terminate_on_nan, on by default.
    std::optional<bool> terminate_on_nan;
    // Keeps the best epoch (by val_accuracy, else val_loss, accuracy, loss, or by the model file's
    // ModelCheckpoint callback) as a checkpoint here, with the vocabulary beside it
    // (vocabulary_path) for text data.
    std::optional<std::filesystem::path> save_best;
    // Writes only the weights there, as ModelCheckpoint's save_weights_only: no optimizer state,
    // so the file cannot resume training.
    bool save_weights_only = false;
    // Keras's CSVLogger: one row per epoch, "epoch" then every log sorted by name (the scores and
    // learning_rate). A resumed run appends to it.
    std::optional<std::filesystem::path> history_csv;
    // Continues from a checkpoint written by save_best: weights, optimiser state, epochs done.
    std::optional<std::filesystem::path> resume;
    // Keras's progress bar and epoch lines; null: silent. `live` redraws the bar in place.
    std::ostream* log = nullptr;
    // Under mpirun: the size of the buckets the gradients are averaged in (default 25 MiB).
    std::optional<std::size_t> gradient_bucket_bytes;
    // Under mpirun: false sends every bucket after backward in blocking allreduces instead of while
    // backward runs, the baseline that shows what the overlap buys.
    bool overlap_gradient_averaging = true;
    bool live = false;
    std::function<void(const TrainStart&)> on_start;
    // Either may return Training::Stop: after a batch, its epoch ends there and is still validated
    // and reported; no later epoch runs.
    std::function<Training(const BatchEnd&)> on_batch;
    std::function<Training(const EpochEnd&)> on_epoch;
};

// Under mpirun: the gradient averages' time, summed over the steps run. `seconds` runs from a step's
// first bucket sent to its last one done; `exposed_seconds` of it were waited for after backward, and
// the rest ran hidden behind backward.
struct GradientAveraging {
    std::int64_t steps = 0;
    double seconds = 0.0;
    double exposed_seconds = 0.0;
};

struct TrainResult {
    std::vector<EpochEnd> history;  // the epochs run
    GradientAveraging averaging;    // no steps in one process
    bool stopped = false;           // a callback, or a non-finite loss, stopped training
    // Set when a non-finite loss stopped training: the epoch, the step and the first node whose
    // output was not finite. The best checkpoint is the one saved before.
    std::string non_finite;
    std::string monitor;         // "val_accuracy", "val_loss", "accuracy" or "loss"
    std::optional<double> best;  // its best value, resumed runs included
    int best_epoch = 0;          // the epoch of that value in this run; 0: none
};

struct EvaluateOptions {
    // As for TrainOptions: `samples`, else `data`, else the model file's; its test split when the
    // source has one (translation pairs), else its validation split when it has one.
    std::optional<Samples> samples;
    std::optional<std::filesystem::path> data;
    std::filesystem::path cache_dir;
    std::optional<std::int64_t> batch_size;
    // Keras's evaluate line (steps, seconds, time a step, then each score); null: silent.
    std::ostream* log = nullptr;
};

struct Evaluation {
    Metrics metrics;
    std::int64_t samples = 0;
    std::int64_t steps = 0;
    double seconds = 0.0;
};

// The loss of one batch and the gradient of every trainable weight, by weight name.
struct Gradients {
    std::string loss_function;  // the model file's training.loss
    double loss = 0.0;
    std::map<std::string, Tensor> weights;
};

struct BenchmarkOptions {
    std::int64_t batch_size = 0;  // 0: the model file's training.batch_size, else 32
    bool train = true;            // a training step (forward, loss, backward, optimiser); else inference
    std::uint64_t seed = 1;       // of the initial weights and the synthetic batch
};

// Average time per call of one node's forward and backward while profiling.
struct NodeTiming {
    std::string node, op;
    double forward_seconds = 0.0, backward_seconds = 0.0;
    // The op's own count of one call's work (floating-point operations, bytes moved).
    double forward_flops = 0.0, backward_flops = 0.0, forward_bytes = 0.0, backward_bytes = 0.0;
};

// The work of one step (forward, and backward when training) as the ops count it.
struct StepWork {
    double flops = 0.0;
    double bytes = 0.0;
};

// GFLOP/s of a 2048-cube matmul through the Dense op, measured in this process: the ceiling a
// step's achieved rate is read against. bf16 is 0 where the CPU cannot run mixed_bfloat16.
struct MatmulCeilings {
    double f32_gflops = 0.0, bf16_gflops = 0.0;
};

struct MemoryFigures {
    std::size_t arena_bytes = 0;     // every activation, gradient and scratch buffer of the step
    std::size_t backward_bytes = 0;  // kept from the forward pass for backward (training only)
    std::size_t weight_bytes = 0;
    std::size_t optimizer_bytes = 0;  // gradients and optimiser state (training only)
    // Inference: the slices the batch ran in, one after another, each in the arena; 1 when whole.
    std::int64_t slices = 1;
};

// A model set up to be timed with synthetic inputs (and targets) of the right shapes and types.
class Benchmark {
public:
    Benchmark(Benchmark&&) noexcept;
    Benchmark& operator=(Benchmark&&) noexcept;
    ~Benchmark();

    void step();
    std::int64_t batch_size() const;
    bool training() const;
    int threads() const;  // as used: the model's, or all cores

    // Per-node timing, off by default; profile() lists the nodes in execution order.
    void set_profiling(bool on);
    std::vector<NodeTiming> profile() const;
    MemoryFigures memory() const;
    // The buffers alive at the step's peak, as text.
    std::string memory_report() const;
    // A counter summed over the plugins, e.g. "onednn.primitives_created"; 0 when none keeps it.
    std::int64_t counter(const std::string& name) const;
    // The work of one step at the planned shapes (after a step has run).
    StepWork work() const;
    // Measures the matmul ceilings now (about a second; run it outside the timed steps).
    MatmulCeilings measure_matmul_ceilings() const;
    // Times one 2048-cube product of each ceiling now (the first call also sets them up, which
    // takes longer). Spread among the timed steps, the samples see the machine as the steps do.
    MatmulCeilings sample_matmul_ceilings();

private:
    friend class Model;
    struct State;
    explicit Benchmark(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

class Model {
public:
    // Reads, checks and shape-infers a model file, loads the plugins its ops need, and sets every
    // weight to its inline value or initializer.
    static Model load(const std::filesystem::path& model_file, const ModelOptions& options = {});

    Model(Model&&) noexcept;
    Model& operator=(Model&&) noexcept;
    ~Model();

    // Inspection.
    const std::string& name() const;
    const std::filesystem::path& file() const;
    std::vector<ModelTensor> inputs() const;
    std::vector<ModelTensor> outputs() const;
    std::vector<ModelNode> nodes() const;  // in file order, inputs first
    std::vector<ModelWeight> weights() const;
    ParameterCount parameters() const;
    // Keras's model.summary() table.
    std::string summary(const SummaryOptions& options = {}) const;
    // The graph in Graphviz dot format.
    std::string dot(const DotOptions& options = {}) const;
    std::uint64_t seed() const;
    int threads() const;

    // Weights by name (a checkpoint's optimiser state is ignored). Loading needs every weight the
    // model file does not give inline; saving writes a safetensors file atomically.
    void load_weights(const std::filesystem::path& file);
    void save_weights(const std::filesystem::path& file) const;
    Tensor weight(const std::string& name) const;
    void set_weight(const std::string& name, const Tensor& value);

    // Inputs by graph input name and targets ("targets", or "targets.<output>" with several
    // outputs) from a safetensors file, converted to what the model reads.
    std::vector<Tensor> read_inputs(const std::filesystem::path& file) const;
    std::vector<Tensor> read_targets(const std::filesystem::path& file) const;

    // Every graph output for all rows of `inputs` (in graph input order), run in batches.
    std::vector<Tensor> predict(const std::vector<Tensor>& inputs, std::int64_t batch_size = 32);
    // The output of a one-input, one-output text model for each text, encoded with `vocabulary`.
    Tensor predict_text(const std::vector<std::string>& texts, const Vocabulary& vocabulary,
                        std::int64_t batch_size = 32);
    // The model file's training.loss over one batch and every trainable weight's gradient, random
    // ops (dropout) off; `targets` in graph output order. Weights are not changed.
    Gradients gradients(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets);
    Evaluation evaluate(const EvaluateOptions& options = {});
    // Keras's fit with the model file's training section.
    TrainResult train(const TrainOptions& options = {});
    // The benchmark gets its own weights: this model's are left alone.
    Benchmark benchmark(const BenchmarkOptions& options = {}) const;

private:
    friend class Translator;  // decodes with the graph and weights
    struct State;
    explicit Model(std::unique_ptr<State> state);
    TrainResult train_with(dist::Communicator& comm, const TrainOptions& options);
    std::unique_ptr<State> state_;
};

// Every op the plugin search finds, with its plugin.
struct PluginOp {
    std::string op, plugin, version;
    std::filesystem::path file;
};
struct PluginCatalog {
    std::vector<PluginOp> ops;  // by op name
    std::size_t plugins = 0;
    std::vector<std::filesystem::path> searched;
};
PluginCatalog list_plugins(const std::vector<std::filesystem::path>& plugin_dirs = {});

// This process's place in a data-parallel training job (SPEC section 8): rank 0 of 1 unless mpirun
// launched it, then Model::train trains data-parallel, runs the callbacks and writes the log and
// checkpoints on rank 0 alone, and a rank that fails ends the job.
struct TrainingProcess {
    int rank = 0;
    int size = 1;
};
TrainingProcess training_process();

// A Keras 3 .keras file as a model file and its weights (SPEC section 9, docs/keras-import.md).
struct KerasImport {
    std::string model_file;          // the model file's YAML text
    TensorFile weights;              // by "<node>.<weight>"
    std::vector<std::string> notes;  // what was left out (the optimizer's state), one sentence each
};
// Layers the engine has no op for are an InputError naming each with its class.
KerasImport import_keras(const std::filesystem::path& keras_file);

// The vocabulary file kept beside a weights file: W.safetensors -> W.vocab.json.
std::filesystem::path vocabulary_path(const std::filesystem::path& weights_file);

}  // namespace nngraph
