// Keras's dtype policies as a model file names them (SPEC section 11): `dtype_policy` at the top of
// the file, `dtype` on a node. Ops receive the policy as a plan-time attribute (nng_precision).
#pragma once

#include <string>

#include "graph/bfloat16_support.hpp"
#include "graph/source_location.hpp"
#include "nngraph/plugin.h"

namespace nngraph {

// "float32" or "mixed_bfloat16"; throws a model_error at `where` for any other name.
nng_precision parse_precision(const std::string& name, const SourceLocation& where, const std::string& node);
const char* precision_name(nng_precision precision);

// Refuses mixed_bfloat16 where it would run slower than float32, the opposite of what the policy
// is for: without AVX512_BF16 (emulated), or where its dot products are slower than FMAs and no
// override allows it. The error names the place and the reason.
void require_precision_supported(nng_precision precision, const Bfloat16Support& support, const SourceLocation& where,
                                 const std::string& node);

}  // namespace nngraph
