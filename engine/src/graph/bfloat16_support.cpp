#include "graph/bfloat16_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "nngraph/cpu.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace nngraph {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)

// Enough independent accumulators to cover either instruction's latency on two ports.
constexpr int kChains = 16;
constexpr long kIterations = 16384;  // 262,144 instructions a round

using Clock = std::chrono::steady_clock;

volatile float sink;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Arithmetic a second of one instruction in independent chains: an FMA on 16 floats is 32
// operations, a dot product on 16 pairs of bfloat16 64.
template <bool kDotProduct>
__attribute__((target("avx512f,avx512bf16"))) double rate_of() {
    const __m512 one = _mm512_set1_ps(1.0f), tiny = _mm512_set1_ps(1e-30f);
    const __m512bh one_pairs = (__m512bh)_mm512_set1_epi16(0x3f80), tiny_pairs = (__m512bh)_mm512_set1_epi16(0x0d00);
    __m512 sums[kChains];
    for (__m512& s : sums) s = _mm512_setzero_ps();
    const auto start = Clock::now();
    for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 16
        for (__m512& s : sums) {
            if constexpr (kDotProduct)
                s = _mm512_dpbf16_ps(s, one_pairs, tiny_pairs);
            else
                s = _mm512_fmadd_ps(one, tiny, s);
        }
    }
    const double elapsed = seconds_since(start);
    // The sums are read, so that no step is dropped.
    __m512 total = _mm512_setzero_ps();
    for (const __m512& s : sums) total = _mm512_add_ps(total, s);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, total);
    for (float lane : lanes) sink = sink + lane;
    return elapsed > 0 ? double(kIterations) * kChains * (kDotProduct ? 64.0 : 32.0) / elapsed : 0.0;
}

double measured_ratio() {
    // Alternated rounds, best of each: the first rounds also wake the wide units and the clock.
    double best_fma = 0.0, best_dot = 0.0;
    for (int round = 0; round < 8; ++round) {
        best_fma = std::max(best_fma, rate_of<false>());
        best_dot = std::max(best_dot, rate_of<true>());
    }
    return best_fma > 0 ? best_dot / best_fma : 0.0;
}

// CPUID leaf 7's AMX-BF16 bit, and the tile state enabled by the OS in XCR0 (bits 17 and 18).
bool has_matrix_tiles() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;  // OSXSAVE
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx & (1u << 22))) return false;
    unsigned low = 0, high = 0;
    asm volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    constexpr unsigned kTileState = (1u << 17) | (1u << 18);
    return (low & kTileState) == kTileState;
}

#else

double measured_ratio() { return 0.0; }
bool has_matrix_tiles() { return false; }

#endif

bool slow_bfloat16_allowed() {
    const char* value = std::getenv("NNGRAPH_ALLOW_SLOW_BFLOAT16");
    return value && std::strcmp(value, "1") == 0;
}

}  // namespace

double measure_bfloat16_dot_over_fma() { return nng::cpu::has_bfloat16_dot_product() ? measured_ratio() : 0.0; }

const Bfloat16Support& bfloat16_support() {
    static const Bfloat16Support support = [] {
        Bfloat16Support s;
        s.dot_product = nng::cpu::has_bfloat16_dot_product();
        s.matrix_tiles = s.dot_product && has_matrix_tiles();
        s.dot_over_fma = measure_bfloat16_dot_over_fma();
        s.slow_allowed = slow_bfloat16_allowed();
        return s;
    }();
    return support;
}

}  // namespace nngraph
