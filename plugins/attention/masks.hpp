// Which keys a query sees, for every core: the query and key padding masks, causality, a sparsity
// pattern (window, block-sparse, adaptive span), and what a masked score becomes in each op's
// mask style. A core builds one Masks per call.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core.hpp"

namespace nngraph_attention {

// Keras's large negative for float32 scores (Attention subtracts it, MultiHeadAttention puts it
// in place of the score).
inline constexpr float kLargeNegative = -1.0e9f;
// A row maximum below this saw no unmasked key (unmasked scores are far above, masked ones at -1e9).
inline constexpr float kFullyMaskedBelow = -5.0e8f;

// What a masked key's score becomes: (score + add) · keep + set, i.e. score - 1e9 (Attention's
// kSubtract) or -1e9 (MultiHeadAttention's kReplace). A value, so that loops keep it in registers.
struct MaskedScore {
    float add, keep, set;
    float operator()(float score) const { return (score + add) * keep + set; }
};

class Masks {
public:
    // Room for the two key masks ANDed into one (batch, tv) mask, when both may be given.
    static std::int64_t combined_bytes(const Problem& p) { return p.two_key_masks ? p.batch * p.tv : 0; }

    Masks(const Problem& p, const Pattern& pattern, std::uint8_t* combined_room);

    // The sample's combined key mask (1 = keep), or null when no key is masked.
    const std::uint8_t* keys(std::int64_t b) const { return keys_ ? keys_ + b * p_.tv : nullptr; }
    // Whether sample b keeps any of keys [j0, j1).
    bool any_key_kept(std::int64_t b, std::int64_t j0, std::int64_t j1) const;
    bool any_key_mask() const { return keys_ != nullptr; }
    std::int64_t batch_of_group(std::int64_t g) const { return g / p_.heads; }
    // Score rows are ordered (group, query).
    std::int64_t batch_of_row(std::int64_t row) const { return row / p_.tq / p_.heads; }
    bool query_kept(std::int64_t b, std::int64_t i) const { return !p_.query_mask || p_.query_mask[b * p_.tq + i]; }
    // The keys [0, end) that the causal mask leaves to query i; every later key is masked.
    std::int64_t causal_end(std::int64_t i) const { return p_.causal ? std::min(p_.tv, i + 1) : p_.tv; }
    // Whether query i of sample b keeps any key by its masks and causality (patterns aside).
    bool any_allowed(std::int64_t b, std::int64_t i) const;

    MaskedScore masked_score() const { return masked_; }

    // ---- the pattern ----
    // Below, query i and key j are local indices; causality and the pattern see them at their
    // global positions, i + Problem::query_start and j + Problem::key_start.

    const Pattern& pattern() const { return pattern_; }
    // Adaptive span: group g's head's span z, clamped to [0, max_span].
    float span(std::int64_t g) const {
        return static_cast<float>(
            std::clamp<double>(p_.spans[g % p_.heads], 0.0, static_cast<double>(pattern_.max_span)));
    }
    // Whether the pattern and causality may allow some pair of queries [i0, i1) and keys [j0, j1).
    bool block_candidate(std::int64_t g, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const;
    // Whether they allow every such pair (no per-element pass needed).
    bool block_full(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const;

    // Whether, for the tile of queries from i0 and keys from j0, causality and the pattern leave
    // query i0 + r the keys j0 + [first + r, end + r) (clipped to the tile) with no log weight;
    // if so, writes first and end, clamped to [-limit, limit].
    bool shifted_ranges(std::int64_t i0, std::int64_t j0, std::int64_t limit, std::int64_t& first,
                        std::int64_t& end) const {
        const Pattern& pat = pattern_;
        i0 += p_.query_start;
        j0 += p_.key_start;
        if (pat.adaptive() || pat.block > 0) return false;
        if (pat.window >= 0 && (pat.global > j0 || pat.global > i0)) return false;
        first = pat.window >= 0 ? i0 - pat.window - j0 : -limit;
        end = pat.window >= 0 ? i0 + pat.window + 1 - j0 : limit;
        if (p_.causal) end = std::min(end, i0 + 1 - j0);
        first = std::clamp(first, -limit, limit);
        end = std::clamp(end, -limit, limit);
        return true;
    }

    // Which of keys j0 .. j0 + count - 1 (count <= width) query i may see by causality and the
    // pattern: allow[c] = keep[c] (the key mask as 0/1) where allowed, else 0 (all `width`
    // entries written); log_weight[c] is adaptive span's log m (z: span(g)), written for the
    // allowed range only when adaptive. Windows and spans are one range of keys (global tokens
    // add a leading one); block-sparse rows decide per key block.
    inline __attribute__((always_inline)) void row_allowed(std::int64_t i, std::int64_t j0, std::int64_t count,
                                                           std::int64_t width, float z, const float* keep, float* allow,
                                                           float* log_weight) const {
        const Pattern& pat = pattern_;
        i += p_.query_start;
        j0 += p_.key_start;
        std::fill(allow, allow + width, 0.0f);
        std::int64_t lo = 0, hi = count;
        const auto allow_range = [&](std::int64_t a, std::int64_t b) {
            for (std::int64_t c = std::max<std::int64_t>(a, 0); c < std::min(b, count); ++c) allow[c] = keep[c];
        };
        if (pat.window >= 0 && i >= pat.global) {
            lo = i - pat.window - j0;
            hi = i + pat.window + 1 - j0;
            allow_range(0, pat.global - j0);
        } else if (pat.adaptive()) {
            const double reach = pat.ramp + z;  // keys at distance below reach have m > 0
            lo = static_cast<std::int64_t>(std::floor(static_cast<double>(i) - reach)) + 1 - j0;
            hi = static_cast<std::int64_t>(std::ceil(static_cast<double>(i) + reach)) - j0;
        }
        if (p_.causal) hi = std::min(hi, i + 1 - j0);
        if (pat.block > 0) {
            const std::int64_t bi = i / pat.block;
            for (std::int64_t c = 0; c < std::min(hi, count);) {
                const std::int64_t bj = (j0 + c) / pat.block, end = std::min((bj + 1) * pat.block - j0, count);
                const bool ok =
                    std::abs(bi - bj) < pat.local_blocks || (pat.stride > 0 && bj % pat.stride == pat.stride - 1);
                if (ok) allow_range(c, std::min(end, hi));
                c = end;
            }
            return;
        }
        allow_range(lo, hi);
        if (pat.adaptive()) {
            std::fill(log_weight, log_weight + width, 0.0f);
            const float ramp = static_cast<float>(pat.ramp);
            for (std::int64_t c = std::max<std::int64_t>(lo, 0); c < std::min(hi, count); ++c) {
                const float x = static_cast<float>(std::abs(i - (j0 + c)));
                if (x > z) log_weight[c] = std::log(std::clamp((ramp + z - x) / ramp, 0.0f, 1.0f));
            }
        }
    }

private:
    // The smallest distance between a query in [i0, i1) and a key in [j0, j1) that the pattern
    // counts (earlier keys only when causal; -1 when causal leaves none).
    std::int64_t min_distance(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const;

    const Problem& p_;
    const Pattern& pattern_;
    const std::uint8_t* keys_ = nullptr;
    MaskedScore masked_;
};

}  // namespace nngraph_attention
