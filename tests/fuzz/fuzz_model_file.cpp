// The model file loader end to end, both styles: YAML parsing, the Functional and Sequential
// readers, then the graph with every built plugin loaded, so op attribute validation and shape
// inference see the fuzzed attributes too. InputError is the expected answer to a bad file;
// anything else escaping (another exception, a crash, a sanitizer report) is a bug.
#include <cstdlib>
#include <memory>
#include <string>

#include "graph/graph.hpp"
#include "graph/summary.hpp"
#include "nngraph/error.hpp"
#include "nngraph/registry.hpp"

namespace {

// Loaded once and kept, so every plugin is mapped (and instrumented) before the first input.
std::shared_ptr<const nngraph::OpRegistry> plugins;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Only the plugins built next to this engine: the search path must not depend on the caller.
    ::unsetenv("NNGRAPH_PLUGIN_PATH");
    plugins = std::make_shared<const nngraph::OpRegistry>(nngraph::OpRegistry::load(nngraph::PluginSearch{}));
    if (plugins->ops().empty()) {
        throw std::runtime_error("fuzz_model_file: no plugin found in " + nngraph::default_plugin_dir().string());
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        nngraph::ModelSpec spec = nngraph::parse_model(text, "fuzz.yaml", ".");
        // A fuzzed `plugins:` entry could name any library on the machine; the entries are parsed
        // and resolved above, but only the built plugins are loaded.
        spec.plugin_dirs.clear();
        const auto graph = nngraph::Graph::from_spec(std::move(spec));
        nngraph::summary(*graph);
        nngraph::to_dot(*graph);
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
