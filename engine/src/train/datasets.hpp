// Where training data comes from: a safetensors file of inputs and targets, the IMDB reviews, or a
// synthetic task the engine generates. Chosen by --data and the model file's `data:` section; each
// format is a reader in data/readers/.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "graph/graph.hpp"

namespace nngraph {

struct DataRequest {
    std::optional<std::filesystem::path> path;  // --data
    std::string loss;                           // shapes the targets (e.g. class ids vs one-hot)
    std::filesystem::path cache_dir;            // IMDB cache; empty: the default
};

// Loads the training (and, where the source has one, validation) data for `graph`: the format of
// --data's extension, else of the model file's `data: {format: ...}` (safetensors when absent),
// its data found by find_data_path. Throws InputError for every problem.
DataSplits load_data(const Graph& graph, const DataRequest& request);

// Reads inputs (by graph input name) and targets ("targets", or "targets.<output>" with several
// outputs) from a safetensors file; "validation.<name>" entries form the validation set. Converts
// integer and float types where the graph needs another and reshapes targets whose rows hold the
// right number of values.
DataSplits load_safetensors_data(const Graph& graph, const std::filesystem::path& path, const std::string& loss);

}  // namespace nngraph
