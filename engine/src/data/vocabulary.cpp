// The tokenizer, front padding and the vocabulary of nngraph/imdb.hpp.
#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "data/text_file.hpp"
#include "nngraph/error.hpp"
#include "nngraph/imdb.hpp"
#include "nngraph/io_atomic_file.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph {

namespace {

constexpr std::string_view kLineBreak = "<br />";
constexpr std::string_view kVocabularyFormat = "nngraph-imdb-vocabulary";

char lower_ascii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_word_byte(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\''; }

// "<br />" in any letter case, since letters are lower-cased before the replacement.
bool line_break_at(std::string_view text, std::size_t position) {
    if (text.size() - position < kLineBreak.size()) return false;
    for (std::size_t i = 0; i < kLineBreak.size(); ++i) {
        if (lower_ascii(text[position + i]) != kLineBreak[i]) return false;
    }
    return true;
}

}  // namespace

void Vocabulary::check_sizes(std::int64_t num_words, std::int64_t maxlen) {
    if (num_words < kFirstWordId || num_words > std::numeric_limits<std::int32_t>::max()) {
        throw InputError("num_words must be between 3 (ids 0, 1 and 2 are reserved) and 2147483647, not " +
                         std::to_string(num_words));
    }
    if (maxlen < 1 || maxlen > kMaxSequenceLength) {
        throw InputError("maxlen must be between 1 and " + std::to_string(kMaxSequenceLength) + ", not " +
                         std::to_string(maxlen));
    }
}

bool Tokenizer::next(std::string_view& word) {
    word_.clear();
    while (position_ < text_.size()) {
        // The line break is a separator like its '<'; skipping it whole keeps "br" out of the words.
        if (text_[position_] == '<' && line_break_at(text_, position_)) {
            position_ += kLineBreak.size();
            if (word_.empty()) continue;
            break;
        }
        const char c = lower_ascii(text_[position_++]);
        if (is_word_byte(c)) {
            word_ += c;
        } else if (!word_.empty()) {
            break;
        }
    }
    word = word_;
    return !word_.empty();
}

std::vector<std::string> tokenize(std::string_view text) {
    std::vector<std::string> words;
    Tokenizer tokenizer(text);
    for (std::string_view word; tokenizer.next(word);) words.emplace_back(word);
    return words;
}

void pad_front(std::span<const std::int32_t> ids, std::span<std::int32_t> row) {
    const std::size_t kept = std::min(ids.size(), row.size());
    const std::size_t padding = row.size() - kept;
    std::fill_n(row.begin(), padding, Vocabulary::kPadId);
    std::copy(ids.end() - static_cast<std::ptrdiff_t>(kept), ids.end(),
              row.begin() + static_cast<std::ptrdiff_t>(padding));
}

Vocabulary::Vocabulary(std::vector<std::string> ranked_words, std::int64_t num_words, std::int64_t maxlen)
    : num_words_(num_words), maxlen_(maxlen), words_(std::move(ranked_words)) {
    check_sizes(num_words, maxlen);
    if (static_cast<std::int64_t>(words_.size()) > num_words - kFirstWordId) {
        words_.resize(static_cast<std::size_t>(num_words - kFirstWordId));
    }
    ids_.reserve(words_.size());
    for (std::size_t i = 0; i < words_.size(); ++i) {
        if (!ids_.emplace(words_[i], kFirstWordId + static_cast<std::int32_t>(i)).second) {
            throw InputError("the vocabulary lists the word '" + words_[i] + "' twice");
        }
    }
}

Vocabulary Vocabulary::from_counts(std::span<const WordCount> counts, std::int64_t num_words, std::int64_t maxlen) {
    check_sizes(num_words, maxlen);
    std::vector<WordCount> ranked;
    for (const WordCount& entry : counts) {
        if (entry.count > 0) ranked.push_back(entry);
    }
    const auto wanted = static_cast<std::size_t>(num_words - kFirstWordId);
    const auto kept = std::min(ranked.size(), wanted);
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(kept), ranked.end(),
                      [](const WordCount& a, const WordCount& b) {
                          return a.count != b.count ? a.count > b.count : a.word < b.word;
                      });
    std::vector<std::string> words;
    words.reserve(kept);
    for (std::size_t i = 0; i < kept; ++i) words.emplace_back(ranked[i].word);
    return Vocabulary(std::move(words), num_words, maxlen);
}

std::int32_t Vocabulary::id_of(std::string_view word) const {
    const auto found = ids_.find(word);
    return found == ids_.end() ? kOutOfVocabularyId : found->second;
}

std::vector<std::int32_t> Vocabulary::encode(std::string_view text) const {
    std::vector<std::int32_t> sequence = {kStartId};
    Tokenizer tokenizer(text);
    for (std::string_view word; tokenizer.next(word);) sequence.push_back(id_of(word));
    std::vector<std::int32_t> row(static_cast<std::size_t>(maxlen_));
    pad_front(sequence, row);
    return row;
}

std::string Vocabulary::to_json() const {
    const nlohmann::ordered_json document = {{"format", kVocabularyFormat},
                                             {"tokenizer_version", kImdbTokenizerVersion},
                                             {"num_words", num_words_},
                                             {"maxlen", maxlen_},
                                             {"words", words_}};
    return document.dump();
}

Vocabulary Vocabulary::from_json(std::string_view text, const std::string& source) {
    const auto fail = [&](const std::string& problem) -> InputError {
        return InputError("bad vocabulary file '" + source + "': " + problem);
    };
    nlohmann::json document;
    try {
        document = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& error) {  // a syntax error, or a number out of range
        throw fail(std::string("the JSON does not parse: ") + error.what());
    }
    const auto format = document.find("format");  // end() for anything but an object
    if (format == document.end() || !format->is_string() || format->get<std::string>() != kVocabularyFormat) {
        throw fail("expected a JSON object with \"format\": \"" + std::string(kVocabularyFormat) + "\"");
    }
    const auto integer = [&](const char* key) {
        if (!document.contains(key) || !document[key].is_number_integer())
            throw fail("\"" + std::string(key) + "\" must be an integer");
        return document[key].get<std::int64_t>();
    };
    if (const std::int64_t version = integer("tokenizer_version"); version != kImdbTokenizerVersion) {
        throw fail("it was made by tokenizer version " + std::to_string(version) +
                   ", this nngraph tokenizes by version " + std::to_string(kImdbTokenizerVersion) +
                   "; make it again from the data set");
    }
    const std::int64_t num_words = integer("num_words");
    const std::int64_t maxlen = integer("maxlen");
    const nlohmann::json& words = document.contains("words") ? document["words"] : nlohmann::json();
    if (!words.is_array() || !std::all_of(words.begin(), words.end(), [](const auto& w) { return w.is_string(); })) {
        throw fail("\"words\" must be a list of strings");
    }
    try {
        return Vocabulary(words.get<std::vector<std::string>>(), num_words, maxlen);
    } catch (const InputError& error) {
        throw fail(error.what());
    }
}

void Vocabulary::save(const std::filesystem::path& path) const {
    const std::string text = to_json();
    write_file_atomically(path, [&](std::ostream& out) { out << text << '\n'; });
}

Vocabulary Vocabulary::load(const std::filesystem::path& path) {
    std::string text;
    read_whole_file(path, text);
    return from_json(text, path.string());
}

}  // namespace nngraph
