// Keras's callbacks that act on each epoch's logs: EarlyStopping, ReduceLROnPlateau, CSVLogger, and
// the monitor of ModelCheckpoint. The trainer calls them; each is one class behind Callback.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "nngraph/tensor.hpp"
#include "train/optimizers.hpp"

namespace nngraph {

// An epoch's logs by name, as Keras passes them to on_epoch_end: "loss", "accuracy", their "val_"
// twins and "learning_rate" (the rate the epoch ended with). A std::map, so sorted as CSVLogger
// sorts its columns.
using EpochLogs = std::map<std::string, double>;

// Whether a bigger value of the metric is better: losses go down, every other metric up. Keras's
// mode "auto" decides this way (by the metric's direction).
bool higher_is_better(const std::string& metric);

// The quantity a callback watches, and when a value improves on the best so far.
struct Monitor {
    enum class Mode { automatic, min, max };
    std::string name = "val_loss";
    Mode mode = Mode::automatic;
    double min_delta = 0.0;  // an improvement must beat the best by more than this

    bool maximizes() const { return mode == Mode::max || (mode == Mode::automatic && higher_is_better(name)); }
    // Keras's monitor_op(current - min_delta, best) (plus min_delta when minimising); no best: yes.
    // A non-finite value never improves.
    bool improves(double current, const std::optional<double>& best) const;
    // The monitored value in `logs`; throws InputError naming the ones there when it is absent.
    double value(const EpochLogs& logs, const std::string& callback) const;
    // Throws InputError when `names` (the logs an epoch will have) lack the monitored one.
    void check_available(const std::vector<std::string>& names, const std::string& callback) const;
};

struct EarlyStoppingConfig {
    Monitor monitor;  // Keras's default: val_loss
    int verbose = 0;  // 1: say when it stops and restores, as Keras does
    int patience = 0;
    std::optional<double> baseline;
    bool restore_best_weights = false;
    int start_from_epoch = 0;
};

struct ReduceLROnPlateauConfig {
    Monitor monitor{"val_loss", Monitor::Mode::automatic, 1e-4};
    double factor = 0.1;
    int patience = 10;
    int cooldown = 0;
    double min_lr = 0.0;
    int verbose = 0;  // 1: say each reduction, as Keras does
};

// ModelCheckpoint: what --save keeps. Without one in the model file nngraph keeps the best epoch
// by val_accuracy (else val_loss, accuracy, loss).
struct ModelCheckpointConfig {
    Monitor monitor;
    bool save_best_only = true;
    bool save_weights_only = false;                 // as --weights-only: no optimizer state
    std::optional<double> initial_value_threshold;  // the best value to beat at first
    std::optional<std::filesystem::path> filepath;  // --save overrides it
};

struct CsvLoggerConfig {
    std::filesystem::path filename;
    char separator = ',';
    bool append = false;
};

// One of the training section's callbacks that the trainer runs (ModelCheckpoint is --save's).
using CallbackConfig = std::variant<EarlyStoppingConfig, ReduceLROnPlateauConfig, CsvLoggerConfig>;

// What callbacks carry across `train --resume`, kept in the checkpoint: numbers and tensors
// (EarlyStopping's best weights) by key, each key beginning with its callback's prefix.
struct CallbackState {
    std::map<std::string, double> numbers;
    std::map<std::string, Tensor> tensors;
};

// What a callback may act on.
struct CallbackContext {
    Optimizer& optimizer;
    std::vector<Tensor>& weights;  // the model's, in place
    std::ostream& log;             // Keras's verbose messages ("Epoch 5: early stopping")
    bool stop_training = false;    // Keras's model.stop_training
};

class Callback {
public:
    virtual ~Callback() = default;
    // `log_names`: the names every epoch's logs will hold, so a wrong monitor fails before training.
    virtual void on_train_begin(const std::vector<std::string>& log_names, CallbackContext& context) {
        (void)log_names, (void)context;
    }
    // `epoch` counts from 0, as Keras passes it.
    virtual void on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) = 0;
    virtual void on_train_end(CallbackContext& context) { (void)context; }

    // The class name: with its rank among the callbacks of that class, it keys the saved state.
    virtual const char* kind() const = 0;
    // Writes what the next epochs depend on under keys beginning with `prefix`; restore_state,
    // called after on_train_begin, puts it back (nothing when the state holds no key of `prefix`)
    // and throws InputError, naming the key, when a value is out of range.
    virtual void save_state(const std::string& prefix, CallbackState& state) const { (void)prefix, (void)state; }
    virtual void restore_state(const std::string& prefix, const CallbackState& state, CallbackContext& context) {
        (void)prefix, (void)state, (void)context;
    }
};

// Keras 3's EarlyStopping: stops when the monitor has not improved by min_delta for `patience`
// epochs (counting from start_from_epoch); restore_best_weights puts the best epoch's weights back
// at the end of training.
class EarlyStopping final : public Callback {
public:
    explicit EarlyStopping(EarlyStoppingConfig config) : config_(std::move(config)) {}
    void on_train_begin(const std::vector<std::string>& log_names, CallbackContext& context) override;
    void on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) override;
    void on_train_end(CallbackContext& context) override;
    const char* kind() const override { return "EarlyStopping"; }
    void save_state(const std::string& prefix, CallbackState& state) const override;
    void restore_state(const std::string& prefix, const CallbackState& state, CallbackContext& context) override;
    int stopped_epoch() const { return stopped_epoch_; }  // 0-based; 0: did not stop
    int best_epoch() const { return best_epoch_; }

private:
    EarlyStoppingConfig config_;
    int wait_ = 0, stopped_epoch_ = 0, best_epoch_ = 0;
    std::optional<double> best_;
    std::vector<Tensor> best_weights_;
};

// Keras 3's ReduceLROnPlateau: after `patience` epochs without improvement multiplies the learning
// rate by `factor` (not below min_lr), then waits `cooldown` epochs before counting again.
class ReduceLROnPlateau final : public Callback {
public:
    explicit ReduceLROnPlateau(ReduceLROnPlateauConfig config);
    void on_train_begin(const std::vector<std::string>& log_names, CallbackContext& context) override;
    void on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) override;
    const char* kind() const override { return "ReduceLROnPlateau"; }
    // With the learning rate, which the optimizer's own state leaves out.
    void save_state(const std::string& prefix, CallbackState& state) const override;
    void restore_state(const std::string& prefix, const CallbackState& state, CallbackContext& context) override;

private:
    void reduce_on_plateau(int epoch, double current, CallbackContext& context);
    ReduceLROnPlateauConfig config_;
    double learning_rate_ = 0.0;  // the rate as the last epoch ended
    int wait_ = 0, cooldown_counter_ = 0;
    std::optional<double> best_;
};

// Keras's CSVLogger: "epoch" (from 0), then every log sorted by name, one row per epoch. Appends
// to an existing file (without a new header) when `append`.
class CsvLogger final : public Callback {
public:
    explicit CsvLogger(CsvLoggerConfig config);
    void on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) override;
    const char* kind() const override { return "CSVLogger"; }

private:
    CsvLoggerConfig config_;
    std::ofstream out_;
    bool header_written_ = false;
};

// Every callback's state, each under "callbacks.<kind>.<rank among its kind>.", and back.
CallbackState save_callback_states(const std::vector<std::unique_ptr<Callback>>& callbacks);
void restore_callback_states(const std::vector<std::unique_ptr<Callback>>& callbacks, const CallbackState& state,
                             CallbackContext& context);

// The callbacks of `configs`, in their order; `with_files`: also those that write files
// (CSVLogger), which under mpirun rank 0 alone runs.
std::vector<std::unique_ptr<Callback>> make_callbacks(const std::vector<CallbackConfig>& configs, bool with_files);

}  // namespace nngraph
