// What Attention and MultiHeadAttention share beyond the core: the [query, value(, key)] inputs
// and their shape checks, dropout and long-context attributes (the latter pick the core), and
// small gradient chores.
#pragma once

#include <array>
#include <cstring>
#include <memory>
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

// C = A·B as onednn::matmul computes it; with `room` (mixed_bfloat16) A and B are first rounded
// to bf16 there, one after the other (a.numel() + b.numel() values), and the product accumulates
// in f32 into the f32 C.
inline void matmul_in_policy(const onednn::View& a, const onednn::View& b, const onednn::View& c, std::uint16_t* room,
                             const onednn::MatmulOptions& options = {}) {
    if (!room) {
        onednn::matmul(a, b, c, options);
        return;
    }
    const onednn::View a16 = onednn::to_bfloat16(a, room);
    onednn::matmul(a16, onednn::to_bfloat16(b, room + a.numel()), c, options);
}

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
                throw nng::OpError(std::string(op) + ": " + kRoleNames[i] + " (input " + std::to_string(i) +
                                   ") has shape " + nng::dims_string(dims) + "; expected (batch, steps, features)");
            }
            ctx.expect_dtype(i, NNG_F32, "float32");
        }
        d.q = ctx.input_dims(d.roles.query);
        d.v = ctx.input_dims(d.roles.value);
        d.k = ctx.input_dims(d.roles.key);
        const auto batch_differs = [](const Dims& a, const Dims& b) { return a[0] >= 0 && b[0] >= 0 && a[0] != b[0]; };
        if (batch_differs(d.q, d.v) || batch_differs(d.q, d.k)) {
            nng::InferContext::shape_mismatch(std::string(op) + ": query and value/key need one batch size, got", d.q,
                                              batch_differs(d.q, d.v) ? d.v : d.k);
        }
        if (d.k[1] != d.v[1]) {
            nng::InferContext::shape_mismatch(
                std::string(op) + ": key and value need the same number of steps, got key", d.k, d.v);
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
        : rate(attrs.get_float("dropout")),
          has_seed(!attrs.is_null("seed")),
          seed(has_seed ? attrs.get_int("seed") : 0) {
        nng::check_attr(rate >= 0.0 && rate < 1.0, "dropout", "a fraction in [0, 1), got " + std::to_string(rate));
    }
    // Sizes the problem's buffers for dropout (whether or not a call drops).
    void size(Problem& p) const { p.may_drop = rate > 0.0; }
    // Fills the problem's dropout fields for this call.
    void apply(Problem& p, const nng::Exec& exec) const {
        size(p);
        p.dropout = rate > 0.0 && exec.random_active();
        set_dropout_rate(p, rate);
        p.seed = has_seed ? nng::derive_seed(exec.seed(), static_cast<std::uint64_t>(seed)) : exec.seed();
    }
};

// The long-context options both ops take (see Pattern in core.hpp): `implementation` picks the core
// for full attention; a window, a block-sparse pattern or an adaptive span always runs on the
// blockwise core, the one that can skip what the pattern leaves out; `lsh` runs on its own core.
inline constexpr std::array<nng_attr_spec, 11> kLongContextAttributes = {
    nng::string_attr(
        "implementation", "dense", "dense|blockwise|ring",
        "dense: the whole score matrix; blockwise: tiles and an online softmax, memory linear in the steps; "
        "ring: blockwise over a sequence shared by the ranks of an mpirun job, key/value blocks passed around"),
    nng::nullable(
        nng::int_attr("window", "null", "attend only to keys within this many steps (earlier ones when causal)")),
    nng::int_attr("global_tokens", "0", "with window: the first positions attend to all and are attended by all"),
    nng::nullable(nng::int_attr("sparsity.block_size", "null", "block-sparse: steps per block")),
    nng::int_attr("sparsity.local_blocks", "1", "block-sparse: key blocks fewer than this many blocks away are seen"),
    nng::int_attr("sparsity.stride", "0",
                  "block-sparse: every stride-th block (stride-1, 2*stride-1, ...) is seen by all; 0: none"),
    nng::nullable(nng::int_attr("adaptive_span.max_span", "null", "adaptive span: the largest span a head can learn")),
    nng::int_attr("adaptive_span.ramp", "32", "adaptive span: the length R of the soft mask's ramp"),
    nng::nullable(
        nng::float_attr("adaptive_span.init", "null", "adaptive span: the initial span (null: max_span / 2)")),
    nng::nullable(nng::int_attr("lsh.num_hashes", "null",
                                "LSH attention (Reformer) with this many hash rounds; queries and keys shared")),
    nng::int_attr("lsh.bucket_size", "64", "LSH attention: steps per chunk; steps / bucket_size buckets"),
};

// The op's attribute table: its own entries followed by the long-context ones.
template <std::size_t N>
constexpr std::array<nng_attr_spec, N + kLongContextAttributes.size()> with_long_context(
    const std::array<nng_attr_spec, N>& own) {
    std::array<nng_attr_spec, N + kLongContextAttributes.size()> all{};
    for (std::size_t i = 0; i < N; ++i) all[i] = own[i];
    for (std::size_t i = 0; i < kLongContextAttributes.size(); ++i) all[N + i] = kLongContextAttributes[i];
    return all;
}

struct LongContextAttrs {
    bool blockwise = false;  // the blockwise core, asked for or implied by a pattern (or the ring on it)
    bool ring = false;       // the ring core (ring.hpp): blockwise across the ranks sharing a sequence
    Pattern pattern;
    double span_init = 0.0;

    explicit LongContextAttrs(const nng::Attrs& attrs) {
        const std::string implementation = attrs.get_string("implementation");
        ring = implementation == "ring";
        blockwise = implementation == "blockwise" || ring;
        int patterns = 0;
        if (!attrs.is_null("window")) {
            pattern.window = attrs.get_int("window");
            nng::check_attr(pattern.window >= 0, "window",
                            "a number of steps >= 0 or null, got " + std::to_string(pattern.window));
            ++patterns;
        }
        pattern.global = attrs.get_int("global_tokens");
        nng::check_attr(pattern.global >= 0, "global_tokens", "a count >= 0, got " + std::to_string(pattern.global));
        nng::check_attr(pattern.global == 0 || pattern.window >= 0, "global_tokens",
                        "a window (global tokens extend a sliding window)");
        if (!attrs.is_null("sparsity.block_size")) {
            pattern.block = attrs.get_int("sparsity.block_size");
            pattern.local_blocks = attrs.get_int("sparsity.local_blocks");
            pattern.stride = attrs.get_int("sparsity.stride");
            nng::check_attr(pattern.block > 0, "sparsity.block_size",
                            "a positive number of steps, got " + std::to_string(pattern.block));
            nng::check_attr(pattern.local_blocks >= 1, "sparsity.local_blocks",
                            "at least 1, got " + std::to_string(pattern.local_blocks));
            nng::check_attr(pattern.stride >= 0, "sparsity.stride",
                            "0 (none) or a positive block count, got " + std::to_string(pattern.stride));
            ++patterns;
        }
        if (!attrs.is_null("adaptive_span.max_span")) {
            pattern.max_span = attrs.get_int("adaptive_span.max_span");
            pattern.ramp = static_cast<double>(attrs.get_int("adaptive_span.ramp"));
            span_init = attrs.is_null("adaptive_span.init") ? 0.5 * static_cast<double>(pattern.max_span)
                                                            : attrs.get_float("adaptive_span.init");
            nng::check_attr(pattern.max_span > 0, "adaptive_span.max_span",
                            "a positive number of steps, got " + std::to_string(pattern.max_span));
            nng::check_attr(pattern.ramp > 0, "adaptive_span.ramp", "a positive number of steps");
            nng::check_attr(span_init >= 0.0 && span_init <= static_cast<double>(pattern.max_span),
                            "adaptive_span.init", "a span in [0, max_span]");
            ++patterns;
        }
        if (!attrs.is_null("lsh.num_hashes")) {
            pattern.lsh_hashes = attrs.get_int("lsh.num_hashes");
            pattern.lsh_bucket_size = attrs.get_int("lsh.bucket_size");
            nng::check_attr(pattern.lsh_hashes >= 1, "lsh.num_hashes",
                            "at least 1 hash round, got " + std::to_string(pattern.lsh_hashes));
            nng::check_attr(pattern.lsh_bucket_size >= 1, "lsh.bucket_size",
                            "a positive number of steps, got " + std::to_string(pattern.lsh_bucket_size));
            nng::check_attr(!blockwise, "implementation", "dense (the default) with lsh, which is a core of its own");
            ++patterns;
        }
        nng::check_attr(patterns <= 1, "window", "one pattern at most: window, sparsity, adaptive_span or lsh");
        // The ring keeps a window (positions are global), but block-sparse and adaptive-span
        // patterns and hashing have no ring version.
        nng::check_attr(!ring || (pattern.block == 0 && !pattern.adaptive() && !pattern.lsh()), "implementation",
                        "dense or blockwise with sparsity, adaptive_span or lsh; ring takes only a window");
        if (patterns > 0 && !lsh()) blockwise = true;
    }
    bool adaptive() const { return pattern.adaptive(); }
    // Shared query-keys: the op takes no key input and projects no keys.
    bool lsh() const { return pattern.lsh(); }
    // LSH's rotations: drawn afresh from the step's seed in training, fixed (by the op's `seed`)
    // at inference, so that a trained model hashes the same way every time it is run.
    void apply(Problem& p, const nng::Exec& exec, const DropoutAttrs& dropout) const {
        if (ring) {
            if (const auto shard = exec.sequence_shard()) p.shard = *shard;
            p.comm = exec.comm();
        }
        if (!lsh()) return;
        const auto own = static_cast<std::uint64_t>(dropout.seed);
        p.hash_seed = !exec.training()   ? nng::derive_seed(own, "lsh rotations")
                      : dropout.has_seed ? nng::derive_seed(exec.seed(), own)
                                         : exec.seed();
    }
    // The ring spreads every sequence over the ranks: it asks the host to run the model
    // sequence-parallel, zigzag when causal so that every rank has the same share of the work.
    void declare_sequence_role(nng::InferContext& ctx, bool causal) const {
        if (ring) ctx.set_sequence_role(NNG_SEQUENCE_SPREADS, causal ? NNG_SHARD_ZIGZAG : NNG_SHARD_CONTIGUOUS);
    }
    // What lsh refuses: a separate key input, a dropout rate, and value steps other than the query's.
    void check_inputs(const InputDims& d, int num_inputs, const DropoutAttrs& dropout, const char* op) const {
        if (!lsh()) return;
        if (num_inputs == 3)
            throw nng::OpError(std::string(op) + ": lsh shares queries and keys, so it takes no key input (input 2)");
        if (d.q[1] != d.v[1])
            nng::InferContext::shape_mismatch(std::string(op) + ": lsh needs query and value of one length, got query",
                                              d.q, d.v);
        if (dropout.rate > 0.0)
            throw nng::OpError(std::string(op) + ": lsh has no dropout on its probabilities; expected dropout 0, got " +
                               std::to_string(dropout.rate));
    }
    std::unique_ptr<AttentionCore> make_core() const {
        return nngraph_attention::make_core(ring        ? CoreKind::kRing
                                            : blockwise ? CoreKind::kBlockwise
                                                        : CoreKind::kDense,
                                            pattern);
    }
    // Declares the span weight (heads,) when adaptive.
    void add_weights(nng::InferContext& ctx, std::int64_t heads) const {
        if (adaptive()) ctx.add_weight("span", {heads}, NNG_INIT_CONSTANT, span_init);
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
