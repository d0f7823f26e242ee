// Whole-file reads for the data layer.
#pragma once

#include <filesystem>
#include <string>

namespace nngraph {

// Replaces `contents` with the bytes of `path`, reusing its capacity; raises InputError naming the
// path when the file cannot be read.
void read_whole_file(const std::filesystem::path& path, std::string& contents);

}  // namespace nngraph
