#include "translate/decoder_session.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace nngraph {
namespace {

// The graph input (its index among Graph::inputs(), which are in graph order) that the model file
// lists as input `i`, checked to hold ids.
std::size_t ids_input(const Graph& g, std::size_t i, const char* role) {
    const std::string& name = g.spec().inputs.at(i).name;
    for (std::size_t k = 0; k < g.inputs().size(); ++k) {
        const GraphTensor& t = g.tensor(g.inputs()[k]);
        if (t.name != name) continue;
        if (t.info.dtype != DType::I32 || t.info.shape.size() != 2) {
            throw InputError("model '" + g.name() + "': input " + std::to_string(i) + " ('" + t.name +
                             "') should be the " + role + " ids, int32 (batch, steps); it is " +
                             std::string(dtype_name(t.info.dtype)) + " " + shape_to_string(t.info.shape));
        }
        return k;
    }
    throw InputError("model '" + g.name() + "' has no graph input '" + name + "'");
}

}  // namespace

DecoderSession::DecoderSession(std::shared_ptr<const Graph> graph, const std::vector<Tensor>& weights, int threads) {
    const Graph& g = *graph;
    if (g.inputs().size() != 2 || g.outputs().empty()) {
        throw InputError("model '" + g.name() +
                         "' is not a translation model: it needs two inputs (the source ids and "
                         "the decoder's input ids) and the next token's probabilities as its output");
    }
    source_index_ = ids_input(g, 0, "source");
    decoder_index_ = ids_input(g, 1, "decoder's input");
    source_length_ = g.tensor(g.inputs()[source_index_]).info.shape[1];
    positions_ = g.tensor(g.inputs()[decoder_index_]).info.shape[1];
    const GraphTensor& out = g.tensor(g.outputs()[0]);
    if (out.info.dtype != DType::F32 || out.info.shape.size() != 3 || out.info.shape[1] != positions_) {
        throw InputError("model '" + g.name() + "': output '" + out.name +
                         "' should be the target vocabulary's probabilities (batch, " + std::to_string(positions_) +
                         ", vocabulary); it is " + shape_to_string(out.info.shape));
    }
    vocabulary_ = out.info.shape[2];
    ExecutorOptions options;
    options.threads = threads;
    options.session = SessionShape{std::vector<bool>(2, false), positions_};
    options.session->advancing_inputs[decoder_index_] = true;
    executor_ = std::make_unique<Executor>(std::move(graph), options);
    executor_->weights() = weights;
}

void DecoderSession::start(const Tensor& sources) {
    if (sources.dtype() != DType::I32 || sources.rank() != 2 || sources.dim(1) != source_length_) {
        throw InputError("decoding: the sources are " + std::string(dtype_name(sources.dtype())) + " " +
                         shape_to_string(sources.shape()) + "; expected int32 (rows, " +
                         std::to_string(source_length_) + ")");
    }
    sources_ = sources;
    rows_ = sources.dim(0);
    tokens_ = Tensor(DType::I32, {rows_, 1});
    position_ = 0;
}

std::span<const float> DecoderSession::step(std::span<const std::int32_t> tokens) {
    if (static_cast<std::int64_t>(tokens.size()) != rows_) {
        throw RunError("decoding: " + std::to_string(tokens.size()) + " tokens for " + std::to_string(rows_) + " rows");
    }
    std::copy(tokens.begin(), tokens.end(), tokens_.data<std::int32_t>());
    BatchRef batch;
    batch.inputs.assign(2, nullptr);
    batch.inputs[source_index_] = &sources_;
    batch.inputs[decoder_index_] = &tokens_;
    executor_->run_session_step(batch, position_);
    ++position_;
    const TensorView out = executor_->output(0);
    return {static_cast<const float*>(out.data), static_cast<std::size_t>(rows_ * vocabulary_)};
}

}  // namespace nngraph
