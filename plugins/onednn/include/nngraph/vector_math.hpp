// Float vectors (GCC's vector extension) and the exponential over them, for the row kernels
// plugins share. Two ways to build a kernel for the CPU it runs on:
//   - width-generic kernels run through run_widest, which picks the widest vectors the CPU has
//     (64 bytes on AVX-512, 32 on AVX2, 16 on the baseline), each built for its instruction set;
//   - kernels laid out in 16 lanes (v16, the attention tiles) carry NNG_V16_CLONES.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "nngraph/cpu.hpp"

// The vector types below never cross a library boundary, so their calling convention does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nng::simd {

// Vectors of kBytes: kBytes / 4 float or int lanes.
template <int kBytes>
struct Vectors {
    static constexpr int kLanes = kBytes / 4;
    typedef float Float __attribute__((vector_size(kBytes)));
    typedef int Int __attribute__((vector_size(kBytes)));
    typedef float FloatUnaligned __attribute__((vector_size(kBytes), aligned(4), may_alias));
    typedef int IntUnaligned __attribute__((vector_size(kBytes), aligned(4), may_alias));
};

template <typename V>
inline constexpr int kLanes = sizeof(V) / sizeof(float);

typedef Vectors<64>::Float v16;
typedef Vectors<64>::Int v16i;

template <typename V = v16>
inline __attribute__((always_inline)) V load(const float* p) {
    return *reinterpret_cast<const typename Vectors<sizeof(V)>::FloatUnaligned*>(p);
}
template <typename VI = v16i>
inline __attribute__((always_inline)) VI load(const std::int32_t* p) {
    return *reinterpret_cast<const typename Vectors<sizeof(VI)>::IntUnaligned*>(p);
}
template <typename V>
inline __attribute__((always_inline)) void store(float* p, V v) {
    *reinterpret_cast<typename Vectors<sizeof(V)>::FloatUnaligned*>(p) = v;
}

// The lanes of `a` where `lanes` is all ones, else those of `b`. Bitwise: GCC 12 takes a vector
// comparison's result apart lane by lane once it is kept in a variable, and a NaN in an unused
// lane goes too.
template <typename V, typename VI>
inline __attribute__((always_inline)) V select_lanes(VI lanes, V a, V b = V{}) {
    return (V)(((VI)a & lanes) | ((VI)b & ~lanes));
}

// max(bound, x) and min(bound, x) lane by lane, a NaN in x kept: one vmaxps / vminps where GCC
// builds a vector select as a compare and a blend. The 32- and 64-byte forms are written in
// assembly, as their intrinsics cannot be expanded in a function built for the baseline.
template <typename V>
inline __attribute__((always_inline)) V at_least(V bound, V x) {
#if defined(__x86_64__) && defined(__GNUC__)
    V r;
    if constexpr (sizeof(V) == 64) {
        asm("vmaxps %2, %1, %0" : "=v"(r) : "v"(bound), "v"(x));
        return r;
    } else if constexpr (sizeof(V) == 32) {
        asm("vmaxps %2, %1, %0" : "=x"(r) : "x"(bound), "x"(x));
        return r;
    } else if constexpr (sizeof(V) == 16) {
        return __builtin_ia32_maxps(bound, x);
    }
#endif
    return bound > x ? bound : x;
}
template <typename V>
inline __attribute__((always_inline)) V at_most(V bound, V x) {
#if defined(__x86_64__) && defined(__GNUC__)
    V r;
    if constexpr (sizeof(V) == 64) {
        asm("vminps %2, %1, %0" : "=v"(r) : "v"(bound), "v"(x));
        return r;
    } else if constexpr (sizeof(V) == 32) {
        asm("vminps %2, %1, %0" : "=x"(r) : "x"(bound), "x"(x));
        return r;
    } else if constexpr (sizeof(V) == 16) {
        return __builtin_ia32_minps(bound, x);
    }
#endif
    return bound < x ? bound : x;
}

// e^x lane by lane, within 2 ulp: e^r on r = x - n·ln 2 (ln 2 in two parts, Cody and Waite) as
// 1 + r + r²·P(r), P the degree-4 minimax fit of relative error 3e-9, times 2^n. P is evaluated
// in Estrin's form: its terms in pairs side by side rather than one chain of multiply-adds, since
// the chain's latency, not the arithmetic, bounds a loop of exponentials.
namespace detail {
template <typename V>
struct ExpParts {
    V y;       // e^r
    V n;       // the nearest integer to x·log2(e)
    V biased;  // n + 1.5·2^23, which holds n in its low mantissa bits
};
template <typename V>
inline __attribute__((always_inline)) ExpParts<V> exp_parts(V x) {
    const V biased = x * 1.44269504088896341f + 12582912.0f;
    const V n = biased - 12582912.0f;
    const V r = x - n * 0.693359375f - n * -2.12194440e-4f;
    const V r2 = r * r;
    const V low = r * 1.6666520689e-1f + 4.9999993452e-1f;
    const V high = r * 8.3687099615e-3f + 4.1668387374e-2f;
    const V poly = low + r2 * (high + r2 * 1.3814613095e-3f);
    return {(poly * r2 + r) + 1.0f, n, biased};
}
}  // namespace detail

namespace detail {
// e^x for x already within [-88, 88.7]: 2^n built in a float's exponent bits.
template <typename V>
inline __attribute__((always_inline)) V exp_of_clamped(V x) {
    typedef typename Vectors<sizeof(V)>::Int VI;
    const ExpParts<V> e = exp_parts(x);
    const VI exponent = (__builtin_convertvector(e.n, VI) + 127) << 23;
    V scale;
    std::memcpy(&scale, &exponent, sizeof scale);
    return e.y * scale;
}
}  // namespace detail

// x is clamped to [-88, 88.7] first: from -88 up to about -87.65, n is -127, which puts 0 in the
// exponent, so e^x is 0 there and for -inf without a select.
template <typename V>
inline __attribute__((always_inline)) V vexp(V in) {
    return detail::exp_of_clamped(at_most(V{} + 88.7f, at_least(V{} - 88.0f, in)));
}

// The smallest x vexp_normal takes as itself: e^x is then a normal float (n >= -126, e^r >= 1).
inline constexpr float kExpNormalLowest = -87.3f;

// e^x where only 1 + e^x matters (the sigmoid, tanh): x below kExpNormalLowest is taken as it, so
// e^x is about FLT_MIN where vexp gives 0 (1 + either is 1), and no result is ever subnormal.
// Otherwise vexp's value, but on AVX-512 one vscalefps applies 2^n in place of building it in the
// exponent bits, which also gives e^x its finite value from 88.37 to 88.72, where vexp's is inf.
template <typename V>
inline __attribute__((always_inline)) V vexp_normal(V in) {
    const V x = at_least(V{} + kExpNormalLowest, in);
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (sizeof(V) == 64) {
        // From 89.5 up n is 129 or more, so 2^n·e^r is inf, as e^x is in floats above 88.72.
        const detail::ExpParts<V> e = detail::exp_parts(at_most(V{} + 89.5f, x));
        V scaled;
        asm("vscalefps %2, %1, %0" : "=v"(scaled) : "v"(e.y), "v"(e.n));
        return scaled;
    }
#endif
    return detail::exp_of_clamped(at_most(V{} + 88.7f, x));
}

// The largest |x| vexp_within takes: 2^n then stays a normal float's exponent for any e^r.
inline constexpr float kExpWithinBound = 86.0f;

// vexp's value for |x| <= kExpWithinBound only, with fewer instructions on the chain: no clamping,
// and n added straight into e^r's exponent bits. Outside the bound the result is wrong.
template <typename V>
inline __attribute__((always_inline)) V vexp_within(V x) {
    typedef typename Vectors<sizeof(V)>::Int VI;
    const detail::ExpParts<V> e = detail::exp_parts(x);
    VI bits, biased;
    std::memcpy(&bits, &e.y, sizeof bits);
    std::memcpy(&biased, &e.biased, sizeof biased);
    bits += (biased - 0x4B400000) << 23;  // 0x4B400000: the bits of 1.5·2^23
    V out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

// Which exponential exponentiate takes: vexp, or vexp_within where every argument is within its bound.
enum class ExpRange { kAny, kWithinBound };

// out[c] = e^(x[c] - shift) for c < n (a multiple of V's lanes; out may be x); returns the
// lane-wise sums of the results.
template <typename V = v16, ExpRange kRange = ExpRange::kAny>
inline __attribute__((always_inline)) V exponentiate(const float* x, float* out, std::int64_t n, float shift) {
    V sums{};
    for (std::int64_t c = 0; c < n; c += kLanes<V>) {
        const V in = load<V>(x + c) - shift;
        const V e = kRange == ExpRange::kAny ? vexp(in) : vexp_within(in);
        store(out + c, e);
        sums += e;
    }
    return sums;
}

// A row's tail past its whole vectors: the `count` floats at p (fewer than the lanes) in a vector
// whose other lanes are `pad`, and the first `count` lanes of v stored at p. On AVX-512 one masked
// move each: a copy through memory would wait on store forwarding, which fails for a whole vector
// read over narrower writes. Assembly, as at_least's, for a function built for the baseline; GCC
// only, as clang checks a 64-byte operand against this function's own instruction set.
template <typename V>
inline __attribute__((always_inline)) V load_first(const float* p, std::int64_t count, float pad = 0.0f) {
    V v = V{} + pad;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    if constexpr (sizeof(V) == 64) {
        const auto lanes = static_cast<std::uint16_t>((1u << count) - 1u);
        asm("vmovups %1, %0%{%2%}" : "+v"(v) : "m"(*reinterpret_cast<const float(*)[16]>(p)), "Yk"(lanes));
        return v;
    }
#endif
    std::memcpy(&v, p, static_cast<std::size_t>(count) * sizeof(float));
    return v;
}
template <typename V>
inline __attribute__((always_inline)) void store_first(float* p, V v, std::int64_t count) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    if constexpr (sizeof(V) == 64) {
        const auto lanes = static_cast<std::uint16_t>((1u << count) - 1u);
        asm("vmovups %1, %0%{%2%}" : "+m"(*reinterpret_cast<float(*)[16]>(p)) : "v"(v), "Yk"(lanes));
        return;
    }
#endif
    std::memcpy(p, &v, static_cast<std::size_t>(count) * sizeof(float));
}

// The sum of v's lanes, in lane order.
template <typename V>
inline __attribute__((always_inline)) float lane_sum(V v) {
    float sum = 0.0f;
    for (int lane = 0; lane < kLanes<V>; ++lane) sum += v[lane];
    return sum;
}

// The widest vectors this CPU runs: 64 (AVX-512: F, BW, VL, DQ), 32 (AVX2 with FMA) or 16 bytes;
// at most NNGRAPH_MAX_VECTOR_BYTES (16, 32 or 64) when that is set, so every build can be tested.
inline int widest_vector_bytes() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const int bytes = [] {
        const int cpu = cpu::has_avx512() ? 64 : cpu::has_avx2_fma() ? 32 : 16;
        const char* cap = std::getenv("NNGRAPH_MAX_VECTOR_BYTES");
        const int most = cap ? std::atoi(cap) : 0;
        return (most == 16 || most == 32 || most == 64) && most < cpu ? most : cpu;
    }();
    return bytes;
#else
    return 16;
#endif
}

namespace detail {
template <template <int> class Kernel, typename... Args>
__attribute__((target("arch=x86-64-v4"))) void run_avx512(Args... args) {
    Kernel<64>::run(args...);
}
template <template <int> class Kernel, typename... Args>
__attribute__((target("arch=x86-64-v3"))) void run_avx2(Args... args) {
    Kernel<32>::run(args...);
}
template <template <int> class Kernel, typename... Args>
void run_baseline(Args... args) {
    Kernel<16>::run(args...);
}
}  // namespace detail

// Kernel<kBytes>::run(args...) on the widest vectors this CPU has, built for its instruction set.
// Kernel<kBytes>::run must be always_inline, so that it is compiled inside each build.
template <template <int> class Kernel, typename... Args>
void run_widest(Args... args) {
#if defined(__x86_64__) && defined(__GNUC__)
    switch (widest_vector_bytes()) {
        case 64:
            return detail::run_avx512<Kernel>(args...);
        case 32:
            return detail::run_avx2<Kernel>(args...);
        default:
            break;
    }
#endif
    detail::run_baseline<Kernel>(args...);
}

}  // namespace nng::simd
