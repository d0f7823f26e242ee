#include "data/data_path.hpp"

#include <cstdlib>
#include <string>
#include <system_error>

#include "nngraph/error.hpp"

namespace nngraph {
namespace fs = std::filesystem;

namespace {

std::optional<fs::path> given_path(const std::optional<fs::path>& flag, const ModelSpec& spec,
                                   const YAML::Node& settings, const DataLocation& location) {
    if (flag) return flag;
    if (settings.IsMap() && settings["path"]) {
        const fs::path p =
            yaml_as<std::string>(settings["path"], SourceLocation::of(spec.file, settings["path"]), "data path");
        return p.is_absolute() || spec.path.empty() ? p : fs::absolute(spec.path).parent_path() / p;
    }
    if (location.environment) {
        if (const char* value = std::getenv(location.environment); value && *value) return fs::path(value);
    }
    return std::nullopt;
}

}  // namespace

fs::path find_data_path(const std::optional<fs::path>& flag, const ModelSpec& spec, const YAML::Node& settings,
                        const DataLocation& location) {
    const std::optional<fs::path> path = given_path(flag, spec, settings, location);
    if (!path) throw InputError(spec.file + ": no training data; " + location.help);
    std::error_code ec;
    if (!fs::exists(*path, ec)) throw InputError("'" + path->string() + "' does not exist; " + location.help);
    return *path;
}

}  // namespace nngraph
