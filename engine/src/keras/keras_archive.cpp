#include "keras/keras_archive.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <array>
#include <memory>

#include "nngraph/error.hpp"

namespace nngraph::keras {
namespace {

constexpr std::size_t kBlockBytes = 1 << 16;
constexpr std::size_t kMaxShownName = 80;

struct FreeArchive {
    void operator()(archive* a) const { archive_read_free(a); }
};

std::string shown(std::string_view name) {
    return name.size() <= kMaxShownName ? std::string(name) : std::string(name.substr(0, kMaxShownName)) + "...";
}

[[noreturn]] void fail(archive* a, const std::filesystem::path& path, const std::string& where) {
    const char* reason = archive_error_string(a);
    throw InputError("cannot read '" + path.string() + "' as a .keras file (a zip of config.json, metadata.json and " +
                     "model.weights.h5)" + where + ": " + (reason ? reason : "unknown libarchive error"));
}

// The whole current entry, refused once it grows beyond `limit` (the header's size may lie).
std::string read_member(archive* a, const std::filesystem::path& path, const std::string& name, std::uint64_t limit) {
    std::string contents;
    std::array<char, kBlockBytes> block;
    while (true) {
        const la_ssize_t got = archive_read_data(a, block.data(), block.size());
        if (got == 0) return contents;
        if (got < 0 && got != ARCHIVE_WARN) fail(a, path, " at member '" + shown(name) + "'");
        if (got > 0) {
            if (contents.size() + static_cast<std::uint64_t>(got) > limit) {
                throw InputError("'" + path.string() + "': member '" + shown(name) + "' is larger than " +
                                 std::to_string(limit) + " bytes, the most a .keras import reads");
            }
            contents.append(block.data(), static_cast<std::size_t>(got));
        }
    }
}

}  // namespace

KerasArchive read_keras_archive(const std::filesystem::path& path, const ArchiveLimits& limits) {
    std::unique_ptr<archive, FreeArchive> reader(archive_read_new());
    if (!reader) throw RunError("libarchive could not allocate a reader for '" + path.string() + "'");
    archive_read_support_format_zip(reader.get());
    if (archive_read_open_filename(reader.get(), path.c_str(), kBlockBytes) != ARCHIVE_OK) fail(reader.get(), path, "");

    KerasArchive result;
    bool has_config = false;
    int entries = 0;
    archive_entry* entry = nullptr;
    while (true) {
        const int status = archive_read_next_header(reader.get(), &entry);
        if (status == ARCHIVE_EOF) break;
        if (status < ARCHIVE_WARN) fail(reader.get(), path, "");
        if (++entries > limits.entries) {
            throw InputError("'" + path.string() + "' holds more than " + std::to_string(limits.entries) +
                             " members; a .keras file holds three and its assets");
        }
        const char* raw_name = archive_entry_pathname(entry);
        const std::string name = raw_name ? raw_name : "";
        if (name == "config.json") {
            result.config = read_member(reader.get(), path, name, limits.json_bytes);
            has_config = true;
        } else if (name == "metadata.json") {
            result.metadata = read_member(reader.get(), path, name, limits.json_bytes);
        } else if (name == "model.weights.h5") {
            result.weights = read_member(reader.get(), path, name, limits.weights_bytes);
        }
    }
    if (!has_config) {
        throw InputError("'" + path.string() + "' has no config.json: expected a Keras 3 .keras file (a zip of " +
                         "config.json, metadata.json and model.weights.h5)");
    }
    return result;
}

}  // namespace nngraph::keras
