// Counter-based random numbers shared by the engine (weight initialisation, shuffling) and plugins
// (dropout). Element i of a stream depends only on (seed, i), so results do not depend on thread
// count or on the order elements are visited, and a run resumed from a checkpoint replays exactly.
#pragma once

#include <cmath>
#include <cstdint>

namespace nng {

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche (Steele et al., 2014).
constexpr std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// 64 random bits for element `index` of stream `seed`.
constexpr std::uint64_t random_bits(std::uint64_t seed, std::uint64_t index) {
    return mix64(mix64(seed) + 0x9e3779b97f4a7c15ULL * (index + 1));
}

// A seed for a named sub-stream (a node, a weight, an epoch): FNV-1a of the name mixed into the parent.
constexpr std::uint64_t derive_seed(std::uint64_t parent, const char* name) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const char* p = name; *p; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 0x100000001b3ULL;
    return mix64(parent ^ h);
}
constexpr std::uint64_t derive_seed(std::uint64_t parent, std::uint64_t value) {
    return mix64(parent ^ mix64(value + 0x632be59bd9b4e019ULL));
}

// Uniform in [0, 1) with 24 bits, the precision of a float.
inline float uniform_float(std::uint64_t seed, std::uint64_t index) {
    return static_cast<float>(random_bits(seed, index) >> 40) * 0x1p-24f;
}

// A sequential generator over the same streams, for code that draws one value after another.
class Random {
public:
    explicit Random(std::uint64_t seed) : seed_(seed) {}

    std::uint64_t next_bits() { return random_bits(seed_, counter_++); }
    // Uniform in [0, 1) with 53 bits.
    double uniform() { return static_cast<double>(next_bits() >> 11) * 0x1p-53; }
    double uniform(double low, double high) { return low + (high - low) * uniform(); }
    // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        spare_ = radius * std::sin(6.283185307179586 * u2);
        has_spare_ = true;
        return radius * std::cos(6.283185307179586 * u2);
    }
    // Uniform integer in [0, n), without modulo bias worth measuring for n far below 2^64.
    std::uint64_t below(std::uint64_t n) {
        __extension__ typedef unsigned __int128 u128;  // GCC and Clang; silences -Wpedantic
        return static_cast<std::uint64_t>((static_cast<u128>(next_bits()) * n) >> 64);
    }

private:
    std::uint64_t seed_;
    std::uint64_t counter_ = 0;
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace nng
