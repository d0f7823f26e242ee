// The one rule by which every data format finds its data on disk.
#pragma once

#include <filesystem>
#include <optional>

#include "graph/model_file.hpp"

namespace nngraph {

// Where a format's data comes from, and what to tell a user who has not given it.
struct DataLocation {
    bool reads_path = false;            // false: the format generates its data and takes no path
    const char* environment = nullptr;  // the variable consulted last; null: none
    const char* help = "";              // how to give the data, ending the messages of find_data_path
};

// --data, else the model file's `data: {path: P}` (P relative to the model file's folder), else the
// location's environment variable when it is set and not empty. Throws InputError ending with the
// location's help when none of them gives a path, or the path does not exist.
std::filesystem::path find_data_path(const std::optional<std::filesystem::path>& flag, const ModelSpec& spec,
                                     const YAML::Node& settings, const DataLocation& location);

}  // namespace nngraph
