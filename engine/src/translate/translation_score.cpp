#include "translate/translation_score.hpp"

#include "text/tokens.hpp"

namespace nngraph {

Tokens target_tokens(const TranslationVocabularies& vocabularies, const TargetIds& ids) {
    const std::vector<std::string>& words = vocabularies.target.tokens();
    Tokens tokens;
    tokens.reserve(ids.size());
    for (const std::int32_t id : ids) {
        const auto index = static_cast<std::size_t>(id - TokenVocabulary::kFirstTokenId);
        tokens.push_back(id >= TokenVocabulary::kFirstTokenId && index < words.size() ? words[index] : "[UNK]");
    }
    return tokens;
}

BleuScore score_translations(Executor& model, const TranslationVocabularies& vocabularies,
                             const std::vector<ReferenceGroup>& groups, const DecodeFunction& decode,
                             std::int64_t batch_size) {
    const auto rows = static_cast<std::int64_t>(groups.size());
    const auto width = static_cast<std::size_t>(vocabularies.source_length);
    Tensor source(DType::I32, {rows, vocabularies.source_length});
    for (std::size_t r = 0; r < groups.size(); ++r) {
        vocabularies.encode_source(vocabularies.source.ids_of(translation_tokens(groups[r].source)),
                                   {source.data<std::int32_t>() + r * width, width});
    }
    const std::vector<TargetIds> translations = decode(model, source, batch_size);
    CorpusBleu bleu;
    for (std::size_t r = 0; r < groups.size(); ++r) {
        std::vector<Tokens> references;
        for (const std::string& reference : groups[r].references) references.push_back(translation_tokens(reference));
        bleu.add(target_tokens(vocabularies, translations[r]), references);
    }
    return bleu.score();
}

}  // namespace nngraph
