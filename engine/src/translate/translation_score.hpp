// SPEC section 7's score of a translation model: its translations of the distinct source sentences
// of a split, each against all that sentence's references, as corpus BLEU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tsv_pairs.hpp"
#include "text/bleu.hpp"
#include "text/translation_vocabulary.hpp"
#include "translate/decoding.hpp"

namespace nngraph {

// The target tokens of `ids` (out-of-vocabulary ids become "[UNK]", which no reference holds).
Tokens target_tokens(const TranslationVocabularies& vocabularies, const TargetIds& ids);

// Encodes every group's source sentence, decodes them with `decode` and scores the translations.
BleuScore score_translations(Executor& model, const TranslationVocabularies& vocabularies,
                             const std::vector<ReferenceGroup>& groups, const DecodeFunction& decode,
                             std::int64_t batch_size);

}  // namespace nngraph
