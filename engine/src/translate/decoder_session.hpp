// Incremental decoding of an encoder-decoder model (SPEC section 7): the model file's input 0 the
// source ids, its input 1 the decoder's input ids, output 0 the probabilities of the next target token. A session
// runs the encoder once for a batch of sources, then the decoder one position a call over the key
// and value caches the attention ops keep (Executor::run_session_step).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "exec/executor.hpp"

namespace nngraph {

class DecoderSession {
public:
    // Runs with a copy of `weights` (by WeightId) on `threads` threads (0: all).
    DecoderSession(std::shared_ptr<const Graph> graph, const std::vector<Tensor>& weights, int threads);

    std::int64_t source_length() const { return source_length_; }
    std::int64_t max_positions() const { return positions_; }  // the decoder input's steps
    std::int64_t vocabulary() const { return vocabulary_; }    // the width of the output rows

    // Starts a session for `sources` (rows, source_length) int32, padded with 0.
    void start(const Tensor& sources);
    // Feeds one token per row at the next position; returns the output's rows (rows x vocabulary),
    // valid until the next call.
    std::span<const float> step(std::span<const std::int32_t> tokens);
    std::int64_t position() const { return position_; }
    std::int64_t rows() const { return rows_; }
    // Row r of the session's state becomes what row `from[r]` was (beam search).
    void reorder(std::span<const std::int64_t> from) { executor_->reorder_session_rows(from); }

private:
    std::unique_ptr<Executor> executor_;
    std::size_t source_index_ = 0, decoder_index_ = 1;  // among the graph's inputs
    std::int64_t source_length_ = 0, positions_ = 0, vocabulary_ = 0;
    Tensor sources_, tokens_;
    std::int64_t rows_ = 0, position_ = 0;
};

}  // namespace nngraph
