#include "train/training_config.hpp"

#include <algorithm>
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
            "'training' must be a map (loss, optimizer, metrics, batch_size, epochs, seed, shuffle, terminate_on_nan)");
    check_keys(t, file, "'training'",
               {"loss", "optimizer", "metrics", "batch_size", "epochs", "seed", "shuffle", "terminate_on_nan"});

    if (t["loss"]) {
        config.loss = yaml_as<std::string>(t["loss"], at(t["loss"]), "training loss");
        try {
            make_loss(config.loss);
        } catch (const InputError& e) {
            throw model_error(at(t["loss"]), "", e.what());
        }
    }
    if (const YAML::Node& o = t["optimizer"]) {
        if (o.IsScalar()) {
            config.optimizer.name = o.Scalar();
        } else if (o.IsMap()) {
            check_keys(
                o, file, "'optimizer'",
                {"name", "learning_rate", "beta_1", "beta_2", "epsilon", "momentum", "nesterov", "weight_decay"});
            if (!o["name"]) throw model_error(at(o), "", "the optimizer needs a 'name' (adam or sgd)");
            config.optimizer.name = yaml_as<std::string>(o["name"], at(o["name"]), "optimizer name");
            auto number = [&](const char* key, double& into) {
                if (o[key]) into = finite_number(o[key], file, std::string("optimizer ") + key);
            };
            if (o["learning_rate"] && o["learning_rate"].IsMap())
                config.optimizer.schedule = parse_schedule(o["learning_rate"], file);
            else
                number("learning_rate", config.optimizer.learning_rate);
            number("beta_1", config.optimizer.beta_1);
            number("beta_2", config.optimizer.beta_2);
            number("epsilon", config.optimizer.epsilon);
            number("momentum", config.optimizer.momentum);
            number("weight_decay", config.optimizer.weight_decay);
            if (config.optimizer.weight_decay < 0)
                throw model_error(at(o["weight_decay"]), "", "weight_decay must be 0 or more");
            if (o["nesterov"])
                config.optimizer.nesterov = yaml_as<bool>(o["nesterov"], at(o["nesterov"]), "optimizer nesterov");
        } else {
            throw model_error(at(o), "",
                              "the optimizer is a name (adam) or a map ({name: adam, learning_rate: 0.001})");
        }
        if (config.optimizer.name != "adam" && config.optimizer.name != "sgd") {
            throw model_error(at(o), "",
                              "unknown optimizer '" + config.optimizer.name + "'; known optimizers: adam, sgd");
        }
    }
    if (const YAML::Node& m = t["metrics"]) {
        if (!m.IsSequence()) throw model_error(at(m), "", "'metrics' is a list, e.g. [accuracy]");
        for (std::size_t i = 0; i < m.size(); ++i) {
            std::string name = yaml_as<std::string>(m[i], at(m[i]), "a metric");
            if (name == "acc") name = "accuracy";
            if (name != "accuracy")
                throw model_error(at(m[i]), "", "unknown metric '" + name + "'; known metrics: accuracy");
            config.metrics.push_back(name);
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
    if (t["terminate_on_nan"])
        config.terminate_on_nan = yaml_as<bool>(t["terminate_on_nan"], at(t["terminate_on_nan"]), "terminate_on_nan");
    return config;
}

}  // namespace nngraph
