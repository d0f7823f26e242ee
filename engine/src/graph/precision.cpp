#include "graph/precision.hpp"

#include <cstdio>

namespace nngraph {

nng_precision parse_precision(const std::string& name, const SourceLocation& where, const std::string& node) {
    if (name == "float32") return NNG_PRECISION_FLOAT32;
    if (name == "mixed_bfloat16") return NNG_PRECISION_MIXED_BFLOAT16;
    throw model_error(where, node, "dtype policy '" + name + "' is not one of float32, mixed_bfloat16");
}

const char* precision_name(nng_precision precision) {
    return precision == NNG_PRECISION_MIXED_BFLOAT16 ? "mixed_bfloat16" : "float32";
}

void require_precision_supported(nng_precision precision, const Bfloat16Support& support, const SourceLocation& where,
                                 const std::string& node) {
    if (precision != NNG_PRECISION_MIXED_BFLOAT16 || support.usable()) return;
    if (!support.dot_product) {
        throw model_error(where, node,
                          "dtype policy mixed_bfloat16 needs a CPU with AVX512_BF16 (bfloat16 dot products), which "
                          "this one lacks; without them bfloat16 is emulated and slower than float32. Use float32 "
                          "here");
    }
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2f", support.dot_over_fma);
    throw model_error(where, node,
                      std::string("dtype policy mixed_bfloat16 would run slower than float32 on this CPU: its "
                                  "AVX512_BF16 dot products do ") +
                          ratio +
                          " times the arithmetic a second of its float32 FMAs, and it has no AMX. Use float32 "
                          "here, or set NNGRAPH_ALLOW_SLOW_BFLOAT16=1 to run bfloat16 anyway");
}

}  // namespace nngraph
