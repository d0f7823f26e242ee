#include "graph/precision.hpp"

namespace nngraph {

nng_precision parse_precision(const std::string& name, const SourceLocation& where, const std::string& node) {
    if (name == "float32") return NNG_PRECISION_FLOAT32;
    if (name == "mixed_bfloat16") return NNG_PRECISION_MIXED_BFLOAT16;
    throw model_error(where, node, "dtype policy '" + name + "' is not one of float32, mixed_bfloat16");
}

const char* precision_name(nng_precision precision) {
    return precision == NNG_PRECISION_MIXED_BFLOAT16 ? "mixed_bfloat16" : "float32";
}

void require_precision_supported(nng_precision precision, bool bfloat16_supported, const SourceLocation& where,
                                 const std::string& node) {
    if (precision != NNG_PRECISION_MIXED_BFLOAT16 || bfloat16_supported) return;
    throw model_error(where, node,
                      "dtype policy mixed_bfloat16 needs a CPU with AVX512_BF16 (bfloat16 dot products), which this "
                      "one lacks; without them bfloat16 is emulated and slower than float32. Use float32 here");
}

}  // namespace nngraph
