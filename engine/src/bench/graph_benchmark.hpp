// One graph set up to be timed: an executor with initialised weights, synthetic inputs and targets
// of the right shapes and types, and a step that is a full training step (forward, loss, backward,
// optimiser update) or one inference batch. It builds on training (losses, optimisers, the training
// section), so it sits above train/; the API's Benchmark and bench/ use it.
#pragma once

#include <cstdint>
#include <memory>

#include "exec/executor.hpp"
#include "train/optimizers.hpp"

namespace nngraph {

struct GraphBenchOptions {
    std::int64_t batch = 0;  // 0: the model file's training.batch_size, else 32
    bool train = true;
    int threads = 0;
    std::uint64_t seed = 1;
};

class GraphBenchmark {
public:
    GraphBenchmark(std::shared_ptr<const Graph> graph, const GraphBenchOptions& options);
    ~GraphBenchmark();

    void step();
    std::int64_t batch() const { return batch_; }
    bool training() const { return train_; }
    Executor& executor() { return *executor_; }

    std::size_t weight_bytes() const;
    std::size_t optimizer_bytes() const;  // gradients and optimiser slots

private:
    std::int64_t batch_;
    bool train_;
    std::unique_ptr<Executor> executor_;
    std::unique_ptr<Optimizer> optimizer_;
    std::vector<Tensor> inputs_, targets_;
    BatchRef batch_ref_;
};

}  // namespace nngraph
