// Plugin loading and its failures: every bad-plugin case of SPEC section 3 gives a clear message
// (and, through the command line, exit status 2 or 1, never a crash).
#include <doctest/doctest.h>

#include <filesystem>

#include "cli_runner.hpp"
#include "gradcheck.hpp"
#include "nngraph/error.hpp"
#include "nngraph/registry.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace nngraph;
using namespace nngraph::testing;

namespace {

const fs::path kFixtures = NNGRAPH_FIXTURE_DIR;

std::string load_error(const std::vector<fs::path>& locations) {
    try {
        OpRegistry::load(locations);
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no error)";
}

// A model that reads one (None, 4) input through one op.
void write_model(const fs::path& path, const std::string& node) {
    write_bytes(path, "name: m\ninputs:\n  - {name: x, shape: [4]}\nnodes:\n  - " + node + "\noutputs: [n]\n");
}

}  // namespace

TEST_CASE("a missing plugin location is refused by name") {
    PluginSearch search;
    search.command_line.push_back("/nonexistent/libnothing.so");
    CHECK_THROWS_WITH_AS(search.resolve(), doctest::Contains("'/nonexistent/libnothing.so' does not exist"),
                         InputError);
    const CliResult r = run_nngraph({"plugins", "--plugins", "/nonexistent/dir"});
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 2);
    CHECK(r.err.find("'/nonexistent/dir' does not exist") != std::string::npos);
}

TEST_CASE("a shared library without the entry point is not a plugin") {
    const std::string message = load_error({kFixtures / "not_a_plugin"});
    CHECK(message.find("libnot_a_plugin.so") != std::string::npos);
    CHECK(message.find("is not an nngraph plugin: it exports no 'nng_plugin_entry' function") != std::string::npos);
}

TEST_CASE("a file that is not a shared library is refused with the loader's reason") {
    TempDir dir;
    write_bytes(dir / "libfake.so", "this is text, not ELF");
    const std::string message = load_error({dir.path()});
    CHECK(message.find("libfake.so' could not be loaded") != std::string::npos);
    const CliResult r = run_nngraph({"plugins", "--plugins", dir.path().string()});
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 2);
}

TEST_CASE("a plugin built for another ABI version is refused, naming both versions") {
    const std::string message = load_error({kFixtures / "wrong_abi"});
    CHECK(message.find("built for nngraph plugin ABI version " + std::to_string(NNG_ABI_VERSION + 41)) !=
          std::string::npos);
    CHECK(message.find("this engine speaks ABI version " + std::to_string(NNG_ABI_VERSION)) != std::string::npos);
}

TEST_CASE("a plugin built for ABI version 1, before ops declared their buffers, is refused naming both versions") {
    static_assert(NNG_ABI_VERSION == 2, "this test is about the step from version 1 to 2");
    const std::string message = load_error({kFixtures / "old_abi"});
    CHECK(message.find("built for nngraph plugin ABI version 1") != std::string::npos);
    CHECK(message.find("this engine speaks ABI version 2") != std::string::npos);
}

TEST_CASE("two plugins providing one op name are refused, naming both files") {
    const std::string message = load_error({kFixtures / "twin_a", kFixtures / "twin_b"});
    CHECK(message.find("op 'Twin' is provided by two plugins") != std::string::npos);
    CHECK(message.find("libtwin_a.so") != std::string::npos);
    CHECK(message.find("libtwin_b.so") != std::string::npos);
    const CliResult r = run_nngraph(
        {"plugins", "--plugins", (kFixtures / "twin_a").string(), "--plugins", (kFixtures / "twin_b").string()});
    CHECK(r.status == 2);
}

TEST_CASE("an op that throws in forward fails the run with status 1 and its message") {
    TempDir dir;
    write_model(dir / "m.yaml", "{name: n, op: Thrower, inputs: [x]}");
    TensorFile inputs;
    inputs.tensors["x"] = Tensor(DType::F32, {1, 4});
    write_safetensors(dir / "x.safetensors", inputs);
    const CliResult r =
        run_nngraph({"predict", (dir / "m.yaml").string(), "--inputs", (dir / "x.safetensors").string(), "--out",
                     (dir / "y.safetensors").string(), "--plugins", (kFixtures / "faulty").string()});
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 1);
    CHECK(r.err.find("node 'n' (Thrower): forward failed: boom") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "y.safetensors"));
}

TEST_CASE("an op's attribute validation points at the attribute's line") {
    TempDir dir;
    write_model(dir / "m.yaml", "{name: n, op: Picky, inputs: [x],\n     level: 7}");
    const CliResult r =
        run_nngraph({"summary", (dir / "m.yaml").string(), "--plugins", (kFixtures / "faulty").string()});
    CHECK(r.status == 2);
    CHECK(r.err.find("m.yaml:6:6: node 'n': Picky: attribute 'level': expected a level below 3") != std::string::npos);
}

TEST_CASE("an op table from before input names were appended loads, and its names are not read") {
    TempDir dir;
    write_bytes(dir / "m.yaml",
                "name: m\ninputs:\n  - {name: x, shape: [4]}\n  - {name: y, shape: [4]}\nnodes:\n"
                "  - {name: n, op: OldPair, inputs: [x, y]}\noutputs: [n]\n");
    const CliResult r = run_nngraph({"dot", (dir / "m.yaml").string(), "--plugins", (kFixtures / "faulty").string()});
    REQUIRE(r.status == 0);
    CHECK(r.out.find("n0 -> n2 [label=\"0\"];") != std::string::npos);
    CHECK(r.out.find("n1 -> n2 [label=\"1\"];") != std::string::npos);
    CHECK(r.out.find("unread") == std::string::npos);
}

TEST_CASE("an inference identity whose output differs from its input is refused at load") {
    TempDir dir;
    write_model(dir / "m.yaml", "{name: n, op: FalseIdentity, inputs: [x]}");
    const CliResult r =
        run_nngraph({"summary", (dir / "m.yaml").string(), "--plugins", (kFixtures / "faulty").string()});
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 2);
    CHECK(r.err.find("inference identity of output 0 with input 0, whose dtype or shape differs") != std::string::npos);
}

TEST_CASE("training through an op without backward is refused at load, naming it") {
    TempDir dir;
    write_bytes(dir / "m.yaml", R"(name: m
inputs: [{name: x, shape: [4]}]
nodes:
  - {name: first, op: Dense, inputs: [x], units: 3}
  - {name: frozen, op: NoBackward, inputs: [first]}
  - {name: n, op: Dense, inputs: [frozen], units: 1}
outputs: [n]
training: {loss: mse}
)");
    const CliResult r = run_nngraph({"train", (dir / "m.yaml").string(), "--data", (dir / "none.safetensors").string(),
                                     "--plugins", (kFixtures / "faulty").string()});
    CHECK_FALSE(r.crashed);
    CHECK(r.status == 2);
    CHECK(r.err.find("node 'frozen': op NoBackward has no backward") != std::string::npos);
}

TEST_CASE("the gradient checker catches a wrong backward") {
    // The fixture's backward doubles the gradient; the checker must say so.
    const OpRegistry with_faulty = OpRegistry::load(std::vector<fs::path>{kFixtures / "faulty"});
    const GradResult result = check_gradients({"WrongGradient", "WrongGradient", "{}", {{{3, 4}}}}, with_faulty);
    CHECK(result.checked > 0);
    CHECK_FALSE(result.ok);
    CHECK(result.worst_error > 1.0);
}

TEST_CASE("nngraph plugins lists every op with its plugin; a removed plugin file makes its op missing") {
    const CliResult listed = run_nngraph({"plugins"});
    CHECK(listed.status == 0);
    CHECK(listed.out.find("Dense") != std::string::npos);
    CHECK(listed.out.find("libnngraph_dense.so") != std::string::npos);
    CHECK(listed.out.find("Add") != std::string::npos);

    // An install tree holding every plugin but dense: bin/nngraph, lib/libnngraph.so*, lib/nngraph/plugins/.
    TempDir tree;
    fs::create_directories(tree / "bin");
    fs::create_directories(tree / "lib/nngraph/plugins");
    fs::copy_file(nngraph_binary(), tree / "bin/nngraph");
    for (const auto& entry : fs::directory_iterator(nngraph_binary().parent_path().parent_path() / "lib")) {
        if (entry.path().filename().string().rfind("libnngraph.so", 0) == 0)
            fs::copy(entry.path(), tree / "lib" / entry.path().filename(), fs::copy_options::copy_symlinks);
    }
    for (const auto& entry : fs::directory_iterator(default_plugin_dir())) {
        if (entry.path().filename() != "libnngraph_dense.so")
            fs::copy_file(entry.path(), tree / "lib/nngraph/plugins" / entry.path().filename());
    }
    write_model(tree / "m.yaml", "{name: n, op: Dense, inputs: [x], units: 2}");
    const std::string command =
        (tree / "bin/nngraph").string() + " summary " + (tree / "m.yaml").string() + " 2> " + (tree / "err").string();
    const int status = std::system(command.c_str());
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
    const std::string err = read_bytes(tree / "err");
    CHECK(err.find("node 'n': unknown op 'Dense'") != std::string::npos);
    CHECK(err.find("plugins searched in: " + fs::canonical(tree / "lib/nngraph/plugins").string()) !=
          std::string::npos);
}
