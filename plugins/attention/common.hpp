// What Attention and MultiHeadAttention share beyond the core: the [query, value(, key)] inputs
// and their shape checks, dropout attributes, and small gradient chores.
#pragma once

#include <cstring>
#include <string>

#include "core.hpp"

namespace nngraph_attention {

// The three roles and which input plays each: key defaults to value, value (MultiHeadAttention's
// self-attention) to query.
struct Roles {
    int query = 0, value = 1, key = 1;
    static Roles of(int num_inputs) {
        Roles r;
        r.value = num_inputs >= 2 ? 1 : 0;
        r.key = num_inputs >= 3 ? 2 : r.value;
        return r;
    }
};

// Query, value and key shapes, checked: rank 3 float32, one batch, key and value of one length.
struct InputDims {
    Dims q, v, k;
    Roles roles;

    static InputDims infer(const nng::InferContext& ctx, const char* op) {
        InputDims d;
        d.roles = Roles::of(ctx.num_inputs());
        static const char* const kRoleNames[] = {"query", "value", "key"};
        for (int i = 0; i < ctx.num_inputs(); ++i) {
            const Dims dims = ctx.input_dims(i);
            if (dims.size() != 3) {
                throw nng::OpError(std::string(op) + ": " + kRoleNames[i] + " (input " + std::to_string(i) + ") has shape " +
                                   nng::dims_string(dims) + "; expected (batch, steps, features)");
            }
            ctx.expect_dtype(i, NNG_F32, "float32");
        }
        d.q = ctx.input_dims(d.roles.query);
        d.v = ctx.input_dims(d.roles.value);
        d.k = ctx.input_dims(d.roles.key);
        const auto batch_differs = [](const Dims& a, const Dims& b) { return a[0] >= 0 && b[0] >= 0 && a[0] != b[0]; };
        if (batch_differs(d.q, d.v) || batch_differs(d.q, d.k)) {
            nng::InferContext::shape_mismatch(std::string(op) + ": query and value/key need one batch size, got",
                                              d.q, batch_differs(d.q, d.v) ? d.v : d.k);
        }
        if (d.k[1] != d.v[1]) {
            nng::InferContext::shape_mismatch(std::string(op) + ": key and value need the same number of steps, got key",
                                              d.k, d.v);
        }
        return d;
    }
};

// Keras's `dropout` and `seed`: the rate, and the stream a step draws from (the executor's seed
// for this node and step, mixed with the attribute when given, as nngraph's Dropout does).
struct DropoutAttrs {
    double rate = 0.0;
    bool has_seed = false;
    std::int64_t seed = 0;

    explicit DropoutAttrs(const nng::Attrs& attrs)
        : rate(attrs.get_float("dropout")), has_seed(!attrs.is_null("seed")), seed(has_seed ? attrs.get_int("seed") : 0) {
        nng::check_attr(rate >= 0.0 && rate < 1.0, "dropout", "a fraction in [0, 1), got " + std::to_string(rate));
    }
    // Fills the problem's dropout fields for this call.
    void apply(Problem& p, const nng::Exec& exec) const {
        p.dropout = rate > 0.0 && exec.random_active();
        set_dropout_rate(p, rate);
        p.seed = has_seed ? nng::derive_seed(exec.seed(), static_cast<std::uint64_t>(seed)) : exec.seed();
    }
};

inline std::uint32_t needs_inputs(int count) {
    std::uint32_t bits = 0;
    for (int i = 0; i < count; ++i) bits |= NNG_NEEDS_INPUT(i);
    return bits;
}

inline void zero(const nng::TensorRef& t) {
    if (t) std::memset(t.raw(), 0, t.nbytes());
}

inline const std::uint8_t* mask_data(const nng::TensorRef& m) { return m ? m.u8() : nullptr; }

}  // namespace nngraph_attention
