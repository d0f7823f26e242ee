// LSH attention's hashing (Kitaev et al. 2020, section 2), without any engine dependency so that
// tests can rebuild the core's buckets: how many buckets a length gets, and the random rotations.
#pragma once

#include <cmath>
#include <cstdint>

#include "nngraph/arithmetic.hpp"
#include "nngraph/random.hpp"

namespace nngraph_attention::lsh {

// The paper's n_buckets = steps / bucket_size, rounded up to an even count (the rotation has
// n_buckets / 2 columns); one bucket when a single chunk covers the sequence.
inline std::int64_t bucket_count(std::int64_t steps, std::int64_t bucket_size) {
    if (steps <= bucket_size) return 1;
    const std::int64_t n = nng::ceil_div(steps, bucket_size);
    return n + n % 2;
}

// Entry (e, c) of the (dim, bucket_count / 2) rotation of `head` in hash round `round`: a standard
// normal (Box-Muller) drawn from the counter-based stream `seed`, so any thread may draw any entry.
inline float rotation(std::uint64_t seed, std::int64_t head, std::int64_t round, std::int64_t rounds, std::int64_t dim,
                      std::int64_t half_buckets, std::int64_t e, std::int64_t c) {
    const auto index = static_cast<std::uint64_t>(((head * rounds + round) * dim + e) * half_buckets + c);
    const double u1 = (static_cast<double>(nng::random_bits(seed, 2 * index) >> 11) + 1.0) * 0x1p-53;
    const double u2 = static_cast<double>(nng::random_bits(seed, 2 * index + 1) >> 11) * 0x1p-53;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// The bucket of a vector whose products with the rotation's columns are xr[0 .. half): the
// argmax over [xR ; -xR] (the first of equal maxima).
template <typename T>
std::int64_t bucket_of(const T* xr, std::int64_t half_buckets) {
    std::int64_t best = 0;
    T best_value = xr[0];
    for (std::int64_t c = 1; c < half_buckets; ++c)
        if (xr[c] > best_value) best_value = xr[c], best = c;
    for (std::int64_t c = 0; c < half_buckets; ++c)
        if (-xr[c] > best_value) best_value = -xr[c], best = half_buckets + c;
    return best;
}

// The keys are the queries scaled to unit length (the shared-QK rule), as trax's
// length_normalized: x / sqrt(|x|² + kNormEpsilon).
inline constexpr double kNormEpsilon = 1e-6;

// A position's score with itself (it attends to itself only when nothing else is allowed).
inline constexpr float kSelfScore = -1.0e5f;

}  // namespace nngraph_attention::lsh
