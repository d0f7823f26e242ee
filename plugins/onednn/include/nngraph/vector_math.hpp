// 64-byte float vectors (GCC's vector extension) and the exponential over them, for the row
// kernels plugins share: AVX-512 in the x86-64-v4 clones of the functions that use them, a
// portable fallback elsewhere.
#pragma once

#include <cstdint>
#include <cstring>

// The vector type below never crosses a library boundary, so its calling convention does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nng::simd {

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef int v16iu __attribute__((vector_size(64), aligned(4), may_alias));

inline __attribute__((always_inline)) v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline __attribute__((always_inline)) v16i load(const std::int32_t* p) { return *reinterpret_cast<const v16iu*>(p); }
inline __attribute__((always_inline)) void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

// The lanes of `a` where `lanes` is all ones, else those of `b`. Bitwise: GCC 12 takes a vector
// comparison's result apart lane by lane once it is kept in a variable, and a NaN in an unused
// lane goes too.
inline __attribute__((always_inline)) v16 select_lanes(v16i lanes, v16 a, v16 b = v16{}) {
    return (v16)(((v16i)a & lanes) | ((v16i)b & ~lanes));
}

// e^x for 16 lanes: Cephes's polynomial on x - n·ln 2, exact to about 1 ulp; 0 below -87.3 (where
// float's e^x is subnormal) and for -inf.
inline __attribute__((always_inline)) v16 vexp(v16 in) {
    v16 x = in < -87.3f ? v16{} - 87.3f : in;
    x = x > 88.7f ? v16{} + 88.7f : x;
    const v16 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const v16 r = x - n * 0.693359375f - n * -2.12194440e-4f;
    v16 poly = v16{} + 1.9875691500e-4f;
    poly = poly * r + 1.3981999507e-3f;
    poly = poly * r + 8.3334519073e-3f;
    poly = poly * r + 4.1665795894e-2f;
    poly = poly * r + 1.6666665459e-1f;
    poly = poly * r + 5.0000001201e-1f;
    const v16 y = poly * r * r + r + 1.0f;
    const v16i exponent = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16 scale;
    std::memcpy(&scale, &exponent, sizeof scale);
    return in < -87.3f ? v16{} : y * scale;
}

// out[c] = e^(x[c] - shift) for c < n (a multiple of 16; out may be x); returns the lane-wise
// sums of the results.
inline __attribute__((always_inline)) v16 exponentiate(const float* x, float* out, std::int64_t n, float shift) {
    v16 sums{};
    for (std::int64_t c = 0; c < n; c += 16) {
        const v16 e = vexp(load(x + c) - shift);
        store(out + c, e);
        sums += e;
    }
    return sums;
}

// The sum of v's 16 lanes, in lane order.
inline __attribute__((always_inline)) float lane_sum(v16 v) {
    float sum = 0.0f;
    for (int lane = 0; lane < 16; ++lane) sum += v[lane];
    return sum;
}

}  // namespace nng::simd
