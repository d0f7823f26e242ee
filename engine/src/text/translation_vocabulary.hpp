// The vocabularies of a translation model (SPEC section 7): token ids per language, and the rows
// the model reads, padded at the end. Saved beside the weights so that translating needs no data set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nngraph/imdb.hpp"  // StringHash

namespace nngraph {

// Changes whenever the tokens or the ids change, so that vocabularies saved by an older rule are refused.
inline constexpr int kTranslationTokensVersion = 1;

// Ids of one language: 0 pads, 1 starts, 2 ends, 3 stands for a token outside the vocabulary, and
// the tokens, most frequent first (ties by code point), take 4, 5, ... up to size - 1.
class TokenVocabulary {
public:
    static constexpr std::int32_t kPadId = 0;
    static constexpr std::int32_t kStartId = 1;
    static constexpr std::int32_t kEndId = 2;
    static constexpr std::int32_t kOutOfVocabularyId = 3;
    static constexpr std::int32_t kFirstTokenId = 4;

    // `ranked` most frequent first; only the first size - 4 are kept. Raises InputError for a size
    // below 5 or above 2^31 - 1, or a token given twice.
    TokenVocabulary(std::vector<std::string> ranked, std::int64_t size);

    struct TokenCount {
        std::string_view token;
        std::int64_t count = 0;
    };
    // Ranks by count, highest first, ties by code point; tokens counted 0 are left out.
    static TokenVocabulary from_counts(std::vector<TokenCount> counts, std::int64_t size);

    // Every id is below size(): the Embedding's input_dim and the output's width.
    std::int64_t size() const { return size_; }
    // The token with id kFirstTokenId + i is tokens()[i].
    const std::vector<std::string>& tokens() const { return tokens_; }
    std::int32_t id_of(std::string_view token) const;
    std::vector<std::int32_t> ids_of(const std::vector<std::string>& tokens) const;

private:
    std::int64_t size_;
    std::vector<std::string> tokens_;
    std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>> ids_;
};

// `ids` then zeros to fill `row`, or the first row.size() of them.
void pad_back(std::span<const std::int32_t> ids, std::span<std::int32_t> row);

struct TranslationVocabularies {
    TokenVocabulary source;
    TokenVocabulary target;
    std::int64_t source_length = 0;
    std::int64_t target_length = 0;

    // The encoder's row: the source ids, padded at the end to source_length.
    void encode_source(std::span<const std::int32_t> ids, std::span<std::int32_t> row) const { pad_back(ids, row); }
    // The decoder's input row (start, then the target ids) and its target row (the target ids, then
    // end), each padded at the end to target_length.
    void encode_decoder_input(std::span<const std::int32_t> ids, std::span<std::int32_t> row) const;
    void encode_target(std::span<const std::int32_t> ids, std::span<std::int32_t> row) const;

    // A JSON file {"format", "tokens_version", "source_length", "target_length", "source", "target"},
    // written atomically; load raises InputError naming the file for anything it cannot use.
    void save(const std::filesystem::path& path) const;
    static TranslationVocabularies load(const std::filesystem::path& path);
    std::string to_json() const;
    static TranslationVocabularies from_json(std::string_view text, const std::string& source);
};

}  // namespace nngraph
