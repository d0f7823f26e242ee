// The IMDB movie-review data set (Maas et al. 2011) in the aclImdb layout, and the tokenizer and
// vocabulary that turn reviews into the integer sequences the models read (SPEC section 5).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nngraph/tensor.hpp"

namespace nngraph {

// Changes whenever tokenizing or encoding changes, so that caches and saved vocabularies made by
// an older rule are rebuilt or refused instead of silently giving other ids.
inline constexpr int kImdbTokenizerVersion = 1;

// Splits review text into words: ASCII letters lower-cased, then "<br />" read as a space, then the
// words are the maximal runs of [a-z0-9']. Every other byte (punctuation, UTF-8 sequences) separates.
//
//   Tokenizer words(text);
//   for (std::string_view word; words.next(word);) ...
class Tokenizer {
public:
    explicit Tokenizer(std::string_view text) : text_(text) {}
    // The next word, or false at the end. `word` stays valid until the next call.
    bool next(std::string_view& word);

private:
    std::string_view text_;
    std::size_t position_ = 0;
    std::string word_;
};

// All words of `text`, in order.
std::vector<std::string> tokenize(std::string_view text);

// Keras's pad_sequences with its defaults (padding and truncating 'pre'): the last row.size() ids
// of `ids`, preceded by as many zeros as needed.
void pad_front(std::span<const std::int32_t> ids, std::span<std::int32_t> row);

// Lets an unordered_map keyed by std::string be searched with a string_view (with std::equal_to<>),
// without building a std::string for every word looked up.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

// Word ids: 0 pads, 1 starts a review, 2 stands for a word outside the vocabulary, and the words,
// most frequent first, take 3, 4, ... up to num_words - 1.
class Vocabulary {
public:
    static constexpr std::int32_t kPadId = 0;
    static constexpr std::int32_t kStartId = 1;
    static constexpr std::int32_t kOutOfVocabularyId = 2;
    static constexpr std::int32_t kFirstWordId = 3;

    // `ranked_words` most frequent first; only the first num_words - 3 are kept. Raises InputError
    // for num_words below 3, maxlen below 1, or a word given twice.
    Vocabulary(std::vector<std::string> ranked_words, std::int64_t num_words, std::int64_t maxlen);

    struct WordCount {
        std::string_view word;
        std::int64_t count = 0;
    };
    // Raises InputError unless 3 <= num_words < 2^31 and maxlen >= 1.
    static void check_sizes(std::int64_t num_words, std::int64_t maxlen);

    // Ranks words by count, highest first, ties broken alphabetically; words counted 0 are left out.
    static Vocabulary from_counts(std::span<const WordCount> counts, std::int64_t num_words, std::int64_t maxlen);

    std::int64_t num_words() const { return num_words_; }
    std::int64_t maxlen() const { return maxlen_; }
    // The word with id kFirstWordId + i is words()[i].
    const std::vector<std::string>& words() const { return words_; }

    // kOutOfVocabularyId for a word the vocabulary does not hold.
    std::int32_t id_of(std::string_view word) const;
    // The start id, then the id of every word of `text`, padded and truncated at the front to maxlen.
    std::vector<std::int32_t> encode(std::string_view text) const;

    // A small JSON file: {"format", "tokenizer_version", "num_words", "maxlen", "words"}, written
    // atomically. load raises InputError naming the file for anything it cannot use.
    void save(const std::filesystem::path& path) const;
    static Vocabulary load(const std::filesystem::path& path);
    std::string to_json() const;
    // `source` names where the text came from, for error messages.
    static Vocabulary from_json(std::string_view text, const std::string& source);

private:
    std::int64_t num_words_;
    std::int64_t maxlen_;
    std::vector<std::string> words_;
    std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>> ids_;
};

struct ImdbOptions {
    // The aclImdb folder (holding train/ and test/, or holding one folder that does), or an archive
    // of it such as aclImdb_v1.tar.gz.
    std::filesystem::path path;
    std::int64_t num_words = 5000;
    std::int64_t maxlen = 200;
    // Where encoded data sets are cached; empty means default_imdb_cache_dir().
    std::filesystem::path cache_dir;
    bool use_cache = true;
};

// One split: tokens (N, maxlen) I32 and labels (N, 1) F32, 1 for a positive review, 0 for a negative
// one, in the order of the reviews' paths.
struct ImdbSplit {
    Tensor tokens;
    Tensor labels;
    std::int64_t size() const { return tokens.empty() ? 0 : tokens.dim(0); }
};

struct ImdbData {
    ImdbSplit train;
    ImdbSplit test;
    // Ranked on the training split.
    Vocabulary vocabulary;
    // True when the splits came from the cache rather than from reading the reviews.
    bool from_cache = false;
    // The cache file used or written; empty when caching was off or impossible.
    std::filesystem::path cache_file;
    // Why the cache could not be read or written (it is never fatal), for the caller to show; empty
    // when all went well.
    std::string cache_note;
};

// Reads, tokenizes and encodes both splits, or loads them from the cache when the data path (its
// absolute name, size and modification time), num_words, maxlen and the tokenizer version all match.
// Raises InputError naming the path for a missing path, a folder or archive without the aclImdb
// layout, or an archive that is corrupt, truncated or not an archive at all.
ImdbData load_imdb(const ImdbOptions& options);

// $NNGRAPH_CACHE_DIR, else $XDG_CACHE_HOME/nngraph, else ~/.cache/nngraph; empty when none is set.
std::filesystem::path default_imdb_cache_dir();

}  // namespace nngraph
