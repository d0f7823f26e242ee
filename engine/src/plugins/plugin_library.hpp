// One loaded plugin shared library: opened, checked against the host's ABI, closed when the last
// user lets go of it.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "nngraph/plugin.h"

namespace nngraph {

class PluginLibrary {
public:
    // Opens `path` and checks its entry point, ABI version and op tables.
    // Throws InputError naming the file and what was wrong with it.
    static std::shared_ptr<const PluginLibrary> open(const std::filesystem::path& path);

    PluginLibrary(const PluginLibrary&) = delete;
    PluginLibrary& operator=(const PluginLibrary&) = delete;
    ~PluginLibrary();

    const std::filesystem::path& path() const { return path_; }
    const nng_plugin& table() const { return *table_; }
    std::string name() const { return table_->name ? table_->name : path_.stem().string(); }
    std::string version() const { return table_->version ? table_->version : "?"; }

private:
    PluginLibrary(std::filesystem::path path, void* handle) : path_(std::move(path)), handle_(handle) {}
    void check_tables() const;

    std::filesystem::path path_;
    void* handle_ = nullptr;
    const nng_plugin* table_ = nullptr;
};

}  // namespace nngraph
