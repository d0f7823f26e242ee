// Model files: both styles load into one graph; Keras's default names; every bad-model-file case
// of SPEC section 1 gives file, line, column, node and what was expected.
#include <doctest/doctest.h>

#include <chrono>

#include "graph/graph.hpp"
#include "graph/summary.hpp"
#include "nngraph/error.hpp"
#include "temp_dir.hpp"

using namespace nngraph;

namespace {

std::shared_ptr<const Graph> load_text(const std::string& text) {
    return Graph::from_spec(parse_model(text, "model.yaml", "."));
}

// The message of the InputError that loading `text` raises.
std::string load_error(const std::string& text) {
    try {
        load_text(text);
    } catch (const InputError& e) {
        return e.what();
    }
    FAIL("the model loaded without an error");
    return {};
}

const char* kFunctional = R"(name: mlp
inputs:
  - {name: x, shape: [8]}
nodes:
  - {name: dense, op: Dense, inputs: [x], units: 4, activation: relu}
  - {name: dense_1, op: Dense, inputs: [dense], units: 1, activation: sigmoid}
outputs: [dense_1]
)";

const char* kSequential = R"(name: mlp
input: {name: x, shape: [8]}
layers:
  - {op: Dense, units: 4, activation: relu}
  - {op: Dense, units: 1, activation: sigmoid}
)";

}  // namespace

TEST_CASE("Functional and Sequential files load into the same graph") {
    const auto functional = load_text(kFunctional);
    const auto sequential = load_text(kSequential);
    // Keras's summary differs in one row: a Sequential model's layers have no InputLayer.
    const std::string functional_text = summary(*functional), sequential_text = summary(*sequential);
    CHECK(functional_text.find("x (InputLayer)") != std::string::npos);
    CHECK(sequential_text.find("InputLayer") == std::string::npos);
    CHECK(functional_text.find("dense_1 (Dense)") != std::string::npos);
    CHECK(sequential_text.find("dense_1 (Dense)") != std::string::npos);
    CHECK(to_dot(*functional) == to_dot(*sequential));
    REQUIRE(sequential->weights().size() == 4);
    CHECK(sequential->weights()[0].name == "dense.kernel");
    CHECK(sequential->weights()[0].info.shape == Shape{8, 4});
    CHECK(sequential->weights()[3].name == "dense_1.bias");
    CHECK(sequential->tensor(sequential->outputs()[0]).info.shape == Shape{-1, 1});
}

TEST_CASE("unnamed layers get Keras's default names") {
    CHECK(keras_snake_case("GlobalAveragePooling1D") == "global_average_pooling1d");
    CHECK(keras_snake_case("MultiHeadAttention") == "multi_head_attention");
    CHECK(keras_snake_case("LSTM") == "lstm");
    CHECK(keras_snake_case("LayerNormalization") == "layer_normalization");
    const auto graph = load_text(R"(input: {shape: [6]}
layers:
  - {op: Dense, units: 5}
  - {op: Activation, activation: relu}
  - {op: Dense, units: 4}
  - {op: Dense, units: 3, name: dense_2}
  - {op: Dense, units: 2}
  - {op: Reshape, target_shape: [2, 1]}
  - {op: Flatten}
)");
    std::vector<std::string> names;
    for (NodeId id : graph->file_order()) names.push_back(graph->node(id).name);
    // "dense_2" is taken explicitly, so the fourth unnamed Dense skips to dense_3, as its name must be unique.
    CHECK(names == std::vector<std::string>{"input", "dense", "activation", "dense_1", "dense_2", "dense_3", "reshape",
                                            "flatten"});
}

TEST_CASE("nodes may be written in any order; execution follows the edges") {
    const auto graph = load_text(R"(inputs: [{name: x, shape: [3]}]
nodes:
  - {name: c, op: Add, inputs: [a, b]}
  - {name: b, op: Dense, inputs: [a], units: 3}
  - {name: a, op: Dense, inputs: [x], units: 3}
outputs: [c]
)");
    std::vector<std::string> order;
    for (NodeId id : graph->order()) order.push_back(graph->node(id).name);
    CHECK(order == std::vector<std::string>{"x", "a", "b", "c"});
    CHECK(graph->tensor(graph->outputs()[0]).info.shape == Shape{-1, 3});
}

TEST_CASE("an unknown op names the plugins searched and the ops known") {
    const std::string message =
        load_error("inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: y, op: Dense2, inputs: [x]}\noutputs: [y]\n");
    CHECK(message.find("model.yaml:3:5: node 'y': unknown op 'Dense2'") != std::string::npos);
    CHECK(message.find("plugins searched in: ") != std::string::npos);
    CHECK(message.find("nngraph/plugins") != std::string::npos);
    CHECK(message.find("known ops: ") != std::string::npos);
    CHECK(message.find("Dense") != std::string::npos);
}

TEST_CASE("an unknown attribute is rejected, as Keras rejects unknown keyword arguments") {
    const std::string message = load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, unit: 4}\n");
    CHECK(message.find("model.yaml:3:17: node 'dense': unknown attribute 'unit' for Dense (did you mean 'units'?)") !=
          std::string::npos);
    CHECK(message.find("Dense takes: units, activation, use_bias") != std::string::npos);
}

TEST_CASE("a mistyped or missing attribute says what was expected") {
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, units: four}\n")
              .find("model.yaml:3:24: node 'dense': attribute 'units': expected an integer, got 'four'") !=
          std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, units: 2, activation: relux}\n")
              .find("attribute 'activation': 'relux' is not one of linear, relu") != std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, use_bias: maybe, units: 2}\n")
              .find("attribute 'use_bias': expected true or false, got 'maybe'") != std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense}\n")
              .find("model.yaml:3:5: node 'dense': Dense needs attribute 'units'") != std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, units: 0}\n")
              .find("node 'dense': Dense: attribute 'units': expected a positive integer") != std::string::npos);
}

TEST_CASE("a missing input, a duplicate name and a missing output are named") {
    CHECK(
        load_error(
            "inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: y, op: Dense, inputs: [z], units: 2}\noutputs: [y]\n")
            .find("model.yaml:3:35: node 'y': input 'z' is neither a graph input nor a node") != std::string::npos);
    CHECK(load_error("inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: y, op: Dense, inputs: [x], units: 2}\n  - "
                     "{name: y, op: Dense, inputs: [x], units: 2}\noutputs: [y]\n")
              .find("model.yaml:4:5: node 'y': duplicate name; 'y' is already used at model.yaml:3:5") !=
          std::string::npos);
    CHECK(
        load_error(
            "inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: y, op: Dense, inputs: [x], units: 2}\noutputs: [w]\n")
            .find("output 'w' is neither a graph input nor a node") != std::string::npos);
    CHECK(load_error("inputs: [{name: x, shape: [3]}]\nnodes:\n  - {name: y, op: Dense, inputs: ['x:1'], units: "
                     "2}\noutputs: [y]\n")
              .find("'x:1' does not exist: node 'x' has 1 output(s)") != std::string::npos);
}

TEST_CASE("a cycle is reported with its path") {
    const std::string message = load_error(R"(inputs: [{name: x, shape: [3]}]
nodes:
  - {name: a, op: Add, inputs: [x, c]}
  - {name: b, op: Dense, inputs: [a], units: 3}
  - {name: c, op: Dense, inputs: [b], units: 3}
outputs: [c]
)");
    CHECK(message.find("the graph has a cycle: ") != std::string::npos);
    const bool path_found = message.find("a -> b -> c -> a") != std::string::npos ||
                            message.find("b -> c -> a -> b") != std::string::npos ||
                            message.find("c -> a -> b -> c") != std::string::npos;
    CHECK(path_found);
}

TEST_CASE("shapes that do not fit name both shapes") {
    const std::string message = load_error(R"(inputs: [{name: x, shape: [3]}, {name: y, shape: [4]}]
nodes:
  - {name: s, op: Add, inputs: [x, y]}
outputs: [s]
)");
    CHECK(message.find("model.yaml:3:5: node 's': Add: inputs must have one shape, got: (None, 3) and (None, 4)") !=
          std::string::npos);
    CHECK(load_error("input: {shape: [6]}\nlayers:\n  - {op: Reshape, target_shape: [4, 2]}\n")
              .find("cannot reshape (None, 6) (6 values per sample) to target_shape (4, 2)") != std::string::npos);
}

TEST_CASE("malformed files are reported with their position") {
    CHECK(load_error("inputs: [{name: x, shape: [3]}\nnodes: [").find("model.yaml:") != std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, units: 2}\nlayerz: []\n")
              .find("model.yaml:4:1: unknown key 'layerz' in model file") != std::string::npos);
    CHECK(load_error("input: {shape: [3]}\nlayers:\n  - {op: Dense, units: 2, inputs: [x]}\n")
              .find("a Sequential layer takes no 'inputs'") != std::string::npos);
    CHECK(load_error("input: {shape: [3], dtype: float16}\nlayers:\n  - {op: Dense, units: 2}\n")
              .find("dtype 'float16' is not one of float32, int32, int64") != std::string::npos);
    CHECK(load_error("name: m\n").find("expected 'nodes' (Functional style) or 'layers' (Sequential style)") !=
          std::string::npos);
}

TEST_CASE("YAML that attacks the parser is refused quickly, at its position") {
    const auto start = std::chrono::steady_clock::now();
    const std::string dense = "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, weights: {kernel: ";
    CHECK(load_error(dense + "&w [*w]}}\n").find("model.yaml:3:49: an alias refers to the node that contains it") !=
          std::string::npos);

    // Nine lines of anchors that expand to 10^9 numbers when followed.
    std::string bomb = "input: {shape: [2]}\ndata:\n  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
    for (int level = 1; level < 9; ++level) {
        const std::string previous = "*a" + std::to_string(level - 1);
        bomb += "  a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
        for (int i = 0; i < 10; ++i) bomb += (i ? ", " : "") + previous;
        bomb += "]\n";
    }
    CHECK(load_error(bomb + "layers:\n  - {op: Dense, units: 2, weights: {kernel: *a8}}\n")
              .find("the aliases expand to more than 1000000 values") != std::string::npos);

    const std::string deep = std::string(300, '[') + "1" + std::string(300, ']');
    CHECK(load_error(dense + deep + "}}\n").find("model.yaml:3:") != std::string::npos);
    CHECK(load_error(dense + deep + "}}\n").find("nested deeper than 64 levels") != std::string::npos);

    CHECK(load_error("input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2}\nlayers:\n  - {op: Dense, units: 3}\n")
              .find("model.yaml:4:1: the key 'layers' appears twice in one map (first on line 2)") !=
          std::string::npos);
    CHECK(load_error("input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, units: 3}\n")
              .find("model.yaml:3:27: the key 'units' appears twice in one map (first on line 3)") !=
          std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

    // A well-formed file may share nodes through aliases.
    const auto shared = load_text("input: {shape: [2]}\nlayers:\n  - &layer {op: Dense, units: 2}\n  - *layer\n");
    CHECK(shared->spec().nodes.size() == 2);
}

TEST_CASE("a model file above the size limit is refused before it is parsed, pointing at safetensors") {
    const std::string padding(2 << 20, '#');
    const std::string model = std::string(kSequential) + padding + "\n";
    CHECK(load_error(model).find("model.yaml: the model file has 2097291 bytes, more than the limit of 1048576") !=
          std::string::npos);
    testing::TempDir dir;
    testing::write_bytes(dir / "big.yaml", model);
    const auto start = std::chrono::steady_clock::now();
    try {
        read_model_file(dir / "big.yaml");
        FAIL("a 2 MB model file was read");
    } catch (const InputError& e) {
        CHECK(std::string(e.what()).find("put large weights in a safetensors file") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
}

TEST_CASE("inline weights are checked against the declared shapes") {
    const auto graph = load_text(R"(input: {shape: [2]}
layers:
  - {op: Dense, units: 2, use_bias: false, weights: {kernel: [[1, 2], [3, 4]]}}
)");
    REQUIRE(graph->weights()[0].inline_value.has_value());
    CHECK(graph->weights()[0].inline_value->values<float>()[3] == 4.0f);
    CHECK(load_error(
              "input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, weights: {kernel: [[1, 2, 3], [3, 4, 5]]}}\n")
              .find("weight 'kernel' has shape (2, 3) in the file, but the op declares (2, 2)") != std::string::npos);
    CHECK(load_error("input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, weights: {kernal: [[1, 2], [3, 4]]}}\n")
              .find("Dense has no weight 'kernal'; its weights: kernel, bias") != std::string::npos);
    CHECK(load_error("input: {shape: [2]}\nlayers:\n  - {op: Dense, units: 2, weights: {kernel: [[1, 2], [3]]}}\n")
              .find("ragged") != std::string::npos);
}

TEST_CASE("the summary is Keras's table with parameter totals") {
    const std::string text = summary(*load_text(kFunctional));
    CHECK(text.find("Model: \"mlp\"") == 0);
    // A chain-shaped Functional model: Keras's three columns, with its InputLayer, 76 wide (an
    // 80-column terminal less 4).
    const std::string table =
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
        "│ x (InputLayer)                  │ (None, 8)              │             0 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ dense (Dense)                   │ (None, 4)              │            36 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ dense_1 (Dense)                 │ (None, 1)              │             5 │\n"
        "└─────────────────────────────────┴────────────────────────┴───────────────┘\n";
    CHECK(text.find(table) != std::string::npos);
    CHECK(text.find("Connected to") == std::string::npos);
    CHECK(text.find(" Total params: 41 (164.00 B)") != std::string::npos);
    CHECK(text.find(" Trainable params: 41 (164.00 B)") != std::string::npos);
    CHECK(with_thousands(1234567) == "1,234,567");
    CHECK(readable_bytes(160033.0 * 4) == "625.13 KB");
}

TEST_CASE("the summary's width is capped as Keras caps it: long names and connections wrap or end in an ellipsis") {
    // Two layers reading one tensor is not a chain: the "Connected to" column is back. The tables
    // below are what Keras's print_summary renders through rich for these rows.
    const auto branched = load_text(R"(name: branches
inputs: [{name: x, shape: [8]}]
nodes:
  - {name: a_very_long_dense_layer_name_indeed, op: Dense, inputs: [x], units: 4}
  - {name: b, op: Dense, inputs: [x], units: 4}
  - {name: sum, op: Add, inputs: [a_very_long_dense_layer_name_indeed, b]}
outputs: [sum]
)");
    const std::string narrow =
        "┏━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)     ┃ Output Shape  ┃  Param # ┃ Connected to   ┃\n"
        "┡━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━┩\n"
        "│ x (InputLayer)   │ (None, 8)     │        0 │ -              │\n"
        "├──────────────────┼───────────────┼──────────┼────────────────┤\n"
        "│ a_very_long_den… │ (None, 4)     │       36 │ x[0][0]        │\n"
        "│ (Dense)          │               │          │                │\n"
        "├──────────────────┼───────────────┼──────────┼────────────────┤\n"
        "│ b (Dense)        │ (None, 4)     │       36 │ x[0][0]        │\n"
        "├──────────────────┼───────────────┼──────────┼────────────────┤\n"
        "│ sum (Add)        │ (None, 4)     │        0 │ a_very_long_d… │\n"
        "│                  │               │          │ b[0][0]        │\n"
        "└──────────────────┴───────────────┴──────────┴────────────────┘\n";
    CHECK(summary(*branched, 64).find(narrow) != std::string::npos);
    // Keras's 108 columns on a wide terminal; an 80-column one gets 76.
    CHECK(summary_line_length(*branched, 200) == 108);
    CHECK(summary_line_length(*branched) == 76);
    CHECK(summary_line_length(*load_text(kSequential), 200) == 88);
    const std::string wide =
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                  ┃ Output Shape              ┃         Param # ┃ Connected to               ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩\n"
        "│ x (InputLayer)                │ (None, 8)                 │               0 │ -                          │\n"
        "├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤\n"
        "│ a_very_long_dense_layer_name… │ (None, 4)                 │              36 │ x[0][0]                    │\n"
        "│ (Dense)                       │                           │                 │                            │\n"
        "├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤\n"
        "│ b (Dense)                     │ (None, 4)                 │              36 │ x[0][0]                    │\n"
        "├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤\n"
        "│ sum (Add)                     │ (None, 4)                 │               0 │ a_very_long_dense_layer_n… │\n"
        "│                               │                           │                 │ b[0][0]                    │\n"
        "└───────────────────────────────┴───────────────────────────┴─────────────────┴────────────────────────────┘"
        "\n";
    CHECK(summary(*branched, summary_line_length(*branched, 200)).find(wide) != std::string::npos);
    CHECK_THROWS_WITH_AS(summary(*branched, 12), doctest::Contains("12 columns is too narrow"), InputError);
}

TEST_CASE("a key that is not a name (a list or a map, as YAML allows) is refused where it stands") {
    CHECK(load_error("inputs:\n  - {name: a, [4]: 3}\nnodes: []\noutputs: [a]\n")
              .find("model.yaml:2:15: a key: expected a string, got a list") != std::string::npos);
    CHECK(load_error(
              "inputs: [{name: x, shape: [2]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: 1, [units]: 2}\n"
              "outputs: [d]\n")
              .find("model.yaml:3:49: node 'd': a key: expected a string, got a list") != std::string::npos);
    CHECK(load_error("inputs: [{name: x, shape: [2]}]\nnodes:\n  - {name: d, op: Dense, inputs: [x], units: 1, "
                     "weights: {[kernel]: [[1], [2]]}}\noutputs: [d]\n")
              .find("node 'd': a key: expected a string, got a list") != std::string::npos);
}
