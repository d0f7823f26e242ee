#include "incremental.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace nngraph_attention {

std::int64_t DecodingCache::length(const nng::InferContext& ctx, const Roles& r, const char* obstacle) {
    const std::int64_t positions = ctx.session_positions();
    if (positions > 0 && ctx.input_advances(r.query)) {
        const bool value_advances = ctx.input_advances(r.value), key_advances = ctx.input_advances(r.key);
        if (value_advances != key_advances) {
            throw nng::OpError(
                "MultiHeadAttention: in a decoding session the key and the value must both advance "
                "(self-attention) or both stay the same (attention over the encoder)");
        }
        if (obstacle)
            throw nng::OpError(std::string("MultiHeadAttention: decoding one position a call needs ") + obstacle);
        const nng::Dims q = ctx.input_dims(r.query);
        if (q[1] != 1) {
            throw nng::OpError("MultiHeadAttention: a decoding call brings one position, got query " +
                               nng::dims_string(q));
        }
        return value_advances ? positions : ctx.input_dims(r.value)[1];
    }
    if (positions > 0 && (ctx.input_advances(r.value) || ctx.input_advances(r.key))) {
        throw nng::OpError(
            "MultiHeadAttention: in a decoding session a query that stays the same cannot attend to "
            "keys that advance");
    }
    return 0;
}

void DecodingCache::declare(nng::InferContext& ctx, const Roles& r, std::int64_t heads, std::int64_t key_dim,
                            std::int64_t value_dim, std::int64_t length) {
    const bool appends = length > 0 && ctx.input_advances(r.value);
    const std::int64_t rows = std::max<std::int64_t>(ctx.batch(), 0) * heads * length;
    keys_ = ctx.buffer<float>("decoding keys", rows * key_dim, nng::Lifetime::Session);
    values_ = ctx.buffer<float>("decoding values", rows * value_dim, nng::Lifetime::Session);
    key_mask_ = ctx.buffer<std::uint8_t>(
        "decoding key mask", appends ? std::max<std::int64_t>(ctx.batch(), 0) * length : 0, nng::Lifetime::Session);
}

DecodingCache::Call DecodingCache::bind(const nng::Exec& exec, std::int64_t heads, std::int64_t key_dim) const {
    Call c;
    c.keys = exec.buffer(keys_);
    if (!c.keys) return c;
    c.values = exec.buffer(values_);
    c.key_mask = exec.buffer(key_mask_);
    c.mode = c.key_mask ? Mode::kAppend : Mode::kOnce;
    c.length = exec.count(keys_) / (exec.input(0).dim(0) * heads * key_dim);
    c.position = exec.position_offset();
    if (c.mode == Mode::kAppend && (c.position < 0 || c.position >= c.length)) {
        throw nng::OpError("MultiHeadAttention: decoding position " + std::to_string(c.position) +
                           " is outside the cache of " + std::to_string(c.length) + " positions");
    }
    return c;
}

void DecodingCache::append(const Call& cache, const float* keys, const float* values, const std::uint8_t* mask_a,
                           const std::uint8_t* mask_b, std::int64_t batch, std::int64_t heads, std::int64_t key_dim,
                           std::int64_t value_dim) {
    const std::int64_t length = cache.length, at = cache.position;
    if (at == 0) {  // a new session: nothing of the last one may be seen, nor uninitialised memory read
        std::fill_n(cache.keys, batch * heads * length * key_dim, 0.0f);
        std::fill_n(cache.values, batch * heads * length * value_dim, 0.0f);
        std::fill_n(cache.key_mask, batch * length, std::uint8_t{0});
    }
    for (std::int64_t g = 0; g < batch * heads; ++g) {
        std::memcpy(cache.keys + (g * length + at) * key_dim, keys + g * key_dim, sizeof(float) * key_dim);
        std::memcpy(cache.values + (g * length + at) * value_dim, values + g * value_dim, sizeof(float) * value_dim);
    }
    for (std::int64_t b = 0; b < batch; ++b) {
        const bool kept = (!mask_a || mask_a[b]) && (!mask_b || mask_b[b]);
        cache.key_mask[b * length + at] = kept ? 1 : 0;
    }
}

}  // namespace nngraph_attention
