#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include "nngraph/error.hpp"
#include "nngraph/registry.hpp"
#include "plugins/plugin_library.hpp"

namespace nngraph {
namespace fs = std::filesystem;

const fs::path& RegisteredOp::plugin_path() const { return library->path(); }
std::string RegisteredOp::plugin_version() const { return library->version(); }

fs::path default_plugin_dir() {
    Dl_info info{};
    // The address of any function in this library tells where the library itself lives.
    if (dladdr(reinterpret_cast<void*>(&default_plugin_dir), &info) && info.dli_fname) {
        return fs::absolute(fs::path(info.dli_fname)).parent_path() / NNGRAPH_PLUGIN_SUBDIR;
    }
    return fs::path(NNGRAPH_PLUGIN_SUBDIR);
}

std::vector<fs::path> PluginSearch::resolve() const {
    std::vector<fs::path> result;
    std::set<fs::path> seen;
    auto add = [&](const fs::path& p, const std::string& origin, bool must_exist) {
        std::error_code ec;
        if (!fs::exists(p, ec)) {
            if (must_exist) throw InputError(origin + ": plugin location '" + p.string() + "' does not exist");
            return;
        }
        const fs::path canonical = fs::canonical(p, ec);
        if (seen.insert(canonical).second) result.push_back(canonical);
    };
    for (const fs::path& p : command_line) add(p, "--plugins", true);
    for (const fs::path& p : model_file) add(p, "the model file's 'plugins:'", true);
    if (const char* env = std::getenv("NNGRAPH_PLUGIN_PATH"); env && *env) {
        std::stringstream entries(env);
        for (std::string entry; std::getline(entries, entry, ':');) {
            if (!entry.empty()) add(entry, "NNGRAPH_PLUGIN_PATH", true);
        }
    }
    add(default_plugin_dir(), "the engine's plugin directory", false);
    return result;
}

namespace {

std::vector<fs::path> plugin_files(const fs::path& location) {
    if (!fs::is_directory(location)) return {location};
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(location)) {
        if (entry.is_regular_file() && entry.path().extension() == ".so") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());  // the same load order on every machine
    return files;
}

}  // namespace

OpRegistry OpRegistry::load(const std::vector<fs::path>& locations) {
    OpRegistry registry;
    registry.searched_ = locations;
    for (const fs::path& location : locations) {
        for (const fs::path& file : plugin_files(location)) {
            auto library = PluginLibrary::open(file);
            const nng_plugin& table = library->table();
            for (std::int32_t i = 0; i < table.num_ops; ++i) {
                const nng_op_def* def = table.ops[i];
                auto [it, inserted] = registry.ops_.try_emplace(def->name, RegisteredOp{def, library});
                if (!inserted) {
                    throw InputError("op '" + std::string(def->name) + "' is provided by two plugins: '" +
                                     it->second.plugin_path().string() + "' and '" + file.string() +
                                     "'; remove one of them from the plugin search path");
                }
            }
            registry.libraries_.push_back(std::move(library));
        }
    }
    return registry;
}

const RegisteredOp* OpRegistry::find(std::string_view op_name) const {
    auto it = ops_.find(op_name);
    return it == ops_.end() ? nullptr : &it->second;
}

std::string OpRegistry::describe_missing(std::string_view op_name) const {
    std::string out = "unknown op '" + std::string(op_name) + "'; plugins searched in: ";
    if (searched_.empty()) out += "(no plugin directory found)";
    for (std::size_t i = 0; i < searched_.size(); ++i) out += (i ? ", " : "") + searched_[i].string();
    out += "; known ops: ";
    if (ops_.empty()) out += "(none)";
    bool first = true;
    for (const auto& [name, op] : ops_) {
        out += (first ? "" : ", ") + name;
        first = false;
    }
    return out;
}

std::map<std::string, std::int64_t> OpRegistry::counters() const {
    std::map<std::string, std::int64_t> totals;
    for (const auto& library : libraries_) {
        if (!library->table().counters) continue;
        nng_counter buffer[32];
        const std::int32_t n = library->table().counters(buffer, 32);
        for (std::int32_t i = 0; i < n && i < 32; ++i) {
            if (buffer[i].name) totals[buffer[i].name] += buffer[i].value;
        }
    }
    return totals;
}

}  // namespace nngraph
