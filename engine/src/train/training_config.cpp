#include "train/training_config.hpp"

#include <algorithm>

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
        throw model_error(SourceLocation::of(file, kv.first), "", "unknown key '" + key + "' in " + what + "; expected one of: " + expected);
    }
}

}  // namespace

TrainingConfig parse_training_config(const ModelSpec& spec) {
    TrainingConfig config;
    const YAML::Node& t = spec.training;
    if (!t || t.IsNull()) return config;
    const std::string& file = spec.file;
    auto at = [&](const YAML::Node& n) { return SourceLocation::of(file, n); };
    if (!t.IsMap()) throw model_error(at(t), "", "'training' must be a map (loss, optimizer, metrics, batch_size, epochs, seed, shuffle)");
    check_keys(t, file, "'training'", {"loss", "optimizer", "metrics", "batch_size", "epochs", "seed", "shuffle"});

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
            check_keys(o, file, "'optimizer'", {"name", "learning_rate", "beta_1", "beta_2", "epsilon", "momentum", "nesterov", "weight_decay"});
            if (!o["name"]) throw model_error(at(o), "", "the optimizer needs a 'name' (adam or sgd)");
            config.optimizer.name = yaml_as<std::string>(o["name"], at(o["name"]), "optimizer name");
            auto number = [&](const char* key, double& into) {
                if (o[key]) into = yaml_as<double>(o[key], at(o[key]), std::string("optimizer ") + key);
            };
            number("learning_rate", config.optimizer.learning_rate);
            number("beta_1", config.optimizer.beta_1);
            number("beta_2", config.optimizer.beta_2);
            number("epsilon", config.optimizer.epsilon);
            number("momentum", config.optimizer.momentum);
            number("weight_decay", config.optimizer.weight_decay);
            if (config.optimizer.weight_decay < 0) throw model_error(at(o["weight_decay"]), "", "weight_decay must be 0 or more");
            if (o["nesterov"]) config.optimizer.nesterov = yaml_as<bool>(o["nesterov"], at(o["nesterov"]), "optimizer nesterov");
        } else {
            throw model_error(at(o), "", "the optimizer is a name (adam) or a map ({name: adam, learning_rate: 0.001})");
        }
        if (config.optimizer.name != "adam" && config.optimizer.name != "sgd") {
            throw model_error(at(o), "", "unknown optimizer '" + config.optimizer.name + "'; known optimizers: adam, sgd");
        }
    }
    if (const YAML::Node& m = t["metrics"]) {
        if (!m.IsSequence()) throw model_error(at(m), "", "'metrics' is a list, e.g. [accuracy]");
        for (std::size_t i = 0; i < m.size(); ++i) {
            std::string name = yaml_as<std::string>(m[i], at(m[i]), "a metric");
            if (name == "acc") name = "accuracy";
            if (name != "accuracy") throw model_error(at(m[i]), "", "unknown metric '" + name + "'; known metrics: accuracy");
            config.metrics.push_back(name);
        }
    }
    if (t["batch_size"]) {
        config.batch_size = yaml_as<std::int64_t>(t["batch_size"], at(t["batch_size"]), "batch_size");
        if (config.batch_size < 1) throw model_error(at(t["batch_size"]), "", "batch_size must be at least 1");
    }
    if (t["epochs"]) {
        config.epochs = static_cast<int>(yaml_as<std::int64_t>(t["epochs"], at(t["epochs"]), "epochs"));
        if (config.epochs < 1) throw model_error(at(t["epochs"]), "", "epochs must be at least 1");
    }
    if (t["seed"]) config.seed = static_cast<std::uint64_t>(yaml_as<std::int64_t>(t["seed"], at(t["seed"]), "seed"));
    if (t["shuffle"]) config.shuffle = yaml_as<bool>(t["shuffle"], at(t["shuffle"]), "shuffle");
    return config;
}

}  // namespace nngraph
