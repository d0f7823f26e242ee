#include "keras/keras_import.hpp"

#include <nlohmann/json.hpp>

#include "keras/keras_converter.hpp"
#include "keras/keras_isolated_weights.hpp"
#include "nngraph/error.hpp"

namespace nngraph {
namespace keras {
namespace {

using json = nlohmann::json;

// nlohmann's messages quote the token they stopped at, which may be most of the file.
std::string bounded_message(const json::exception& e) {
    constexpr std::size_t kMaxMessage = 200;
    const std::string what = e.what();
    return what.size() <= kMaxMessage ? what : what.substr(0, kMaxMessage) + "...";
}

// Parsed with a bound on nesting, so hostile input cannot make later recursion overflow the stack.
json parse_json(const std::string& text, const std::string& where, int max_depth) {
    const json::parser_callback_t bounded = [&](int depth, json::parse_event_t, json&) {
        if (depth > max_depth) {
            throw InputError(where + " nests deeper than " + std::to_string(max_depth) + " levels");
        }
        return true;
    };
    try {
        return json::parse(text, bounded);
    } catch (const json::exception& e) {
        throw InputError(where + " is not valid JSON: " + bounded_message(e));
    }
}

}  // namespace

KerasImport import_keras_file(const std::filesystem::path& path, const ImportLimits& limits) {
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string here.
    std::string label = "'";
    label += path.string();
    label += "'";
    const KerasArchive archive = read_keras_archive(path, limits.archive);
    const json config = parse_json(archive.config, label + ": config.json", limits.json_depth);
    if (!archive.metadata.empty()) {
        const json metadata = parse_json(archive.metadata, label + ": metadata.json", limits.json_depth);
        if (metadata.is_object() && metadata.contains("keras_version") && metadata["keras_version"].is_string()) {
            const std::string version = metadata["keras_version"].get<std::string>();
            if (version.rfind("2.", 0) == 0) {
                throw InputError(label + " was saved by Keras " + version.substr(0, 20) +
                                 "; nngraph imports the Keras 3 format");
            }
        }
    }
    if (archive.weights.empty())
        throw InputError(label + " has no model.weights.h5: nothing to import the weights from");
    // The HDF5 library can crash on a damaged file: it reads in a child process (see keras_isolated_weights.hpp).
    const IsolatedWeightsFile weights(archive.weights, label + ": model.weights.h5", limits.weights);
    try {
        Conversion conversion = convert_keras_model(config, weights, label);
        return KerasImport{std::move(conversion.model_file), std::move(conversion.weights),
                           std::move(conversion.notes)};
    } catch (const json::exception& e) {
        // A value of an unexpected JSON type somewhere in the config.
        throw InputError(label + ": config.json does not have Keras 3's layout: " + bounded_message(e));
    }
}

}  // namespace keras

KerasImport import_keras(const std::filesystem::path& keras_file) { return keras::import_keras_file(keras_file, {}); }

}  // namespace nngraph
