#include <algorithm>
#include <array>

#include "data/readers/reader.hpp"
#include "nngraph/error.hpp"

namespace nngraph {

// Each reader's own file defines it.
extern const DataReader kAclImdbReader;
extern const DataReader kDuplicationReader;
extern const DataReader kSyntheticReader;
extern const DataReader kSafetensorsReader;
extern const DataReader kTsvPairsReader;

std::span<const DataReader* const> data_readers() {
    static const std::array<const DataReader*, 5> readers = {&kAclImdbReader, &kSyntheticReader, &kSafetensorsReader,
                                                             &kTsvPairsReader, &kDuplicationReader};
    return readers;
}

namespace {

// The keys a format's `data:` may hold, in the order messages list them.
std::vector<std::string> keys_of(const DataReader& reader) {
    std::vector<std::string> keys = {"format"};
    if (reader.location.reads_path) keys.push_back("path");
    keys.insert(keys.end(), reader.settings.begin(), reader.settings.end());
    return keys;
}

void check_settings(const DataReader& reader, const ModelSpec& spec, const YAML::Node& settings) {
    const std::vector<std::string> keys = keys_of(reader);
    for (const auto& kv : settings) {
        const std::string key = kv.first.as<std::string>();
        if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
        std::string expected;
        for (const auto& k : keys) expected += (expected.empty() ? "" : ", ") + k;
        throw model_error(
            SourceLocation::of(spec.file, kv.first), "",
            "unknown key '" + key + "' in 'data' for format " + reader.format + "; expected one of: " + expected);
    }
}

}  // namespace

const DataReader& reader_for_settings(const ModelSpec& spec, const YAML::Node& settings) {
    std::string format;
    if (settings["format"])
        format =
            yaml_as<std::string>(settings["format"], SourceLocation::of(spec.file, settings["format"]), "data format");
    if (format.empty()) format = "safetensors";
    for (const DataReader* reader : data_readers()) {
        if (format != reader->format) continue;
        check_settings(*reader, spec, settings);
        return *reader;
    }
    std::string known;
    for (const DataReader* reader : data_readers()) known += (known.empty() ? "" : ", ") + std::string(reader->format);
    throw model_error(SourceLocation::of(spec.file, settings["format"]), "",
                      "unknown data format '" + format + "'; known formats: " + known);
}

const DataReader* reader_for_extension(const std::filesystem::path& path) {
    for (const DataReader* reader : data_readers()) {
        if (reader->extension && path.extension() == reader->extension) return reader;
    }
    return nullptr;
}

}  // namespace nngraph
