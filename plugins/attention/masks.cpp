#include "masks.hpp"

#include <stdexcept>

namespace nngraph_attention {

Masks::Masks(const Problem& p, const Pattern& pattern, std::uint8_t* combined_room)
    : p_(p),
      pattern_(pattern),
      masked_(p.style == MaskStyle::kSubtract ? MaskedScore{kLargeNegative, 1.0f, 0.0f}
                                              : MaskedScore{0.0f, 0.0f, kLargeNegative}) {
    const std::uint8_t* a = p.key_masks[0];
    const std::uint8_t* b = p.key_masks[1];
    if (!a || !b) {
        keys_ = a ? a : b;
        return;
    }
    if (!combined_room)
        throw std::logic_error("attention masks: two key masks given, but no room was sized to combine them");
    for (std::int64_t e = 0; e < p.batch * p.tv; ++e) combined_room[e] = static_cast<std::uint8_t>(a[e] && b[e]);
    keys_ = combined_room;
}

bool Masks::any_key_kept(std::int64_t b, std::int64_t j0, std::int64_t j1) const {
    const std::uint8_t* k = keys(b);
    return !k || std::any_of(k + j0, k + j1, [](std::uint8_t x) { return x != 0; });
}

bool Masks::any_allowed(std::int64_t b, std::int64_t i) const {
    if (!query_kept(b, i)) return false;
    const std::int64_t end = causal_end(i);
    const std::uint8_t* k = keys(b);
    if (!k) return end > 0;
    return std::any_of(k, k + end, [](std::uint8_t x) { return x != 0; });
}

std::int64_t Masks::min_distance(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
    if (p_.causal) return j0 > i1 - 1 ? -1 : std::max<std::int64_t>(0, i0 - (j1 - 1));
    return std::max<std::int64_t>({0, j0 - (i1 - 1), i0 - (j1 - 1)});
}

bool Masks::block_candidate(std::int64_t g, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
    const Pattern& pat = pattern_;
    i0 += p_.query_start, i1 += p_.query_start, j0 += p_.key_start, j1 += p_.key_start;
    const std::int64_t dist = min_distance(i0, i1, j0, j1);
    if (dist < 0) return false;
    if (pat.window >= 0) return i0 < pat.global || j0 < pat.global || dist <= pat.window;
    if (pat.block > 0) {
        const std::int64_t B = pat.block, bi0 = i0 / B, bi1 = (i1 - 1) / B, bj0 = j0 / B, bj1 = (j1 - 1) / B;
        if (std::max<std::int64_t>({0, bj0 - bi1, bi0 - bj1}) < pat.local_blocks) return true;
        if (pat.stride <= 0) return false;
        const std::int64_t S = pat.stride;
        const std::int64_t first = (bj0 + 1 + S - 1) / S * S - 1;  // the first summary block >= bj0
        return first <= bj1 && (!p_.causal || first * B <= i1 - 1);
    }
    if (pat.adaptive()) return static_cast<double>(dist) < pat.ramp + span(g);
    return true;
}

bool Masks::block_full(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
    const Pattern& pat = pattern_;
    i0 += p_.query_start, i1 += p_.query_start, j0 += p_.key_start, j1 += p_.key_start;
    if (p_.causal && j1 - 1 > i0) return false;
    if (pat.adaptive()) return false;
    if (pat.window >= 0) {
        if (i1 <= pat.global || j1 <= pat.global) return true;
        return std::max(i1 - 1 - j0, j1 - 1 - i0) <= pat.window;
    }
    if (pat.block > 0) return std::max(i1 - 1, j1 - 1) / pat.block - std::min(i0, j0) / pat.block < pat.local_blocks;
    return true;
}

}  // namespace nngraph_attention
