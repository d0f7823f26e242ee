#include "train/datasets.hpp"

#include "nngraph/error.hpp"

namespace nngraph {

DataSplits load_data(const Graph& graph, const DataRequest& request) {
    const ModelSpec& spec = graph.spec();
    // An absent `data:` reads as a null node; treat it as an empty map.
    const bool given = spec.data.IsDefined() && !spec.data.IsNull();
    const YAML::Node settings = given ? spec.data : YAML::Node(YAML::NodeType::Map);
    if (!settings.IsMap()) {
        throw model_error(SourceLocation::of(spec.file, settings), "",
                          "'data' must be a map such as {format: aclimdb, num_words: 5000, maxlen: 200}");
    }
    // A file named on the command line is read by its own format: the model file's settings belong to another.
    const DataReader* reader = request.path ? reader_for_extension(*request.path) : nullptr;
    if (!reader) reader = &reader_for_settings(spec, settings);
    std::optional<std::filesystem::path> path;
    if (reader->location.reads_path) path = find_data_path(request.path, spec, settings, reader->location);
    return reader->read({graph, settings, path, request.loss, request.cache_dir});
}

}  // namespace nngraph
