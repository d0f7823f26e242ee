// A data format: how a model file's `data: {format: NAME, ...}` becomes training and validation
// data. Each format is one file in this folder defining its DataReader, listed once in table.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "data/data_path.hpp"
#include "graph/graph.hpp"
#include "nngraph/imdb.hpp"
#include "train/trainer.hpp"

namespace nngraph {

struct DataSplits {
    Dataset train;
    std::optional<Dataset> validation;
    // A held-out test split, for formats that define one: evaluate scores it rather than validation.
    std::optional<Dataset> test;
    // Scores of a trained model on the test split beyond loss and accuracy, by name (translation:
    // "bleu" of greedy decoding); empty when the format has none.
    std::function<std::vector<std::pair<std::string, double>>(Executor& model, std::int64_t batch_size)> test_scores;
    // Text data sets: writes what encodes new text (the vocabularies) to a file beside the weights.
    std::function<void(const std::filesystem::path& file)> save_vocabulary;
    std::string description;  // "IMDB (aclImdb_labeled.tar.gz): 25000 training, 25000 validation reviews"
};

// What a reader reads: the graph it feeds, the model file's `data:` settings, and the data's path.
struct DataSource {
    const Graph& graph;
    const YAML::Node& settings;                 // the model file's `data:` map, empty when absent
    std::optional<std::filesystem::path> path;  // set exactly when the format reads a path
    const std::string& loss;                    // shapes the targets (e.g. class ids vs one-hot)
    const std::filesystem::path& cache_dir;     // where a format may cache what it derives; empty: its default

    const std::string& file() const { return graph.spec().file; }
    // The setting `key`, or `fallback` when the model file leaves it out.
    std::int64_t integer(const char* key, std::int64_t fallback) const;
    double number(const char* key, double fallback) const;
    std::string text(const char* key, const std::string& fallback) const;
    // The graph's only input; throws naming the format when the graph has several.
    const GraphTensor& single_input(const char* format) const;
};

struct DataReader {
    const char* format;                 // the name in `data: {format: ...}`
    std::vector<std::string> settings;  // the keys its `data:` may hold besides format (and path)
    DataLocation location;              // where its data comes from
    const char* extension;              // --data with this extension picks this format; null: none
    DataSplits (*read)(const DataSource& source);
};

// Keeps a seeded random subset of `count` rows of `d` (all of it when count is 0 or too big), the
// same every run for the same `which`: the train_samples and validation_samples of large data sets.
void keep_subset(Dataset& d, std::int64_t count, const char* which);

// Every format, in the order error messages list them.
std::span<const DataReader* const> data_readers();

// The format named by the model file's `data: {format: ...}` (safetensors when absent), with its
// settings checked; throws naming the known formats, or the keys the format takes.
const DataReader& reader_for_settings(const ModelSpec& spec, const YAML::Node& settings);

// The format whose files have `path`'s extension, or null.
const DataReader* reader_for_extension(const std::filesystem::path& path);

}  // namespace nngraph
