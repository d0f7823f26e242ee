// dtype policies in model files (SPEC section 11): the file's dtype_policy, a node's dtype, the
// names accepted, and the refusal where bfloat16 would be slower than float32.
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
    if (!bfloat16_support().usable()) return;  // refused at load: see the cases below
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

std::string refusal(const Bfloat16Support& support) {
    try {
        require_precision_supported(NNG_PRECISION_MIXED_BFLOAT16, support, {"model.yaml", 6, 45}, "hidden");
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

TEST_CASE("mixed_bfloat16 is refused on a CPU without AVX512_BF16, naming the place") {
    const std::string message = refusal(Bfloat16Support{});
    CHECK(message.find("model.yaml:6:45: node 'hidden'") != std::string::npos);
    CHECK(message.find("needs a CPU with AVX512_BF16") != std::string::npos);
    Bfloat16Support allowed_but_missing;
    allowed_but_missing.slow_allowed = true;
    CHECK(refusal(allowed_but_missing).find("needs a CPU with AVX512_BF16") != std::string::npos);
    CHECK_NOTHROW(require_precision_supported(NNG_PRECISION_FLOAT32, Bfloat16Support{}, {}, "hidden"));
}

TEST_CASE("mixed_bfloat16 is refused where bfloat16 dot products are slower than float32 FMAs, unless allowed") {
    Bfloat16Support slow;
    slow.dot_product = true;
    slow.dot_over_fma = 0.49;
    const std::string message = refusal(slow);
    CHECK(message.find("model.yaml:6:45: node 'hidden'") != std::string::npos);
    CHECK(message.find("would run slower than float32") != std::string::npos);
    CHECK(message.find("0.49 times") != std::string::npos);
    CHECK(message.find("NNGRAPH_ALLOW_SLOW_BFLOAT16=1") != std::string::npos);

    Bfloat16Support allowed = slow;
    allowed.slow_allowed = true;
    CHECK(refusal(allowed).empty());
    Bfloat16Support with_tiles = slow;
    with_tiles.matrix_tiles = true;
    CHECK(refusal(with_tiles).empty());
    Bfloat16Support fast = slow;
    fast.dot_over_fma = 1.9;
    CHECK(refusal(fast).empty());
    CHECK(fast.faster_than_float32());
    CHECK_FALSE(allowed.faster_than_float32());
}

TEST_CASE("this CPU's bfloat16 support is measured: a dot-product rate wherever AVX512_BF16 is") {
    const Bfloat16Support& here = bfloat16_support();
    CHECK(here.dot_product == nng::cpu::has_bfloat16_dot_product());
    if (!here.dot_product) {
        CHECK(here.dot_over_fma == 0.0);
        CHECK_FALSE(here.usable());
        return;
    }
    // Half to four times: the rates of the CPUs with AVX512_BF16 (one dot product every other
    // cycle against two FMAs, up to two dot products against one FMA issue).
    MESSAGE("bfloat16 dot products do " << here.dot_over_fma << " times the arithmetic of float32 FMAs here");
    CHECK(here.dot_over_fma > 0.2);
    CHECK(here.dot_over_fma < 5.0);
    const double again = measure_bfloat16_dot_over_fma();
    CHECK(again == doctest::Approx(here.dot_over_fma).epsilon(0.25));
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
