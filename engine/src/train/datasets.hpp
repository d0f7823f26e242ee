// Where training data comes from: a safetensors file of inputs and targets, the IMDB reviews, or a
// synthetic task the engine generates. Chosen by --data and the model file's `data:` section.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "graph/graph.hpp"
#include "nngraph/imdb.hpp"
#include "train/trainer.hpp"

namespace nngraph {

struct DataRequest {
    std::optional<std::filesystem::path> path;  // --data
    std::string loss;                           // shapes the targets (e.g. class ids vs one-hot)
    std::filesystem::path cache_dir;            // IMDB cache; empty: the default
};

struct DataSplits {
    Dataset train;
    std::optional<Dataset> validation;
    std::optional<Vocabulary> vocabulary;  // text data sets: how to encode new text
    std::string description;               // "IMDB (aclImdb_labeled.tar.gz): 25000 training, 25000 validation reviews"
};

// Loads the training (and, where the source has one, validation) data for `graph`. For aclImdb the
// path is --data, then the file's `data: {path: ...}`, then $NNGRAPH_DATA; with none, the error says
// where to download the data set. Throws InputError for every problem.
DataSplits load_data(const Graph& graph, const DataRequest& request);

// Reads inputs (by graph input name) and targets ("targets", or "targets.<output>" with several
// outputs) from a safetensors file; "validation.<name>" entries form the validation set. Converts
// integer and float types where the graph needs another and reshapes targets whose rows hold the
// right number of values.
DataSplits load_safetensors_data(const Graph& graph, const std::filesystem::path& path, const std::string& loss);

// The targets a loss needs for `graph`'s output `index`, from `values` (rows = samples): class ids
// become one-hot rows for categorical_crossentropy; other shapes must hold the same count per row.
Tensor fit_targets(const Graph& graph, std::size_t index, const std::string& loss, Tensor values, const std::string& what);

// Converts a tensor to `dtype` (integers checked to fit); throws InputError naming `what`.
Tensor convert_dtype(const Tensor& tensor, DType dtype, const std::string& what);

}  // namespace nngraph
