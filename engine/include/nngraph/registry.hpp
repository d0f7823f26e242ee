// The operators available to a model: every op of every plugin found on the search path.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nngraph/plugin.h"

namespace nngraph {

class PluginLibrary;

struct RegisteredOp {
    const nng_op_def* def = nullptr;
    std::shared_ptr<const PluginLibrary> library;  // keeps the code of `def` loaded

    const std::filesystem::path& plugin_path() const;
    std::string plugin_version() const;
};

// Where plugins are looked for, in SPEC order: --plugins flags, the model file's `plugins:`,
// NNGRAPH_PLUGIN_PATH (colon-separated), then the directory built or installed next to the engine.
struct PluginSearch {
    std::vector<std::filesystem::path> command_line;
    std::vector<std::filesystem::path> model_file;

    // The full ordered list, existing entries only once. A --plugins or model-file entry that does
    // not exist is an error; so is a NNGRAPH_PLUGIN_PATH entry. Entries may be directories (every
    // *.so inside) or single plugin files.
    std::vector<std::filesystem::path> resolve() const;
};

// The directory of plugins built or installed next to the engine library: <libdir>/nngraph/plugins.
std::filesystem::path default_plugin_dir();

class OpRegistry {
public:
    // Loads every plugin found; throws InputError for a broken plugin or an op name two plugins share.
    static OpRegistry load(const std::vector<std::filesystem::path>& locations);
    static OpRegistry load(const PluginSearch& search) { return load(search.resolve()); }

    const RegisteredOp* find(std::string_view op_name) const;
    const std::map<std::string, RegisteredOp, std::less<>>& ops() const { return ops_; }
    const std::vector<std::filesystem::path>& searched() const { return searched_; }
    const std::vector<std::shared_ptr<const PluginLibrary>>& libraries() const { return libraries_; }

    // "unknown op 'X'; searched: ...; known ops: ..." for error messages.
    std::string describe_missing(std::string_view op_name) const;
    // Sum of every plugin's counters by name (e.g. "onednn.primitives_created").
    std::map<std::string, std::int64_t> counters() const;

private:
    std::map<std::string, RegisteredOp, std::less<>> ops_;
    std::vector<std::filesystem::path> searched_;
    std::vector<std::shared_ptr<const PluginLibrary>> libraries_;
};

}  // namespace nngraph
