// dtype policies in model files (SPEC section 11): the file's dtype_policy, a node's dtype, the
// names accepted, and the refusal on a CPU without bfloat16 dot products.
#include <doctest/doctest.h>

#include "graph/graph.hpp"
#include "graph/precision.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/error.hpp"
#include "plugins/op_instance.hpp"

using namespace nngraph;

namespace {

const char* kModel = R"(name: tiny
dtype_policy: mixed_bfloat16
inputs:
  - {name: x, shape: [4]}
nodes:
  - {name: hidden, op: Dense, inputs: [x], units: 3}
  - {name: out, op: Dense, inputs: [hidden], units: 1, dtype: float32}
outputs: [out]
)";

std::string parse_error(const std::string& text) {
    try {
        parse_model(text, "model.yaml", ".");
    } catch (const InputError& e) {
        return e.what();
    }
    FAIL("the model file parsed without an error");
    return {};
}

}  // namespace

TEST_CASE("dtype_policy sets every node's precision and a node's dtype overrides it") {
    const ModelSpec spec = parse_model(kModel, "model.yaml", ".");
    CHECK(spec.dtype_policy == NNG_PRECISION_MIXED_BFLOAT16);
    REQUIRE(spec.nodes.size() == 2);
    CHECK(spec.nodes[0].precision == NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(spec.nodes[1].precision == NNG_PRECISION_FLOAT32);
    // dtype is no attribute of the op: the op's schema never sees it.
    for (const NodeSpec& node : spec.nodes)
        for (const KeyedValue& a : node.attributes) CHECK(a.key != "dtype");

    const ModelSpec plain = parse_model(R"(name: plain
input: {shape: [4]}
layers:
  - {op: Dense, units: 2}
  - {op: Dense, units: 1, dtype: mixed_bfloat16}
)",
                                        "plain.yaml", ".");
    CHECK(plain.dtype_policy == NNG_PRECISION_FLOAT32);
    CHECK(plain.nodes[0].precision == NNG_PRECISION_FLOAT32);
    CHECK(plain.nodes[1].precision == NNG_PRECISION_MIXED_BFLOAT16);
}

TEST_CASE("the policy reaches the op instances") {
    if (!nng::cpu::has_bfloat16_dot_product()) return;  // refused at load: see the next case
    const auto graph = Graph::from_spec(parse_model(kModel, "model.yaml", "."));
    const auto node = [&](const std::string& name) {
        for (NodeId id : graph->order())
            if (graph->node(id).name == name) return graph->node(id).instance->precision();
        FAIL("no node " << name);
        return NNG_PRECISION_FLOAT32;
    };
    CHECK(node("hidden") == NNG_PRECISION_MIXED_BFLOAT16);
    CHECK(node("out") == NNG_PRECISION_FLOAT32);
}

TEST_CASE("an unknown policy name is an error at its line naming the choices") {
    const std::string top = parse_error(R"(name: bad
dtype_policy: bfloat16
input: {shape: [4]}
layers: [{op: Dense, units: 1}]
)");
    CHECK(top.find("model.yaml:2:15") != std::string::npos);
    CHECK(top.find("'bfloat16' is not one of float32, mixed_bfloat16") != std::string::npos);
    const std::string node = parse_error(R"(name: bad
input: {shape: [4]}
layers:
  - {op: Dense, units: 1, dtype: float16}
)");
    CHECK(node.find("model.yaml:4:34") != std::string::npos);
    CHECK(node.find("'float16'") != std::string::npos);
}

TEST_CASE("mixed_bfloat16 is refused on a CPU without AVX512_BF16, naming the place") {
    const SourceLocation where{"model.yaml", 6, 45};
    try {
        require_precision_supported(NNG_PRECISION_MIXED_BFLOAT16, false, where, "hidden");
        FAIL("mixed_bfloat16 accepted without bfloat16 support");
    } catch (const InputError& e) {
        const std::string message = e.what();
        CHECK(message.find("model.yaml:6:45: node 'hidden'") != std::string::npos);
        CHECK(message.find("AVX512_BF16") != std::string::npos);
    }
    CHECK_NOTHROW(require_precision_supported(NNG_PRECISION_FLOAT32, false, where, "hidden"));
    CHECK_NOTHROW(require_precision_supported(NNG_PRECISION_MIXED_BFLOAT16, true, where, "hidden"));
}

TEST_CASE("load-time inference counts no work: the batch is not known yet") {
    const auto graph = Graph::from_spec(parse_model(R"(name: plain
input: {shape: [4]}
layers: [{op: Dense, units: 2}]
)",
                                                    "plain.yaml", "."));
    for (NodeId id : graph->order()) {
        CHECK(graph->node(id).shapes.forward_flops == 0);
        CHECK(graph->node(id).shapes.backward_bytes == 0);
    }
}
