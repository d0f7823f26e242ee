// Writing a file so that readers only ever see the old contents or the complete new ones.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

namespace nngraph {

// Writes `path` through `write_contents`: the bytes go to a temporary file in the same directory,
// which is flushed to disk and then renamed over `path`. If `write_contents` throws or anything
// fails, the temporary file is removed, an existing `path` is left untouched, and the exception
// propagates (failures of the file system itself raise RunError naming the path).
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write_contents);

// Refuses, before any work that would be lost, a destination that write_file_atomically (or any
// writer) could not write: its directory missing or not a directory, the path itself a directory,
// or no file creatable beside it. InputError names `what` ("--save"), the path and the reason.
void check_writable_destination(const std::filesystem::path& path, const std::string& what);

}  // namespace nngraph
