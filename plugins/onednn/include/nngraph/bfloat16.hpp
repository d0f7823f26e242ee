// bfloat16 values as 16-bit integers, rounded from float the way oneDNN's conversion rounds, for
// the kernels of our own that feed bf16 products (attention tiles, the LSTM's steps).
#pragma once

#include <cstdint>
#include <cstring>

namespace nng {

// The bits of bf16(x) in the upper half of x's bits, the lower half zero, for one float's bits or a
// vector of them: round to nearest even as oneDNN's conversion does; a NaN stays a quiet NaN.
template <class Bits>
inline __attribute__((always_inline)) Bits bfloat16_bits(Bits bits) {
    const Bits rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
    const Bits quiet_nan = (bits | 0x400000u) & 0xffff0000u;
    const Bits nan = 0u - ((0x7f800000u - (bits & 0x7fffffffu)) >> 31);  // all ones where |x| is past infinity
    return (quiet_nan & nan) | (rounded & ~nan);
}
inline std::uint16_t to_bfloat16(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return static_cast<std::uint16_t>(bfloat16_bits(bits) >> 16);
}
inline float from_bfloat16(std::uint16_t h) {
    const std::uint32_t bits = std::uint32_t{h} << 16;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

// dst[i] = bf16(src[i]), n elements: a row too short for a oneDNN reorder's dispatch to pay.
void to_bfloat16(const float* src, std::uint16_t* dst, std::int64_t n);
// The same, stored past the caches: for values read again only long after (an LSTM's saved
// gates, read back by backward), which plain stores would first fetch from memory.
void to_bfloat16_streaming(const float* src, std::uint16_t* dst, std::int64_t n);
// dst[i] = src[i] as float (exact), n elements.
void from_bfloat16(const std::uint16_t* src, float* dst, std::int64_t n);

}  // namespace nng
