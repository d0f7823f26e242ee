// Walking the reviews of an aclImdb tree, in a folder or in an archive.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace nngraph {

// One review as it is read; the views are valid during the visit only.
struct RawReview {
    // Relative to the tree's top ("train/pos/10_9.txt"), the same whether read from a folder or an archive.
    std::string_view relative_path;
    bool is_test = false;
    bool is_positive = false;
    std::string_view text;
};

// Calls `visit` for every review (train/{pos,neg}/*.txt, test/{pos,neg}/*.txt) of the tree at `path`:
// a folder that holds train/ and test/ (or holds the one folder that does), or an archive libarchive
// reads (.tar.gz, .tar, .zip...) whose entries may sit under any top folder. The order is the
// folder's or the archive's. Raises InputError naming the path for a missing path, a missing part
// of the layout, and an archive that is corrupt, truncated or not an archive.
void read_imdb_reviews(const std::filesystem::path& path, const std::function<void(const RawReview&)>& visit);

// Changes whenever the data at `path` does: its size and modification time; for a folder, the review
// count, their total size and the newest modification time among them and their folders.
std::string imdb_data_fingerprint(const std::filesystem::path& path);

}  // namespace nngraph
