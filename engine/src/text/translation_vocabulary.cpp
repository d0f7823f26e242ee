#include "text/translation_vocabulary.hpp"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "data/text_file.hpp"
#include "nngraph/error.hpp"
#include "nngraph/io_atomic_file.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph {
namespace {

constexpr std::string_view kFormat = "nngraph-translation-vocabularies";

void check_size(std::int64_t size) {
    if (size <= TokenVocabulary::kFirstTokenId || size > std::numeric_limits<std::int32_t>::max()) {
        throw InputError(
            "a translation vocabulary's size must be between 5 (ids 0 to 3 are reserved) and 2147483647, not " +
            std::to_string(size));
    }
}

}  // namespace

TokenVocabulary::TokenVocabulary(std::vector<std::string> ranked, std::int64_t size)
    : size_(size), tokens_(std::move(ranked)) {
    check_size(size);
    if (static_cast<std::int64_t>(tokens_.size()) > size - kFirstTokenId)
        tokens_.resize(static_cast<std::size_t>(size - kFirstTokenId));
    ids_.reserve(tokens_.size());
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
        if (!ids_.emplace(tokens_[i], kFirstTokenId + static_cast<std::int32_t>(i)).second) {
            throw InputError("the vocabulary lists the token '" + tokens_[i] + "' twice");
        }
    }
}

TokenVocabulary TokenVocabulary::from_counts(std::vector<TokenCount> counts, std::int64_t size) {
    check_size(size);
    std::erase_if(counts, [](const TokenCount& c) { return c.count <= 0; });
    const auto kept = std::min(counts.size(), static_cast<std::size_t>(size - kFirstTokenId));
    // std::string_view compares bytes as unsigned, so UTF-8 sorts by code point.
    std::partial_sort(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(kept), counts.end(),
                      [](const TokenCount& a, const TokenCount& b) {
                          return a.count != b.count ? a.count > b.count : a.token < b.token;
                      });
    std::vector<std::string> ranked;
    ranked.reserve(kept);
    for (std::size_t i = 0; i < kept; ++i) ranked.emplace_back(counts[i].token);
    return TokenVocabulary(std::move(ranked), size);
}

std::int32_t TokenVocabulary::id_of(std::string_view token) const {
    const auto found = ids_.find(token);
    return found == ids_.end() ? kOutOfVocabularyId : found->second;
}

std::vector<std::int32_t> TokenVocabulary::ids_of(const std::vector<std::string>& tokens) const {
    std::vector<std::int32_t> ids;
    ids.reserve(tokens.size());
    for (const std::string& token : tokens) ids.push_back(id_of(token));
    return ids;
}

void pad_back(std::span<const std::int32_t> ids, std::span<std::int32_t> row) {
    const std::size_t kept = std::min(ids.size(), row.size());
    std::copy_n(ids.begin(), kept, row.begin());
    std::fill(row.begin() + static_cast<std::ptrdiff_t>(kept), row.end(), TokenVocabulary::kPadId);
}

void TranslationVocabularies::encode_decoder_input(std::span<const std::int32_t> ids,
                                                   std::span<std::int32_t> row) const {
    std::vector<std::int32_t> shifted = {TokenVocabulary::kStartId};
    shifted.insert(shifted.end(), ids.begin(), ids.end());
    pad_back(shifted, row);
}

void TranslationVocabularies::encode_target(std::span<const std::int32_t> ids, std::span<std::int32_t> row) const {
    std::vector<std::int32_t> ended(ids.begin(), ids.end());
    ended.push_back(TokenVocabulary::kEndId);
    pad_back(ended, row);
}

std::string TranslationVocabularies::to_json() const {
    const nlohmann::ordered_json document = {{"format", kFormat},
                                             {"tokens_version", kTranslationTokensVersion},
                                             {"source_length", source_length},
                                             {"target_length", target_length},
                                             {"source_words", source.size()},
                                             {"target_words", target.size()},
                                             {"source", source.tokens()},
                                             {"target", target.tokens()}};
    return document.dump();
}

TranslationVocabularies TranslationVocabularies::from_json(std::string_view text, const std::string& source) {
    const auto fail = [&](const std::string& problem) {
        return InputError("bad vocabulary file '" + source + "': " + problem);
    };
    nlohmann::json document;
    try {
        document = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& error) {
        throw fail(std::string("the JSON does not parse: ") + error.what());
    }
    if (!document.is_object() || document.value("format", "") != kFormat) {
        throw fail("expected a JSON object with \"format\": \"" + std::string(kFormat) + "\"");
    }
    const auto integer = [&](const char* key) {
        if (!document.contains(key) || !document[key].is_number_integer())
            throw fail("\"" + std::string(key) + "\" must be an integer");
        return document[key].get<std::int64_t>();
    };
    const auto tokens = [&](const char* key) {
        const nlohmann::json& list = document.contains(key) ? document[key] : nlohmann::json();
        if (!list.is_array() || !std::all_of(list.begin(), list.end(), [](const auto& t) { return t.is_string(); })) {
            throw fail("\"" + std::string(key) + "\" must be a list of strings");
        }
        return list.get<std::vector<std::string>>();
    };
    if (const std::int64_t version = integer("tokens_version"); version != kTranslationTokensVersion) {
        throw fail("it was made by tokens version " + std::to_string(version) + ", this nngraph tokenizes by version " +
                   std::to_string(kTranslationTokensVersion) + "; make it again from the data set");
    }
    const std::int64_t source_length = integer("source_length");
    const std::int64_t target_length = integer("target_length");
    if (source_length < 1 || target_length < 1 || source_length > kMaxSequenceLength ||
        target_length > kMaxSequenceLength) {
        throw fail("\"source_length\" and \"target_length\" must be between 1 and " +
                   std::to_string(kMaxSequenceLength));
    }
    try {
        return {TokenVocabulary(tokens("source"), integer("source_words")),
                TokenVocabulary(tokens("target"), integer("target_words")), source_length, target_length};
    } catch (const InputError& error) {
        throw fail(error.what());
    }
}

void TranslationVocabularies::save(const std::filesystem::path& path) const {
    const std::string text = to_json();
    write_file_atomically(path, [&](std::ostream& out) { out << text << '\n'; });
}

TranslationVocabularies TranslationVocabularies::load(const std::filesystem::path& path) {
    std::string text;
    read_whole_file(path, text);
    return from_json(text, path.string());
}

}  // namespace nngraph
