// nngraph import against .keras files written in Keras 3's layouts (tests/keras/make_fixtures.py):
// the imported model's predictions equal the outputs computed in numpy, refusals name the layer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cli_runner.hpp"
#include "keras/keras_layers.hpp"
#include "nngraph/nngraph.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

std::filesystem::path fixture(const std::string& name) { return source_dir() / "tests" / "keras" / "fixtures" / name; }

std::string read_text(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Imports `model`_`layout`.keras, predicts its fixture inputs and compares every output; returns
// what the import said on standard error.
std::string check_import_predicts_numpy(const std::string& model, const std::string& layout, const std::string& style) {
    TempDir dir;
    const CliResult imported =
        run_nngraph({"import", fixture(model + "_" + layout + ".keras").string(), "--out",
                     (dir / "model.yaml").string(), "--weights-out", (dir / "weights.safetensors").string()});
    INFO(imported.err);
    REQUIRE(imported.status == 0);
    CHECK(contains(read_text(dir / "model.yaml"), style));

    const CliResult predicted = run_nngraph(
        {"predict", (dir / "model.yaml").string(), "--weights", (dir / "weights.safetensors").string(), "--inputs",
         fixture(model + "_inputs.safetensors").string(), "--out", (dir / "out.safetensors").string()});
    INFO(predicted.err);
    REQUIRE(predicted.status == 0);
    const TensorFile expected = read_safetensors(fixture(model + "_expected.safetensors"));
    const TensorFile got = read_safetensors(dir / "out.safetensors");
    REQUIRE(got.tensors.size() == expected.tensors.size());
    for (const auto& [name, want] : expected.tensors) {
        CAPTURE(name);
        REQUIRE(got.tensors.count(name) == 1);
        const Tensor& have = got.tensors.at(name);
        REQUIRE(have.shape() == want.shape());
        double worst = 0.0;
        for (std::int64_t i = 0; i < want.numel(); ++i) {
            worst = std::max(worst, std::abs(double(have.data<float>()[i]) - double(want.data<float>()[i])));
        }
        CHECK(worst <= 1e-5);
    }
    return imported.err;
}

}  // namespace

TEST_CASE("Keras's weight groups are its class names in snake_case, as naming.to_snake_case writes them") {
    // Expected values from Python's re with Keras's three substitutions.
    CHECK(keras::to_snake_case("GlobalAveragePooling1D") == "global_average_pooling1d");
    CHECK(keras::to_snake_case("LSTM") == "lstm");
    CHECK(keras::to_snake_case("MultiHeadAttention") == "multi_head_attention");
    CHECK(keras::to_snake_case("InputLayer") == "input_layer");
    CHECK(keras::to_snake_case("Conv1DTranspose") == "conv1d_transpose");
    CHECK(keras::to_snake_case("HTMLParser2D") == "html_parser2d");
}

TEST_CASE("a Sequential model imports as Sequential and predicts what numpy computes") {
    const std::string note = "note: skipped the optimizer's state";
    SUBCASE("Keras 3.0's layout, no InputLayer") {
        CHECK(contains(check_import_predicts_numpy("sequential", "v30", "layers:"), note));
    }
    SUBCASE("the current layout, a fixed batch size") {
        CHECK(contains(check_import_predicts_numpy("sequential", "current", "layers:"), note));
    }
    SUBCASE("Embedding's mask through an LSTM into a mask-aware average") {
        CHECK_FALSE(contains(check_import_predicts_numpy("masked", "current", "layers:"), note));
    }
}

TEST_CASE("a Functional model imports as Functional and predicts what numpy computes") {
    const std::string note = "note: skipped the optimizer's state";
    SUBCASE("Keras 3.0's layout, nested input_layers") {
        CHECK(contains(check_import_predicts_numpy("functional", "v30", "nodes:"), note));
    }
    SUBCASE("Keras 3.1 to 3.5's layout, public projection names") {
        CHECK(contains(check_import_predicts_numpy("functional", "v31", "nodes:"), note));
    }
    SUBCASE("the current layout, stored names") {
        CHECK(contains(check_import_predicts_numpy("functional", "current", "nodes:"), note));
    }
}

TEST_CASE("the imported Functional model keeps Keras's names, operations and call arguments") {
    const KerasImport imported = import_keras(fixture("functional_current.keras"));
    for (const char* part : {"name: emb", "op: Add", "name: gate", "op: Multiply", "inputs: [add, features]",
                             "use_causal_mask: true", "{name: tokens, shape: [5], dtype: int32}",
                             "{name: features, shape: [5, 6], dtype: float32}", "lstm:1", "outputs: [gate, lstm:2]"}) {
        CAPTURE(part);
        CHECK(contains(imported.model_file, part));
    }
    CHECK(imported.weights.tensors.count("mha.attention_output.kernel") == 1);
    CHECK(imported.weights.tensors.at("mha.query.kernel").shape() == Shape{6, 2, 3});
    CHECK(imported.weights.tensors.count("norm.beta") == 0);  // center: false
    std::string notes;
    for (const std::string& note : imported.notes) notes += note + "\n";
    CHECK(contains(notes, "skipped the optimizer's state (5 variables)"));
    CHECK(contains(notes, "training: the optimizer RMSprop is left out"));
    CHECK(contains(notes, "training: the metric mae is left out"));
    CHECK(contains(imported.model_file, "training:\n  loss: mse\n"));
}

TEST_CASE("compile_config becomes the training section") {
    const KerasImport imported = import_keras(fixture("sequential_current.keras"));
    CHECK(contains(imported.model_file, "loss: categorical_crossentropy"));
    CHECK(contains(imported.model_file,
                   "optimizer: {name: adam, learning_rate: 0.002, beta_1: 0.9, beta_2: 0.999, "
                   "epsilon: 1e-07}"));
    CHECK(contains(imported.model_file, "metrics: [accuracy]"));
}

TEST_CASE("layers the engine has no op for are refused with their name and class") {
    TempDir dir;
    const CliResult r =
        run_nngraph({"import", fixture("unsupported_layer.keras").string(), "--out", (dir / "model.yaml").string()});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "'conv' (Conv1D)"));
    CHECK_FALSE(std::filesystem::exists(dir / "model.yaml"));
}

TEST_CASE("stored names that contradict the layer order are refused") {
    TempDir dir;
    const CliResult r =
        run_nngraph({"import", fixture("mismatched_names.keras").string(), "--out", (dir / "model.yaml").string()});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "holds layer 'second' at layers/dense"));
}

TEST_CASE("what the engine cannot compute as Keras does is refused, saying what") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"shared_layer", "layer 'shared' (Dense) is called 2 times"},
        {"rms_scaling", "layer 'norm' (LayerNormalization) has rms_scaling: true"},
        {"quantized", "layer 'small_int8' is quantized"},
        {"mask_argument", "layer 'att' is given the tensor 'mask'"},
        {"constant_operand", "operation 'add' (Add) has a constant operand"},
    };
    for (const auto& [name, message] : cases) {
        CAPTURE(name);
        try {
            import_keras(fixture("refused_" + name + ".keras"));
            FAIL("imported");
        } catch (const InputError& e) {
            CHECK(contains(e.what(), message));
        }
    }
}

TEST_CASE("files that are not .keras files are refused with exit 2") {
    TempDir dir;
    write_bytes(dir / "plain.keras", "not a zip at all");
    const CliResult not_zip =
        run_nngraph({"import", (dir / "plain.keras").string(), "--out", (dir / "m.yaml").string()});
    CHECK(not_zip.status == 2);
    CHECK(contains(not_zip.err, "as a .keras file"));
    const CliResult missing =
        run_nngraph({"import", (dir / "absent.keras").string(), "--out", (dir / "m.yaml").string()});
    CHECK(missing.status == 2);
    CHECK_FALSE(missing.crashed);
}

namespace {

std::string without_first_line(const std::string& text) { return text.substr(text.find('\n') + 1); }

// Equal names and shapes, and values within `tolerance` relative (0: bit for bit).
bool same_tensors(const TensorFile& a, const TensorFile& b, double tolerance) {
    if (a.tensors.size() != b.tensors.size()) return false;
    for (const auto& [name, tensor] : a.tensors) {
        const auto it = b.tensors.find(name);
        if (it == b.tensors.end() || it->second.shape() != tensor.shape()) return false;
        const auto close = [tolerance](float x, float y) {
            return std::abs(double(x) - double(y)) <= tolerance * std::max(1.0, std::abs(double(y)));
        };
        if (!std::equal(tensor.values<float>().begin(), tensor.values<float>().end(),
                        it->second.values<float>().begin(), close)) {
            return false;
        }
    }
    return true;
}

}  // namespace

TEST_CASE("the committed fixtures are what make_fixtures.py writes (Debian's python3 with h5py and numpy)") {
    TempDir dir;
    const std::string command = "/usr/bin/python3 '" +
                                (source_dir() / "tests" / "keras" / "make_fixtures.py").string() + "' '" +
                                dir.path().string() + "'";
    REQUIRE(std::system(command.c_str()) == 0);
    for (const char* model : {"sequential", "functional", "masked"}) {
        for (const char* part : {"_inputs.safetensors", "_expected.safetensors"}) {
            const std::string name = std::string(model) + part;
            CAPTURE(name);
            // numpy's products go through the BLAS the machine's alternatives pick (reference or
            // OpenBLAS), which round differently; the inputs are drawn, so they match bit for bit.
            const double tolerance = std::string(part) == "_expected.safetensors" ? 1e-6 : 0.0;
            CHECK(same_tensors(read_safetensors(dir / name), read_safetensors(fixture(name)), tolerance));
        }
    }
    for (const char* name : {"sequential_v30.keras", "sequential_current.keras", "functional_v30.keras",
                             "functional_v31.keras", "functional_current.keras", "masked_current.keras"}) {
        CAPTURE(name);
        const KerasImport fresh = import_keras(dir / name), committed = import_keras(fixture(name));
        CHECK(without_first_line(fresh.model_file) == without_first_line(committed.model_file));
        CHECK(same_tensors(fresh.weights, committed.weights, 0.0));
    }
}
