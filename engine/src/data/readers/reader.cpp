#include "data/readers/reader.hpp"

#include "nngraph/error.hpp"

namespace nngraph {

std::int64_t DataSource::integer(const char* key, std::int64_t fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<std::int64_t>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

double DataSource::number(const char* key, double fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<double>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

std::string DataSource::text(const char* key, const std::string& fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<std::string>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

const GraphTensor& DataSource::single_input(const char* format) const {
    if (graph.inputs().size() != 1) {
        throw InputError(file() + ": " + format + " data feeds one input, but the model has " + std::to_string(graph.inputs().size()));
    }
    return graph.tensor(graph.inputs()[0]);
}

}  // namespace nngraph
