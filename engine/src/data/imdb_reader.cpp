#include "data/imdb_reader.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "data/text_file.hpp"
#include "nngraph/error.hpp"

namespace nngraph {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kExpectedLayout =
    "expected the aclImdb layout: train/pos, train/neg, test/pos, test/neg, one review a .txt file";

// The four review folders, in the order reviews are counted.
struct ReviewFolder {
    std::string_view split;
    std::string_view label;
    bool is_test;
    bool is_positive;
};
constexpr std::array<ReviewFolder, 4> kReviewFolders = {{
    {"train", "pos", false, true},
    {"train", "neg", false, false},
    {"test", "pos", true, true},
    {"test", "neg", true, false},
}};

std::optional<std::size_t> review_folder_index(std::string_view split, std::string_view label) {
    for (std::size_t i = 0; i < kReviewFolders.size(); ++i) {
        if (kReviewFolders[i].split == split && kReviewFolders[i].label == label) return i;
    }
    return std::nullopt;
}

[[noreturn]] void fail_layout(const fs::path& path, const std::string& found) {
    throw InputError("'" + path.string() + "' is not an IMDB data set: " + std::string(kExpectedLayout) + "; " + found);
}

// Counts reviews per folder, so that an empty or absent folder is reported once all is read.
class LayoutCount {
public:
    void add(std::size_t folder) { ++counts_[folder]; }

    void require_every_folder(const fs::path& path) const {
        std::string empty;
        for (std::size_t i = 0; i < kReviewFolders.size(); ++i) {
            if (counts_[i] > 0) continue;
            if (!empty.empty()) empty += ", ";
            empty += std::string(kReviewFolders[i].split) + "/" + std::string(kReviewFolders[i].label);
        }
        if (!empty.empty()) fail_layout(path, "found no reviews in " + empty);
    }

private:
    std::array<std::int64_t, kReviewFolders.size()> counts_{};
};

// ---- Folders ----------------------------------------------------------------------------------

bool holds_splits(const fs::path& folder) {
    std::error_code ignored;
    return fs::is_directory(folder / "train", ignored) && fs::is_directory(folder / "test", ignored);
}

// The folder itself, or the one folder inside it that holds the tree (an archive unpacked into it).
fs::path find_tree_top(const fs::path& folder) {
    if (holds_splits(folder)) return folder;
    std::vector<fs::path> tops;
    std::error_code error;
    for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
        if (it->is_directory(error) && holds_splits(it->path())) tops.push_back(it->path());
    }
    if (error) throw InputError("cannot list the folder '" + folder.string() + "': " + error.message());
    if (tops.size() == 1) return tops.front();
    if (tops.empty()) fail_layout(folder, "it has no train and test folders");
    fail_layout(folder, "it holds several trees, '" + tops[0].filename().string() + "' and '" +
                            tops[1].filename().string() + "'");
}

// Calls visit(folder index, file) for every review file below the tree at `folder`.
void for_each_review_file(const fs::path& folder,
                          const std::function<void(std::size_t, const fs::directory_entry&)>& visit) {
    const fs::path top = find_tree_top(folder);
    for (std::size_t i = 0; i < kReviewFolders.size(); ++i) {
        const fs::path review_folder = top / kReviewFolders[i].split / kReviewFolders[i].label;
        std::error_code error;
        if (!fs::is_directory(review_folder, error)) {
            // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string here.
            fail_layout(folder, std::string("'").append(review_folder.string()).append("' is missing"));
        }
        for (fs::directory_iterator it(review_folder, error), end; !error && it != end; it.increment(error)) {
            if (it->path().extension() == ".txt" && it->is_regular_file(error)) visit(i, *it);
        }
        if (error) throw InputError("cannot list the folder '" + review_folder.string() + "': " + error.message());
    }
}

void read_folder(const fs::path& folder, const std::function<void(const RawReview&)>& visit) {
    LayoutCount count;
    std::string text;
    std::string relative_path;
    for_each_review_file(folder, [&](std::size_t index, const fs::directory_entry& file) {
        const ReviewFolder& where = kReviewFolders[index];
        read_whole_file(file.path(), text);
        relative_path.assign(where.split).append("/").append(where.label).append("/");
        relative_path.append(file.path().filename().string());
        visit(RawReview{relative_path, where.is_test, where.is_positive, text});
        count.add(index);
    });
    count.require_every_folder(folder);
}

// ---- Archives ---------------------------------------------------------------------------------

// An archive being read with libarchive, entry by entry.
class ArchiveReader {
public:
    explicit ArchiveReader(const fs::path& path) : path_(path), archive_(archive_read_new()) {
        if (!archive_) throw RunError("libarchive could not allocate a reader for '" + path.string() + "'");
        archive_read_support_filter_all(archive_.get());
        archive_read_support_format_all(archive_.get());
        if (archive_read_open_filename(archive_.get(), path.c_str(), kBlockBytes) != ARCHIVE_OK) fail();
    }

    // The next entry's header, or null after the last.
    archive_entry* next_entry() {
        archive_entry* entry = nullptr;
        const int status = archive_read_next_header(archive_.get(), &entry);
        if (status == ARCHIVE_EOF) return nullptr;
        if (status < ARCHIVE_WARN) fail();
        ++entries_read_;
        current_name_ = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
        return entry;
    }

    // The whole data of the current entry, into `contents` (reusing its capacity).
    void read_data(std::string& contents) {
        contents.clear();
        std::array<char, kBlockBytes> block;
        while (true) {
            const la_ssize_t got = archive_read_data(archive_.get(), block.data(), block.size());
            if (got == 0) return;
            if (got < 0 && got != ARCHIVE_WARN) fail();  // after a warning, reading goes on
            if (got > 0) contents.append(block.data(), static_cast<std::size_t>(got));
        }
    }

private:
    static constexpr std::size_t kBlockBytes = 1 << 16;

    struct FreeArchive {
        void operator()(archive* a) const { archive_read_free(a); }
    };

    // Before any entry, the file is likely no archive at all; after, the archive is damaged.
    [[noreturn]] void fail() const {
        const char* reason = archive_error_string(archive_.get());
        const std::string why = reason ? reason : "unknown libarchive error";
        if (entries_read_ == 0) {
            throw InputError("cannot read '" + path_.string() +
                             "' as an archive (expected a folder or a .tar.gz of the aclImdb tree): " + why);
        }
        throw InputError("the archive '" + path_.string() + "' is corrupt or truncated (at entry '" + current_name_ +
                         "'): " + why);
    }

    const fs::path& path_;
    std::unique_ptr<archive, FreeArchive> archive_;
    std::int64_t entries_read_ = 0;
    std::string current_name_;
};

// "./aclImdb/train/pos/1_7.txt" -> {"aclImdb/", "train/pos/1_7.txt", folder 0}; nothing for other entries.
struct ArchiveReviewName {
    std::string top;
    std::string relative_path;
    std::size_t folder = 0;
};

std::optional<ArchiveReviewName> parse_archive_name(std::string_view name) {
    std::vector<std::string_view> parts;
    // A plain loop rather than std::views::split, which clang 14 (the fuzz build) cannot compile
    // with libstdc++ 12.
    for (std::size_t begin = 0; begin <= name.size();) {
        const std::size_t end = std::min(name.find('/', begin), name.size());
        const std::string_view part = name.substr(begin, end - begin);
        if (!part.empty() && part != ".") parts.push_back(part);
        begin = end + 1;
    }
    if (parts.size() < 3 || !parts.back().ends_with(".txt")) return std::nullopt;
    const std::size_t split = parts.size() - 3;
    const std::optional<std::size_t> folder = review_folder_index(parts[split], parts[split + 1]);
    if (!folder) return std::nullopt;
    ArchiveReviewName result;
    result.folder = *folder;
    for (std::size_t i = 0; i < split; ++i) result.top.append(parts[i]).append("/");
    result.relative_path.append(parts[split]).append("/").append(parts[split + 1]).append("/").append(parts[split + 2]);
    return result;
}

void read_archive(const fs::path& path, const std::function<void(const RawReview&)>& visit) {
    ArchiveReader reader(path);
    LayoutCount count;
    std::optional<std::string> tree_top;
    std::string text;
    while (archive_entry* entry = reader.next_entry()) {
        if (archive_entry_filetype(entry) != AE_IFREG) continue;
        const char* pathname = archive_entry_pathname(entry);
        const std::optional<ArchiveReviewName> name = parse_archive_name(pathname ? pathname : "");
        if (!name) continue;
        if (!tree_top) tree_top = name->top;
        if (name->top != *tree_top) {
            fail_layout(path, "it holds two trees, under '" + *tree_top + "' and '" + name->top + "'");
        }
        reader.read_data(text);
        const ReviewFolder& where = kReviewFolders[name->folder];
        visit(RawReview{name->relative_path, where.is_test, where.is_positive, text});
        count.add(name->folder);
    }
    count.require_every_folder(path);
}

void require_existing(const fs::path& path) {
    std::error_code ignored;
    if (!fs::exists(path, ignored)) {
        throw InputError("the IMDB data '" + path.string() +
                         "' does not exist; expected the aclImdb folder or a .tar.gz of it");
    }
}

std::int64_t modification_time(const fs::path& path) {
    return static_cast<std::int64_t>(fs::last_write_time(path).time_since_epoch().count());
}

}  // namespace

void read_imdb_reviews(const fs::path& path, const std::function<void(const RawReview&)>& visit) {
    require_existing(path);
    std::error_code ignored;
    if (fs::is_directory(path, ignored)) {
        read_folder(path, visit);
    } else {
        read_archive(path, visit);
    }
}

std::string imdb_data_fingerprint(const fs::path& path) {
    require_existing(path);
    try {
        if (!fs::is_directory(path)) {
            return "archive of " + std::to_string(fs::file_size(path)) + " bytes modified " +
                   std::to_string(modification_time(path));
        }
        std::int64_t reviews = 0;
        std::uintmax_t bytes = 0;
        std::int64_t newest = 0;
        for_each_review_file(path, [&](std::size_t, const fs::directory_entry& file) {
            ++reviews;
            bytes += file.file_size();
            newest = std::max({newest, modification_time(file.path()), modification_time(file.path().parent_path())});
        });
        return "folder of " + std::to_string(reviews) + " reviews, " + std::to_string(bytes) + " bytes, modified " +
               std::to_string(newest);
    } catch (const fs::filesystem_error& error) {
        throw InputError("cannot inspect the IMDB data '" + path.string() + "': " + error.code().message());
    }
}

}  // namespace nngraph
