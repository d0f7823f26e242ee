// Incremental decoding for MultiHeadAttention. In a decoding session (nng_infer_io.session_positions)
// whose query advances one position a call, the keys and values of earlier calls are kept in
// session buffers, (batch, heads, length, dim) each:
// - keys and values that advance too (the decoder's self-attention) are appended at the call's
//   position; the cache holds every position of the session, later ones masked out by the cache's
//   key mask, so that attending over the whole cache is causal by construction;
// - keys and values that stay the same (cross-attention over the encoder's output) are projected
//   once, at the session's first call, and read by every later one.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace nngraph_attention {

class DecodingCache {
public:
    enum class Mode { kOff, kAppend, kOnce };

    // The positions the cache holds per sample, from the inputs: 0 when the op does not decode.
    // Throws for what decoding cannot do; `obstacle` names an option of the op that decoding cannot
    // run with (null: none), reported only when the op decodes.
    static std::int64_t length(const nng::InferContext& ctx, const Roles& r, const char* obstacle);
    // Declares the session buffers for `length` positions: the same three in every plan, with no
    // memory outside a decoding session.
    void declare(nng::InferContext& ctx, const Roles& r, std::int64_t heads, std::int64_t key_dim,
                 std::int64_t value_dim, std::int64_t length);

    // One call's cache.
    struct Call {
        Mode mode = Mode::kOff;
        float* keys = nullptr;             // (batch, heads, length, key_dim)
        float* values = nullptr;           // (batch, heads, length, value_dim)
        std::uint8_t* key_mask = nullptr;  // kAppend: (batch, length), 1 = a position filled and kept
        std::int64_t length = 0;           // the positions the cache holds per sample and head
        std::int64_t position = 0;         // the call's first position in the session
    };
    Call bind(const nng::Exec& exec, std::int64_t heads, std::int64_t key_dim) const;

    // kAppend: writes the call's keys and values (batch, heads, 1, dim) at the call's position, and
    // there the key mask (the AND of the masks given, 1 without one); the session's first call
    // first empties the cache, so that no position beyond the filled ones is seen.
    static void append(const Call& cache, const float* keys, const float* values, const std::uint8_t* mask_a,
                       const std::uint8_t* mask_b, std::int64_t batch, std::int64_t heads, std::int64_t key_dim,
                       std::int64_t value_dim);

private:
    nng::Buffer<float> keys_, values_;
    nng::Buffer<std::uint8_t> key_mask_;
};

}  // namespace nngraph_attention
