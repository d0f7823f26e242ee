#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nngraph/error.hpp"
#include "nngraph/imdb.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using nngraph::ImdbData;
using nngraph::ImdbOptions;
using nngraph::testing::read_bytes;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;
using Ids = std::vector<std::int32_t>;

namespace {

// Files of a tiny aclImdb tree, by path below its top folder, including files a reader must skip.
const std::map<std::string, std::string> kTinyTree = {
    {"README", "Large Movie Review Dataset v1.0"},
    {"imdb.vocab", "the\nand\n"},
    {"train/labeledBow.feat", "0:9 1:1"},
    {"train/unsup/0_0.txt", "Unlabeled words never counted: great great great great great"},
    {"train/pos/1_9.txt", "A great movie. Great acting!<br /><br />Loved it."},
    {"train/pos/2_8.txt", "great fun, great cast"},
    {"train/neg/1_1.txt", "A bad movie; bad acting."},
    {"train/neg/3_2.txt", "Boring. Bad."},
    {"test/pos/1_10.txt", "Great!"},
    {"test/neg/1_3.txt", "bad, unseen words here"},
};

// Training counts: great 4, bad 3, then a, acting, movie 2 each, then boring, cast, fun, it, loved 1
// each, so with num_words 8: great 3, bad 4, a 5, acting 6, movie 7, the rest 2. Rows in path order.
const Ids kTrainTokens = {
    1, 5, 4, 7, 4, 6,  // train/neg/1_1.txt: exactly maxlen ids
    0, 0, 0, 1, 2, 4,  // train/neg/3_2.txt
    3, 7, 3, 6, 2, 2,  // train/pos/1_9.txt: [1, 5, 3, 7, 3, 6, 2, 2] truncated at the front
    0, 1, 3, 2, 3, 2,  // train/pos/2_8.txt
};
const std::vector<float> kTrainLabels = {0, 0, 1, 1};
const Ids kTestTokens = {
    0, 1, 4, 2, 2, 2,  // test/neg/1_3.txt
    0, 0, 0, 0, 1, 3,  // test/pos/1_10.txt
};
const std::vector<float> kTestLabels = {0, 1};

void write_tree(const fs::path& top, const std::map<std::string, std::string>& files) {
    for (const auto& [path, text] : files) write_bytes(top / path, text);
}

// A .tar.gz holding `files` under `top` ("" for no top folder), in reverse path order so the reader
// cannot rely on the archive's order.
void write_tar_gz(const fs::path& archive_path, const std::string& top,
                  const std::map<std::string, std::string>& files) {
    archive* out = archive_write_new();
    REQUIRE(archive_write_add_filter_gzip(out) == ARCHIVE_OK);
    REQUIRE(archive_write_set_format_pax_restricted(out) == ARCHIVE_OK);
    REQUIRE(archive_write_open_filename(out, archive_path.c_str()) == ARCHIVE_OK);
    for (auto file = files.rbegin(); file != files.rend(); ++file) {
        archive_entry* entry = archive_entry_new();
        archive_entry_set_pathname(entry, (top + file->first).c_str());
        archive_entry_set_size(entry, static_cast<la_int64_t>(file->second.size()));
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0644);
        REQUIRE(archive_write_header(out, entry) == ARCHIVE_OK);
        REQUIRE(archive_write_data(out, file->second.data(), file->second.size()) ==
                static_cast<la_ssize_t>(file->second.size()));
        archive_entry_free(entry);
    }
    REQUIRE(archive_write_close(out) == ARCHIVE_OK);
    archive_write_free(out);
}

template <class T>
std::vector<T> values_of(const nngraph::Tensor& tensor) {
    const auto values = tensor.values<T>();
    return {values.begin(), values.end()};
}

void check_tiny_tree_data(const ImdbData& data) {
    REQUIRE(data.train.tokens.shape() == nngraph::Shape{4, 6});
    REQUIRE(data.train.labels.shape() == nngraph::Shape{4, 1});
    REQUIRE(data.test.tokens.shape() == nngraph::Shape{2, 6});
    CHECK(values_of<std::int32_t>(data.train.tokens) == kTrainTokens);
    CHECK(values_of<float>(data.train.labels) == kTrainLabels);
    CHECK(values_of<std::int32_t>(data.test.tokens) == kTestTokens);
    CHECK(values_of<float>(data.test.labels) == kTestLabels);
    CHECK(data.vocabulary.words() == std::vector<std::string>{"great", "bad", "a", "acting", "movie"});
}

ImdbOptions tiny_options(const fs::path& path, const TempDir& dir) {
    ImdbOptions options;
    options.path = path;
    options.num_words = 8;
    options.maxlen = 6;
    options.cache_dir = dir / "cache";
    return options;
}

std::string load_error(const ImdbOptions& options) {
    try {
        nngraph::load_imdb(options);
    } catch (const nngraph::InputError& error) {
        return error.what();
    }
    return "";
}

}  // namespace

TEST_CASE("IMDB data reads the same from a folder, its parent and archives under any top folder") {
    TempDir dir;
    write_tree(dir / "unpacked" / "aclImdb", kTinyTree);
    write_tar_gz(dir / "renamed.tar.gz", "imdb_copy/", kTinyTree);
    write_tar_gz(dir / "flat.tar.gz", "./", kTinyTree);
    for (const fs::path& path :
         {dir / "unpacked" / "aclImdb", dir / "unpacked", dir / "renamed.tar.gz", dir / "flat.tar.gz"}) {
        CAPTURE(path);
        ImdbOptions options = tiny_options(path, dir);
        options.use_cache = false;
        const ImdbData data = nngraph::load_imdb(options);
        check_tiny_tree_data(data);
        CHECK_FALSE(data.from_cache);
        CHECK(data.cache_file.empty());
    }
    CHECK_FALSE(fs::exists(dir / "cache"));
}

TEST_CASE("IMDB data errors name the path and what was expected") {
    TempDir dir;
    SUBCASE("a missing path") {
        const std::string message = load_error(tiny_options(dir / "nowhere", dir));
        CHECK(message.find("nowhere") != std::string::npos);
        CHECK(message.find("does not exist") != std::string::npos);
    }
    SUBCASE("a folder without the layout") {
        write_bytes(dir / "empty" / "notes.txt", "nothing here");
        const std::string message = load_error(tiny_options(dir / "empty", dir));
        CHECK(message.find("expected the aclImdb layout: train/pos, train/neg, test/pos, test/neg") !=
              std::string::npos);
        CHECK(message.find("empty") != std::string::npos);
    }
    SUBCASE("a folder missing one review folder") {
        std::map<std::string, std::string> partial = kTinyTree;
        partial.erase("test/neg/1_3.txt");
        write_tree(dir / "partial", partial);
        CHECK(load_error(tiny_options(dir / "partial", dir)).find("test/neg' is missing") != std::string::npos);
        write_tar_gz(dir / "partial.tar.gz", "aclImdb/", partial);
        const std::string message = load_error(tiny_options(dir / "partial.tar.gz", dir));
        CHECK(message.find("partial.tar.gz") != std::string::npos);
        CHECK(message.find("found no reviews in test/neg") != std::string::npos);
    }
    SUBCASE("an archive holding two trees") {
        std::map<std::string, std::string> doubled;
        for (const auto& [path, text] : kTinyTree) {
            doubled["a/" + path] = text;
            doubled["b/" + path] = text;
        }
        write_tar_gz(dir / "doubled.tar.gz", "", doubled);
        CHECK(load_error(tiny_options(dir / "doubled.tar.gz", dir)).find("holds two trees") != std::string::npos);
    }
    SUBCASE("a file that is not an archive") {
        write_bytes(dir / "reviews.txt", "This is a review, not an archive.\n");
        const std::string message = load_error(tiny_options(dir / "reviews.txt", dir));
        CHECK(message.find("reviews.txt") != std::string::npos);
        CHECK(message.find("as an archive (expected a folder or a .tar.gz") != std::string::npos);
    }
    SUBCASE("a truncated or corrupt archive") {
        // Enough incompressible text that the gzip stream is far longer than its first tar header.
        std::map<std::string, std::string> large = kTinyTree;
        std::string noise;
        for (std::uint64_t i = 0, x = 12345; i < 200000; ++i) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            noise += static_cast<char>('a' + (x >> 59));
        }
        large["train/pos/9_9.txt"] = noise;
        write_tar_gz(dir / "whole.tar.gz", "aclImdb/", large);
        const std::string whole = read_bytes(dir / "whole.tar.gz");

        write_bytes(dir / "truncated.tar.gz", whole.substr(0, whole.size() / 2));
        std::string message = load_error(tiny_options(dir / "truncated.tar.gz", dir));
        CHECK(message.find("truncated.tar.gz") != std::string::npos);
        CHECK(message.find("is corrupt or truncated") != std::string::npos);

        std::string corrupt = whole;
        for (std::size_t i = corrupt.size() / 3; i < corrupt.size() / 3 + 64; ++i)
            corrupt[i] = static_cast<char>(~corrupt[i]);
        write_bytes(dir / "corrupt.tar.gz", corrupt);
        message = load_error(tiny_options(dir / "corrupt.tar.gz", dir));
        CHECK(message.find("corrupt.tar.gz") != std::string::npos);
        CHECK(message.find("is corrupt or truncated") != std::string::npos);
    }
    SUBCASE("options out of range") {
        write_tree(dir / "aclImdb", kTinyTree);
        ImdbOptions options = tiny_options(dir / "aclImdb", dir);
        options.num_words = 2;
        CHECK(load_error(options).find("num_words must be between 3") != std::string::npos);
    }
}

TEST_CASE("the IMDB cache is reused, and rebuilt when options or data change or it is corrupt") {
    TempDir dir;
    write_tar_gz(dir / "imdb.tar.gz", "aclImdb/", kTinyTree);
    ImdbOptions options = tiny_options(dir / "imdb.tar.gz", dir);

    const ImdbData first = nngraph::load_imdb(options);
    CHECK_FALSE(first.from_cache);
    CHECK(first.cache_note.empty());
    REQUIRE(fs::exists(first.cache_file));
    CHECK(first.cache_file.parent_path() == options.cache_dir);

    const ImdbData second = nngraph::load_imdb(options);
    CHECK(second.from_cache);
    CHECK(second.cache_file == first.cache_file);
    check_tiny_tree_data(second);
    CHECK(second.vocabulary.num_words() == 8);
    CHECK(second.vocabulary.maxlen() == 6);

    SUBCASE("num_words and maxlen are part of the key") {
        options.num_words = 6;
        const ImdbData fewer_words = nngraph::load_imdb(options);
        CHECK_FALSE(fewer_words.from_cache);
        CHECK(fewer_words.vocabulary.words().size() == 3);
        options.maxlen = 4;
        const ImdbData shorter = nngraph::load_imdb(options);
        CHECK_FALSE(shorter.from_cache);
        CHECK(shorter.train.tokens.shape() == nngraph::Shape{4, 4});
        CHECK(nngraph::load_imdb(options).from_cache);
    }
    SUBCASE("touching the data rebuilds the same cache file") {
        fs::last_write_time(options.path, fs::last_write_time(options.path) + std::chrono::seconds(5));
        const ImdbData rebuilt = nngraph::load_imdb(options);
        CHECK_FALSE(rebuilt.from_cache);
        CHECK(rebuilt.cache_note.empty());
        CHECK(rebuilt.cache_file == first.cache_file);
        CHECK(nngraph::load_imdb(options).from_cache);
        CHECK(std::distance(fs::directory_iterator(options.cache_dir), fs::directory_iterator()) == 1);
    }
    SUBCASE("a corrupt cache file is rebuilt, not fatal") {
        write_bytes(first.cache_file, "not a safetensors file");
        const ImdbData rebuilt = nngraph::load_imdb(options);
        CHECK_FALSE(rebuilt.from_cache);
        CHECK(rebuilt.cache_note.find("unusable and is rebuilt") != std::string::npos);
        check_tiny_tree_data(rebuilt);
        CHECK(nngraph::load_imdb(options).from_cache);
    }
    SUBCASE("a cache directory that cannot be written is noted, not fatal") {
        write_bytes(dir / "blocked", "a file where the cache folder should be");
        options.cache_dir = dir / "blocked";
        const ImdbData data = nngraph::load_imdb(options);
        CHECK_FALSE(data.from_cache);
        CHECK(data.cache_file.empty());
        CHECK(data.cache_note.find("could not be written") != std::string::npos);
        check_tiny_tree_data(data);
    }
}

TEST_CASE("the IMDB cache of a folder notices a changed review") {
    TempDir dir;
    write_tree(dir / "aclImdb", kTinyTree);
    const ImdbOptions options = tiny_options(dir / "aclImdb", dir);
    CHECK_FALSE(nngraph::load_imdb(options).from_cache);
    CHECK(nngraph::load_imdb(options).from_cache);
    write_bytes(dir / "aclImdb" / "test" / "pos" / "1_10.txt", "Great! Great!");
    const fs::path changed = dir / "aclImdb" / "test" / "pos" / "1_10.txt";
    fs::last_write_time(changed, fs::last_write_time(changed) + std::chrono::seconds(5));
    const ImdbData data = nngraph::load_imdb(options);
    CHECK_FALSE(data.from_cache);
    CHECK(values_of<std::int32_t>(data.test.tokens.slice_rows(1, 2)) == Ids{0, 0, 0, 1, 3, 3});
}

TEST_CASE("the default IMDB cache directory follows NNGRAPH_CACHE_DIR, XDG_CACHE_HOME, then HOME") {
    const auto saved = [](const char* name) -> std::optional<std::string> {
        const char* value = std::getenv(name);
        return value ? std::optional<std::string>(value) : std::nullopt;
    };
    const auto nngraph_dir = saved("NNGRAPH_CACHE_DIR");
    const auto xdg_dir = saved("XDG_CACHE_HOME");
    const auto home = saved("HOME");

    ::setenv("NNGRAPH_CACHE_DIR", "/tmp/nngraph-cache", 1);
    ::setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
    ::setenv("HOME", "/home/someone", 1);
    CHECK(nngraph::default_imdb_cache_dir() == fs::path("/tmp/nngraph-cache"));
    ::unsetenv("NNGRAPH_CACHE_DIR");
    CHECK(nngraph::default_imdb_cache_dir() == fs::path("/tmp/xdg/nngraph"));
    ::setenv("XDG_CACHE_HOME", "", 1);
    CHECK(nngraph::default_imdb_cache_dir() == fs::path("/home/someone/.cache/nngraph"));

    const auto restore = [](const char* name, const std::optional<std::string>& value) {
        if (value)
            ::setenv(name, value->c_str(), 1);
        else
            ::unsetenv(name);
    };
    restore("NNGRAPH_CACHE_DIR", nngraph_dir);
    restore("XDG_CACHE_HOME", xdg_dir);
    restore("HOME", home);
}

TEST_CASE("the real IMDB archive: 25,000 reviews a split, half positive, 'the', 'and', 'a' most frequent") {
    const fs::path archive = fs::path(NNGRAPH_SOURCE_DIR) / ".." / "shared" / "data" / "aclImdb_labeled.tar.gz";
    if (!fs::exists(archive)) {
        MESSAGE("skipped: no " << archive);
        return;
    }
    TempDir dir;
    ImdbOptions options;
    options.path = archive;
    options.cache_dir = dir / "cache";
    const ImdbData data = nngraph::load_imdb(options);
    for (const nngraph::ImdbSplit* split : {&data.train, &data.test}) {
        REQUIRE(split->tokens.shape() == nngraph::Shape{25000, 200});
        REQUIRE(split->labels.shape() == nngraph::Shape{25000, 1});
        double positives = 0;
        for (float label : split->labels.values<float>()) positives += label;
        CHECK(positives == 12500);
        // Every row: padding, then the start id, then words; or, when truncated, words only.
        const auto tokens = split->tokens.values<std::int32_t>();
        int malformed_rows = 0;
        for (std::size_t row = 0; row < 25000; ++row) {
            const std::int32_t* ids = &tokens[row * 200];
            std::size_t column = 0;
            while (column < 200 && ids[column] == 0) ++column;
            const bool starts_right = column == 0 || ids[column] == 1;
            if (ids[column] == 1) ++column;
            const bool words_right =
                std::all_of(ids + column, ids + 200, [](std::int32_t id) { return id >= 2 && id < 5000; });
            if (!starts_right || !words_right) ++malformed_rows;
        }
        CHECK(malformed_rows == 0);
    }
    const auto& words = data.vocabulary.words();
    REQUIRE(words.size() == 4997);
    CHECK(std::vector<std::string>(words.begin(), words.begin() + 3) == std::vector<std::string>{"the", "and", "a"});

    const ImdbData cached = nngraph::load_imdb(options);
    CHECK(cached.from_cache);
    CHECK(values_of<std::int32_t>(cached.test.tokens) == values_of<std::int32_t>(data.test.tokens));
    CHECK(cached.vocabulary.words() == words);
}
