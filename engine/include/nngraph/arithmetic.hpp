// Integer rounding shared by the engine and the plugins (header-only, part of the plugin SDK).
#pragma once

#include <concepts>
#include <type_traits>

namespace nng {

// How many blocks of `block` cover n: n / block rounded up, for n >= 0 and block > 0.
template <std::integral N, std::integral B>
constexpr std::common_type_t<N, B> ceil_div(N n, B block) {
    using T = std::common_type_t<N, B>;
    return (static_cast<T>(n) + static_cast<T>(block) - 1) / static_cast<T>(block);
}

// n rounded up to a multiple of `multiple`, for n >= 0 and multiple > 0.
template <std::integral N, std::integral M>
constexpr std::common_type_t<N, M> round_up(N n, M multiple) {
    return ceil_div(n, multiple) * static_cast<std::common_type_t<N, M>>(multiple);
}

// Where part `part` (0 <= part <= parts) of n split into `parts` near-equal parts starts: n * part /
// parts. Sizes differ by one at most, and a run of k parts holds k / parts of n to within one, so
// threads that take equal runs of parts take equal work.
template <std::integral N, std::integral P, std::integral I>
constexpr std::common_type_t<N, P, I> split_point(N n, P parts, I part) {
    using T = std::common_type_t<N, P, I>;
    return static_cast<T>(n) * static_cast<T>(part) / static_cast<T>(parts);
}

}  // namespace nng
