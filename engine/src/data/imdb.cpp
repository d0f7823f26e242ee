// load_imdb: reading, encoding and caching the IMDB data set.
#include "nngraph/imdb.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <system_error>

#include "data/imdb_reader.hpp"
#include "nngraph/error.hpp"
#include "nngraph/safetensors.hpp"

namespace nngraph {
namespace fs = std::filesystem;

namespace {

// ---- Reading and encoding ---------------------------------------------------------------------

// Every distinct word seen, under a dense index, with how often it occurs in the training split.
class WordTable {
public:
    std::uint32_t index_of(std::string_view word) {
        if (const auto found = indices_.find(word); found != indices_.end()) return found->second;
        const auto index = static_cast<std::uint32_t>(counts_.size());
        const auto inserted = indices_.emplace(std::string(word), index).first;
        counts_.push_back({inserted->first, 0});  // the keys of an unordered_map never move
        return index;
    }
    void count_in_training(std::uint32_t index) { ++counts_[index].count; }

    std::size_t size() const { return counts_.size(); }
    std::string_view word(std::uint32_t index) const { return counts_[index].word; }
    const std::vector<Vocabulary::WordCount>& training_counts() const { return counts_; }

private:
    std::unordered_map<std::string, std::uint32_t, StringHash, std::equal_to<>> indices_;
    std::vector<Vocabulary::WordCount> counts_;
};

// A review reduced to what its row needs. Front truncation keeps the last maxlen ids of
// [start, words...], so only the last maxlen words can matter, and the start id only when the
// review has fewer words than that.
struct ReadReview {
    std::string relative_path;
    bool is_test = false;
    bool is_positive = false;
    std::vector<std::uint32_t> last_words;  // WordTable indices
    bool keeps_start = false;
};

struct ReadReviews {
    WordTable words;
    std::vector<ReadReview> reviews;
};

ReadReviews read_reviews(const fs::path& path, std::size_t maxlen) {
    ReadReviews result;
    std::vector<std::uint32_t> review_words;
    read_imdb_reviews(path, [&](const RawReview& raw) {
        review_words.clear();
        Tokenizer tokenizer(raw.text);
        for (std::string_view word; tokenizer.next(word);) {
            const std::uint32_t index = result.words.index_of(word);
            if (!raw.is_test) result.words.count_in_training(index);
            review_words.push_back(index);
        }
        const std::size_t kept = std::min(review_words.size(), maxlen);
        result.reviews.push_back(
            ReadReview{std::string(raw.relative_path),
                       raw.is_test,
                       raw.is_positive,
                       {review_words.end() - static_cast<std::ptrdiff_t>(kept), review_words.end()},
                       review_words.size() < maxlen});
    });
    // Paths, not the folder's or archive's own order, so that both give the same tensors.
    std::sort(result.reviews.begin(), result.reviews.end(),
              [](const ReadReview& a, const ReadReview& b) { return a.relative_path < b.relative_path; });
    return result;
}

ImdbSplit encode_split(const std::vector<ReadReview>& reviews, bool test_split,
                       const std::vector<std::int32_t>& word_ids, std::int64_t maxlen) {
    const auto count = static_cast<std::int64_t>(
        std::count_if(reviews.begin(), reviews.end(), [&](const ReadReview& r) { return r.is_test == test_split; }));
    ImdbSplit split{Tensor(DType::I32, {count, maxlen}), Tensor(DType::F32, {count, 1})};
    std::int32_t* tokens = split.tokens.data<std::int32_t>();
    float* labels = split.labels.data<float>();
    std::vector<std::int32_t> sequence;
    for (const ReadReview& review : reviews) {
        if (review.is_test != test_split) continue;
        sequence.clear();
        if (review.keeps_start) sequence.push_back(Vocabulary::kStartId);
        for (std::uint32_t index : review.last_words) sequence.push_back(word_ids[index]);
        pad_front(sequence, {tokens, static_cast<std::size_t>(maxlen)});
        tokens += maxlen;
        *labels++ = review.is_positive ? 1.0f : 0.0f;
    }
    return split;
}

ImdbData read_and_encode(const ImdbOptions& options) {
    const ReadReviews read = read_reviews(options.path, static_cast<std::size_t>(options.maxlen));
    Vocabulary vocabulary = Vocabulary::from_counts(read.words.training_counts(), options.num_words, options.maxlen);
    std::vector<std::int32_t> word_ids(read.words.size());
    for (std::uint32_t i = 0; i < word_ids.size(); ++i) word_ids[i] = vocabulary.id_of(read.words.word(i));
    ImdbSplit train = encode_split(read.reviews, false, word_ids, options.maxlen);
    ImdbSplit test = encode_split(read.reviews, true, word_ids, options.maxlen);
    return ImdbData{std::move(train), std::move(test), std::move(vocabulary), false, {}, {}};
}

// ---- The cache ----------------------------------------------------------------------------------

constexpr const char* kKeyMetadata = "nngraph.imdb.cache_key";
constexpr const char* kVocabularyMetadata = "nngraph.imdb.vocabulary";

// One cache file per data path and options, holding the key (everything the tensors depend on) it
// was made for; touching the data changes the key, and the file is overwritten rather than joined
// by a new one.
struct CacheEntry {
    fs::path file;
    std::string key;
};

CacheEntry cache_entry_for(const fs::path& cache_dir, const ImdbOptions& options) {
    const std::string contents = imdb_data_fingerprint(options.path);  // first: it reports a missing path
    const std::string settings = "nngraph imdb cache; tokenizer version " + std::to_string(kImdbTokenizerVersion) +
                                 "; num_words " + std::to_string(options.num_words) + "; maxlen " +
                                 std::to_string(options.maxlen) + "; data " + fs::canonical(options.path).string();
    std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a
    for (unsigned char c : settings) hash = (hash ^ c) * 0x100000001b3ULL;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    return {cache_dir / ("imdb-" + std::string(hex) + ".safetensors"), settings + "; " + contents};
}

Tensor take_tensor(TensorFile& file, const std::string& name) {
    const auto found = file.tensors.find(name);
    if (found == file.tensors.end()) throw RunError("it has no tensor '" + name + "'");
    return std::move(found->second);
}

// The split stored as "<split>.tokens" and "<split>.labels", checked against the shapes asked for.
ImdbSplit take_cached_split(TensorFile& file, const std::string& split_name, std::int64_t maxlen) {
    ImdbSplit split{take_tensor(file, split_name + ".tokens"), take_tensor(file, split_name + ".labels")};
    const Shape& tokens = split.tokens.shape();
    const Shape& labels = split.labels.shape();
    const bool fits = split.tokens.dtype() == DType::I32 && split.labels.dtype() == DType::F32 && tokens.size() == 2 &&
                      tokens[1] == maxlen && labels == Shape{tokens[0], 1};
    if (!fits) {
        throw RunError("its " + split_name + " tokens " + shape_to_string(tokens) + " and labels " +
                       shape_to_string(labels) + " do not fit maxlen " + std::to_string(maxlen));
    }
    return split;
}

// The cached data, or nothing (and why, in `note`, when a file was there but unusable).
std::optional<ImdbData> load_cache(const CacheEntry& cache, std::int64_t maxlen, std::string& note) {
    const fs::path& file = cache.file;
    std::error_code ignored;
    if (!fs::exists(file, ignored)) return std::nullopt;
    try {
        TensorFile cached = read_safetensors(file);
        if (cached.metadata[kKeyMetadata] != cache.key) return std::nullopt;  // stale: the data changed
        Vocabulary vocabulary = Vocabulary::from_json(cached.metadata[kVocabularyMetadata], file.string());
        ImdbSplit train = take_cached_split(cached, "train", maxlen);
        ImdbSplit test = take_cached_split(cached, "test", maxlen);
        return ImdbData{std::move(train), std::move(test), std::move(vocabulary), true, file, {}};
    } catch (const Error& error) {
        note = "the cache file '" + file.string() + "' was unusable and is rebuilt: " + error.what();
        return std::nullopt;
    }
}

// Never fatal: without a cache the next run only reads the reviews again.
void save_cache(const CacheEntry& cache, ImdbData& data, std::string& note) {
    const fs::path& file = cache.file;
    TensorFile cached;
    for (const auto& [split_name, split] : {std::pair{"train", &data.train}, std::pair{"test", &data.test}}) {
        cached.tensors.emplace(std::string(split_name) + ".tokens", split->tokens);
        cached.tensors.emplace(std::string(split_name) + ".labels", split->labels);
    }
    cached.metadata[kKeyMetadata] = cache.key;
    cached.metadata[kVocabularyMetadata] = data.vocabulary.to_json();
    try {
        fs::create_directories(file.parent_path());
        write_safetensors(file, cached);
        data.cache_file = file;
    } catch (const std::exception& error) {
        if (!note.empty()) note += "; ";
        note += "the cache file '" + file.string() + "' could not be written: " + error.what();
    }
}

}  // namespace

fs::path default_imdb_cache_dir() {
    const auto variable = [](const char* name) -> std::string {
        const char* value = std::getenv(name);
        return value ? value : "";
    };
    if (const std::string dir = variable("NNGRAPH_CACHE_DIR"); !dir.empty()) return dir;
    if (const std::string dir = variable("XDG_CACHE_HOME"); !dir.empty()) return fs::path(dir) / "nngraph";
    if (const std::string home = variable("HOME"); !home.empty()) return fs::path(home) / ".cache" / "nngraph";
    return {};
}

ImdbData load_imdb(const ImdbOptions& options) {
    Vocabulary::check_sizes(options.num_words, options.maxlen);
    const fs::path cache_dir = options.cache_dir.empty() ? default_imdb_cache_dir() : options.cache_dir;
    if (!options.use_cache || cache_dir.empty()) {
        ImdbData data = read_and_encode(options);
        if (options.use_cache) data.cache_note = "no cache directory: set NNGRAPH_CACHE_DIR, XDG_CACHE_HOME or HOME";
        return data;
    }
    const CacheEntry cache = cache_entry_for(cache_dir, options);
    std::string note;
    if (std::optional<ImdbData> cached = load_cache(cache, options.maxlen, note)) return std::move(*cached);
    ImdbData data = read_and_encode(options);
    save_cache(cache, data, note);
    data.cache_note = std::move(note);
    return data;
}

}  // namespace nngraph
