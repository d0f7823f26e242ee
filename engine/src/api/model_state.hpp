// What a Model holds: the graph, its training section, and the executor that owns the weights.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "nngraph/nngraph.hpp"
#include "train/datasets.hpp"
#include "train/trainer.hpp"
#include "train/training_config.hpp"

namespace nngraph {

struct Model::State {
    std::shared_ptr<const Graph> graph;
    TrainingConfig config;
    int threads = 0;
    std::uint64_t weight_seed = 0;  // of the initial weights
    std::uint64_t seed = 0;         // of random ops and shuffling
    // Set on a rank of a sequence-parallel job: its share of every sample's steps.
    std::shared_ptr<const SequenceParallelism> sequence;

    // Made on first use, with the initial weights: a model that is only inspected or benchmarked
    // holds no weights it does not use.
    Executor& executor() {
        if (!executor_) {
            executor_ = std::make_unique<Executor>(graph, ExecutorOptions{threads, seed, std::nullopt, sequence});
            initialize_weights(*graph, weight_seed, executor_->weights());
        }
        return *executor_;
    }

    // Random ops draw from the executor's seed, fixed when it is made: another seed gets a new
    // executor that keeps the weights.
    void use_seed(std::uint64_t new_seed) {
        if (new_seed == seed) return;
        if (executor_) {
            auto next = std::make_unique<Executor>(graph, ExecutorOptions{threads, new_seed, std::nullopt, sequence});
            next->weights() = std::move(executor_->weights());
            executor_ = std::move(next);
        }
        seed = new_seed;
    }

    WeightId weight_id(const std::string& name) const {
        const std::optional<WeightId> id = graph->find_weight(name);
        if (!id) throw InputError("model '" + graph->name() + "' has no weight '" + name + "'");
        return *id;
    }

    // `samples` as the trainer reads them: inputs in the graph's dtypes, targets shaped for the loss.
    Dataset dataset(const Samples& samples, const std::string& what) const {
        if (samples.inputs.size() != graph->inputs().size()) {
            throw InputError(what + " has " + std::to_string(samples.inputs.size()) + " input tensors for model '" +
                             graph->name() + "', which has " + std::to_string(graph->inputs().size()) + " inputs");
        }
        if (samples.targets.size() != graph->outputs().size()) {
            throw InputError(what + " has " + std::to_string(samples.targets.size()) + " target tensors for model '" +
                             graph->name() + "', which has " + std::to_string(graph->outputs().size()) + " outputs");
        }
        Dataset set;
        for (std::size_t i = 0; i < samples.inputs.size(); ++i) {
            const GraphTensor& input = graph->tensor(graph->inputs()[i]);
            set.inputs.push_back(
                convert_dtype(samples.inputs[i], input.info.dtype, what + " input '" + input.name + "'"));
        }
        for (std::size_t i = 0; i < samples.targets.size(); ++i) {
            set.targets.push_back(
                fit_targets(*graph, i, config.loss, samples.targets[i],
                            what + " targets of output '" + graph->tensor(graph->outputs()[i]).name + "'"));
        }
        return set;
    }

    DataSplits data(const std::optional<Samples>& samples, const std::optional<Samples>& validation,
                    const std::optional<std::filesystem::path>& path, const std::filesystem::path& cache_dir) const {
        if (!samples) return load_data(*graph, {path, config.loss, cache_dir});
        DataSplits splits;
        splits.train = dataset(*samples, "the training samples");
        if (validation) splits.validation = dataset(*validation, "the validation samples");
        splits.description = std::to_string(splits.train.size()) + " samples in memory";
        return splits;
    }

private:
    std::unique_ptr<Executor> executor_;
};

}  // namespace nngraph
