#include "nngraph/translator.hpp"

#include <algorithm>

#include "api/model_state.hpp"
#include "text/tokens.hpp"
#include "text/translation_vocabulary.hpp"
#include "translate/decoder_session.hpp"
#include "translate/search.hpp"

namespace nngraph {

struct Translator::State {
    TranslationVocabularies vocabularies;
    DecoderSession session;
};

Translator::Translator(const Model& model, const std::filesystem::path& vocabulary_file) {
    Model::State& m = *model.state_;
    TranslationVocabularies vocabularies = TranslationVocabularies::load(vocabulary_file);
    DecoderSession session(m.graph, m.executor().weights(), m.threads);
    if (vocabularies.source_length != session.source_length() || vocabularies.target.size() != session.vocabulary()) {
        throw InputError(vocabulary_file.string() + ": the vocabularies are for sources of " +
                         std::to_string(vocabularies.source_length) + " tokens and " +
                         std::to_string(vocabularies.target.size()) + " target ids, but model '" + m.graph->name() +
                         "' reads sources of " + std::to_string(session.source_length()) + " tokens and predicts " +
                         std::to_string(session.vocabulary()) + " target ids");
    }
    state_ = std::make_unique<State>(State{std::move(vocabularies), std::move(session)});
}

Translator::Translator(Translator&&) noexcept = default;
Translator& Translator::operator=(Translator&&) noexcept = default;
Translator::~Translator() = default;

std::int64_t Translator::source_length() const { return state_->session.source_length(); }

std::vector<std::vector<std::int32_t>> Translator::decode(const std::vector<std::vector<std::int32_t>>& sources,
                                                          int beam, std::int64_t batch_size) {
    if (batch_size < 1) throw InputError("decoding needs a batch size of 1 or more");
    const std::int64_t length = source_length();
    std::vector<std::vector<std::int32_t>> out;
    out.reserve(sources.size());
    for (std::size_t first = 0; first < sources.size(); first += static_cast<std::size_t>(batch_size)) {
        const std::size_t count = std::min(sources.size() - first, static_cast<std::size_t>(batch_size));
        Tensor batch(DType::I32, {static_cast<std::int64_t>(count), length});
        for (std::size_t i = 0; i < count; ++i) {
            const std::vector<std::int32_t>& ids = sources[first + i];
            if (static_cast<std::int64_t>(ids.size()) > length) {
                throw InputError("source " + std::to_string(first + i + 1) + " has " + std::to_string(ids.size()) +
                                 " ids; the model reads at most " + std::to_string(length));
            }
            pad_back(ids, {batch.data<std::int32_t>() + static_cast<std::int64_t>(i) * length,
                           static_cast<std::size_t>(length)});
        }
        std::vector<std::vector<std::int32_t>> decoded =
            beam > 1 ? beam_search(state_->session, batch, beam) : greedy_search(state_->session, batch);
        for (auto& ids : decoded) out.push_back(std::move(ids));
    }
    return out;
}

std::vector<Translation> Translator::translate(const std::vector<std::string>& sentences,
                                               const TranslateOptions& options) {
    const TokenVocabulary& source = state_->vocabularies.source;
    const TokenVocabulary& target = state_->vocabularies.target;
    const std::int64_t length = source_length();
    std::vector<Translation> out(sentences.size());
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::size_t> decoded_sentences;  // those with tokens
    for (std::size_t i = 0; i < sentences.size(); ++i) {
        std::vector<std::string> tokens;
        try {
            tokens = translation_tokens(sentences[i]);
        } catch (const InputError& e) {
            throw InputError("line " + std::to_string(i + 1) + ": " + e.what());
        }
        out[i].source_tokens = static_cast<std::int64_t>(tokens.size());
        if (tokens.empty()) continue;
        if (static_cast<std::int64_t>(tokens.size()) > length) {
            tokens.resize(static_cast<std::size_t>(length));
            out[i].truncated = true;
        }
        ids.push_back(source.ids_of(tokens));
        decoded_sentences.push_back(i);
    }
    const std::vector<std::vector<std::int32_t>> decoded = decode(ids, options.beam, options.batch_size);
    for (std::size_t k = 0; k < decoded.size(); ++k) {
        std::string& text = out[decoded_sentences[k]].text;
        for (const std::int32_t id : decoded[k]) {
            if (id < TokenVocabulary::kOutOfVocabularyId) continue;  // pad or start: no word
            if (!text.empty()) text += ' ';
            // Ids past the tokens the training data had (a vocabulary smaller than its size) have no word either.
            const auto token = static_cast<std::size_t>(id - TokenVocabulary::kFirstTokenId);
            text += id >= TokenVocabulary::kFirstTokenId && token < target.tokens().size() ? target.tokens()[token]
                                                                                           : std::string("<unk>");
        }
    }
    return out;
}

}  // namespace nngraph
