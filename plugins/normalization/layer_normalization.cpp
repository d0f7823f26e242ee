// Keras's LayerNormalization: y = (x - mean) / sqrt(variance + epsilon) * gamma + beta, with the
// mean and the (biased) variance taken over `axis`, on oneDNN's layer_normalization primitives.
//
// `axis` may name several axes (Keras's list form) as long as they are the trailing ones, e.g.
// [-2, -1]: the input is then (rows, C) with C the product of those dims, and gamma and beta have
// their shape. Other axis sets (a middle axis alone, or the batch axis) are refused by name.
// Training keeps oneDNN's per-row mean and variance as saved buffers for backward.
#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "nngraph/onednn.hpp"

namespace {

namespace onednn = nng::onednn;
using nng::Dims;
using nng::OpError;

constexpr onednn::Tag kForwardTag{"layer_normalization.forward"};
constexpr onednn::Tag kBackwardTag{"layer_normalization.backward"};
constexpr auto kF32 = dnnl::memory::data_type::f32;

struct LayerNormalization {
    static constexpr const char* kName = "LayerNormalization";
    static constexpr const char* kDoc =
        "Normalizes over the trailing axes to mean 0 and variance 1, then scales by gamma and shifts by beta";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::ints_attr("axis", "-1", "axis or list of axes to normalize over (the trailing ones)"),
        nng::float_attr("epsilon", "0.001", "added to the variance"),
        nng::bool_attr("center", "true", "add the learned offset beta"),
        nng::bool_attr("scale", "true", "multiply by the learned gamma"),
        nng::string_attr("beta_initializer", "zeros", nng::kInitializerChoices, "initial beta"),
        nng::string_attr("gamma_initializer", "ones", nng::kInitializerChoices, "initial gamma"),
    };

    explicit LayerNormalization(const nng::Attrs& attrs)
        : axes_(attrs.get_ints("axis")),
          epsilon_(static_cast<float>(attrs.get_float("epsilon"))),
          center_(attrs.get_bool("center")),
          scale_(attrs.get_bool("scale")),
          beta_init_(nng::keras_initializer(attrs.get_string("beta_initializer"), "beta_initializer")),
          gamma_init_(nng::keras_initializer(attrs.get_string("gamma_initializer"), "gamma_initializer")) {
        nng::check_attr(!axes_.empty(), "axis", "an axis or a non-empty list of axes");
        nng::check_attr(attrs.get_float("epsilon") >= 0.0, "epsilon", "a non-negative number");
        flags_ = dnnl::normalization_flags::none;
        if (scale_) flags_ |= dnnl::normalization_flags::use_scale;
        if (center_) flags_ |= dnnl::normalization_flags::use_shift;
    }

    // The first normalized axis of a rank-`rank` input, after checking that `axis` names the
    // trailing axes (each once, none of them the batch axis). Allocates only to throw.
    std::size_t first_axis(std::size_t rank) const {
        const auto r = static_cast<std::int64_t>(rank);
        if (axes_.size() >= rank) {
            throw OpError("axis names " + std::to_string(axes_.size()) + " axes; a rank-" + std::to_string(r) +
                              " input has " + std::to_string(r - 1) + " besides the batch axis",
                          "axis");
        }
        std::array<std::int64_t, NNG_MAX_RANK> axes{};
        for (std::size_t k = 0; k < axes_.size(); ++k) {
            const std::int64_t a = axes_[k], c = a < 0 ? a + r : a;
            if (c <= 0 || c >= r) {
                throw OpError(
                    "axis " + std::to_string(a) + " is not a non-batch axis of a rank-" + std::to_string(r) + " input",
                    "axis");
            }
            axes[k] = c;
        }
        const auto end = axes.begin() + static_cast<std::ptrdiff_t>(axes_.size());
        std::sort(axes.begin(), end);
        if (std::adjacent_find(axes.begin(), end) != end) throw OpError("axis names an axis twice", "axis");
        const std::int64_t first = r - static_cast<std::int64_t>(axes_.size());
        for (std::size_t k = 0; k < axes_.size(); ++k) {
            if (axes[k] != first + static_cast<std::int64_t>(k)) {
                throw OpError("only the trailing axes can be normalized together (e.g. -1, or [-2, -1]); got axis " +
                                  nng::dims_string(axes_) + " for a rank-" + std::to_string(r) + " input",
                              "axis");
            }
        }
        return static_cast<std::size_t>(first);
    }

    void infer(nng::InferContext& ctx) {
        ctx.expect_rank(0, 2, NNG_MAX_RANK, "rank 2 or more: (batch, ..., features)");
        ctx.expect_dtype(0, NNG_F32, "float32");
        const Dims in = ctx.input_dims(0);
        const std::size_t first = first_axis(in.size());
        const Dims normalized(in.begin() + static_cast<std::ptrdiff_t>(first), in.end());
        const int y = ctx.add_output(NNG_F32, in);
        ctx.pass_mask(y, 0);
        if (scale_) ctx.add_weight("gamma", normalized, gamma_init_);
        if (center_) ctx.add_weight("beta", normalized, beta_init_);
        const std::int64_t rows = ctx.training() ? nng::product(in, 0, first) : 0;
        const std::int64_t columns = ctx.training() ? nng::product(normalized) : 0;
        mean_ = ctx.buffer<float>("mean", rows, nng::Lifetime::Saved);
        variance_ = ctx.buffer<float>("variance", rows, nng::Lifetime::Saved);
        // Where oneDNN's backward writes the gradients nobody asked for.
        spare_diff_src_ = ctx.buffer<float>("unwanted input gradient", rows * columns, nng::Lifetime::Backward);
        spare_diff_scale_ = ctx.buffer<float>("unwanted gamma gradient", scale_ ? columns : 0, nng::Lifetime::Backward);
        spare_diff_shift_ = ctx.buffer<float>("unwanted beta gradient", center_ ? columns : 0, nng::Lifetime::Backward);
        ctx.set_backward_needs(NNG_NEEDS_INPUT(0));
        // Statistics over axes after the steps keep each step its own.
        if (first >= 2) ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);  // the batch axis is never normalised over
        if (ctx.counting_work()) {
            // Mean, variance, normalise, scale and shift: 8 a value over x and y; backward 12 a value
            // over x, dy and dx.
            const std::int64_t values = nng::product(in);
            ctx.count_work(nng::elementwise_work(values, 8, 2), nng::elementwise_work(values, 12, 3));
        }
    }

    // The call's input as (rows, C), C the product of the normalized dims (gamma's size).
    struct Matrix {
        std::int64_t rows, columns;
    };
    Matrix matrix(const nng::Exec& exec) const {
        const nng::TensorRef x = exec.input(0);
        std::int64_t columns = 1;
        for (std::size_t k = first_axis(static_cast<std::size_t>(x.rank())); k < static_cast<std::size_t>(x.rank());
             ++k) {
            columns *= x.dim(static_cast<int>(k));
        }
        return {x.numel() / columns, columns};
    }

    dnnl::layer_normalization_forward::desc forward_desc(const onednn::View& data, std::int64_t rows,
                                                         bool training) const {
        return {training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference,
                onednn::desc_of(data), dnnl::memory::desc({rows}, kF32, dnnl::memory::format_tag::a), epsilon_, flags_};
    }

    // Weight k's index, or -1: gamma comes first when present.
    int gamma_index() const { return scale_ ? 0 : -1; }
    int beta_index() const { return center_ ? (scale_ ? 1 : 0) : -1; }

    void forward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const Matrix m = matrix(exec);
        const bool training = exec.training();
        const onednn::View x = onednn::view(exec.input(0), {m.rows, m.columns});
        const onednn::View y = onednn::view(exec.output(0), {m.rows, m.columns});
        const onednn::Cached& c = onednn::cached<dnnl::layer_normalization_forward>(
            onednn::Key(kForwardTag).add(x, epsilon_, flags_, training), [&] {
                return dnnl::layer_normalization_forward::primitive_desc(forward_desc(x, m.rows, training),
                                                                         onednn::attributes(), onednn::engine());
            });
        std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, onednn::memory_of(x)},
                                                   {DNNL_ARG_DST, onednn::memory_of(y)}};
        if (scale_)
            args.emplace(DNNL_ARG_SCALE, onednn::memory_of(onednn::view(exec.weight(gamma_index()), {m.columns})));
        if (center_)
            args.emplace(DNNL_ARG_SHIFT, onednn::memory_of(onednn::view(exec.weight(beta_index()), {m.columns})));
        if (training) {
            args.emplace(DNNL_ARG_MEAN, onednn::memory_of(onednn::view(exec.buffer(mean_), kF32, {m.rows})));
            args.emplace(DNNL_ARG_VARIANCE, onednn::memory_of(onednn::view(exec.buffer(variance_), kF32, {m.rows})));
        }
        onednn::execute(c, std::move(args));
    }

    void backward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const Matrix m = matrix(exec);
        const nng::TensorRef dy = exec.grad_output(0), dx = exec.grad_input(0);
        const nng::TensorRef dgamma = scale_ ? exec.grad_weight(gamma_index()) : nng::TensorRef();
        const nng::TensorRef dbeta = center_ ? exec.grad_weight(beta_index()) : nng::TensorRef();
        if (!dy) {
            for (const nng::TensorRef& g : {dx, dgamma, dbeta}) {
                if (g) std::memset(g.raw(), 0, g.nbytes());
            }
            return;
        }
        if (!dx && !dgamma && !dbeta) return;
        // Weight gradients are computed whenever the op has weights (oneDNN's backward writes both);
        // one nobody wants goes to a spare buffer, as does an unwanted input gradient.
        const bool weights = scale_ || center_;
        const onednn::View x = onednn::view(exec.input(0), {m.rows, m.columns});
        const onednn::View diff_dst = onednn::view(dy, {m.rows, m.columns});
        const onednn::View diff_src = dx ? onednn::view(dx, {m.rows, m.columns})
                                         : onednn::view(exec.buffer(spare_diff_src_), kF32, {m.rows, m.columns});
        const dnnl::prop_kind kind = weights ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data;
        const onednn::Cached& c = onednn::cached<dnnl::layer_normalization_backward>(
            onednn::Key(kBackwardTag).add(x, diff_dst, diff_src, epsilon_, flags_, kind), [&] {
                const dnnl::layer_normalization_forward::primitive_desc hint(forward_desc(x, m.rows, true),
                                                                             onednn::attributes(), onednn::engine());
                const dnnl::layer_normalization_backward::desc desc(
                    kind, onednn::desc_of(diff_dst), onednn::desc_of(x),
                    dnnl::memory::desc({m.rows}, kF32, dnnl::memory::format_tag::a), epsilon_, flags_);
                return dnnl::layer_normalization_backward::primitive_desc(desc, onednn::attributes(), onednn::engine(),
                                                                          hint);
            });
        std::unordered_map<int, dnnl::memory> args{
            {DNNL_ARG_SRC, onednn::memory_of(x)},
            {DNNL_ARG_DIFF_DST, onednn::memory_of(diff_dst)},
            {DNNL_ARG_DIFF_SRC, onednn::memory_of(diff_src)},
            {DNNL_ARG_MEAN, onednn::memory_of(onednn::view(exec.buffer(mean_), kF32, {m.rows}))},
            {DNNL_ARG_VARIANCE, onednn::memory_of(onednn::view(exec.buffer(variance_), kF32, {m.rows}))}};
        const auto weight_grad = [&](const nng::TensorRef& g, nng::Buffer<float> spare) {
            return onednn::memory_of(g ? onednn::view(g, {m.columns})
                                       : onednn::view(exec.buffer(spare), kF32, {m.columns}));
        };
        if (scale_) {
            args.emplace(DNNL_ARG_SCALE, onednn::memory_of(onednn::view(exec.weight(gamma_index()), {m.columns})));
            args.emplace(DNNL_ARG_DIFF_SCALE, weight_grad(dgamma, spare_diff_scale_));
        }
        if (center_) {
            // oneDNN 2.6 lists the shift among backward's inputs, though the gradient does not depend on it.
            args.emplace(DNNL_ARG_SHIFT, onednn::memory_of(onednn::view(exec.weight(beta_index()), {m.columns})));
            args.emplace(DNNL_ARG_DIFF_SHIFT, weight_grad(dbeta, spare_diff_shift_));
        }
        onednn::execute(c, std::move(args));
    }

    std::vector<std::int64_t> axes_;
    float epsilon_;
    bool center_, scale_;
    nng::Initializer beta_init_, gamma_init_;
    dnnl::normalization_flags flags_;
    nng::Buffer<float> mean_, variance_, spare_diff_src_, spare_diff_scale_, spare_diff_shift_;
};

}  // namespace

NNG_PLUGIN_WITH_COUNTERS("normalization", "0.1.0", &nng::onednn::counters, nng::op<LayerNormalization>())
