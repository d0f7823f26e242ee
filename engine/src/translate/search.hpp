// Choosing the target tokens from a decoder session's next-token probabilities: greedy, or beam
// search with length-normalised scores.
#pragma once

#include <cstdint>
#include <vector>

#include "translate/decoder_session.hpp"

namespace nngraph {

// Token ids of the target vocabulary that steer decoding (TokenVocabulary's). A predicted pad ends
// a sentence as the end token does: it is never a real token.
struct SearchTokens {
    std::int32_t start = 1, end = 2, pad = 0;
    bool ends(std::int32_t token) const { return token == end || token == pad; }
};

// For each row of `sources` (rows, source_length), the target ids up to the end token (left out)
// or the session's last position: the most probable token at every step.
std::vector<std::vector<std::int32_t>> greedy_search(DecoderSession& session, const Tensor& sources,
                                                     SearchTokens tokens = {});

// Beam search with `beam` hypotheses a sentence. A hypothesis scores the sum of its tokens' log
// probabilities (its end token included) divided by its length in tokens (end included): the mean
// log probability, so that short translations are not favoured. A hypothesis ends at the end token
// or the session's last position; a sentence is done once `beam` hypotheses ended and the best live
// one's mean so far is no better than the worst of them (Hugging Face's heuristic stop). The best
// ended hypothesis wins.
std::vector<std::vector<std::int32_t>> beam_search(DecoderSession& session, const Tensor& sources, int beam,
                                                   SearchTokens tokens = {});

// Greedy search over a decoder session made from `model`'s graph, weights and threads, for
// `source_ids` (rows, source_length) `batch_size` rows at a time: the signature by which scoring
// (evaluate's BLEU) calls a decoder.
std::vector<std::vector<std::int32_t>> cached_greedy(Executor& model, const Tensor& source_ids,
                                                     std::int64_t batch_size);

}  // namespace nngraph
