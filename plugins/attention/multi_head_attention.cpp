// keras.layers.MultiHeadAttention over the sequence axis (attention_axes null):
//   Q = query · query.kernel + query.bias        (B, Tq, heads, key_dim)
//   K = key · key.kernel + key.bias              (B, Tv, heads, key_dim)
//   V = value · value.kernel + value.bias        (B, Tv, heads, value_dim)
//   O = softmax(mask(Q·Kᵀ / sqrt(key_dim))) · V  per head, dropout on the probabilities
//   output = O · attention_output.kernel + attention_output.bias   (B, Tq, *output_shape)
// Inputs [query] (self-attention), [query, value] or [query, value, key]. The attention mask is
// Keras's: query mask (B, Tq, 1) & value mask (B, 1, Tv) & key mask & causal; masked scores
// become -1e9; with dropout > 0 Keras softmaxes through its Softmax layer, which also zeroes the
// masked probabilities (a fully masked row then gives zeros, not a uniform row). The output
// carries the query mask.
//
// Linformer (Wang et al. 2020), `linformer: {k: K}`: after their projections, keys and values
// are projected along the sequence, K' = E·K and V' = F·V per head with the learned (K, steps)
// weights linformer.e and linformer.f (shared by the heads, the paper's headwise sharing), and
// attention runs over those K rows: time and memory linear in the steps. Masked keys and values
// are zeroed before the projection (so padding adds nothing); causal masking has no meaning once
// keys are mixed and is refused. An option here rather than an op of its own: the projections,
// heads, masks, dropout and weight names are all MultiHeadAttention's.
//
// LSH attention (`lsh`) shares queries and keys: no key projection, no `key.*` weights; the core
// makes its keys from the projected queries.
//
// In a decoding session the op attends from one new position a call over keys and values it keeps
// (incremental.hpp).
//
// The projections are plain 2-D matmuls in the (B·T, heads·dim) layout Keras's kernels imply; the
// core wants heads apart, so Q, K, V are reordered to (B, heads, T, dim) and O back.
#include <algorithm>
#include <cmath>

#include "common.hpp"
#include "incremental.hpp"

namespace nngraph_attention {
namespace {

using DataType = onednn::DataType;

onednn::View matrix(void* data, std::int64_t rows, std::int64_t cols) {
    return onednn::view(data, DataType::f32, {rows, cols});
}

struct MultiHeadAttention {
    static constexpr const char* kName = "MultiHeadAttention";
    static constexpr const char* kDoc =
        "Multi-head scaled dot-product attention over [query(, value(, key))], Keras semantics";
    static constexpr int kMinInputs = 1, kMaxInputs = 3;
    static constexpr std::array<const char*, 3> kInputNames{"query", "value", "key"};
    static constexpr auto kAttributes = with_long_context(std::array{
        nng::required(nng::int_attr("num_heads", nullptr, "number of attention heads")),
        nng::required(nng::int_attr("key_dim", nullptr, "size of each head for query and key")),
        nng::nullable(nng::int_attr("value_dim", "null", "size of each head for value (null: key_dim)")),
        nng::float_attr("dropout", "0.0", "fraction of the attention probabilities dropped in training"),
        nng::bool_attr("use_bias", "true", "the projections add biases"),
        nng::nullable(
            nng::ints_attr("output_shape", "null", "the output's feature shape (null: the query's last dim)")),
        nng::nullable(nng::ints_attr("attention_axes", "null", "only null (or [1]): attention over the sequence axis")),
        nng::string_attr("kernel_initializer", "glorot_uniform", nng::kInitializerChoices,
                         "initial projection kernels"),
        nng::string_attr("bias_initializer", "zeros", nng::kInitializerChoices, "initial projection biases"),
        nng::bool_attr("use_causal_mask", "false", "mask keys after the query's position"),
        nng::nullable(nng::int_attr("seed", "null", "mixed into the step's seed for dropout")),
        nng::nullable(
            nng::int_attr("linformer.k", "null", "Linformer: keys and values projected along the steps to k rows")),
    });

    explicit MultiHeadAttention(const nng::Attrs& attrs)
        : heads_(attrs.get_int("num_heads")),
          key_dim_(attrs.get_int("key_dim")),
          value_dim_(attrs.is_null("value_dim") ? key_dim_ : attrs.get_int("value_dim")),
          dropout_(attrs),
          use_bias_(attrs.get_bool("use_bias")),
          kernel_init_(nng::keras_initializer(attrs.get_string("kernel_initializer"), "kernel_initializer")),
          bias_init_(nng::keras_initializer(attrs.get_string("bias_initializer"), "bias_initializer")),
          causal_(attrs.get_bool("use_causal_mask")),
          long_(attrs),
          linformer_(attrs.is_null("linformer.k") ? 0 : attrs.get_int("linformer.k")),
          core_(long_.make_core()) {
        nng::check_attr(attrs.is_null("linformer.k") || linformer_ > 0, "linformer.k",
                        "a positive number of rows, got " + std::to_string(linformer_));
        nng::check_attr(!linformer_ || !causal_, "linformer.k", "no use_causal_mask: projected keys mix every step");
        nng::check_attr(!linformer_ || !(long_.blockwise || long_.lsh()), "linformer.k",
                        "the dense core (no blockwise, sparse pattern or lsh): the projected keys are few");
        nng::check_attr(heads_ > 0, "num_heads", "a positive integer, got " + std::to_string(heads_));
        nng::check_attr(key_dim_ > 0, "key_dim", "a positive integer, got " + std::to_string(key_dim_));
        nng::check_attr(value_dim_ > 0, "value_dim", "a positive integer or null, got " + std::to_string(value_dim_));
        if (!attrs.is_null("output_shape")) {
            output_shape_ = attrs.get_ints("output_shape");
            nng::check_attr(!output_shape_.empty(), "output_shape", "an integer, a list of positive integers, or null");
            for (const std::int64_t d : output_shape_) {
                nng::check_attr(d > 0, "output_shape", "positive dimensions, got " + nng::dims_string(output_shape_));
            }
        }
        if (!attrs.is_null("attention_axes")) {
            const Dims axes = attrs.get_ints("attention_axes");
            nng::check_attr(
                axes.size() == 1 && (axes[0] == 1 || axes[0] == -2), "attention_axes",
                "null (or [1], the same): attention over the sequence axis of (batch, steps, features) inputs; "
                "other axes are not supported, got " +
                    nng::dims_string(axes));
        }
    }

    // ---- shapes and weights ----

    struct Shapes {
        std::int64_t batch, tq, tv, dq, dv_in, dk_in, out;
        Dims out_dims;      // the output's feature shape
        bool separate_key;  // a key input apart from the value (with a mask of its own)
    };
    Shapes shapes(const Dims& q, const Dims& v, const Dims& k, const Roles& r) const {
        Shapes s{std::max<std::int64_t>(q[0], 0), q[1], v[1], q[2], v[2], k[2], 0, output_shape_, r.key != r.value};
        if (s.out_dims.empty()) s.out_dims = {q[2]};
        s.out = nng::product(s.out_dims);
        return s;
    }
    Shapes shapes(const nng::Exec& exec) const {
        const Roles r = Roles::of(exec.num_inputs());
        return shapes(exec.input(r.query).dims(), exec.input(r.value).dims(), exec.input(r.key).dims(), r);
    }

    enum Weight {
        kQueryKernel,
        kQueryBias,
        kKeyKernel,
        kKeyBias,
        kValueKernel,
        kValueBias,
        kOutputKernel,
        kOutputBias
    };
    // A weight's index in the op's list (biases are absent without use_bias, key ones with lsh).
    int index(Weight w) const {
        const int i = use_bias_ ? static_cast<int>(w) : static_cast<int>(w) / 2;
        return long_.lsh() && w > kKeyBias ? i - (use_bias_ ? 2 : 1) : i;
    }
    int projection_weights() const { return index(kOutputBias) + 1; }
    int span_weight() const { return projection_weights(); }
    // Linformer's weights come after the projections' (MultiHeadAttention takes no span with them).
    enum LinformerWeight { kLinformerE, kLinformerF };
    int index(LinformerWeight w) const { return projection_weights() + static_cast<int>(w); }

    // ---- Linformer ----

    // Zeroes the rows of x (B, heads, Tv, dim) whose key is masked (value mask and key mask).
    void zero_masked_keys(const nng::Exec& exec, float* x, std::int64_t dim) const {
        const Roles r = Roles::of(exec.num_inputs());
        const std::uint8_t* a = mask_data(exec.input_mask(r.value));
        const std::uint8_t* b = r.key != r.value ? mask_data(exec.input_mask(r.key)) : nullptr;
        if (!a && !b) return;
        const nng::TensorRef v = exec.input(r.value);
        const std::int64_t batch = v.dim(0), steps = v.dim(1);
        for (std::int64_t s = 0; s < batch; ++s)
            for (std::int64_t h = 0; h < heads_; ++h)
                for (std::int64_t j = 0; j < steps; ++j) {
                    if ((a && !a[s * steps + j]) || (b && !b[s * steps + j]))
                        std::fill_n(x + ((s * heads_ + h) * steps + j) * dim, dim, 0.0f);
                }
    }
    // x' (G, k, dim) = W · x (G, Tv, dim) for every group, W = linformer.e or .f (k, Tv).
    void along_steps(const nng::Exec& exec, LinformerWeight w, float* x, std::int64_t dim, float* out) const {
        const nng::TensorRef weight = exec.weight(index(w));
        const std::int64_t k = weight.dim(0), steps = weight.dim(1), g = exec.input(0).dim(0) * heads_;
        onednn::matmul(onednn::view(weight, {1, k, steps}), onednn::view(x, DataType::f32, {g, steps, dim}),
                       onednn::view(out, DataType::f32, {g, k, dim}));
    }
    // From dL/dx' (G, k, dim): dW = Σ_g dx'_g · x_gᵀ, computed as one product of dx' laid out
    // (k, G·dim) by x laid out (G·dim, Tv); and dx = Wᵀ · dx', zero on masked keys.
    void along_steps_backward(const nng::Exec& exec, LinformerWeight w, const float* x, std::int64_t dim,
                              float* d_projected, float* dx, float* rows_by_k, float* k_by_steps) const {
        const nng::TensorRef weight = exec.weight(index(w));
        const std::int64_t k = weight.dim(0), steps = weight.dim(1), groups = exec.input(0).dim(0) * heads_;
        const onednn::View dxp = onednn::view(d_projected, DataType::f32, {groups, k, dim});
        if (const nng::TensorRef dw = exec.grad_weight(index(w))) {
            onednn::reorder(dxp.permuted({1, 0, 2}), onednn::view(rows_by_k, DataType::f32, {k, groups, dim}));
            onednn::reorder(onednn::view(const_cast<float*>(x), DataType::f32, {groups, steps, dim}).transposed(),
                            onednn::view(k_by_steps, DataType::f32, {groups, dim, steps}));
            onednn::matmul(onednn::view(rows_by_k, DataType::f32, {k, groups * dim}),
                           onednn::view(k_by_steps, DataType::f32, {groups * dim, steps}),
                           onednn::view(dw, {k, steps}));
        }
        onednn::matmul(onednn::view(weight, {1, k, steps}).transposed(), dxp,
                       onednn::view(dx, DataType::f32, {groups, steps, dim}));
        zero_masked_keys(exec, dx, dim);
    }
    // What decoding one position a call cannot run with (null: nothing).
    const char* decoding_obstacle() const {
        if (linformer_) return "no linformer projection";
        if (long_.lsh()) return "separate keys (no lsh: its hash buckets span the whole sequence)";
        if (long_.blockwise) return "the dense core (no blockwise implementation or sparsity pattern)";
        return nullptr;
    }

    void infer(nng::InferContext& ctx) {
        bfloat16_ = ctx.precision() == nng::Precision::MixedBfloat16;
        const InputDims d = InputDims::infer(ctx, kName);
        long_.check_inputs(d, ctx.num_inputs(), dropout_, kName);
        long_.declare_sequence_role(ctx, causal_);
        ctx.set_batch_slicing_for_rows(std::min(d.q[1], d.v[1]));  // the projections' rows
        const Shapes s = shapes(d.q, d.v, d.k, d.roles);
        const std::int64_t cached = DecodingCache::length(ctx, d.roles, decoding_obstacle());
        if (cached > 0 && causal_ && !ctx.input_advances(d.roles.value))
            throw nng::OpError("MultiHeadAttention: decoding with use_causal_mask needs keys that advance",
                               "use_causal_mask");
        Dims out = {d.q[0], d.q[1]};
        out.insert(out.end(), s.out_dims.begin(), s.out_dims.end());
        const int y = ctx.add_output(NNG_F32, out);
        ctx.pass_mask(y, 0);  // Keras sets the query mask on the output
        // The projections' backward adds an input's later gradients onto its first, in one slot.
        gradient_slots_ = nng::GradientSlots(ctx);
        ctx.sum_repeated_gradients();
        const std::int64_t n = heads_, h = key_dim_, hv = value_dim_;
        const auto add_projection = [&](const char* kernel, const char* bias, std::int64_t in, std::int64_t dim) {
            ctx.add_weight(kernel, {in, n, dim}, kernel_init_);
            if (use_bias_) ctx.add_weight(bias, {n, dim}, bias_init_);
        };
        add_projection("query.kernel", "query.bias", s.dq, h);
        if (!long_.lsh()) add_projection("key.kernel", "key.bias", s.dk_in, h);
        add_projection("value.kernel", "value.bias", s.dv_in, hv);
        Dims out_kernel = {n, hv};
        out_kernel.insert(out_kernel.end(), s.out_dims.begin(), s.out_dims.end());
        ctx.add_weight("attention_output.kernel", out_kernel, kernel_init_);
        if (use_bias_) ctx.add_weight("attention_output.bias", s.out_dims, bias_init_);
        long_.add_weights(ctx, heads_);
        if (linformer_) {
            ctx.add_weight("linformer.e", {linformer_, s.tv}, NNG_INIT_GLOROT_UNIFORM);
            ctx.add_weight("linformer.f", {linformer_, s.tv}, NNG_INIT_GLOROT_UNIFORM);
        }

        const Problem p = problem_shape(s, cached);
        declare_buffers(ctx, d.q[0], {&declared(p, s, ctx.training()).list, &core_->buffers(p, ctx.training())});
        cache_.declare(ctx, d.roles, heads_, key_dim_, value_dim_, cached);
        ctx.set_backward_needs(needs_inputs(ctx.num_inputs()));
        if (ctx.counting_work()) {
            // The four projections (Linformer's two of the keys and values too) around the core;
            // backward makes two products per forward one.
            Problem causal_shapes = p;
            causal_shapes.causal = causal_;
            const CoreWork attention = core_->work(causal_shapes, ctx.training());
            nng::Work projections = nng::matmul_work(1, s.batch * s.tq, s.dq, n * h) +
                                    nng::matmul_work(1, s.batch * s.tv, s.dk_in, n * h) +
                                    nng::matmul_work(1, s.batch * s.tv, s.dv_in, n * hv) +
                                    nng::matmul_work(1, s.batch * s.tq, n * hv, s.out);
            if (linformer_)
                projections += nng::matmul_work(s.batch * n, linformer_, s.tv, h) +
                               nng::matmul_work(s.batch * n, linformer_, s.tv, hv);
            ctx.count_work(projections + attention.forward, 2 * projections + attention.backward);
        }
    }

    // The core's problem; `cached`: the positions of a decoding cache the query attends over.
    Problem problem_shape(const Shapes& s, std::int64_t cached = 0) const {
        Problem p;
        p.batch = s.batch;
        p.heads = heads_;
        p.tq = s.tq;
        p.tv = cached ? cached : linformer_ ? linformer_ : s.tv;
        p.dk = key_dim_;
        p.dv = value_dim_;
        p.alpha = static_cast<float>(1.0 / std::sqrt(static_cast<double>(key_dim_)));
        p.style = MaskStyle::kReplace;
        p.zero_masked = dropout_.rate > 0.0;
        p.two_key_masks = s.separate_key && !linformer_;  // Linformer zeroes masked keys instead
        p.bfloat16 = bfloat16_;
        // dk and dv are this op's own backward scratch; so are the output gradient joined (used
        // before the core) and the projection gradient (after it), when they hold a key block.
        p.lent_gradient_blocks = long_.lsh() ? 0 : p.tv <= p.tq ? 2 : 1;
        dropout_.size(p);
        return p;
    }

    // ---- buffers: the op's own, beside the core's ----

    struct Ids {
        BufferId q, k, v, joined;       // Q, K, V heads apart and O heads joined: saved in training
        BufferId kp, vp;                // Linformer: K' and V', heads apart: saved in training
        BufferId projected, heads_out;  // one projection in (B·T, heads·dim) layout, before reordering; O heads apart
        BufferId d_joined, d_heads_out, dq, dk, dv, d_projected;  // backward: the gradients of the above
        BufferId out_heads;              // backward: the forward's O heads apart, for a core that reads it
        BufferId dk_full, dv_full;       // Linformer: the gradients of K and V (dk and dv then hold those of K' and V')
        BufferId rows_by_k, k_by_steps;  // Linformer: the operands of dE = Σ_g dK'_g·K_gᵀ
        BufferId bf16_operands;          // mixed_bfloat16: bf16 copies of a projection's operands
    };
    std::int64_t largest_projection(const Shapes& s) const {
        return std::max(s.tq, s.tv) * heads_ * std::max(key_dim_, value_dim_) * s.batch;
    }
    Ids declare(const Problem& p, const Shapes& s, bool training, BufferList& list) const {
        Ids ids;
        // Saved buffers count per batch element, scratch for the whole batch.
        const Lifetime kept = training ? Lifetime::kSaved : Lifetime::kForward;
        const std::int64_t per = training ? heads_ : p.groups();
        ids.q = list.floats("attention.query_heads", kept, per * p.tq * p.dk);
        ids.k = list.floats("attention.key_heads", kept, long_.lsh() ? 0 : per * s.tv * p.dk);
        ids.v = list.floats("attention.value_heads", kept, per * s.tv * p.dv);
        ids.joined = list.floats("attention.output_joined", kept, per * p.tq * p.dv);
        if (linformer_) {
            ids.kp = list.floats("attention.projected_keys", kept, per * p.tv * p.dk);
            ids.vp = list.floats("attention.projected_values", kept, per * p.tv * p.dv);
        }
        ids.projected = list.floats("attention.projection", Lifetime::kForward, largest_projection(s));
        ids.heads_out = list.floats("attention.output_heads", Lifetime::kForward, p.groups() * p.tq * p.dv);

        ids.d_joined = list.floats("attention.output_joined_gradient", Lifetime::kBackward, p.groups() * p.tq * p.dv);
        ids.d_heads_out = list.floats("attention.output_heads_gradient", Lifetime::kBackward, p.groups() * p.tq * p.dv);
        ids.dq = list.floats("attention.query_heads_gradient", Lifetime::kBackward, p.groups() * p.tq * p.dk);
        ids.dk = list.floats("attention.key_heads_gradient", Lifetime::kBackward,
                             long_.lsh() ? 0 : p.groups() * p.tv * p.dk);
        ids.dv = list.floats("attention.value_heads_gradient", Lifetime::kBackward, p.groups() * p.tv * p.dv);
        if (core_->backward_reads_output()) {
            ids.out_heads =
                list.floats("attention.forward_output_heads", Lifetime::kBackward, p.groups() * p.tq * p.dv);
        }
        if (linformer_) {
            const std::int64_t d = std::max(p.dk, p.dv);
            ids.dk_full = list.floats("attention.key_gradient", Lifetime::kBackward, p.groups() * s.tv * p.dk);
            ids.dv_full = list.floats("attention.value_gradient", Lifetime::kBackward, p.groups() * s.tv * p.dv);
            ids.rows_by_k = list.floats("attention.linformer_rows", Lifetime::kBackward, p.groups() * p.tv * d);
            ids.k_by_steps = list.floats("attention.linformer_steps", Lifetime::kBackward, p.groups() * s.tv * d);
        }
        ids.d_projected = list.floats("attention.projection_gradient", Lifetime::kBackward, largest_projection(s));
        if (bfloat16_) {
            // A projection's operands: forward x (rows, in) and w (in, cols); backward those and dy
            // (rows, cols), in the order rooms_for lays them out.
            const std::int64_t rows = s.batch * std::max(s.tq, s.tv);
            const std::int64_t in = std::max({s.dq, s.dk_in, s.dv_in, heads_ * value_dim_});
            const std::int64_t cols = std::max({heads_ * key_dim_, heads_ * value_dim_, s.out});
            ids.bf16_operands =
                list.bytes("attention.bfloat16_projection", Lifetime::kCall, 2 * (rows * (in + cols) + in * cols));
        }
        return ids;
    }

    // What the op's own list depends on besides the core's: the unprojected sequence lengths.
    struct OwnShape {
        BufferShape core;
        std::int64_t tq, tv;
        bool operator==(const OwnShape&) const = default;
    };
    const DeclaredBuffers<OwnShape, Ids>::Entry& declared(const Problem& p, const Shapes& s, bool training) const {
        return declared_.get(OwnShape{BufferShape(p, training), s.tq, s.tv},
                             [&](BufferList& list) { return declare(p, s, training, list); });
    }

    // One call's buffers: the op's (`own`, fetched by `ids`) and the core's.
    struct CallBuffers {
        Ids ids;
        Buffers own, core;
    };
    CallBuffers bind(const nng::Exec& exec, const Problem& p, const Shapes& s, Lifetime direction) const {
        const bool training = has_saved_buffers(exec);
        CallBuffers b;
        const DeclaredBuffers<OwnShape, Ids>::Entry& own = declared(p, s, training);
        b.ids = own.ids;
        bind_buffers(exec, direction, {&own.list, &core_->buffers(p, training)}, {&b.own, &b.core});
        return b;
    }

    // (B, T, heads, dim) <-> (B, heads, T, dim)
    static onednn::View heads_apart(float* data, std::int64_t b, std::int64_t n, std::int64_t t, std::int64_t d) {
        return onednn::view(data, DataType::f32, {b, n, t, d});
    }
    static onednn::View heads_joined_as_apart(float* data, std::int64_t b, std::int64_t n, std::int64_t t,
                                              std::int64_t d) {
        return onednn::view(data, DataType::f32, {b, t, n, d}).permuted({0, 2, 1, 3});
    }
    static onednn::View groups(float* data, const Problem& p, std::int64_t t, std::int64_t d) {
        return onednn::view(data, DataType::f32, {p.groups(), t, d});
    }

    // The problem of one call on the op's buffers `b`.
    Problem problem(const nng::Exec& exec, const Shapes& s, const CallBuffers& b, std::int64_t cached = 0) const {
        const Roles r = Roles::of(exec.num_inputs());
        const Ids& ids = b.ids;
        Problem p = problem_shape(s, cached);
        p.q = groups(b.own.floats(ids.q), p, p.tq, p.dk);
        p.k = long_.lsh() ? p.q : groups(b.own.floats(linformer_ ? ids.kp : ids.k), p, p.tv, p.dk);
        p.v = groups(b.own.floats(linformer_ ? ids.vp : ids.v), p, p.tv, p.dv);
        p.out = groups(b.own.floats(ids.heads_out), p, p.tq, p.dv);
        p.query_mask = mask_data(exec.input_mask(r.query));
        if (!linformer_) {  // Linformer zeroes masked keys and values instead
            p.key_masks[0] = mask_data(exec.input_mask(r.value));
            if (r.key != r.value) p.key_masks[1] = mask_data(exec.input_mask(r.key));
        }
        p.causal = causal_;
        if (long_.adaptive()) p.spans = exec.weight(span_weight()).f32();
        dropout_.apply(p, exec);
        long_.apply(p, exec, dropout_);
        return p;
    }

    // mixed_bfloat16: where the projections' operands are rounded to bf16; null in f32.
    static std::uint16_t* bf16_room(const CallBuffers& b) {
        return static_cast<std::uint16_t*>(b.own.get(b.ids.bf16_operands));
    }

    // A projection's backward rounds dy (rows, cols), x (rows, in) and w (in, cols) to bf16 one
    // after another in `room` (null in f32).
    static onednn::Bfloat16Rooms rooms_for(std::uint16_t* room, std::int64_t rows, std::int64_t in, std::int64_t cols) {
        if (!room) return {};
        return {room, room + rows * cols, room + rows * cols + rows * in};
    }

    // x (B·T, in) · kernel (in, heads·dim) + bias, reordered into `dst` (B, heads, T, dim); the
    // product in bf16 when `room` is given.
    void project(const nng::Exec& exec, int input, Weight kernel, std::int64_t dim, float* projected, float* dst,
                 std::uint16_t* room) const {
        const nng::TensorRef x = exec.input(input);
        const std::int64_t b = x.dim(0), steps = x.dim(1), cols = heads_ * dim;
        const onednn::View bias =
            use_bias_ ? onednn::view(exec.weight(index(Weight(kernel + 1))), {1, cols}) : onednn::View{};
        matmul_in_policy(onednn::view(x, {b * steps, x.dim(2)}),
                         onednn::view(exec.weight(index(kernel)), {x.dim(2), cols}), matrix(projected, b * steps, cols),
                         room, {.bias = bias});
        onednn::reorder(heads_joined_as_apart(projected, b, heads_, steps, dim),
                        heads_apart(dst, b, heads_, steps, dim));
    }

    void forward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        if (const DecodingCache::Call cache = cache_.bind(exec, heads_, key_dim_);
            cache.mode != DecodingCache::Mode::kOff)
            return forward_cached(exec, cache);
        const Shapes s = shapes(exec);
        const Roles r = Roles::of(exec.num_inputs());
        Problem p = problem_shape(s);
        dropout_.apply(p, exec);
        const CallBuffers b = bind(exec, p, s, Lifetime::kForward);
        p = problem(exec, s, b);
        const Ids& ids = b.ids;
        float* projected = b.own.floats(ids.projected);
        float *q = b.own.floats(ids.q), *k = b.own.floats(ids.k), *v = b.own.floats(ids.v);

        project(exec, r.query, kQueryKernel, key_dim_, projected, q, bf16_room(b));
        if (!long_.lsh()) project(exec, r.key, kKeyKernel, key_dim_, projected, k, bf16_room(b));
        project(exec, r.value, kValueKernel, value_dim_, projected, v, bf16_room(b));
        if (linformer_) {
            zero_masked_keys(exec, k, key_dim_);
            zero_masked_keys(exec, v, value_dim_);
            along_steps(exec, kLinformerE, k, key_dim_, b.own.floats(ids.kp));
            along_steps(exec, kLinformerF, v, value_dim_, b.own.floats(ids.vp));
        }
        core_->forward(p, b.core);
        project_output(exec, s, b);
    }

    // The core's output O (heads apart) joined and projected into the op's output.
    void project_output(nng::Exec& exec, const Shapes& s, const CallBuffers& b) const {
        float* joined = b.own.floats(b.ids.joined);
        onednn::reorder(heads_apart(b.own.floats(b.ids.heads_out), s.batch, heads_, s.tq, value_dim_),
                        heads_joined_as_apart(joined, s.batch, heads_, s.tq, value_dim_));
        const std::int64_t rows = s.batch * s.tq, cols = heads_ * value_dim_;
        const onednn::View bias =
            use_bias_ ? onednn::view(exec.weight(index(kOutputBias)), {1, s.out}) : onednn::View{};
        matmul_in_policy(matrix(joined, rows, cols), onednn::view(exec.weight(index(kOutputKernel)), {cols, s.out}),
                         onednn::view(exec.output(0), {rows, s.out}), bf16_room(b), {.bias = bias});
    }

    // A decoding call: the new position's query over the cached keys and values.
    void forward_cached(nng::Exec& exec, const DecodingCache::Call& cache) {
        const Shapes s = shapes(exec);
        const Roles r = Roles::of(exec.num_inputs());
        Problem p = problem_shape(s, cache.length);
        dropout_.apply(p, exec);
        const CallBuffers b = bind(exec, p, s, Lifetime::kForward);
        p = problem(exec, s, b, cache.length);
        float* projected = b.own.floats(b.ids.projected);
        project(exec, r.query, kQueryKernel, key_dim_, projected, b.own.floats(b.ids.q), bf16_room(b));
        if (cache.mode == DecodingCache::Mode::kAppend) {
            float *k = b.own.floats(b.ids.k), *v = b.own.floats(b.ids.v);
            project(exec, r.key, kKeyKernel, key_dim_, projected, k, bf16_room(b));
            project(exec, r.value, kValueKernel, value_dim_, projected, v, bf16_room(b));
            DecodingCache::append(cache, k, v, mask_data(exec.input_mask(r.value)),
                                  r.key != r.value ? mask_data(exec.input_mask(r.key)) : nullptr, s.batch, heads_,
                                  key_dim_, value_dim_);
            p.key_masks[0] = cache.key_mask;  // filled positions only: causal by construction
            p.key_masks[1] = nullptr;
            p.causal = false;
        } else if (cache.position == 0) {  // the encoder's keys and values, once a session
            project(exec, r.key, kKeyKernel, key_dim_, projected, cache.keys, bf16_room(b));
            project(exec, r.value, kValueKernel, value_dim_, projected, cache.values, bf16_room(b));
        }
        p.k = groups(cache.keys, p, p.tv, p.dk);
        p.v = groups(cache.values, p, p.tv, p.dv);
        core_->forward(p, b.core);
        project_output(exec, s, b);
    }

    // From dL/d(projection) heads apart: the kernel and bias gradients and the input's, into
    // gradient slot `slot` (none when -1), added onto what an earlier projection wrote there when
    // `accumulate`.
    void project_backward(nng::Exec& exec, int input, int slot, Weight kernel, std::int64_t dim, float* d_apart,
                          float* d_projected, bool accumulate, std::uint16_t* room) const {
        const nng::TensorRef x = exec.input(input);
        const std::int64_t b = x.dim(0), steps = x.dim(1), in = x.dim(2), cols = heads_ * dim;
        onednn::reorder(heads_apart(d_apart, b, heads_, steps, dim),
                        heads_joined_as_apart(d_projected, b, heads_, steps, dim));
        const nng::TensorRef dw = exec.grad_weight(index(kernel));
        const nng::TensorRef db = use_bias_ ? exec.grad_weight(index(Weight(kernel + 1))) : nng::TensorRef();
        const nng::TensorRef dx = slot >= 0 ? exec.grad_input(slot) : nng::TensorRef();
        onednn::linear_backward(
            onednn::view(x, {b * steps, in}), onednn::view(exec.weight(index(kernel)), {in, cols}),
            matrix(d_projected, b * steps, cols),
            {dw ? onednn::view(dw, {in, cols}) : onednn::View{}, db ? onednn::view(db, {cols}) : onednn::View{},
             dx ? onednn::view(dx, {b * steps, in}) : onednn::View{}, accumulate ? 1.0f : 0.0f},
            rooms_for(room, b * steps, in, cols));
    }

    void backward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const Shapes s = shapes(exec);
        const Roles r = Roles::of(exec.num_inputs());
        const nng::TensorRef dy = exec.grad_output(0);
        if (!dy) {
            for (int i = 0; i < exec.num_inputs(); ++i) zero(exec.grad_input(i));
            for (int w = 0; w < projection_weights() + (long_.adaptive() ? 1 : 0) + (linformer_ ? 2 : 0); ++w)
                zero(exec.grad_weight(w));
            return;
        }
        Problem p = problem_shape(s);
        dropout_.apply(p, exec);
        const CallBuffers b = bind(exec, p, s, Lifetime::kBackward);
        p = problem(exec, s, b);
        const Ids& ids = b.ids;
        float* joined_out = b.own.floats(ids.joined);
        float *d_heads_out = b.own.floats(ids.d_heads_out), *d_projected = b.own.floats(ids.d_projected);

        const std::int64_t rows = s.batch * s.tq, cols = heads_ * value_dim_;
        float* d_joined = b.own.floats(ids.d_joined);
        const nng::TensorRef dw = exec.grad_weight(index(kOutputKernel));
        const nng::TensorRef db = use_bias_ ? exec.grad_weight(index(kOutputBias)) : nng::TensorRef();
        onednn::linear_backward(matrix(joined_out, rows, cols),
                                onednn::view(exec.weight(index(kOutputKernel)), {cols, s.out}),
                                onednn::view(dy, {rows, s.out}),
                                {dw ? onednn::view(dw, {cols, s.out}) : onednn::View{},
                                 db ? onednn::view(db, {s.out}) : onednn::View{}, matrix(d_joined, rows, cols)},
                                rooms_for(bf16_room(b), rows, cols, s.out));
        onednn::reorder(heads_joined_as_apart(d_joined, s.batch, heads_, s.tq, value_dim_),
                        heads_apart(d_heads_out, s.batch, heads_, s.tq, value_dim_));

        if (core_->backward_reads_output()) {
            float* out_heads = b.own.floats(ids.out_heads);
            onednn::reorder(heads_joined_as_apart(joined_out, s.batch, heads_, s.tq, value_dim_),
                            heads_apart(out_heads, s.batch, heads_, s.tq, value_dim_));
            p.out = groups(out_heads, p, p.tq, p.dv);
        }
        float *dq = b.own.floats(ids.dq), *dk = b.own.floats(ids.dk), *dv = b.own.floats(ids.dv);
        CoreGradients grads;
        grads.dq = groups(dq, p, p.tq, p.dk);
        if (!long_.lsh()) grads.dk = groups(dk, p, p.tv, p.dk);  // lsh: dq has the keys' gradient
        grads.dv = groups(dv, p, p.tv, p.dv);
        if (p.lent_gradient_blocks == 2) {
            grads.spare_dk = groups(d_projected, p, p.tv, p.dk);
            grads.spare_dv = groups(d_joined, p, p.tv, p.dv);
        }
        const nng::TensorRef dspan = long_.adaptive() ? exec.grad_weight(span_weight()) : nng::TensorRef();
        if (dspan) grads.d_spans = dspan.f32();
        core_->backward(p, b.core, groups(d_heads_out, p, p.tq, p.dv), grads);

        if (linformer_) {
            float *rows_by_k = b.own.floats(ids.rows_by_k), *k_by_steps = b.own.floats(ids.k_by_steps);
            float *dk_full = b.own.floats(ids.dk_full), *dv_full = b.own.floats(ids.dv_full);
            along_steps_backward(exec, kLinformerE, b.own.floats(ids.k), key_dim_, dk, dk_full, rows_by_k, k_by_steps);
            along_steps_backward(exec, kLinformerF, b.own.floats(ids.v), value_dim_, dv, dv_full, rows_by_k,
                                 k_by_steps);
            dk = dk_full;
            dv = dv_full;
        }
        // Input gradients: where roles share a slot (an input playing several roles, or one tensor
        // as several inputs: gradient_slots_), the later projections add onto the first.
        std::array<bool, kMaxInputs> written{};
        const auto input_gradient = [&](int input, Weight kernel, std::int64_t dim, float* d_apart) {
            const int slot = gradient_slots_.of(exec, input);
            const bool accumulate = slot >= 0 && written[static_cast<std::size_t>(slot)];
            project_backward(exec, input, slot, kernel, dim, d_apart, d_projected, accumulate, bf16_room(b));
            if (slot >= 0) written[static_cast<std::size_t>(slot)] = true;
        };
        input_gradient(r.query, kQueryKernel, key_dim_, dq);
        if (!long_.lsh()) input_gradient(r.key, kKeyKernel, key_dim_, dk);
        input_gradient(r.value, kValueKernel, value_dim_, dv);
    }

    std::int64_t heads_, key_dim_, value_dim_;
    DropoutAttrs dropout_;
    bool use_bias_;
    Dims output_shape_;
    nng::Initializer kernel_init_, bias_init_;
    bool causal_;
    LongContextAttrs long_;
    std::int64_t linformer_;  // k, or 0
    std::unique_ptr<AttentionCore> core_;
    DecodingCache cache_;
    bool bfloat16_ = false;              // the node's policy is mixed_bfloat16 (known from infer on)
    nng::GradientSlots gradient_slots_;  // which inputs are one tensor (known from infer on)
    DeclaredBuffers<OwnShape, Ids> declared_;
};

}  // namespace

const nng_op_def* multi_head_attention_op() { return nng::op<MultiHeadAttention>(); }

}  // namespace nngraph_attention
