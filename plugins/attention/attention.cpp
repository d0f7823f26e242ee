// keras.layers.Attention (Luong-style): output = softmax(scores(query, key)) · value, with
//   dot:    scores = query · keyᵀ            (times `scale` when use_scale)
//   concat: scores = concat_score_weight · Σ_d tanh(query_d + key_d)   (the tanh argument times
//           `scale` when use_scale)
// and the extension `scale` (a constant factor on the scores, e.g. 1/sqrt(dim)). Masks as Keras:
// the value mask (input 1's) and use_causal_mask subtract 1e9 from masked keys' scores; a masked
// query's output row is zero; the output carries the query mask. Dropout on the probabilities.
#include <cmath>
#include <vector>

#include "common.hpp"
#include "dense.hpp"

namespace nngraph_attention {
namespace {

struct Attention {
    static constexpr const char* kName = "Attention";
    static constexpr const char* kDoc =
        "Dot-product (Luong) or concat attention over [query, value(, key)], Keras semantics";
    static constexpr int kMinInputs = 2, kMaxInputs = 3;
    static constexpr std::array<const char*, 3> kInputNames{"query", "value", "key"};
    static constexpr auto kAttributes = with_long_context(std::array{
        nng::bool_attr("use_scale", "false", "learn a scalar `scale` on the scores"),
        nng::string_attr("score_mode", "dot", "dot|concat", "dot: query . key; concat: sum of tanh(query + key)"),
        nng::float_attr("dropout", "0.0", "fraction of the attention probabilities dropped in training"),
        nng::nullable(nng::int_attr("seed", "null", "mixed into the step's seed for dropout")),
        nng::bool_attr("use_causal_mask", "false", "mask keys after the query's position"),
        nng::nullable(
            nng::float_attr("scale", "null", "a constant factor on the scores, e.g. 1/sqrt(dim) (extension)")),
    });

    explicit Attention(const nng::Attrs& attrs)
        : use_scale_(attrs.get_bool("use_scale")),
          concat_(attrs.get_string("score_mode") == "concat"),
          dropout_(attrs),
          causal_(attrs.get_bool("use_causal_mask")),
          constant_(attrs.is_null("scale") ? 1.0 : attrs.get_float("scale")),
          long_(attrs) {
        nng::check_attr(std::isfinite(constant_), "scale", "a finite number or null");
        nng::check_attr(!(concat_ && (long_.blockwise || long_.lsh())), "score_mode",
                        "dot with a blockwise, windowed, block-sparse, adaptive-span or lsh core");
        if (concat_) {
            auto dense = std::make_unique<DenseCore>(DenseCore::Scores::kGiven);
            concat_core_ = dense.get();
            core_ = std::move(dense);
        } else {
            core_ = long_.make_core();
        }
    }

    // Weight indices.
    int scale_weight() const { return use_scale_ ? 0 : -1; }
    int concat_weight() const { return concat_ ? (use_scale_ ? 1 : 0) : -1; }
    int span_weight() const { return long_.adaptive() ? (use_scale_ ? 1 : 0) : -1; }

    void infer(nng::InferContext& ctx) {
        bfloat16_ = ctx.precision() == nng::Precision::MixedBfloat16;
        const InputDims d = InputDims::infer(ctx, kName);
        long_.check_inputs(d, ctx.num_inputs(), dropout_, kName);
        long_.declare_sequence_role(ctx, causal_);
        ctx.set_batch_slicing(NNG_SLICING_FREE);  // every product is within one sample
        // One tensor as query and key (Attention [x, x]): a core that can adds the key's gradient
        // into the query's, which the host sums with the key's anyway.
        key_is_query_ = core_->adds_dk_into_dq() && ctx.same_input(d.roles.query, d.roles.key);
        // With a core that adds dq onto dv, a tensor given as several inputs takes one gradient slot.
        gradient_slots_ = nng::GradientSlots(ctx);
        if (core_->adds_dq_onto_dv()) ctx.sum_repeated_gradients();
        if (d.q[2] != d.k[2] && !long_.lsh()) {
            nng::InferContext::shape_mismatch(std::string("Attention: query and key need the same last dimension (") +
                                                  (concat_ ? "concat adds them" : "dot multiplies them") +
                                                  "), got query",
                                              d.q, d.k);
        }
        const int out = ctx.add_output(NNG_F32, {d.q[0], d.q[1], d.v[2]});
        ctx.pass_mask(out, 0);  // Keras's compute_mask: the query mask
        if (use_scale_) ctx.add_weight("scale", {}, NNG_INIT_ONES);
        if (concat_) ctx.add_weight("concat_score_weight", {}, NNG_INIT_ONES);
        long_.add_weights(ctx, 1);
        Problem shapes = problem_shape(d.q, d.v, std::max<std::int64_t>(d.q[0], 0));
        const BufferList& buffers = core_->buffers(shapes, ctx.training());
        if (ctx.counting_work()) {
            // The core's work, and concat's Σ tanh(q + k) (3 a term, twice that back) when it gives the scores.
            shapes.causal = causal_;
            const CoreWork core = core_->work(shapes, ctx.training());
            const nng::Work concat =
                concat_ ? nng::elementwise_work(shapes.score_count() * shapes.dk, 3, 0) : nng::Work{};
            ctx.count_work(core.forward + concat, core.backward + 2 * concat);
        }
        declare_buffers(ctx, d.q[0], {&buffers});
        ctx.set_backward_needs(needs_inputs(ctx.num_inputs()) |
                               (core_->backward_reads_output() ? NNG_NEEDS_OUTPUT(0) : 0u));
    }

    // The problem's shapes and what sizes its buffers.
    Problem problem_shape(const Dims& q, const Dims& v, std::int64_t batch) const {
        Problem p;
        p.batch = batch;
        p.tq = q[1];
        p.tv = v[1];
        p.dk = q[2];
        p.dv = v[2];
        p.style = MaskStyle::kSubtract;
        p.alpha_gradient = use_scale_ && !concat_;
        p.bfloat16 = bfloat16_;
        p.key_is_query = key_is_query_;
        dropout_.size(p);
        return p;
    }

    // The problem of one call: views, scale, masks, dropout.
    Problem problem(const nng::Exec& exec) const {
        const Roles roles = Roles::of(exec.num_inputs());
        const nng::TensorRef q = exec.input(roles.query), v = exec.input(roles.value), k = exec.input(roles.key);
        Problem p = problem_shape(q.dims(), v.dims(), q.dim(0));
        p.q = onednn::view(q);
        p.k = onednn::view(k);
        p.v = onednn::view(v);
        p.out = onednn::view(exec.output(0));
        p.alpha = static_cast<float>(constant_ * (use_scale_ && !concat_ ? exec.weight(scale_weight()).f32()[0] : 1.0));
        p.query_mask = mask_data(exec.input_mask(roles.query));
        p.key_masks[0] = mask_data(exec.input_mask(roles.value));  // Keras masks the keys with the value mask
        p.causal = causal_;
        if (long_.adaptive()) p.spans = exec.weight(span_weight()).f32();
        dropout_.apply(p, exec);
        long_.apply(p, exec, dropout_);
        if (long_.lsh()) p.k = p.q;  // the core makes its keys from the queries
        return p;
    }

    // The call's buffers, for `direction`.
    Buffers buffers(const nng::Exec& exec, const Problem& p, Lifetime direction) const {
        const BufferList& list = core_->buffers(p, has_saved_buffers(exec));
        Buffers buffers;
        bind_buffers(exec, direction, {&list}, {&buffers});
        return buffers;
    }

    void forward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const Problem p = problem(exec);
        const Buffers buffers = this->buffers(exec, p, Lifetime::kForward);
        if (concat_) concat_scores(exec, p, concat_core_->scores(p, buffers));
        core_->forward(p, buffers);
    }

    void backward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const Problem p = problem(exec);
        const Roles roles = Roles::of(exec.num_inputs());
        const nng::TensorRef dout = exec.grad_output(0);
        // With [query, value] the key is the value; an input the host gave no slot of its own
        // (sum_repeated_gradients) goes to the slot of the first input that is the same tensor.
        // Where two roles share a slot, the later-written gradient adds onto the earlier.
        const int q_slot = gradient_slots_.of(exec, roles.query), v_slot = gradient_slots_.of(exec, roles.value),
                  k_slot = gradient_slots_.of(exec, roles.key);
        const nng::TensorRef dq = gradient_slots_.tensor(exec, roles.query),
                             dv = gradient_slots_.tensor(exec, roles.value),
                             dk = gradient_slots_.tensor(exec, roles.key);
        const bool key_is_value = k_slot >= 0 && k_slot == v_slot;
        const nng::TensorRef dscale = use_scale_ ? exec.grad_weight(scale_weight()) : nng::TensorRef();
        const nng::TensorRef dconcat = concat_ ? exec.grad_weight(concat_weight()) : nng::TensorRef();
        const nng::TensorRef dspan = long_.adaptive() ? exec.grad_weight(span_weight()) : nng::TensorRef();
        if (!dout) {
            for (const nng::TensorRef& g : {dq, dv, dk, dscale, dconcat, dspan}) zero(g);
            return;
        }
        const Buffers buffers = this->buffers(exec, p, Lifetime::kBackward);
        if (concat_) {
            const float* dscores = concat_core_->backward_to_scores(p, buffers, onednn::view(dout), onednn::view(dv));
            concat_backward(exec, p, dscores, dq, dk, key_is_value && dv, dscale, dconcat);
            return;
        }
        double product = 0.0;
        CoreGradients grads;
        grads.dq = onednn::view(dq);
        grads.dv = onednn::view(dv);
        if (p.key_is_query) {
            if (k_slot != q_slot && !key_is_value) zero(dk);  // the key's own slot: its share is in the query's
        } else if (!long_.lsh()) {
            grads.dk = onednn::view(dk);  // lsh's keys are the queries: dq has their gradient
        }
        grads.dq_accumulates = q_slot >= 0 && q_slot == v_slot;  // onto the value gradient (adds_dq_onto_dv)
        grads.dk_accumulates = key_is_value;                     // onto the value gradient
        if (dscale) grads.d_alpha_product = &product;
        if (dspan) grads.d_spans = dspan.f32();
        core_->backward(p, buffers, onednn::view(dout), grads);
        if (dscale) dscale.f32()[0] = static_cast<float>(constant_ * product);
    }

    // ---- concat scores: c · w · Σ_d tanh(s · (q_id + k_jd)), c the constant, s the learned scale ----

    struct ConcatFactors {
        float s, w, c;
    };
    ConcatFactors concat_factors(const nng::Exec& exec) const {
        return {use_scale_ ? exec.weight(scale_weight()).f32()[0] : 1.0f, exec.weight(concat_weight()).f32()[0],
                static_cast<float>(constant_)};
    }

    void concat_scores(const nng::Exec& exec, const Problem& p, float* scores) const {
        const ConcatFactors f = concat_factors(exec);
        const float* q = static_cast<const float*>(p.q.data);
        const float* k = static_cast<const float*>(p.k.data);
        const std::int64_t d = p.dk;
#pragma omp parallel for collapse(2) schedule(static)
        for (std::int64_t b = 0; b < p.batch; ++b) {
            for (std::int64_t i = 0; i < p.tq; ++i) {
                const float* qi = q + (b * p.tq + i) * d;
                for (std::int64_t j = 0; j < p.tv; ++j) {
                    const float* kj = k + (b * p.tv + j) * d;
                    float sum = 0.0f;
                    for (std::int64_t e = 0; e < d; ++e) sum += std::tanh(f.s * (qi[e] + kj[e]));
                    scores[(b * p.tq + i) * p.tv + j] = f.c * (f.w * sum);
                }
            }
        }
    }

    // From dL/dscores: the query and key gradients (the key's added onto `dk` when it already
    // holds the value's), and the scale and weight gradients.
    void concat_backward(const nng::Exec& exec, const Problem& p, const float* dscores, const nng::TensorRef& dq_ref,
                         const nng::TensorRef& dk_ref, bool dk_accumulates, const nng::TensorRef& dscale,
                         const nng::TensorRef& dconcat) const {
        const ConcatFactors f = concat_factors(exec);
        const float* q = static_cast<const float*>(p.q.data);
        const float* k = static_cast<const float*>(p.k.data);
        float* dq = dq_ref ? dq_ref.f32() : nullptr;
        float* dk = dk_ref ? dk_ref.f32() : nullptr;
        if (dq) zero(dq_ref);
        if (dk && !dk_accumulates) zero(dk_ref);
        const std::int64_t d = p.dk;
        double d_s = 0.0, d_w = 0.0;
        // One sample per iteration: its query and key rows belong to it alone.
#pragma omp parallel for reduction(+ : d_s, d_w) schedule(static)
        for (std::int64_t b = 0; b < p.batch; ++b) {
            for (std::int64_t i = 0; i < p.tq; ++i) {
                const float* qi = q + (b * p.tq + i) * d;
                for (std::int64_t j = 0; j < p.tv; ++j) {
                    const float g = dscores[(b * p.tq + i) * p.tv + j] * f.c;  // dL/d(w · Σ tanh)
                    if (g == 0.0f) continue;
                    const float* kj = k + (b * p.tv + j) * d;
                    double tanh_sum = 0.0, slope_sum = 0.0;
                    for (std::int64_t e = 0; e < d; ++e) {
                        const float x = qi[e] + kj[e];
                        const float t = std::tanh(f.s * x);
                        const float slope = 1.0f - t * t;
                        tanh_sum += t;
                        slope_sum += double(slope) * x;
                        const float dx = g * f.w * f.s * slope;
                        if (dq) dq[(b * p.tq + i) * d + e] += dx;
                        if (dk) dk[(b * p.tv + j) * d + e] += dx;
                    }
                    d_w += double(g) * tanh_sum;
                    d_s += double(g) * f.w * slope_sum;
                }
            }
        }
        if (dscale) dscale.f32()[0] = static_cast<float>(d_s);
        if (dconcat) dconcat.f32()[0] = static_cast<float>(d_w);
    }

    bool use_scale_;
    bool concat_;
    DropoutAttrs dropout_;
    bool causal_;
    double constant_;
    LongContextAttrs long_;
    std::unique_ptr<AttentionCore> core_;
    bool bfloat16_ = false;              // the node's policy is mixed_bfloat16 (known from infer on)
    bool key_is_query_ = false;          // query and key are one tensor of the graph (known from infer on)
    nng::GradientSlots gradient_slots_;  // which inputs are one tensor (known from infer on)
    DenseCore* concat_core_ = nullptr;   // core_ when concat: the dense core on the op's scores
};

}  // namespace

const nng_op_def* attention_op() { return nng::op<Attention>(); }

}  // namespace nngraph_attention
