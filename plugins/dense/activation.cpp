// Keras's activation functions, and the Activation op.
#include "activation.hpp"

#include <cstring>

namespace nngraph_dense {

namespace onednn = nng::onednn;

ActivationFn ActivationFn::parse(const std::string& name) {
    ActivationFn f;
    if (name == "softmax")
        f.softmax_ = true;
    else
        f.eltwise_ = onednn::activation(name);  // throws an OpError naming "activation"
    return f;
}

nng_output_role ActivationFn::logits_role() const {
    if (softmax_) return NNG_OUTPUT_SOFTMAX_LOGITS;
    if (eltwise_.algorithm == dnnl::algorithm::eltwise_logistic) return NNG_OUTPUT_SIGMOID_LOGITS;
    return NNG_OUTPUT_VISIBLE;
}

bool ActivationFn::backward_needs_input() const { return !softmax_ && !onednn::has_backward_from_dst(eltwise_); }

void ActivationFn::forward(const onednn::View& z, const onednn::View& y) const {
    if (softmax_)
        onednn::softmax_forward(z, y);
    else if (eltwise_.identity()) {
        if (z.data != y.data) onednn::reorder(z, y);
    } else
        onednn::eltwise_forward(eltwise_, z, y);
}

void ActivationFn::backward(const onednn::View& z, const onednn::View& y, const onednn::View& dy,
                            const onednn::View& dz) const {
    if (softmax_)
        onednn::softmax_backward(y, dy, dz);
    else if (eltwise_.identity()) {
        if (dy.data != dz.data) onednn::reorder(dy, dz);
    } else if (backward_needs_input())
        onednn::eltwise_backward(eltwise_, z, dy, dz);
    else
        onednn::eltwise_backward_from_dst(eltwise_, y, dy, dz);
}

void add_into(const nng::TensorRef& into, const nng::TensorRef& from) {
    float* a = into.f32();
    const float* b = from.f32();
    const std::int64_t n = into.numel();
#pragma omp parallel for simd if (n > 32768)
    for (std::int64_t i = 0; i < n; ++i) a[i] += b[i];
}

namespace {

// Keras's Activation layer: y = f(x), any shape, the mask passes through.
struct Activation {
    static constexpr const char* kName = "Activation";
    static constexpr const char* kDoc = "Applies an activation function elementwise (softmax over the last axis)";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {nng::make_attr(
        "activation", NNG_ATTR_STRING, nullptr, "the function", NNG_ATTR_REQUIRED, ActivationFn::kChoices)};

    explicit Activation(const nng::Attrs& attrs) : f_(ActivationFn::parse(attrs.get_string("activation"))) {}

    void infer(nng::InferContext& ctx) const {
        ctx.expect_dtype(0, NNG_F32, "float32");
        const int y = ctx.add_output(NNG_F32, ctx.input_dims(0));
        ctx.pass_mask(y, 0);
        if (f_.logits_role() != NNG_OUTPUT_VISIBLE) ctx.add_logits_output(y, f_.logits_role());
        ctx.set_backward_needs(f_.backward_needs_input() ? NNG_NEEDS_INPUT(0) : NNG_NEEDS_OUTPUT(0));
        ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        if (ctx.counting_work()) {
            // One function a value (softmax's max, exp, sum and divide count 4), x read and y written;
            // backward reads y (or x) and dy and writes dx.
            const std::int64_t values = nng::product(ctx.input_dims(0)), each = f_.is_softmax() ? 4 : 1;
            ctx.count_work(nng::elementwise_work(values, each, 2), nng::elementwise_work(values, each, 3));
        }
    }
    void forward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        f_.forward(onednn::view(exec.input(0)), onednn::view(exec.output(0)));
        // The logits twin is the input itself.
        if (exec.num_outputs() > 1) onednn::reorder(onednn::view(exec.input(0)), onednn::view(exec.output(1)));
    }
    void backward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const nng::TensorRef dx = exec.grad_input(0);
        if (!dx) return;
        const nng::TensorRef dy = exec.grad_output(0);
        if (dy)
            f_.backward(onednn::view(exec.input(0)), onednn::view(exec.output(0)), onednn::view(dy), onednn::view(dx));
        else
            std::memset(dx.raw(), 0, dx.nbytes());
        if (exec.num_outputs() > 1 && exec.grad_output(1)) add_into(dx, exec.grad_output(1));
    }

    ActivationFn f_;
};

}  // namespace

const nng_op_def* activation_op() { return nng::op<Activation>(); }

}  // namespace nngraph_dense
