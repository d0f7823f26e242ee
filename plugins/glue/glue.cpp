// Glue ops: Add, Multiply, Concatenate, Flatten, Reshape (Keras semantics). Pure data movement and
// elementwise arithmetic: plain loops the compiler vectorises, split across threads when large.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "nngraph/sdk.hpp"

namespace {

using nng::Dims;
using nng::Exec;
using nng::InferContext;
using nng::OpError;

constexpr std::int64_t kParallelThreshold = 1 << 15;

// Keras's Merge.compute_mask: the AND of the masks that arrive (none: no mask).
void infer_merged_mask(InferContext& ctx, int output) {
    for (int i = 0; i < ctx.num_inputs(); ++i) {
        if (!ctx.input_has_mask(i)) continue;
        const Dims dims = ctx.input_dims(i);
        ctx.compute_mask(output, Dims(dims.begin(), dims.begin() + std::min<std::size_t>(2, dims.size())));
        return;
    }
}
void merge_masks(Exec& exec) {
    const nng::TensorRef out = exec.output_mask(0);
    if (!out) return;
    std::uint8_t* m = out.u8();
    std::fill(m, m + out.numel(), std::uint8_t{1});
    for (int i = 0; i < exec.num_inputs(); ++i) {
        const nng::TensorRef in = exec.input_mask(i);
        if (!in) continue;
        const std::uint8_t* src = in.u8();
        for (std::int64_t k = 0; k < out.numel(); ++k) m[k] &= src[k];
    }
}

void infer_same_shapes(InferContext& ctx) {
    const Dims first = ctx.input_dims(0);
    for (int i = 1; i < ctx.num_inputs(); ++i) {
        if (ctx.input_dims(i) != first) {
            InferContext::shape_mismatch("inputs must have one shape, got", first, ctx.input_dims(i));
        }
        ctx.expect_dtype(i, NNG_F32, "float32");
    }
    ctx.expect_dtype(0, NNG_F32, "float32");
    ctx.add_output(NNG_F32, first);
    infer_merged_mask(ctx, 0);
}

// An op that copies `values` values each way and computes nothing.
void count_copy(InferContext& ctx, std::int64_t values) {
    if (ctx.counting_work()) {
        const nng::Work copy = nng::elementwise_work(values, 0, 2);
        ctx.count_work(copy, copy);
    }
}

// dx = dy where dx is wanted (dy absent: zero), for ops whose input gradient is their output's.
void pass_gradient(const nng::TensorRef& dx, const nng::TensorRef& dy) {
    if (!dx) return;
    if (dy)
        std::memcpy(dx.raw(), dy.raw(), dx.nbytes());
    else
        std::memset(dx.raw(), 0, dx.nbytes());
}

// ---- Add --------------------------------------------------------------------------------------------

struct Add {
    static constexpr const char* kName = "Add";
    static constexpr const char* kDoc = "Elementwise sum of inputs of one shape";
    static constexpr int kMinInputs = 2, kMaxInputs = 64;
    static constexpr std::array<nng_attr_spec, 0> kAttributes{};

    explicit Add(const nng::Attrs&) {}
    void infer(InferContext& ctx) const {
        infer_same_shapes(ctx);
        ctx.set_backward_needs(0);  // the gradient passes straight through
        ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        if (ctx.counting_work()) {
            // k - 1 adds a value over k inputs and the output; backward copies dy to each input.
            const std::int64_t values = nng::product(ctx.input_dims(0)), k = ctx.num_inputs();
            ctx.count_work(nng::elementwise_work(values, k - 1, k + 1), nng::elementwise_work(values, 0, 2 * k));
        }
    }
    void forward(Exec& exec) {
        float* y = exec.output(0).f32();
        const std::int64_t n = exec.output(0).numel();
        std::memcpy(y, exec.input(0).f32(), static_cast<std::size_t>(n) * sizeof(float));
        for (int i = 1; i < exec.num_inputs(); ++i) {
            const float* x = exec.input(i).f32();
#pragma omp parallel for simd if (n > kParallelThreshold)
            for (std::int64_t k = 0; k < n; ++k) y[k] += x[k];
        }
        merge_masks(exec);
    }
    void backward(Exec& exec) {
        const nng::TensorRef dy = exec.grad_output(0);
        for (int i = 0; i < exec.num_inputs(); ++i) pass_gradient(exec.grad_input(i), dy);
    }
};

// ---- Multiply -----------------------------------------------------------------------------------------

struct Multiply {
    static constexpr const char* kName = "Multiply";
    static constexpr const char* kDoc = "Elementwise product of inputs of one shape";
    static constexpr int kMinInputs = 2, kMaxInputs = 64;
    static constexpr std::array<nng_attr_spec, 0> kAttributes{};

    explicit Multiply(const nng::Attrs&) {}
    void infer(InferContext& ctx) const {
        infer_same_shapes(ctx);
        ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        std::uint32_t needs = 0;
        for (int i = 0; i < ctx.num_inputs(); ++i) needs |= NNG_NEEDS_INPUT(i);
        ctx.set_backward_needs(needs);
        if (ctx.counting_work()) {
            // k - 1 products a value; backward the same for each of the k inputs' gradients.
            const std::int64_t values = nng::product(ctx.input_dims(0)), k = ctx.num_inputs();
            const nng::Work product = nng::elementwise_work(values, k - 1, k + 1);
            ctx.count_work(product, k * product);
        }
    }
    void forward(Exec& exec) {
        float* y = exec.output(0).f32();
        const std::int64_t n = exec.output(0).numel();
        std::memcpy(y, exec.input(0).f32(), static_cast<std::size_t>(n) * sizeof(float));
        for (int i = 1; i < exec.num_inputs(); ++i) {
            const float* x = exec.input(i).f32();
#pragma omp parallel for simd if (n > kParallelThreshold)
            for (std::int64_t k = 0; k < n; ++k) y[k] *= x[k];
        }
        merge_masks(exec);
    }
    // d x_i = dy * prod_{j != i} x_j, computed without dividing (inputs may be zero).
    void backward(Exec& exec) {
        const nng::TensorRef dy = exec.grad_output(0);
        const std::int64_t n = exec.input(0).numel();
        for (int i = 0; i < exec.num_inputs(); ++i) {
            const nng::TensorRef dx_ref = exec.grad_input(i);
            if (!dx_ref) continue;
            float* dx = dx_ref.f32();
            if (!dy) {
                std::memset(dx, 0, dx_ref.nbytes());
                continue;
            }
            std::memcpy(dx, dy.f32(), static_cast<std::size_t>(n) * sizeof(float));
            for (int j = 0; j < exec.num_inputs(); ++j) {
                if (j == i) continue;
                const float* x = exec.input(j).f32();
#pragma omp parallel for simd if (n > kParallelThreshold)
                for (std::int64_t k = 0; k < n; ++k) dx[k] *= x[k];
            }
        }
    }
};

// ---- Concatenate --------------------------------------------------------------------------------------

struct Concatenate {
    static constexpr const char* kName = "Concatenate";
    static constexpr const char* kDoc = "Joins inputs along one axis (default the last)";
    static constexpr int kMinInputs = 1, kMaxInputs = 64;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::int_attr("axis", "-1", "axis to join along; the batch axis 0 is not allowed")};

    explicit Concatenate(const nng::Attrs& attrs) : axis_(attrs.get_int("axis")) {}

    int resolved_axis(std::size_t rank) const {
        const std::int64_t a = axis_ < 0 ? axis_ + static_cast<std::int64_t>(rank) : axis_;
        if (a <= 0 || a >= static_cast<std::int64_t>(rank)) {
            throw OpError("axis " + std::to_string(axis_) + " is outside the non-batch axes of rank-" +
                              std::to_string(rank) + " inputs",
                          "axis");
        }
        return static_cast<int>(a);
    }
    void infer(InferContext& ctx) const {
        Dims out = ctx.input_dims(0);
        const int axis = resolved_axis(out.size());
        for (int i = 1; i < ctx.num_inputs(); ++i) {
            const Dims d = ctx.input_dims(i);
            bool fits = d.size() == out.size();
            for (std::size_t k = 0; fits && k < d.size(); ++k) fits = static_cast<int>(k) == axis || d[k] == out[k];
            if (!fits)
                InferContext::shape_mismatch(
                    "Concatenate along axis " + std::to_string(axis) + " needs equal other dims, got",
                    ctx.input_dims(0), d);
            out[static_cast<std::size_t>(axis)] += d[static_cast<std::size_t>(axis)];
        }
        for (int i = 0; i < ctx.num_inputs(); ++i) ctx.expect_dtype(i, NNG_F32, "float32");
        ctx.add_output(NNG_F32, out);
        if (axis >= 2) infer_merged_mask(ctx, 0);  // Keras keeps time-step masks unless joining along time
        // Joined along the features, each step stays its own; along the steps, shares would interleave.
        if (axis >= 2) ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);  // the axis is never the batch's
        ctx.set_backward_needs(0);
        count_copy(ctx, nng::product(out));
    }
    // Every input is `outer` blocks of `inner * axis_dim` values; the output interleaves the blocks.
    template <class Visit>
    void for_each_block(Exec& exec, Visit&& visit) const {
        const nng::TensorRef y = exec.output(0);
        const int axis = resolved_axis(static_cast<std::size_t>(y.rank()));
        const Dims dims = y.dims();
        const std::int64_t outer = nng::product(dims, 0, static_cast<std::size_t>(axis));
        const std::int64_t inner = nng::product(dims, static_cast<std::size_t>(axis) + 1);
        const std::int64_t out_block = dims[static_cast<std::size_t>(axis)] * inner;
        std::int64_t offset = 0;
        for (int i = 0; i < exec.num_inputs(); ++i) {
            const std::int64_t block = exec.input(i).dim(axis) * inner;
            for (std::int64_t o = 0; o < outer; ++o) visit(i, o * block, o * out_block + offset, block);
            offset += block;
        }
    }
    void forward(Exec& exec) {
        float* y = exec.output(0).f32();
        for_each_block(exec, [&](int i, std::int64_t from, std::int64_t to, std::int64_t count) {
            std::memcpy(y + to, exec.input(i).f32() + from, static_cast<std::size_t>(count) * sizeof(float));
        });
        merge_masks(exec);
    }
    void backward(Exec& exec) {
        const nng::TensorRef dy = exec.grad_output(0);
        for_each_block(exec, [&](int i, std::int64_t from, std::int64_t to, std::int64_t count) {
            const nng::TensorRef dx = exec.grad_input(i);
            if (!dx) return;
            if (dy)
                std::memcpy(dx.f32() + from, dy.f32() + to, static_cast<std::size_t>(count) * sizeof(float));
            else
                std::memset(dx.f32() + from, 0, static_cast<std::size_t>(count) * sizeof(float));
        });
    }

    std::int64_t axis_;
};

// ---- Flatten and Reshape: the same bytes under another shape -------------------------------------------

void copy_through(Exec& exec) { std::memcpy(exec.output(0).raw(), exec.input(0).raw(), exec.output(0).nbytes()); }
void copy_back(Exec& exec) { pass_gradient(exec.grad_input(0), exec.grad_output(0)); }

struct Flatten {
    static constexpr const char* kName = "Flatten";
    static constexpr const char* kDoc = "Collapses every axis but the batch into one";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::string_attr("data_format", "channels_last", "channels_last", "only channels_last (the order is kept)")};

    explicit Flatten(const nng::Attrs&) {}
    void infer(InferContext& ctx) const {
        const Dims in = ctx.input_dims(0);
        ctx.add_output(ctx.input_dtype(0), {in[0], nng::product(in, 1)});
        ctx.set_backward_needs(0);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        count_copy(ctx, nng::product(in));
    }
    void forward(Exec& exec) { copy_through(exec); }
    void backward(Exec& exec) { copy_back(exec); }
};

struct Reshape {
    static constexpr const char* kName = "Reshape";
    static constexpr const char* kDoc = "Gives the non-batch axes a new shape; one dimension may be -1";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::ints_attr("target_shape", nullptr, "the new shape without the batch axis"))};

    explicit Reshape(const nng::Attrs& attrs) : target_(attrs.get_ints("target_shape")) {
        int unknown = 0;
        for (std::int64_t d : target_) {
            nng::check_attr(d > 0 || d == -1, "target_shape", "positive dimensions and at most one -1");
            unknown += d == -1;
        }
        nng::check_attr(unknown <= 1, "target_shape", "at most one -1");
    }
    void infer(InferContext& ctx) const {
        const Dims in = ctx.input_dims(0);
        const std::int64_t count = nng::product(in, 1);
        Dims out{in[0]};
        // The given dimensions' product sizes a -1; one too large for 64 bits leaves it 0 (then the
        // counts differ below), and without a -1 the check below names the overflowing shape.
        std::int64_t known = 1;
        bool known_overflows = false;
        for (std::int64_t d : target_) known_overflows |= d != -1 && nng::multiply_overflows(known, d, known);
        for (std::int64_t d : target_) out.push_back(d == -1 ? (known_overflows ? 0 : count / known) : d);
        if (nng::product(out, 1) != count) {
            throw OpError("cannot reshape " + nng::dims_string(in) + " (" + std::to_string(count) +
                              " values per sample) to target_shape " +
                              nng::dims_string(Dims(out.begin() + 1, out.end())),
                          "target_shape");
        }
        ctx.add_output(ctx.input_dtype(0), out);
        ctx.set_backward_needs(0);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        count_copy(ctx, nng::product(in));
    }
    void forward(Exec& exec) { copy_through(exec); }
    void backward(Exec& exec) { copy_back(exec); }

    Dims target_;
};

}  // namespace

NNG_PLUGIN("glue", "0.1.0", nng::op<Add>(), nng::op<Multiply>(), nng::op<Concatenate>(), nng::op<Flatten>(),
           nng::op<Reshape>())
