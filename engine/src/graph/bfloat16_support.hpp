// Whether mixed_bfloat16 pays on this machine. AVX512_BF16 alone does not say: a CPU may issue a
// bfloat16 dot product at half the rate of a float32 FMA (the Intel Xeon of docs/benchmarks.md,
// without AMX), so that its bf16 products, twice the arithmetic an instruction, run no faster, and
// with their conversions slower. The instruction rates are measured once a process, on the
// calling thread.
#pragma once

namespace nngraph {

struct Bfloat16Support {
    bool dot_product = false;   // AVX512_BF16: vdpbf16ps
    bool matrix_tiles = false;  // AMX-BF16, which oneDNN's products take where the OS grants it
    // One core's bf16 dot-product arithmetic a second over its f32 FMA arithmetic, as measured;
    // 0 without AVX512_BF16.
    double dot_over_fma = 0.0;
    bool slow_allowed = false;  // NNGRAPH_ALLOW_SLOW_BFLOAT16=1: run the policy even where it is slower

    // The products computed in bf16 have at least the arithmetic rate of f32 ones.
    bool faster_than_float32() const { return dot_product && (matrix_tiles || dot_over_fma >= 1.0); }
    // What a model under mixed_bfloat16 is allowed to run on.
    bool usable() const { return dot_product && (faster_than_float32() || slow_allowed); }
};

// This machine's, measured at the first call.
const Bfloat16Support& bfloat16_support();

// The measurement behind `dot_over_fma`: best of alternated rounds of independent chains of each
// instruction. 0 without AVX512_BF16.
double measure_bfloat16_dot_over_fma();

}  // namespace nngraph
