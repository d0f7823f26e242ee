// What this CPU's vector units can do, asked in one place by the engine and by plugins, and the
// attributes that build a function for each x86-64 level it may meet. Header-only: a plugin uses
// it without linking the engine.
#pragma once

// Put on the definition of a function whose plain loops the compiler vectorises: built for
// AVX-512, AVX2 with FMA and the baseline, one picked at load time.
#define NNG_LOOP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// Put on the definition of a function on 16-lane vectors: built for AVX-512 and for the baseline.
// No AVX2 build: GCC 12 spills 64-byte vectors there and runs slower than the baseline's four
// 16-byte pieces.
#define NNG_V16_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))

namespace nng::cpu {

// AVX-512 with F, BW, VL and DQ: x86-64-v4's vector instructions.
inline bool has_avx512() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return has;
#else
    return false;
#endif
}

// AVX2 with FMA: x86-64-v3's.
inline bool has_avx2_fma() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
#else
    return false;
#endif
}

// AVX512_BF16: bfloat16 dot products with float accumulation, what mixed_bfloat16 needs to be fast.
inline bool has_bfloat16_dot_product() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const bool has = __builtin_cpu_supports("avx512bf16");
    return has;
#else
    return false;
#endif
}

}  // namespace nng::cpu
