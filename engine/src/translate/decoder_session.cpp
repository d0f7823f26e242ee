#include "translate/decoder_session.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "translate/decoding.hpp"

namespace nngraph {

DecoderSession::DecoderSession(std::shared_ptr<const Graph> graph, const std::vector<Tensor>& weights, int threads) {
    const Graph& g = *graph;
    if (g.outputs().empty()) {
        throw InputError("model '" + g.name() +
                         "' is not a translation model: its output should be the next token's probabilities");
    }
    const TranslationInputs inputs = translation_inputs(g);
    source_index_ = inputs.source;
    decoder_index_ = inputs.decoder;
    source_length_ = inputs.source_length;
    positions_ = inputs.target_length;
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
