// Loading the MPI module: the engine's one contact with MPI's libraries, made only under mpirun.
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "dist/communicator.hpp"
#include "nngraph/error.hpp"
#include "nngraph/registry.hpp"

namespace nngraph::dist {
namespace {
namespace fs = std::filesystem;

// NNGRAPH_MPI_MODULE when set, else the engine's private module folder: the plugin directory's
// parent (<libdir>/nngraph), where the build and the install put it.
fs::path module_path() {
    if (const char* path = std::getenv("NNGRAPH_MPI_MODULE"); path && *path) return path;
    return default_plugin_dir().parent_path() / "libnngraph_mpi.so";
}

// The module and the world it made. Never unloaded: MPI finalises in the world's destructor, at exit.
struct LoadedWorld {
    void* handle = nullptr;
    std::unique_ptr<Communicator> world;
};

LoadedWorld load() {
    const fs::path path = module_path();
    const std::string where = "the MPI module '" + path.string() + "'";
    // RTLD_GLOBAL: Open MPI opens its own components later, and they need libmpi's symbols.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        const char* why = dlerror();
        throw RunError("mpirun started this process (OMPI_COMM_WORLD_SIZE is set), but " + where +
                       " cannot be loaded: " + (why ? why : "unknown reason") +
                       ". Install Open MPI's runtime (Debian: openmpi-bin), set NNGRAPH_MPI_MODULE to the "
                       "module's path, or run nngraph without mpirun");
    }
    const auto entry = reinterpret_cast<MpiModuleEntry>(dlsym(handle, kMpiModuleEntry));
    if (!entry) throw RunError(where + " has no entry point '" + kMpiModuleEntry + "'");
    std::unique_ptr<Communicator> world(entry(kMpiModuleInterface));
    if (!world)
        throw RunError(where + " was built for another communicator interface than this engine's (version " +
                       std::to_string(kMpiModuleInterface) + ")");
    return {handle, std::move(world)};
}

}  // namespace

Communicator& load_mpi_world() {
    static const LoadedWorld loaded = load();
    return *loaded.world;
}

}  // namespace nngraph::dist
