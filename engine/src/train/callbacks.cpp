#include "train/callbacks.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "nngraph/error.hpp"

namespace nngraph {
namespace {

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

// Python's repr of a float, as Keras's CSVLogger writes it: the shortest text that reads back the same.
std::string shortest(double value) {
    char buffer[32];
    const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
    return error == std::errc() ? std::string(buffer, end) : std::string("nan");
}

std::vector<Tensor> copy_of(const std::vector<Tensor>& weights) {
    std::vector<Tensor> out;
    out.reserve(weights.size());
    for (const Tensor& w : weights) {
        Tensor copy(w.dtype(), w.shape());
        if (w.nbytes()) std::memcpy(copy.raw(), w.raw(), w.nbytes());
        out.push_back(std::move(copy));
    }
    return out;
}

// A saved number, checked against what the callback can have written; nullopt when absent.
std::optional<double> saved_number(const CallbackState& state, const std::string& key, double low, double high) {
    const auto it = state.numbers.find(key);
    if (it == state.numbers.end()) return std::nullopt;
    if (!(it->second >= low && it->second <= high)) {
        throw InputError("the checkpoint's callback state '" + key + "' is " + shortest(it->second) +
                         "; expected a number from " + shortest(low) + " to " + shortest(high));
    }
    return it->second;
}

int saved_count(const CallbackState& state, const std::string& key) {
    const double value = saved_number(state, key, 0.0, double(std::numeric_limits<int>::max())).value_or(0.0);
    if (value != std::floor(value))
        throw InputError("the checkpoint's callback state '" + key + "' is " + shortest(value) + "; expected a count");
    return static_cast<int>(value);
}

bool holds_prefix(const CallbackState& state, const std::string& prefix) {
    const auto n = state.numbers.lower_bound(prefix);
    return n != state.numbers.end() && n->first.rfind(prefix, 0) == 0;
}

}  // namespace

CallbackState save_callback_states(const std::vector<std::unique_ptr<Callback>>& callbacks) {
    CallbackState state;
    std::map<std::string, int> seen;
    for (const auto& c : callbacks) {
        const int rank = seen[c->kind()]++;
        c->save_state("callbacks." + std::string(c->kind()) + "." + std::to_string(rank) + ".", state);
    }
    return state;
}

void restore_callback_states(const std::vector<std::unique_ptr<Callback>>& callbacks, const CallbackState& state,
                             CallbackContext& context) {
    std::map<std::string, int> seen;
    for (const auto& c : callbacks) {
        const int rank = seen[c->kind()]++;
        const std::string prefix = "callbacks." + std::string(c->kind()) + "." + std::to_string(rank) + ".";
        if (holds_prefix(state, prefix)) c->restore_state(prefix, state, context);
    }
}

bool higher_is_better(const std::string& metric) {
    const std::string name = metric.rfind("val_", 0) == 0 ? metric.substr(4) : metric;
    return !(name == "loss" || (name.size() > 5 && name.compare(name.size() - 5, 5, "_loss") == 0));
}

bool Monitor::improves(double current, const std::optional<double>& best) const {
    if (!std::isfinite(current)) return false;
    if (!best) return true;
    return maximizes() ? current - min_delta > *best : current + min_delta < *best;
}

double Monitor::value(const EpochLogs& logs, const std::string& callback) const {
    const auto it = logs.find(name);
    if (it != logs.end()) return it->second;
    std::vector<std::string> names;
    for (const auto& [key, v] : logs) names.push_back(key);
    throw InputError(callback + " monitors '" + name +
                     "', which the epoch's logs do not hold (they hold: " + joined(names) + ")");
}

void Monitor::check_available(const std::vector<std::string>& names, const std::string& callback) const {
    for (const std::string& n : names) {
        if (n == name) return;
    }
    throw InputError(callback + " monitors '" + name + "', which training does not log (it logs: " + joined(names) +
                     (name.rfind("val_", 0) == 0 ? "; a val_ metric needs validation data" : "") + ")");
}

void EarlyStopping::on_train_begin(const std::vector<std::string>& log_names, CallbackContext& context) {
    (void)context;
    config_.monitor.check_available(log_names, "EarlyStopping");
    wait_ = stopped_epoch_ = best_epoch_ = 0;
    best_.reset();
    best_weights_.clear();
}

void EarlyStopping::on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) {
    const double current = config_.monitor.value(logs, "EarlyStopping");
    if (epoch < config_.start_from_epoch) return;
    // Until some epoch improves, the first watched epoch's weights are the best.
    if (config_.restore_best_weights && best_weights_.empty()) {
        best_weights_ = copy_of(context.weights);
        best_epoch_ = epoch;
    }
    ++wait_;
    if (config_.monitor.improves(current, best_)) {
        best_ = current;
        best_epoch_ = epoch;
        if (config_.restore_best_weights) best_weights_ = copy_of(context.weights);
        // The wait restarts only once the baseline is beaten too.
        if (!config_.baseline || config_.monitor.improves(current, config_.baseline)) wait_ = 0;
        return;
    }
    if (wait_ >= config_.patience && epoch > 0) {
        stopped_epoch_ = epoch;
        context.stop_training = true;
    }
}

void EarlyStopping::on_train_end(CallbackContext& context) {
    if (stopped_epoch_ > 0 && config_.verbose > 0)
        context.log << "Epoch " << stopped_epoch_ + 1 << ": early stopping\n";
    if (!config_.restore_best_weights || best_weights_.empty()) return;
    if (config_.verbose > 0)
        context.log << "Restoring model weights from the end of the best epoch: " << best_epoch_ + 1 << ".\n";
    for (std::size_t w = 0; w < best_weights_.size(); ++w) {
        if (best_weights_[w].nbytes())
            std::memcpy(context.weights[w].raw(), best_weights_[w].raw(), best_weights_[w].nbytes());
    }
}

void EarlyStopping::save_state(const std::string& prefix, CallbackState& state) const {
    state.numbers[prefix + "wait"] = wait_;
    state.numbers[prefix + "best_epoch"] = best_epoch_;
    if (best_) state.numbers[prefix + "best"] = *best_;
    for (std::size_t w = 0; w < best_weights_.size(); ++w)
        state.tensors[prefix + "best_weights." + std::to_string(w)] = best_weights_[w];
}

void EarlyStopping::restore_state(const std::string& prefix, const CallbackState& state, CallbackContext& context) {
    const double huge = std::numeric_limits<double>::max();
    wait_ = saved_count(state, prefix + "wait");
    best_epoch_ = saved_count(state, prefix + "best_epoch");
    best_ = saved_number(state, prefix + "best", -huge, huge);
    best_weights_.clear();
    if (!config_.restore_best_weights) return;
    for (std::size_t w = 0; w < context.weights.size(); ++w) {
        const std::string key = prefix + "best_weights." + std::to_string(w);
        const auto it = state.tensors.find(key);
        // Before its first watched epoch EarlyStopping holds no weights.
        if (it == state.tensors.end()) {
            if (w == 0) return;
            throw InputError("the checkpoint's callback state lacks '" + key + "'");
        }
        const Tensor& weight = context.weights[w];
        if (it->second.dtype() != weight.dtype() || it->second.shape() != weight.shape()) {
            throw InputError("the checkpoint's callback state '" + key + "' is " + shape_to_string(it->second.shape()) +
                             "; the model's weight " + std::to_string(w) + " is " + shape_to_string(weight.shape()));
        }
        best_weights_.push_back(it->second);
    }
}

ReduceLROnPlateau::ReduceLROnPlateau(ReduceLROnPlateauConfig config) : config_(std::move(config)) {
    if (!(config_.factor < 1.0))
        throw InputError("ReduceLROnPlateau does not support a factor of 1 or more (got " +
                         std::to_string(config_.factor) + ")");
}

void ReduceLROnPlateau::on_train_begin(const std::vector<std::string>& log_names, CallbackContext& context) {
    config_.monitor.check_available(log_names, "ReduceLROnPlateau");
    if (context.optimizer.config().schedule) {
        throw InputError(
            "ReduceLROnPlateau sets the learning rate, so the optimizer's learning_rate must be a number, not a "
            "schedule");
    }
    wait_ = cooldown_counter_ = 0;
    best_.reset();
    learning_rate_ = context.optimizer.learning_rate();
}

void ReduceLROnPlateau::save_state(const std::string& prefix, CallbackState& state) const {
    state.numbers[prefix + "wait"] = wait_;
    state.numbers[prefix + "cooldown_counter"] = cooldown_counter_;
    state.numbers[prefix + "learning_rate"] = learning_rate_;
    if (best_) state.numbers[prefix + "best"] = *best_;
}

void ReduceLROnPlateau::restore_state(const std::string& prefix, const CallbackState& state, CallbackContext& context) {
    const double huge = std::numeric_limits<double>::max();
    wait_ = saved_count(state, prefix + "wait");
    cooldown_counter_ = saved_count(state, prefix + "cooldown_counter");
    best_ = saved_number(state, prefix + "best", -huge, huge);
    if (const auto rate = saved_number(state, prefix + "learning_rate", 0.0, huge)) {
        learning_rate_ = *rate;
        context.optimizer.set_learning_rate(*rate);
    }
}

void ReduceLROnPlateau::on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) {
    reduce_on_plateau(epoch, config_.monitor.value(logs, "ReduceLROnPlateau"), context);
    // The rate this epoch ends with is the one a resumed run starts from.
    learning_rate_ = context.optimizer.learning_rate();
}

void ReduceLROnPlateau::reduce_on_plateau(int epoch, double current, CallbackContext& context) {
    const bool in_cooldown = cooldown_counter_ > 0;
    if (in_cooldown) {
        --cooldown_counter_;
        wait_ = 0;
    }
    if (config_.monitor.improves(current, best_)) {
        best_ = current;
        wait_ = 0;
        return;
    }
    if (cooldown_counter_ > 0) return;
    if (++wait_ < config_.patience) return;
    const double old_rate = context.optimizer.learning_rate();
    // Keras compares in float32, the rate's type there.
    if (static_cast<float>(old_rate) > static_cast<float>(config_.min_lr)) {
        const double new_rate = std::max(old_rate * config_.factor, config_.min_lr);
        context.optimizer.set_learning_rate(new_rate);
        if (config_.verbose > 0) {
            context.log << "\nEpoch " << epoch + 1 << ": ReduceLROnPlateau reducing learning rate to "
                        << shortest(new_rate) << ".\n";
        }
        cooldown_counter_ = config_.cooldown;
        wait_ = 0;
    }
}

CsvLogger::CsvLogger(CsvLoggerConfig config) : config_(std::move(config)) {
    // Appending to a file that has rows already: no second header.
    header_written_ =
        config_.append && std::filesystem::exists(config_.filename) && std::filesystem::file_size(config_.filename) > 0;
    out_.open(config_.filename, config_.append ? std::ios::app : std::ios::trunc);
    if (!out_) throw RunError("CSVLogger cannot write '" + config_.filename.string() + "'");
}

void CsvLogger::on_epoch_end(int epoch, const EpochLogs& logs, CallbackContext& context) {
    (void)context;
    if (!header_written_) {
        out_ << "epoch";
        for (const auto& [name, value] : logs) out_ << config_.separator << name;
        out_ << "\n";
        header_written_ = true;
    }
    out_ << epoch;
    for (const auto& [name, value] : logs) out_ << config_.separator << shortest(value);
    out_ << "\n" << std::flush;
    if (!out_) throw RunError("CSVLogger could not write to '" + config_.filename.string() + "'");
}

std::vector<std::unique_ptr<Callback>> make_callbacks(const std::vector<CallbackConfig>& configs, bool with_files) {
    std::vector<std::unique_ptr<Callback>> out;
    for (const CallbackConfig& config : configs) {
        if (const auto* c = std::get_if<EarlyStoppingConfig>(&config))
            out.push_back(std::make_unique<EarlyStopping>(*c));
        if (const auto* c = std::get_if<ReduceLROnPlateauConfig>(&config))
            out.push_back(std::make_unique<ReduceLROnPlateau>(*c));
        if (const auto* c = std::get_if<CsvLoggerConfig>(&config); c && with_files)
            out.push_back(std::make_unique<CsvLogger>(*c));
    }
    return out;
}

}  // namespace nngraph
