// Keras's Dense: y = activation(x · kernel + bias) over the last axis, on oneDNN matmul.
#include <cstring>

#include "activation.hpp"

namespace nngraph_dense {
namespace {

namespace onednn = nng::onednn;
using nng::Dims;

struct Dense {
    static constexpr const char* kName = "Dense";
    static constexpr const char* kDoc = "activation(x . kernel + bias) over the last axis";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::int_attr("units", nullptr, "output width")),
        nng::nullable(nng::make_attr("activation", NNG_ATTR_STRING, "linear", "activation (null: linear)", 0,
                                     ActivationFn::kChoices)),
        nng::bool_attr("use_bias", "true", "add a learned bias"),
        nng::string_attr("kernel_initializer", "glorot_uniform", nng::kInitializerChoices, "initial kernel"),
        nng::string_attr("bias_initializer", "zeros", nng::kInitializerChoices, "initial bias"),
    };

    explicit Dense(const nng::Attrs& attrs)
        : units_(attrs.get_int("units")),
          f_(ActivationFn::parse(attrs.is_null("activation") ? "linear" : attrs.get_string("activation"))),
          use_bias_(attrs.get_bool("use_bias")),
          kernel_init_(nng::keras_initializer(attrs.get_string("kernel_initializer"), "kernel_initializer")),
          bias_init_(nng::keras_initializer(attrs.get_string("bias_initializer"), "bias_initializer")) {
        nng::check_attr(units_ > 0, "units", "a positive integer");
    }

    // Where the pre-activation z lives: the logits twin, a saved buffer (activations whose
    // backward needs z), or nowhere (fused into the matmul, or linear).
    bool keeps_z_in_saved() const { return f_.backward_needs_input() && !has_logits(); }
    bool has_logits() const { return f_.logits_role() != NNG_OUTPUT_VISIBLE; }

    void infer(nng::InferContext& ctx) {
        ctx.expect_rank(0, 2, NNG_MAX_RANK, "rank 2 or more: (batch, ..., features)");
        ctx.expect_dtype(0, NNG_F32, "float32");
        Dims out = ctx.input_dims(0);
        const std::int64_t in = out.back();
        out.back() = units_;
        const int y = ctx.add_output(NNG_F32, out);
        ctx.pass_mask(y, 0);
        if (has_logits()) ctx.add_logits_output(y, f_.logits_role());
        ctx.add_weight("kernel", {in, units_}, kernel_init_);
        if (use_bias_) ctx.add_weight("bias", {units_}, bias_init_);
        const std::int64_t elements = nng::product(out);
        z_ = ctx.buffer<float>("pre-activation", ctx.training() && keeps_z_in_saved() ? elements : 0,
                               nng::Lifetime::Saved);
        // dz needs room unless it is dy itself (linear, no logits twin).
        dz_ = ctx.buffer<float>("pre-activation gradient", !f_.is_linear() || has_logits() ? elements : 0,
                                nng::Lifetime::Backward);
        declare_bfloat16_copies(ctx, elements / units_, in);
        const onednn::BiasRowFloats bias_rows = use_bias_ && ctx.precision() != nng::Precision::MixedBfloat16
                                                    ? onednn::bias_row_floats(elements / units_, in, units_)
                                                    : onednn::BiasRowFloats{};
        bias_rows_.a = ctx.buffer<float>("input with a column of ones", bias_rows.a, nng::Lifetime::PerCall);
        bias_rows_.b = ctx.buffer<float>("kernel with the bias as a row", bias_rows.b, nng::Lifetime::PerCall);
        std::uint32_t needs = NNG_NEEDS_INPUT(0);
        if (!f_.is_linear() && !f_.backward_needs_input()) needs |= NNG_NEEDS_OUTPUT(0);
        ctx.set_backward_needs(needs);
        ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);  // over the last axis only
        ctx.set_batch_slicing_for_rows(nng::product(out, 1, out.size() - 1));
        if (ctx.counting_work()) {
            // Forward x·kernel (+ bias); backward xᵀ·dz and dz·kernelᵀ (+ the bias's row sums).
            const nng::Work product = nng::matmul_work(1, elements / units_, in, units_);
            const nng::Work bias = use_bias_ ? nng::elementwise_work(elements, 1, 1) : nng::Work{};
            ctx.count_work(product + bias, 2 * product + bias);
        }
    }

    // mixed_bfloat16: the matmuls read bf16 copies of x, the kernel and dz, made in the op's
    // buffers (the kernel's once a step, after the optimizer has moved it); they accumulate in f32
    // and every output and gradient stays f32. Training keeps the x and kernel copies for backward.
    void declare_bfloat16_copies(nng::InferContext& ctx, std::int64_t rows, std::int64_t in) {
        const bool on = ctx.precision() == nng::Precision::MixedBfloat16, training = ctx.training();
        const auto count = [&](bool needed, std::int64_t n) { return on && needed ? n : 0; };
        bf16_.x_saved = ctx.buffer<std::uint16_t>("bfloat16 input", count(training, rows * in), nng::Lifetime::Saved);
        bf16_.kernel_saved =
            ctx.buffer<std::uint16_t>("bfloat16 kernel", count(training, in * units_), nng::Lifetime::Saved);
        bf16_.x =
            ctx.buffer<std::uint16_t>("bfloat16 input, inference", count(!training, rows * in), nng::Lifetime::PerCall);
        bf16_.kernel = ctx.buffer<std::uint16_t>("bfloat16 kernel, inference", count(!training, in * units_),
                                                 nng::Lifetime::PerCall);
        bf16_.dz = ctx.buffer<std::uint16_t>("bfloat16 pre-activation gradient", count(training, rows * units_),
                                             nng::Lifetime::Backward);
        bf16_.x_transposed = ctx.buffer<std::uint16_t>(
            "bfloat16 input, transposed",
            count(training, onednn::transposed_left_values(onednn::DataType::bf16, in, rows, units_)),
            nng::Lifetime::Backward);
    }
    struct Bfloat16Copies {
        nng::Buffer<std::uint16_t> x_saved, kernel_saved, x, kernel, dz, x_transposed;
    };
    // The bf16 copies' room in this call: the saved pair in training, the per-call pair otherwise;
    // null when the node computes in f32.
    std::uint16_t* x_room(const nng::Exec& exec) const {
        return exec.training() ? exec.buffer(bf16_.x_saved) : exec.buffer(bf16_.x);
    }
    std::uint16_t* kernel_room(const nng::Exec& exec) const {
        return exec.training() ? exec.buffer(bf16_.kernel_saved) : exec.buffer(bf16_.kernel);
    }

    // Views of a call's matrices: x (M, in), y (M, units) and the weights.
    struct Matrices {
        onednn::View x, y, kernel, bias;
        std::int64_t rows;
    };
    Matrices matrices(const nng::Exec& exec) const {
        const nng::TensorRef x = exec.input(0);
        const std::int64_t in = x.dim(-1);
        const std::int64_t rows = x.numel() / in;
        Matrices m{onednn::view(x, {rows, in}),
                   onednn::view(exec.output(0), {rows, units_}),
                   onednn::view(exec.weight(0)),
                   {},
                   rows};
        if (use_bias_) m.bias = onednn::view(exec.weight(1), {1, units_});
        return m;
    }
    onednn::View z_view(const nng::Exec& exec, std::int64_t rows) const {
        if (has_logits()) return onednn::view(exec.output(1), {rows, units_});
        if (keeps_z_in_saved() && exec.training())
            return onednn::view(exec.buffer(z_), dnnl::memory::data_type::f32, {rows, units_});
        return {};
    }

    // One thread below kSerialMultiplyAdds: for a product this small (a classifier's last layer on
    // one sample), oneDNN's parallel region costs more than a second thread saves.
    static constexpr std::int64_t kSerialMultiplyAdds = std::int64_t{1} << 21;
    int threads(const nng::Exec& exec, const Matrices& m) const {
        return exec.threads_for(m.rows * m.x.dims[1] * units_, kSerialMultiplyAdds);
    }

    void forward(nng::Exec& exec) {
        Matrices m = matrices(exec);
        onednn::set_num_threads(threads(exec, m));
        if (std::uint16_t* room = x_room(exec)) {
            m.x = onednn::to_bfloat16(m.x, room);
            m.kernel = onednn::to_bfloat16(m.kernel, kernel_room(exec));
        }
        const onednn::View z = z_view(exec, m.rows);
        const onednn::BiasRowRooms bias_rows{exec.buffer(bias_rows_.a), exec.buffer(bias_rows_.b)};
        if (!z.present() && !f_.is_softmax()) {
            // Fused: y = f(x W + b) in one primitive (identity when linear).
            onednn::matmul(m.x, m.kernel, m.y, {.bias = m.bias, .post = f_.eltwise(), .bias_rows = bias_rows});
            return;
        }
        const onednn::View pre = z.present() ? z : m.y;  // softmax in inference: in place
        onednn::matmul(m.x, m.kernel, pre, {.bias = m.bias, .bias_rows = bias_rows});
        f_.forward(pre, m.y);
    }

    void backward(nng::Exec& exec) {
        Matrices m = matrices(exec);
        onednn::set_num_threads(threads(exec, m));
        const bool bfloat16 = exec.buffer(bf16_.x_saved) != nullptr;
        if (bfloat16) {  // the copies forward made
            m.x = onednn::view(exec.buffer(bf16_.x_saved), dnnl::memory::data_type::bf16, {m.rows, m.x.dims[1]});
            m.kernel =
                onednn::view(exec.buffer(bf16_.kernel_saved), dnnl::memory::data_type::bf16, {m.x.dims[1], units_});
        }
        const nng::TensorRef dy = exec.grad_output(0);
        const nng::TensorRef dlogits = has_logits() ? exec.grad_output(1) : nng::TensorRef();
        // dz = f'(z) dy (+ the logits twin's gradient).
        onednn::View dz;
        if (f_.is_linear() && !has_logits()) {
            if (dy) dz = onednn::view(dy, {m.rows, units_});
        } else if (dlogits && !dy) {
            // The loss took the logits: its gradient is dz itself.
            dz = onednn::view(dlogits, {m.rows, units_});
        } else if (dy || dlogits) {
            dz = onednn::view(exec.buffer(dz_), dnnl::memory::data_type::f32, {m.rows, units_});
            f_.backward(z_view(exec, m.rows), m.y, onednn::view(dy, {m.rows, units_}), dz);
            if (dlogits) {
                float* d = static_cast<float*>(dz.data);
                const float* l = dlogits.f32();
                const std::int64_t n = m.rows * units_;
#pragma omp parallel for simd if (n > 32768)
                for (std::int64_t i = 0; i < n; ++i) d[i] += l[i];
            }
        }
        const nng::TensorRef dx = exec.grad_input(0), dkernel = exec.grad_weight(0);
        const nng::TensorRef dbias = use_bias_ ? exec.grad_weight(1) : nng::TensorRef();
        if (!dz.present()) {  // no gradient arrives: every gradient is zero
            for (const nng::TensorRef& g : {dx, dkernel, dbias}) {
                if (g) std::memset(g.raw(), 0, g.nbytes());
            }
            return;
        }
        // Under mixed_bfloat16 x and the kernel are the bf16 copies forward kept.
        onednn::Bfloat16Rooms rooms;
        if (bfloat16) {
            rooms.dy = exec.buffer(bf16_.dz);
            rooms.x_transposed = exec.buffer(bf16_.x_transposed);
        }
        onednn::linear_backward(
            m.x, m.kernel, dz,
            {dkernel ? onednn::view(dkernel) : onednn::View{}, dbias ? onednn::view(dbias) : onednn::View{},
             dx ? onednn::view(dx, {m.rows, m.x.dims[1]}) : onednn::View{}},
            rooms);
    }

    std::int64_t units_;
    ActivationFn f_;
    bool use_bias_;
    nng::Initializer kernel_init_, bias_init_;
    nng::Buffer<float> z_, dz_;
    Bfloat16Copies bf16_;
    struct {
        nng::Buffer<float> a, b;
    } bias_rows_;  // onednn::BiasRowRooms, where the bias rides in the product
};

}  // namespace

const nng_op_def* dense_op() { return nng::op<Dense>(); }

}  // namespace nngraph_dense
