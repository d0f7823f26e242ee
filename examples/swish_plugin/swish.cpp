// Swish (Ramachandran et al., 2017): y = x * sigmoid(beta * x), elementwise, any shape.
// A complete nngraph operator: attribute schema, shape inference, forward and backward.
#include <cmath>

#include <nngraph/sdk.hpp>

namespace {

struct Swish {
    static constexpr const char* kName = "Swish";
    static constexpr const char* kDoc = "x * sigmoid(beta * x)";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {nng::float_attr("beta", "1.0", "the slope inside the sigmoid")};

    // Attributes are read once, here, into typed members.
    explicit Swish(const nng::Attrs& attrs) : beta_(static_cast<float>(attrs.get_float("beta"))) {
        nng::check_attr(beta_ > 0.0f, "beta", "a positive number");
    }

    // The output has the input's shape; the mask (if any) passes through; backward reads only the input.
    void infer(nng::InferContext& ctx) const {
        ctx.expect_dtype(0, NNG_F32, "float32");
        const int y = ctx.add_output(NNG_F32, ctx.input_dims(0));
        ctx.pass_mask(y, 0);
        ctx.set_backward_needs(NNG_NEEDS_INPUT(0));
        ctx.set_batch_slicing(NNG_SLICING_FREE);  // each value on its own: inference may run in slices
    }

    void forward(nng::Exec& exec) {
        const float* x = exec.input(0).f32();
        float* y = exec.output(0).f32();
        const std::int64_t n = exec.input(0).numel();
#pragma omp parallel for simd if (n > 65536)
        for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-beta_ * x[i]));
    }

    // dy/dx = s + beta * x * s * (1 - s), with s = sigmoid(beta * x).
    void backward(nng::Exec& exec) {
        const nng::TensorRef dx_ref = exec.grad_input(0), dy_ref = exec.grad_output(0);
        if (!dx_ref) return;
        float* dx = dx_ref.f32();
        const std::int64_t n = dx_ref.numel();
        if (!dy_ref) {
            for (std::int64_t i = 0; i < n; ++i) dx[i] = 0.0f;
            return;
        }
        const float* x = exec.input(0).f32();
        const float* dy = dy_ref.f32();
#pragma omp parallel for simd if (n > 65536)
        for (std::int64_t i = 0; i < n; ++i) {
            const float s = 1.0f / (1.0f + std::exp(-beta_ * x[i]));
            dx[i] = dy[i] * (s + beta_ * x[i] * s * (1.0f - s));
        }
    }

    float beta_;
};

}  // namespace

NNG_PLUGIN("swish", "1.0.0", nng::op<Swish>())
