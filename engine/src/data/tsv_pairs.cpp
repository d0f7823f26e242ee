#include "data/tsv_pairs.hpp"

#include <archive.h>

#include <array>
#include <memory>
#include <string_view>
#include <unordered_map>

#include <unicode/utf8.h>

#include "nngraph/error.hpp"

namespace nngraph {
namespace fs = std::filesystem;

namespace {

struct FreeArchive {
    void operator()(archive* a) const { archive_read_free(a); }
};

// The bytes of `path`, decompressed when it is gzip (libarchive's raw format passes plain files through).
std::string read_decompressed(const fs::path& path) {
    if (!fs::is_regular_file(path))
        throw InputError("'" + path.string() + "' is not a file (expected a .tsv or .tsv.gz of translation pairs)");
    std::unique_ptr<archive, FreeArchive> reader(archive_read_new());
    if (!reader) throw RunError("libarchive could not allocate a reader for '" + path.string() + "'");
    archive_read_support_filter_all(reader.get());
    archive_read_support_format_raw(reader.get());
    const auto fail = [&] {
        const char* reason = archive_error_string(reader.get());
        return InputError("cannot read '" + path.string() + "': " + (reason ? reason : "unknown libarchive error"));
    };
    archive_entry* entry = nullptr;
    if (archive_read_open_filename(reader.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) throw fail();
    const int status = archive_read_next_header(reader.get(), &entry);
    std::string contents;
    if (status == ARCHIVE_EOF) return contents;  // an empty file
    if (status < ARCHIVE_WARN) throw fail();
    std::array<char, 1 << 16> block;
    while (true) {
        const la_ssize_t got = archive_read_data(reader.get(), block.data(), block.size());
        if (got == 0) return contents;
        if (got < 0) throw fail();
        contents.append(block.data(), static_cast<std::size_t>(got));
    }
}

bool is_utf8(std::string_view text) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
    const auto length = static_cast<std::int32_t>(text.size());
    for (std::int32_t i = 0; i < length;) {
        UChar32 c = 0;
        U8_NEXT(bytes, i, length, c);
        if (c < 0) return false;
    }
    return true;
}

}  // namespace

PairSplit split_of_sentence(std::int64_t index) {
    switch (index % 20) {
        case 19:
            return PairSplit::test;
        case 18:
            return PairSplit::validation;
        default:
            return PairSplit::train;
    }
}

TranslationPairs read_tsv_pairs(const fs::path& path) {
    const std::string contents = read_decompressed(path);
    TranslationPairs pairs;
    std::unordered_map<std::string_view, std::int64_t> sentence_index;
    std::int64_t line_number = 0;
    for (std::size_t start = 0; start < contents.size();) {
        const std::size_t end = std::min(contents.find('\n', start), contents.size());
        const std::string_view line(contents.data() + start, end - start);
        start = end + 1;
        ++line_number;
        const std::string where = path.string() + ":" + std::to_string(line_number);
        if (!is_utf8(line)) throw InputError(where + ": the line is not UTF-8");
        const std::size_t tab = line.find('\t');
        if (tab == std::string_view::npos || line.find('\t', tab + 1) != std::string_view::npos) {
            throw InputError(where + ": expected 'source<TAB>target', two columns separated by one tab");
        }
        const std::string_view source = line.substr(0, tab);
        const auto [found, inserted] =
            sentence_index.try_emplace(source, static_cast<std::int64_t>(sentence_index.size()));
        TranslationPair pair{std::string(source), std::string(line.substr(tab + 1)), line_number};
        switch (split_of_sentence(found->second)) {
            case PairSplit::train:
                pairs.train.push_back(std::move(pair));
                break;
            case PairSplit::validation:
                pairs.validation.push_back(std::move(pair));
                break;
            case PairSplit::test:
                pairs.test.push_back(std::move(pair));
                break;
        }
    }
    return pairs;
}

std::vector<ReferenceGroup> group_by_source(const std::vector<TranslationPair>& pairs) {
    std::vector<ReferenceGroup> groups;
    std::unordered_map<std::string_view, std::size_t> group_of;
    for (const TranslationPair& pair : pairs) {
        const auto [found, inserted] = group_of.try_emplace(pair.source, groups.size());
        if (inserted) groups.push_back({pair.source, {}});
        groups[found->second].references.push_back(pair.target);
    }
    return groups;
}

}  // namespace nngraph
