#include "train/training_config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "nngraph/nngraph.hpp"
#include "train/losses.hpp"

namespace nngraph {
namespace {

void check_keys(const YAML::Node& map, const std::string& file, const std::string& what,
                const std::vector<std::string>& allowed) {
    for (const auto& kv : map) {
        const std::string key = kv.first.as<std::string>();
        if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
        std::string expected;
        for (const auto& a : allowed) expected += (expected.empty() ? "" : ", ") + a;
        throw model_error(SourceLocation::of(file, kv.first), "",
                          "unknown key '" + key + "' in " + what + "; expected one of: " + expected);
    }
}

// A hyperparameter: .nan or .inf would turn every weight non-finite at the first step.
double finite_number(const YAML::Node& node, const std::string& file, const std::string& what) {
    const double value = yaml_as<double>(node, SourceLocation::of(file, node), what);
    if (!std::isfinite(value))
        throw model_error(SourceLocation::of(file, node), "", what + " must be a finite number, not " + node.Scalar());
    return value;
}

// A Keras schedule as keras.optimizers.schedules.serialize writes it:
// {class_name: CosineDecay, config: {initial_learning_rate: 0.001, decay_steps: 1000}}.
LearningRateSchedule parse_schedule(const YAML::Node& node, const std::string& file) {
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    check_keys(node, file, "the learning_rate schedule", {"class_name", "config", "module", "registered_name"});
    if (!node["class_name"] || !node["config"] || !node["config"].IsMap()) {
        throw model_error(at(node), "",
                          std::string("a learning_rate schedule needs class_name (one of ") + kScheduleNames +
                              ") and a config map, as Keras serializes it");
    }
    const std::string name = yaml_as<std::string>(node["class_name"], at(node["class_name"]), "schedule class_name");
    const YAML::Node& c = node["config"];
    LearningRateSchedule s;
    auto number = [&](const char* key, double& into, bool required) {
        if (c[key] && !c[key].IsNull())
            into = finite_number(c[key], file, std::string(name) + " " + key);
        else if (required)
            throw model_error(at(c), "", name + " needs '" + key + "'");
    };
    auto numbers = [&](const char* key, std::vector<double>& into) {
        if (!c[key] || !c[key].IsSequence() || c[key].size() == 0)
            throw model_error(at(c), "", name + " needs '" + key + "', a list of numbers");
        for (std::size_t i = 0; i < c[key].size(); ++i)
            into.push_back(finite_number(c[key][i], file, name + " " + key));
    };
    auto positive_decay_steps = [&] {
        number("decay_steps", s.decay_steps, true);
        if (s.decay_steps <= 0) throw model_error(at(c["decay_steps"]), "", name + " decay_steps must be above 0");
    };
    if (name == "ExponentialDecay") {
        check_keys(c, file, "ExponentialDecay's config",
                   {"initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name"});
        s.kind = LearningRateSchedule::Kind::exponential_decay;
        number("initial_learning_rate", s.initial_learning_rate, true);
        positive_decay_steps();
        number("decay_rate", s.decay_rate, true);
        if (c["staircase"])
            s.staircase = yaml_as<bool>(c["staircase"], at(c["staircase"]), "ExponentialDecay staircase");
    } else if (name == "CosineDecay") {
        check_keys(c, file, "CosineDecay's config",
                   {"initial_learning_rate", "decay_steps", "alpha", "warmup_target", "warmup_steps", "name"});
        s.kind = LearningRateSchedule::Kind::cosine_decay;
        number("initial_learning_rate", s.initial_learning_rate, true);
        positive_decay_steps();
        number("alpha", s.alpha, false);
        s.has_warmup_target = c["warmup_target"] && !c["warmup_target"].IsNull();
        number("warmup_target", s.warmup_target, false);
        number("warmup_steps", s.warmup_steps, false);
        if (s.has_warmup_target && s.warmup_steps <= 0)
            throw model_error(at(c), "", "CosineDecay with a warmup_target needs warmup_steps above 0");
    } else if (name == "PiecewiseConstantDecay") {
        check_keys(c, file, "PiecewiseConstantDecay's config", {"boundaries", "values", "name"});
        s.kind = LearningRateSchedule::Kind::piecewise_constant_decay;
        numbers("boundaries", s.boundaries);
        numbers("values", s.values);
        if (s.values.size() != s.boundaries.size() + 1) {
            throw model_error(at(c["values"]), "",
                              "PiecewiseConstantDecay needs one more value than boundaries (" +
                                  std::to_string(s.boundaries.size()) + " boundaries, " +
                                  std::to_string(s.values.size()) + " values)");
        }
        if (!std::is_sorted(s.boundaries.begin(), s.boundaries.end()))
            throw model_error(at(c["boundaries"]), "", "PiecewiseConstantDecay boundaries must increase");
        s.initial_learning_rate = s.values.front();
    } else {
        throw model_error(at(node["class_name"]), "",
                          "unknown learning_rate schedule '" + name + "'; known: " + kScheduleNames);
    }
    return s;
}

// Keras's optimizer names are the class names in lower case (SGD's config says "SGD").
std::string optimizer_name(const YAML::Node& node, const std::string& file) {
    std::string name = yaml_as<std::string>(node, SourceLocation::of(file, node), "optimizer name");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    return name;
}

// A name (adam) or a map as Keras's optimizer get_config writes it; unset options may be null.
OptimizerConfig parse_optimizer(const YAML::Node& o, const std::string& file) {
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    OptimizerConfig config;
    if (o.IsScalar()) {
        config.name = optimizer_name(o, file);
    } else if (o.IsMap()) {
        check_keys(o, file, "'optimizer'",
                   {"name",
                    "learning_rate",
                    "beta_1",
                    "beta_2",
                    "epsilon",
                    "momentum",
                    "nesterov",
                    "weight_decay",
                    "rho",
                    "centered",
                    "initial_accumulator_value",
                    "clipnorm",
                    "clipvalue",
                    "global_clipnorm",
                    "use_ema",
                    "ema_momentum",
                    "ema_overwrite_frequency",
                    "loss_scale_factor",
                    "gradient_accumulation_steps",
                    "amsgrad"});
        // Keras's get_config writes these too; nngraph trains as Keras does with them off.
        for (const char* key : {"use_ema", "amsgrad"}) {
            if (o[key] && yaml_as<bool>(o[key], at(o[key]), std::string("optimizer ") + key))
                throw model_error(at(o[key]), "", std::string("optimizer ") + key + ": true is not supported");
        }
        for (const char* key : {"loss_scale_factor", "gradient_accumulation_steps"}) {
            if (o[key] && !o[key].IsNull())
                throw model_error(at(o[key]), "", std::string("optimizer ") + key + " is not supported (give null)");
        }
        if (!o["name"])
            throw model_error(at(o), "", std::string("the optimizer needs a 'name' (one of ") + kOptimizerNames + ")");
        config.name = optimizer_name(o["name"], file);
        auto number = [&](const char* key, double& into) {
            if (o[key] && !o[key].IsNull()) into = finite_number(o[key], file, std::string("optimizer ") + key);
        };
        auto positive = [&](const char* key, double& into) {
            number(key, into);
            if (o[key] && !o[key].IsNull() && into <= 0)
                throw model_error(at(o[key]), "", std::string(key) + " must be above 0, or null for none");
        };
        if (o["learning_rate"] && o["learning_rate"].IsMap())
            config.schedule = parse_schedule(o["learning_rate"], file);
        else
            number("learning_rate", config.learning_rate);
        number("beta_1", config.beta_1);
        number("beta_2", config.beta_2);
        number("epsilon", config.epsilon);
        number("momentum", config.momentum);
        number("rho", config.rho);
        number("initial_accumulator_value", config.initial_accumulator_value);
        number("weight_decay", config.weight_decay);
        if (o["weight_decay"] && !o["weight_decay"].IsNull() && config.weight_decay < 0)
            throw model_error(at(o["weight_decay"]), "", "weight_decay must be 0 or more");
        positive("clipnorm", config.clipnorm);
        positive("clipvalue", config.clipvalue);
        positive("global_clipnorm", config.global_clipnorm);
        if ((config.clipnorm > 0) + (config.clipvalue > 0) + (config.global_clipnorm > 0) > 1) {
            throw model_error(at(o), "", "only one of clipnorm, clipvalue and global_clipnorm can be set, as in Keras");
        }
        if (o["nesterov"]) config.nesterov = yaml_as<bool>(o["nesterov"], at(o["nesterov"]), "optimizer nesterov");
        if (o["centered"]) config.centered = yaml_as<bool>(o["centered"], at(o["centered"]), "optimizer centered");
    } else {
        throw model_error(at(o), "", "the optimizer is a name (adam) or a map ({name: adam, learning_rate: 0.001})");
    }
    if (!is_optimizer_name(config.name)) {
        throw model_error(at(o), "", "unknown optimizer '" + config.name + "'; known optimizers: " + kOptimizerNames);
    }
    return config;
}

// A callback's options, read from its `config:` map with their Keras names.
class CallbackOptions {
public:
    CallbackOptions(const YAML::Node& config, const std::string& file, std::string callback)
        : c_(config), file_(file), callback_(std::move(callback)) {}

    bool has(const char* key) const { return c_[key] && !c_[key].IsNull(); }
    SourceLocation at(const char* key) const { return SourceLocation::of(file_, has(key) ? c_[key] : c_); }
    void number(const char* key, double& into) const {
        if (has(key)) into = finite_number(c_[key], file_, callback_ + " " + key);
    }
    void count(const char* key, int& into) const {
        if (!has(key)) return;
        const std::int64_t value = yaml_as<std::int64_t>(c_[key], at(key), callback_ + " " + key);
        if (value < 0 || value > kMaxEpochs) {
            throw model_error(at(key), "",
                              callback_ + " " + key + " must be from 0 to " + std::to_string(kMaxEpochs) + ", not " +
                                  std::to_string(value));
        }
        into = static_cast<int>(value);
    }
    void flag(const char* key, bool& into) const {
        if (has(key)) into = yaml_as<bool>(c_[key], at(key), callback_ + " " + key);
    }
    void text(const char* key, std::string& into) const {
        if (has(key)) into = yaml_as<std::string>(c_[key], at(key), callback_ + " " + key);
    }
    // monitor, mode and (when `with_min_delta`) min_delta, which Keras takes as its absolute value.
    void monitor(Monitor& into, bool with_min_delta) const {
        text("monitor", into.name);
        std::string mode = "auto";
        text("mode", mode);
        if (mode == "min")
            into.mode = Monitor::Mode::min;
        else if (mode == "max")
            into.mode = Monitor::Mode::max;
        else if (mode != "auto")
            throw model_error(at("mode"), "", callback_ + " mode must be auto, min or max, not '" + mode + "'");
        if (with_min_delta) {
            number("min_delta", into.min_delta);
            into.min_delta = std::abs(into.min_delta);
        }
    }

private:
    const YAML::Node& c_;
    const std::string& file_;
    std::string callback_;
};

// One entry of training.callbacks: {class_name: EarlyStopping, config: {patience: 3}} (module and
// registered_name, which keras.saving.serialize_keras_object adds, are allowed and ignored).
void parse_callback(const YAML::Node& node, const std::string& file, TrainingConfig& into) {
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    const char* known = "EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, CSVLogger, TerminateOnNaN";
    if (!node.IsMap() || !node["class_name"]) {
        throw model_error(at(node), "",
                          std::string("a callback is a map with class_name (one of ") + known +
                              ") and config, as Keras serializes it");
    }
    check_keys(node, file, "a callback", {"class_name", "config", "module", "registered_name"});
    const std::string name = yaml_as<std::string>(node["class_name"], at(node["class_name"]), "callback class_name");
    const YAML::Node empty = YAML::Load("{}");
    const YAML::Node& config = node["config"] && !node["config"].IsNull() ? node["config"] : empty;
    if (!config.IsMap()) throw model_error(at(config), "", name + "'s config must be a map");
    const CallbackOptions o(config, file, name);
    if (name == "EarlyStopping") {
        check_keys(config, file, "EarlyStopping's config",
                   {"monitor", "min_delta", "patience", "verbose", "mode", "baseline", "restore_best_weights",
                    "start_from_epoch"});
        EarlyStoppingConfig c;
        o.monitor(c.monitor, true);
        o.count("patience", c.patience);
        o.count("verbose", c.verbose);
        if (o.has("baseline")) o.number("baseline", c.baseline.emplace());
        o.flag("restore_best_weights", c.restore_best_weights);
        o.count("start_from_epoch", c.start_from_epoch);
        into.callbacks.emplace_back(c);
    } else if (name == "ReduceLROnPlateau") {
        check_keys(config, file, "ReduceLROnPlateau's config",
                   {"monitor", "factor", "patience", "verbose", "mode", "min_delta", "cooldown", "min_lr"});
        ReduceLROnPlateauConfig c;
        o.monitor(c.monitor, true);
        o.number("factor", c.factor);
        if (!(c.factor < 1.0) || c.factor <= 0.0)
            throw model_error(o.at("factor"), "", "ReduceLROnPlateau factor must be above 0 and below 1");
        o.count("patience", c.patience);
        o.count("verbose", c.verbose);
        o.count("cooldown", c.cooldown);
        o.number("min_lr", c.min_lr);
        into.callbacks.emplace_back(c);
    } else if (name == "CSVLogger") {
        check_keys(config, file, "CSVLogger's config", {"filename", "separator", "append"});
        if (!o.has("filename")) throw model_error(at(config), "", "CSVLogger needs a filename");
        CsvLoggerConfig c;
        std::string filename, separator = ",";
        o.text("filename", filename);
        o.text("separator", separator);
        if (separator.size() != 1)
            throw model_error(o.at("separator"), "", "CSVLogger separator must be one character");
        c.filename = filename;
        c.separator = separator[0];
        o.flag("append", c.append);
        into.callbacks.emplace_back(c);
    } else if (name == "ModelCheckpoint") {
        check_keys(config, file, "ModelCheckpoint's config",
                   {"filepath", "monitor", "verbose", "save_best_only", "save_weights_only", "mode", "save_freq",
                    "initial_value_threshold"});
        if (into.checkpoint) throw model_error(at(node), "", "only one ModelCheckpoint can be given (it is --save's)");
        ModelCheckpointConfig c;
        o.monitor(c.monitor, false);
        o.flag("save_best_only", c.save_best_only);
        std::string path, save_freq = "epoch";
        o.text("filepath", path);
        if (!path.empty()) c.filepath = path;
        o.flag("save_weights_only", c.save_weights_only);
        if (o.has("initial_value_threshold")) o.number("initial_value_threshold", c.initial_value_threshold.emplace());
        o.text("save_freq", save_freq);
        if (save_freq != "epoch")
            throw model_error(o.at("save_freq"), "", "ModelCheckpoint save_freq must be 'epoch' (saves once an epoch)");
        into.checkpoint = c;
    } else if (name == "TerminateOnNaN") {
        check_keys(config, file, "TerminateOnNaN's config", {});
        into.terminate_on_nan = true;
    } else {
        throw model_error(at(node["class_name"]), "",
                          "unknown callback '" + name + "'; known callbacks: " + std::string(known));
    }
}

// A metric as Keras's compile takes it: a name ("auc", "Precision") or a serialized metric object
// ({class_name: SparseTopKCategoricalAccuracy, config: {k: 3, name: top3}}).
MetricSpec parse_metric(const YAML::Node& node, const std::string& file) {
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    MetricSpec spec;
    const YAML::Node& name_node = node.IsMap() ? node["class_name"] : node;
    if (!name_node || !name_node.IsScalar()) {
        throw model_error(at(node), "",
                          "a metric is a name (accuracy) or {class_name: ..., config: {...}}, as Keras serializes it");
    }
    const std::string given = yaml_as<std::string>(name_node, at(name_node), "a metric");
    spec.name = canonical_metric(given);
    if (spec.name.empty())
        throw model_error(at(name_node), "", "unknown metric '" + given + "'; known metrics: " + kMetricNames);
    if (!node.IsMap()) return spec;
    check_keys(node, file, "a metric", {"class_name", "config", "module", "registered_name"});
    const YAML::Node& c = node["config"];
    if (!c || c.IsNull()) return spec;
    if (!c.IsMap()) throw model_error(at(c), "", given + "'s config must be a map");
    check_keys(
        c, file, given + "'s config",
        {"name", "dtype", "k", "num_thresholds", "thresholds", "curve", "summation_method", "top_k", "class_id"});
    if (c["name"]) spec.display_name = yaml_as<std::string>(c["name"], at(c["name"]), given + " name");
    auto unsupported = [&](const char* key, const std::string& keras_default) {
        if (c[key] && !c[key].IsNull() && c[key].Scalar() != keras_default)
            throw model_error(at(c[key]), "", given + " " + key + " is only supported at Keras's default");
    };
    unsupported("curve", "ROC");
    unsupported("summation_method", "interpolation");
    unsupported("top_k", "");
    unsupported("class_id", "");
    if (c["k"]) {
        spec.k = static_cast<int>(yaml_as<std::int64_t>(c["k"], at(c["k"]), given + " k"));
        if (spec.k < 1) throw model_error(at(c["k"]), "", given + " k must be 1 or more");
    }
    if (c["num_thresholds"]) {
        spec.num_thresholds =
            static_cast<int>(yaml_as<std::int64_t>(c["num_thresholds"], at(c["num_thresholds"]), "num_thresholds"));
        if (spec.num_thresholds < 2 || spec.num_thresholds > 100000)
            throw model_error(at(c["num_thresholds"]), "", "AUC num_thresholds must be from 2 to 100000");
    }
    if (c["thresholds"] && !c["thresholds"].IsNull()) {
        if (spec.name != "precision" && spec.name != "recall")
            throw model_error(at(c["thresholds"]), "", given + " thresholds are not supported");
        spec.threshold = finite_number(c["thresholds"], file, given + " thresholds");
    }
    return spec;
}

}  // namespace

TrainingConfig parse_training_config(const ModelSpec& spec) {
    TrainingConfig config;
    const YAML::Node& t = spec.training;
    if (!t || t.IsNull()) return config;
    const std::string& file = spec.file;
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    if (!t.IsMap())
        throw model_error(
            at(t), "",
            "'training' must be a map (loss, optimizer, metrics, batch_size, epochs, seed, shuffle, terminate_on_nan, "
            "callbacks)");
    check_keys(
        t, file, "'training'",
        {"loss", "optimizer", "metrics", "batch_size", "epochs", "seed", "shuffle", "terminate_on_nan", "callbacks"});

    if (t["loss"]) {
        config.loss = yaml_as<std::string>(t["loss"], at(t["loss"]), "training loss");
        try {
            make_loss(config.loss);
        } catch (const InputError& e) {
            throw model_error(at(t["loss"]), "", e.what());
        }
    }
    if (const YAML::Node& o = t["optimizer"]) config.optimizer = parse_optimizer(o, file);
    if (const YAML::Node& m = t["metrics"]) {
        if (!m.IsSequence()) throw model_error(at(m), "", "'metrics' is a list, e.g. [accuracy]");
        for (std::size_t i = 0; i < m.size(); ++i) {
            MetricSpec spec = parse_metric(m[i], file);
            if (spec.name == "accuracy")
                config.accuracy = true;
            else
                config.metrics.push_back(std::move(spec));
        }
    }
    if (t["batch_size"]) {
        config.batch_size = yaml_as<std::int64_t>(t["batch_size"], at(t["batch_size"]), "batch_size");
        if (config.batch_size < 1 || config.batch_size > kMaxBatchSize) {
            throw model_error(at(t["batch_size"]), "",
                              "batch_size must be from 1 to " + std::to_string(kMaxBatchSize) + ", not " +
                                  std::to_string(config.batch_size));
        }
    }
    if (t["epochs"]) {
        const std::int64_t epochs = yaml_as<std::int64_t>(t["epochs"], at(t["epochs"]), "epochs");
        if (epochs < 1 || epochs > kMaxEpochs) {
            throw model_error(
                at(t["epochs"]), "",
                "epochs must be from 1 to " + std::to_string(kMaxEpochs) + ", not " + std::to_string(epochs));
        }
        config.epochs = static_cast<int>(epochs);
    }
    if (t["seed"]) config.seed = static_cast<std::uint64_t>(yaml_as<std::int64_t>(t["seed"], at(t["seed"]), "seed"));
    if (t["shuffle"]) config.shuffle = yaml_as<bool>(t["shuffle"], at(t["shuffle"]), "shuffle");
    if (const YAML::Node& c = t["callbacks"]) {
        if (!c.IsSequence())
            throw model_error(at(c), "", "'callbacks' is a list, e.g. [{class_name: EarlyStopping, config: {}}]");
        for (std::size_t i = 0; i < c.size(); ++i) parse_callback(c[i], file, config);
    }
    if (t["terminate_on_nan"])
        config.terminate_on_nan = yaml_as<bool>(t["terminate_on_nan"], at(t["terminate_on_nan"]), "terminate_on_nan");
    return config;
}

}  // namespace nngraph
