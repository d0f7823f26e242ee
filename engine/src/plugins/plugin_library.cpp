#include "plugins/plugin_library.hpp"

#include <dlfcn.h>

#include <cstddef>
#include <set>

#include "nngraph/error.hpp"

namespace nngraph {
namespace {

std::string describe(const std::filesystem::path& path) { return "plugin '" + path.string() + "'"; }

// The struct size the host needs to read every field it knows of.
template <class T>
void check_struct_size(const std::filesystem::path& path, const char* what, std::uint32_t size,
                       std::size_t minimum = sizeof(T)) {
    if (size < minimum) {
        throw InputError(describe(path) + ": its " + what + " table is " + std::to_string(size) +
                         " bytes, smaller than the " + std::to_string(minimum) +
                         " bytes this engine expects; rebuild the plugin against this nngraph SDK");
    }
}

}  // namespace

std::shared_ptr<const PluginLibrary> PluginLibrary::open(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw InputError(describe(path) + " does not exist or is not a file");
    }
    // RTLD_LOCAL keeps each plugin's symbols (and its copy of the oneDNN helper) to itself.
    // RTLD_NODELETE keeps its code mapped after dlclose: OpenMP's worker threads may still hold
    // the plugin's thread-local state (oneDNN streams, buffers) when the process winds down.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!handle) {
        const char* why = dlerror();
        throw InputError(describe(path) + " could not be loaded: " + (why ? why : "unknown dlopen error"));
    }
    std::shared_ptr<PluginLibrary> library(new PluginLibrary(path, handle));

    dlerror();
    void* symbol = dlsym(handle, NNG_PLUGIN_ENTRY_SYMBOL);
    if (!symbol) {
        throw InputError(describe(path) + " is not an nngraph plugin: it exports no '" NNG_PLUGIN_ENTRY_SYMBOL
                                          "' function");
    }
    auto entry = reinterpret_cast<nng_plugin_entry_fn>(symbol);
    library->table_ = entry(NNG_ABI_VERSION);
    if (!library->table_) {
        throw InputError(describe(path) + " refused to load into this engine (plugin ABI " +
                         std::to_string(NNG_ABI_VERSION) + ")");
    }
    check_struct_size<nng_plugin>(path, "plugin", library->table_->struct_size);
    if (library->table_->abi_version != NNG_ABI_VERSION) {
        throw InputError(describe(path) + " was built for nngraph plugin ABI version " +
                         std::to_string(library->table_->abi_version) + ", but this engine speaks ABI version " +
                         std::to_string(NNG_ABI_VERSION) + "; rebuild the plugin against this nngraph SDK");
    }
    library->check_tables();
    return library;
}

void PluginLibrary::check_tables() const {
    if (table_->num_ops < 0 || (table_->num_ops > 0 && !table_->ops)) {
        throw InputError(describe(path_) + " declares " + std::to_string(table_->num_ops) + " ops but no op table");
    }
    std::set<std::string> seen;
    for (std::int32_t i = 0; i < table_->num_ops; ++i) {
        const nng_op_def* op = table_->ops[i];
        const std::string where = describe(path_) + ", op #" + std::to_string(i);
        if (!op) throw InputError(where + ": the op table entry is NULL");
        // Fields appended since ABI 2 began (input_names) are optional: a reader checks struct_size.
        check_struct_size<nng_op_def>(path_, "op", op->struct_size, offsetof(nng_op_def, input_names));
        if (!op->name || !*op->name) throw InputError(where + ": the op has no name");
        const std::string op_where = describe(path_) + ", op '" + op->name + "'";
        if (!seen.insert(op->name).second) throw InputError(op_where + ": declared twice in the same plugin");
        if (!op->create || !op->destroy || !op->infer || !op->forward) {
            throw InputError(op_where + ": create, destroy, infer and forward are all required");
        }
        if (op->min_inputs < 0 || op->max_inputs < op->min_inputs) {
            throw InputError(op_where + ": input count range [" + std::to_string(op->min_inputs) + ", " +
                             std::to_string(op->max_inputs) + "] is invalid");
        }
        for (std::int32_t a = 0; a < op->num_attrs; ++a) {
            const nng_attr_spec& spec = op->attrs[a];
            check_struct_size<nng_attr_spec>(path_, "attribute", spec.struct_size);
            if (!spec.name || !*spec.name)
                throw InputError(op_where + ": attribute #" + std::to_string(a) + " has no name");
            const bool required = spec.flags & NNG_ATTR_REQUIRED;
            if (!required && !spec.default_value) {
                throw InputError(op_where + ": attribute '" + spec.name + "' is optional but has no default");
            }
        }
    }
}

PluginLibrary::~PluginLibrary() {
    if (handle_) dlclose(handle_);
}

}  // namespace nngraph
