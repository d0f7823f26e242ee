// The members of a .keras file: a zip of config.json, metadata.json and model.weights.h5.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace nngraph::keras {

// Bounds on what a .keras file may make the reader hold: a zip bomb or a forged size stops at
// these instead of exhausting memory.
struct ArchiveLimits {
    std::uint64_t json_bytes = std::uint64_t{64} << 20;     // config.json, metadata.json
    std::uint64_t weights_bytes = std::uint64_t{16} << 30;  // model.weights.h5
    int entries = 4096;
};

struct KerasArchive {
    std::string config;    // config.json
    std::string metadata;  // metadata.json, empty when absent
    std::string weights;   // model.weights.h5, empty when absent
};

// Reads the three members; a file that is no zip, a missing config.json or a member beyond its
// limit raises InputError naming the file and the member.
KerasArchive read_keras_archive(const std::filesystem::path& path, const ArchiveLimits& limits = {});

}  // namespace nngraph::keras
