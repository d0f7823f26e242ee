// Decoding a translation model (SPEC section 7): target ids from source ids. evaluate's BLEU and the
// translate command call decoders through this one signature, so any decoder serves both.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "exec/executor.hpp"

namespace nngraph {

// One sentence's target ids, without start and end.
using TargetIds = std::vector<std::int32_t>;

// The model is an executor holding a translation graph (inputs declared source ids first, then the
// decoder's input ids; output 0 the (batch, steps, target words) probabilities) and its weights.
// `source_ids` holds one sentence a row, I32, padded at the end to the graph's source length; the
// sentences are decoded `batch_size` at a time.
using DecodeFunction =
    std::function<std::vector<TargetIds>(Executor& model, const Tensor& source_ids, std::int64_t batch_size)>;

// Where the source and decoder inputs sit in the graph's input order (which follows execution);
// throws InputError unless the graph declares two rank-2 inputs.
struct TranslationInputs {
    std::size_t source = 0, decoder = 1;
    std::int64_t source_length = 0, target_length = 0;
};
TranslationInputs translation_inputs(const Graph& graph);

}  // namespace nngraph
