// The stepwise path: Keras's LSTM step by step, the float32 path, and for what oneDNN's LSTM cannot
// do: masked input (a masked step keeps the previous h, c and output, Keras's
// zero_output_for_mask=False) and activations other than tanh and sigmoid. Each thread takes its
// part of the batch through every step. The products are oneDNN's: for a small batch the input
// projection of every step at once and the recurrent product per step, for a larger one both in
// one product per step; then the weight gradients block by block. The gates and the cell are
// plain loops. The products in loops go through oneDNN's sgemm rather than a matmul primitive: no
// memory objects or argument maps per call (the helper's matmul allocates a dozen small objects
// each time, thousands per training step here).
//
// Under mixed_bfloat16 the same loops run with the products on oneDNN's bf16 matmul (f32 sums):
// every step's rows [x_k, h_k] are kept in bf16, x for all steps up front and h as each step
// makes it, dz likewise in backward; in training the gates saved for backward are bf16 too. The
// cells compute in f32, and the states and the bias gradient stay f32.
//
// Forward, step k (time t(k)), row n:  z = x W + b + h_{k} U;  i, f, o = ra(z_i, z_f, z_o);
// g = a(z_g);  c' = f c + i g;  h' = o a(c');  then h_{k+1}, c_{k+1} = mask ? (h', c') : (h, c).
// Backward walks the steps in reverse with dh, dc; a masked row passes both through unchanged.
#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "lstm.hpp"
#include "nngraph/bfloat16.hpp"

namespace nngraph_lstm {
namespace {

using onednn::View;
constexpr auto f32 = dnnl::memory::data_type::f32;
constexpr auto bf16 = dnnl::memory::data_type::bf16;

View matrix(const float* data, std::int64_t rows, std::int64_t cols) {
    return onednn::view(const_cast<float*>(data), f32, {rows, cols});
}
// Columns [first, first + cols) of a bf16 matrix whose rows are `stride` apart.
View columns(const std::uint16_t* data, std::int64_t rows, std::int64_t first, std::int64_t cols, std::int64_t stride) {
    return onednn::view(const_cast<std::uint16_t*>(data) + first, bf16, {rows, cols}, {stride, 1});
}

// C (M, N) = A (M, K) B (K, N) + C; A's rows lda apart, B's and C's dense. B is never read
// transposed here: sgemm repacks a transposed B at every call, which took the backward's recurrent
// products to 1.6 times as long.
void gemm_accumulate(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda, const float* B,
                     float* C) {
    onednn::sgemm('N', 'N', M, N, K, 1.0f, A, lda, B, N, 1.0f, C, N);
}

bool kept(const Operands& in, const Sizes& s, std::int64_t n, std::int64_t k, bool reverse) {
    if (!in.mask) return true;
    const std::int64_t t = reverse ? s.steps - 1 - k : k;
    return in.mask[n * s.steps + t] != 0;
}

// The rows [first, first + count) of the batch: part `part`'s share of every step.
struct Rows {
    std::int64_t first, count, part;
    std::int64_t end() const { return first + count; }
};

// Runs part(rows) for the parts of `parts` side by side, one thread each. A sequence's steps
// depend on each other but never on another sequence's, so a part takes its rows through every
// step without meeting the other threads: no synchronisation at each of the steps.
template <class Part>
void for_each_part(const BatchSplit& parts, Part&& part) {
    onednn::run_in_parts(parts.parts, [&](std::int64_t p) { part(Rows{parts.first(p), parts.count(p), p}); });
}

// The joint product's operands: per sequence the row [x_k, h_k, 1] of step k, and the weights
// [W; U; b] stacked to match ((F + U + 1, 4U); without use_bias no 1 and no b). One product then
// writes a step's pre-activations, where separate input and recurrent products would each read
// and write them, after a copy of the bias.
struct Joint {
    float* rows;
    float* weights;
    std::int64_t width;  // F + U (+ 1)

    Joint(const Sizes& s, bool bias, float* memory) : width(s.features + s.units + (bias ? 1 : 0)) {
        carve(memory, joint_floats(s, false), {{&rows, s.batch * width}, {&weights, width * 4 * s.units}});
    }
};

// [W; U] ((F + U), 4U) at `out`.
void stack_kernels(const Sizes& s, const Operands& in, float* out) {
    const std::int64_t gates = 4 * s.units;
    std::memcpy(out, in.kernel, static_cast<std::size_t>(s.features * gates) * sizeof(float));
    std::memcpy(out + s.features * gates, in.recurrent_kernel,
                static_cast<std::size_t>(s.units * gates) * sizeof(float));
}

void stack_weights(const Sizes& s, const Operands& in, const Joint& joint) {
    const std::int64_t gates = 4 * s.units;
    stack_kernels(s, in, joint.weights);
    if (in.bias)
        std::memcpy(joint.weights + (s.features + s.units) * gates, in.bias,
                    static_cast<std::size_t>(gates) * sizeof(float));
}

// The rows' pre-activations z (N, 4U) of step k: x_k read from XT or, when given, from the input
// in place (its time t(k), rows T * F apart); h_k from `h`.
void project_step(const Settings& settings, const Sizes& s, const Operands& in, const Joint& joint, std::int64_t k,
                  Rows rows, const float* h, float* z) {
    const std::int64_t F = s.features, U = s.units, t = settings.go_backwards ? s.steps - 1 - k : k;
    for (std::int64_t n = rows.first; n < rows.end(); ++n) {
        float* row = joint.rows + n * joint.width;
        const float* x = in.x ? in.x + (n * s.steps + t) * F : in.xt + (k * s.batch + n) * F;
        std::memcpy(row, x, static_cast<std::size_t>(F) * sizeof(float));
        std::memcpy(row + F, h + n * U, static_cast<std::size_t>(U) * sizeof(float));
        if (in.bias) row[F + U] = 1.0f;
    }
    onednn::sgemm('N', 'N', rows.count, 4 * U, joint.width, 1.0f, joint.rows + rows.first * joint.width, joint.width,
                  joint.weights, 4 * U, 0.0f, z + rows.first * 4 * U, 4 * U);
}

// One forward step's cell for the rows: gates (N, 4U) from pre-activations in place; the states
// after the step from those before it.
NNG_LOOP_CLONES void forward_cell(const Settings& settings, const Sizes& s, const Operands& in, std::int64_t k,
                                  Rows rows, float* gates, const float* h_before, const float* c_before, float* h_after,
                                  float* c_after, float* c_act) {
    const std::int64_t U = s.units;
    for (std::int64_t n = rows.first; n < rows.end(); ++n) {
        float* z = gates + n * 4 * U;
        const float* c0 = c_before + n * U;
        float* c1 = c_after + n * U;
        float* h1 = h_after + n * U;
        float* a = c_act + n * U;
        if (!kept(in, s, n, k, settings.go_backwards)) {
            std::memcpy(c1, c0, static_cast<std::size_t>(U) * sizeof(float));
            std::memcpy(h1, h_before + n * U, static_cast<std::size_t>(U) * sizeof(float));
            std::memset(a, 0, static_cast<std::size_t>(U) * sizeof(float));
            continue;
        }
        activate(settings.recurrent_activation, z, 2 * U);      // i, f
        activate(settings.activation, z + 2 * U, U);            // g
        activate(settings.recurrent_activation, z + 3 * U, U);  // o
        const float *i = z, *f = z + U, *g = z + 2 * U;
#pragma omp simd
        for (std::int64_t u = 0; u < U; ++u) a[u] = c1[u] = f[u] * c0[u] + i[u] * g[u];
        activate(settings.activation, a, U);
        const float* o = z + 3 * U;
#pragma omp simd
        for (std::int64_t u = 0; u < U; ++u) h1[u] = o[u] * a[u];
    }
}

// One backward step for the rows: dz (N, 4U) from the step's gates (N, 4U), dh (gradient of
// h_{k+1}, the sequence's own gradient for step k added here) and dc; dc becomes that of c_k in
// place, dh_before receives dh for masked rows and zero for the others (their share comes from
// dz U^T next).
NNG_LOOP_CLONES void backward_cell(const Settings& settings, const Sizes& s, const Operands& in, const StepState& st,
                                   std::int64_t k, Rows rows, const float* gates, const float* dseq, float* dh,
                                   float* dc, float* dh_before, float* dz) {
    const std::int64_t U = s.units, state = s.batch * U;
    const float* c_before = st.cell + k * state;
    const float* c_act = st.cell_activation + k * state;
    for (std::int64_t n = rows.first; n < rows.end(); ++n) {
        float* d_h = dh + n * U;
        float* d_c = dc + n * U;
        float* d = dz + n * 4 * U;
        if (dseq) add_to(d_h, dseq + (n * s.steps + k) * U, U);
        if (!kept(in, s, n, k, settings.go_backwards)) {
            std::memcpy(dh_before + n * U, d_h, static_cast<std::size_t>(U) * sizeof(float));
            std::memset(d, 0, static_cast<std::size_t>(4 * U) * sizeof(float));
            continue;
        }
        std::memset(dh_before + n * U, 0, static_cast<std::size_t>(U) * sizeof(float));
        const float* z = gates + n * 4 * U;
        const float *i = z, *f = z + U, *g = z + 2 * U, *o = z + 3 * U;
        const float* a = c_act + n * U;
        const float* c0 = c_before + n * U;
        float *di = d, *df = d + U, *dg = d + 2 * U, *d_o = d + 3 * U;
        if (settings.onednn_cell()) {  // Keras's default cell in one pass, the products in the loops' order
#pragma omp simd
            for (std::int64_t u = 0; u < U; ++u) {
                const float dct = d_c[u] + (d_h[u] * o[u]) * (1.0f - a[u] * a[u]);  // tanh' = 1 - y²
                di[u] = (dct * g[u]) * (i[u] * (1.0f - i[u]));                      // sigmoid' = y (1 - y)
                dg[u] = (dct * i[u]) * (1.0f - g[u] * g[u]);
                df[u] = (dct * c0[u]) * (f[u] * (1.0f - f[u]));
                d_c[u] = dct * f[u];
                d_o[u] = (d_h[u] * a[u]) * (o[u] * (1.0f - o[u]));
            }
            continue;
        }
        // d_o = dh a(c'); df holds dh o a'(c') for a moment, the cell gradient's share from h.
#pragma omp simd
        for (std::int64_t u = 0; u < U; ++u) {
            d_o[u] = d_h[u] * a[u];
            df[u] = d_h[u] * o[u];
        }
        times_derivative(settings.activation, a, df, U);
#pragma omp simd
        for (std::int64_t u = 0; u < U; ++u) {
            const float dct = d_c[u] + df[u];
            di[u] = dct * g[u];
            dg[u] = dct * i[u];
            df[u] = dct * c0[u];
            d_c[u] = dct * f[u];
        }
        times_derivative(settings.recurrent_activation, i, di, 2 * U);  // i, f
        times_derivative(settings.activation, g, dg, U);
        times_derivative(settings.recurrent_activation, o, d_o, U);
    }
}

// ---- mixed_bfloat16 ----

// The x columns of every step's bf16 rows, from XT or, when given, from the input in place.
void input_rows_to_bfloat16(const Settings& settings, const Sizes& s, const Operands& in) {
    const std::int64_t F = s.features, width = StepsInBfloat16::row_width(s);
    std::uint16_t* const rows = in.bf16_steps.rows;
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < s.steps; ++k) {
        const std::int64_t t = settings.go_backwards ? s.steps - 1 - k : k;
        for (std::int64_t n = 0; n < s.batch; ++n) {
            const float* x = in.x ? in.x + (n * s.steps + t) * F : in.xt + (k * s.batch + n) * F;
            nng::to_bfloat16(x, rows + (k * s.batch + n) * width, F);
        }
    }
}

// The bf16 weights' room (StepsInBfloat16::weights) holds, in forward, [W; U] packed for the
// step's product, or plain where every step's input is projected at once (the step's product then
// reads U alone); in backward Uᵀ packed for dz Uᵀ, followed by the plain W the input gradient reads.
// A packed matrix's values, whole 64-byte lines of them.
std::int64_t packed_values(std::int64_t rows, std::int64_t K, std::int64_t N) {
    const auto bytes = static_cast<std::int64_t>(onednn::packed_right_bytes(bf16, rows, K, N));
    return nng::round_up(nng::ceil_div(bytes, std::int64_t{2}), std::int64_t{32});
}

// Step k's pre-activations of the rows from bf16 operands: h_k goes into the step's rows, then
// z = [x_k, h_k] [W; U] + b (`weights` packed), or z += h_k U where every step's x W + b was made
// at once (`weights` absent).
void project_step_bfloat16(const Sizes& s, const Operands& in, const onednn::PackedRight& weights, std::int64_t k,
                           Rows rows, const float* h, float* z) {
    const std::int64_t F = s.features, U = s.units, width = StepsInBfloat16::row_width(s);
    std::uint16_t* const step_rows = in.bf16_steps.rows + (k * s.batch + rows.first) * width;
    for (std::int64_t r = 0; r < rows.count; ++r)
        nng::to_bfloat16(h + (rows.first + r) * U, step_rows + r * width + F, U);
    const View out = matrix(z + rows.first * 4 * U, rows.count, 4 * U);
    if (!weights.data) {
        if (k > 0)
            onednn::matmul(columns(step_rows, rows.count, F, U, width),
                           columns(in.bf16_steps.weights + F * 4 * U, U, 0, 4 * U, 4 * U), out, {.beta = 1.0f});
        return;
    }
    onednn::matmul(columns(step_rows, rows.count, 0, width, width), weights, out,
                   {.bias = in.bias ? matrix(in.bias, 1, 4 * U) : View{}});
}

}  // namespace

std::int64_t joint_floats(const Sizes& s, bool bfloat16) {
    if (projects_at_once(s)) return 0;
    if (bfloat16) return StepsInBfloat16::row_width(s) * 4 * s.units;  // [W; U] in f32, to pack
    const std::int64_t width = s.features + s.units + 1;
    return carved_floats({s.batch * width, width * 4 * s.units});
}

std::int64_t bfloat16_weight_values(const Sizes& s, const BatchSplit& parts) {
    const std::int64_t F = s.features, U = s.units, rows = parts.count(0);
    const std::int64_t forward =
        projects_at_once(s) ? StepsInBfloat16::row_width(s) * 4 * U : packed_values(rows, F + U, 4 * U);
    return std::max(forward, packed_values(rows, 4 * U, U) + F * 4 * U);
}

void stepwise_forward(const Settings& settings, const Sizes& s, const BatchSplit& parts, const Operands& in,
                      const StepState& st, const Results& out) {
    Stopwatch watch;
    const std::int64_t U = s.units, state = s.batch * U, gates = 4 * state;
    const bool at_once = projects_at_once(s);
    const bool bfloat16 = in.bf16_steps.present();
    const std::int64_t F = s.features;
    const View bias = in.bias ? matrix(in.bias, 1, 4 * U) : View{};
    std::optional<Joint> joint;
    onednn::PackedRight packed;  // [W; U] for the step's product under mixed_bfloat16
    if (bfloat16 && !at_once) {  // x of every step in bf16; [W; U] stacked in f32, then packed
        input_rows_to_bfloat16(settings, s, in);
        stack_kernels(s, in, st.joint);
        packed = onednn::pack_right(matrix(st.joint, F + U, 4 * U), bf16, parts.count(0), in.bf16_steps.weights);
    } else if (bfloat16) {  // x of every step and [W; U] in bf16; every step's x W + b at once
        input_rows_to_bfloat16(settings, s, in);
        nng::to_bfloat16(in.kernel, in.bf16_steps.weights, F * 4 * U);
        nng::to_bfloat16(in.recurrent_kernel, in.bf16_steps.weights + F * 4 * U, U * 4 * U);
        onednn::matmul(columns(in.bf16_steps.rows, s.rows(), 0, F, StepsInBfloat16::row_width(s)),
                       columns(in.bf16_steps.weights, F, 0, 4 * U, 4 * U), matrix(st.gates, s.rows(), 4 * U),
                       {.bias = bias});
    } else if (at_once) {  // every step's XT W + b in one matmul over T*N rows
        onednn::matmul(matrix(in.xt, s.rows(), F), matrix(in.kernel, F, 4 * U), matrix(st.gates, s.rows(), 4 * U),
                       {.bias = bias});
    } else {
        joint.emplace(s, in.bias != nullptr, st.joint);
        stack_weights(s, in, *joint);
    }
    const auto gates_of = [&](std::int64_t k) { return st.gates + (st.gates_every_step ? k * gates : 0); };
    const auto hidden_of = [&](std::int64_t k) { return st.hidden + (st.hidden_every_step ? k : k % 2) * state; };
    const auto cell_of = [&](std::int64_t k) { return st.cell + (st.every_step ? k : k % 2) * state; };
    const auto activated_of = [&](std::int64_t k) { return st.cell_activation + (st.every_step ? k * state : 0); };
    std::memset(st.hidden, 0, static_cast<std::size_t>(state) * sizeof(float));
    std::memset(st.cell, 0, static_cast<std::size_t>(state) * sizeof(float));
    for_each_part(parts, [&](Rows rows) {
        for (std::int64_t k = 0; k < s.steps; ++k) {
            float* z = gates_of(k);
            const float* h = hidden_of(k);
            if (bfloat16)
                project_step_bfloat16(s, in, packed, k, rows, h, z);
            else if (!at_once)
                project_step(settings, s, in, *joint, k, rows, h, z);
            else if (k > 0)  // z += h U
                gemm_accumulate(rows.count, 4 * U, U, h + rows.first * U, U, in.recurrent_kernel,
                                z + rows.first * 4 * U);
            forward_cell(settings, s, in, k, rows, z, h, cell_of(k), hidden_of(k + 1), cell_of(k + 1), activated_of(k));
            if (st.gates_bfloat16)
                nng::to_bfloat16_streaming(z + rows.first * 4 * U, st.gates_bfloat16 + k * gates + rows.first * 4 * U,
                                           rows.count * 4 * U);
        }
    });
    watch.lap(Phase::forward_compute);

    const float* h_last = hidden_of(s.steps);
    if (settings.return_sequences)
        to_batch_major(st.hidden + state, out.out, s.batch, s.steps, U, false, nullptr);
    else
        std::memcpy(out.out, h_last, static_cast<std::size_t>(state) * sizeof(float));
    if (settings.return_state) {
        std::memcpy(out.h, h_last, static_cast<std::size_t>(state) * sizeof(float));
        std::memcpy(out.c, cell_of(s.steps), static_cast<std::size_t>(state) * sizeof(float));
    }
    watch.lap(Phase::forward_output);
}

namespace {

// The most rows of dz a worker takes at once in weight_gradients: a block of them (1.6 MB for 400
// gates) stays in cache across its four uses. Fewer rows make the products thin, but a call with
// fewer than this many rows a thread still has every thread take a block.
constexpr std::int64_t kGradientBlockRows = 1024;

// What the workers of weight_gradients sum into besides the weight gradients: every worker but
// the first its copy of them (GradientCopies), and every worker its own column sums of the bias,
// in double as sum_rows takes them.
struct WorkerScratch {
    float* copies = nullptr;
    double* bias_sums = nullptr;  // workers x 4U

    static std::int64_t floats(const Sizes& s, int workers) {
        return carved_floats({GradientCopies::floats(s, workers), floats_for<double>(workers * 4 * s.units)});
    }
    WorkerScratch(const Sizes& s, int workers, float* memory) {
        carve(memory, floats(s, workers),
              {{&copies, GradientCopies::floats(s, workers)}, {&bias_sums, workers * 4 * s.units}});
    }
};

// out[c] = the workers' column sums added, in double, then rounded once.
void add_worker_sums(const double* sums, int workers, std::int64_t width, float* out) {
    for (std::int64_t c = 0; c < width; ++c) {
        double total = 0.0;
        for (std::int64_t w = 0; w < workers; ++w) total += sums[w * width + c];
        out[c] = static_cast<float>(total);
    }
}

ParamGrads without_bias(ParamGrads grads) {
    grads.bias = nullptr;
    return grads;
}

// The gradients of the weights, the bias and the time-major input from every step's dz (T*N rows),
// a block of rows at a time, the blocks shared among `workers` threads. Products over all rows at
// once would stream dz (T*N*4U floats) from memory four times; a block is read from memory once.
void weight_gradients(const Sizes& s, const Operands& in, const float* h_before, const float* dz, float* worker_scratch,
                      int workers, const ParamGrads& grads) {
    const std::int64_t U = s.units, F = s.features, width = 4 * U, rows = s.rows();
    // Blocks of at most kGradientBlockRows rows, and at least one a worker while the rows last.
    const std::int64_t blocks =
        std::max(nng::ceil_div(rows, kGradientBlockRows), std::min<std::int64_t>(workers, rows));
    const std::int64_t block_rows = blocks > 0 ? nng::ceil_div(rows, blocks) : 0;
    workers = static_cast<int>(std::clamp<std::int64_t>(workers, 1, std::max<std::int64_t>(blocks, 1)));
    const WorkerScratch scratch(s, workers, worker_scratch);
    const GradientCopies weights(s, workers, without_bias(grads), scratch.copies);
    onednn::run_in_parts(workers, [&](std::int64_t w) {
        const ParamGrads mine = weights.of(static_cast<int>(w));
        double* bias = scratch.bias_sums + w * width;
        if (mine.kernel) std::fill_n(mine.kernel, F * width, 0.0f);
        if (mine.recurrent_kernel) std::fill_n(mine.recurrent_kernel, U * width, 0.0f);
        std::fill_n(bias, width, 0.0);
        for (std::int64_t b = nng::split_point(blocks, workers, w); b < nng::split_point(blocks, workers, w + 1); ++b) {
            const std::int64_t first = b * block_rows, count = std::min(block_rows, rows - first);
            if (count <= 0) break;  // rounding up the block size can leave the last blocks empty
            const float* dz_block = dz + first * width;
            // dW += x_blockᵀ dz_block, dU += h_blockᵀ dz_block, db += column sums, dx_block = dz_block Wᵀ.
            if (mine.kernel)
                onednn::sgemm('T', 'N', F, width, count, 1.0f, in.xt + first * F, F, dz_block, width, 1.0f, mine.kernel,
                              width);
            if (mine.recurrent_kernel)
                onednn::sgemm('T', 'N', U, width, count, 1.0f, h_before + first * U, U, dz_block, width, 1.0f,
                              mine.recurrent_kernel, width);
            if (grads.bias) onednn::add_column_sums(dz_block, count, width, width, bias);
            if (grads.xt)
                onednn::sgemm('N', 'T', count, F, width, 1.0f, dz_block, width, in.kernel, width, 0.0f,
                              grads.xt + first * F, F);
        }
    });
    weights.add_copies();
    if (grads.bias) add_worker_sums(scratch.bias_sums, workers, width, grads.bias);
}

// The same from bf16 copies of x, h and dz (each product one oneDNN call on every thread): both
// weights' gradients in one product [x, h]ᵀ dz into `stacked` (F + U, 4U), whose rows are then
// theirs. The bias gradient adds the parts' column sums of the f32 dz, taken as the steps made it.
void weight_gradients_bfloat16(const Sizes& s, const Operands& in, const std::uint16_t* kernel_bfloat16,
                               const std::uint16_t* dz_bfloat16, float* stacked, const double* bias_sums,
                               std::int64_t parts, const ParamGrads& grads) {
    const std::int64_t U = s.units, F = s.features, width = 4 * U, rows = s.rows();
    const std::int64_t row_width = StepsInBfloat16::row_width(s);
    const StepsInBfloat16& b = in.bf16_steps;
    const View dz_rows = columns(dz_bfloat16, rows, 0, width, width);
    if (grads.kernel || grads.recurrent_kernel) {
        onednn::matmul(columns(b.rows, rows, 0, row_width, row_width).transposed(), dz_rows,
                       matrix(stacked, row_width, width));
        if (grads.kernel) std::memcpy(grads.kernel, stacked, static_cast<std::size_t>(F * width) * sizeof(float));
        if (grads.recurrent_kernel)
            std::memcpy(grads.recurrent_kernel, stacked + F * width,
                        static_cast<std::size_t>(U * width) * sizeof(float));
    }
    if (grads.xt)
        onednn::matmul(dz_rows, columns(kernel_bfloat16, F, 0, width, width).transposed(), matrix(grads.xt, rows, F));
    if (grads.bias) add_worker_sums(bias_sums, static_cast<int>(parts), width, grads.bias);
}

}  // namespace

std::int64_t stepwise_backward_floats(const Sizes& s, int threads, bool bfloat16) {
    const std::int64_t state = s.batch * s.units;
    // Under mixed_bfloat16 dz in f32 for one step (every step's is kept in bf16), else every step's.
    return carved_floats({state, state, state, (bfloat16 ? 4 * state : 4 * s.rows() * s.units),
                          (bfloat16 ? 0 : 4 * s.units * s.units), WorkerScratch::floats(s, std::max(threads, 1)),
                          bfloat16 ? floats_for<std::uint16_t>(4 * s.rows() * s.units) : 0,
                          bfloat16 ? StepsInBfloat16::row_width(s) * 4 * s.units : 0});
}

void stepwise_backward(const Settings& settings, const Sizes& s, const BatchSplit& parts, int threads,
                       const Operands& in, const StepState& st, float* scratch, const OutputGrads& dy,
                       const ParamGrads& grads) {
    Stopwatch watch;
    const std::int64_t U = s.units, state = s.batch * U;
    float *dh = nullptr, *dh_before = nullptr, *dc = nullptr, *dz = nullptr;
    float* recurrent_transposed = nullptr;  // U^T (4U, U)
    float* workers_scratch = nullptr;
    std::uint16_t* dz_bfloat16 = nullptr;  // under mixed_bfloat16, with the stacked weight gradients
    float* stacked_gradients = nullptr;
    const bool bfloat16 = in.bf16_steps.present();
    carve(scratch, stepwise_backward_floats(s, threads, bfloat16),
          {{&dh, state},
           {&dh_before, state},
           {&dc, state},
           {&dz, bfloat16 ? 4 * state : 4 * s.rows() * U},
           {&recurrent_transposed, bfloat16 ? 0 : 4 * U * U},
           {&workers_scratch, WorkerScratch::floats(s, std::max(threads, 1))},
           {&dz_bfloat16, bfloat16 ? 4 * s.rows() * U : 0},
           {&stacked_gradients, bfloat16 ? StepsInBfloat16::row_width(s) * 4 * U : 0}});
    // Uᵀ (4U, U) for dz Uᵀ, row-major: sgemm repacks a transposed B at every call. Under
    // mixed_bfloat16 in bf16, followed by the bf16 W that the input gradient reads.
    onednn::PackedRight recurrent_packed;
    std::uint16_t* kernel_bfloat16 = nullptr;
    if (bfloat16) {
        recurrent_packed = onednn::pack_right(matrix(in.recurrent_kernel, U, 4 * U).transposed(), bf16, parts.count(0),
                                              in.bf16_steps.weights);
        kernel_bfloat16 = in.bf16_steps.weights + packed_values(parts.count(0), 4 * U, U);
        nng::to_bfloat16(in.kernel, kernel_bfloat16, s.features * 4 * U);
    } else {
        onednn::reorder(matrix(in.recurrent_kernel, U, 4 * U), matrix(recurrent_transposed, 4 * U, U).transposed());
    }
    // The gradients of the final h and c: the last output's (without return_sequences) and the states'.
    std::memset(dh, 0, static_cast<std::size_t>(state) * sizeof(float));
    if (!settings.return_sequences && dy.out) add_to(dh, dy.out, state);
    if (dy.h) add_to(dh, dy.h, state);
    if (dy.c)
        std::memcpy(dc, dy.c, static_cast<std::size_t>(state) * sizeof(float));
    else
        std::memset(dc, 0, static_cast<std::size_t>(state) * sizeof(float));
    const float* dseq = settings.return_sequences ? dy.out : nullptr;
    watch.lap(Phase::backward_input);

    // Under mixed_bfloat16 each part sums its dz for the bias as it goes, while dz is in cache.
    const WorkerScratch worker_sums(s, std::max(threads, 1), workers_scratch);
    for_each_part(parts, [&](Rows rows) {
        float *after = dh, *before = dh_before;  // this part's rows of them take turns
        double* bias_sums = worker_sums.bias_sums + rows.part * 4 * U;
        if (bfloat16) std::fill_n(bias_sums, 4 * U, 0.0);
        for (std::int64_t k = s.steps - 1; k >= 0; --k) {
            float* dz_k = dz + (bfloat16 ? 0 : k * 4 * state);
            const float* gates = st.gates + k * 4 * state;
            if (st.gates_bfloat16) {  // this part's rows of the step's gates, from bf16 into the f32 slot
                gates = st.gates;
                nng::from_bfloat16(st.gates_bfloat16 + k * 4 * state + rows.first * 4 * U,
                                   st.gates + rows.first * 4 * U, rows.count * 4 * U);
            }
            backward_cell(settings, s, in, st, k, rows, gates, dseq, after, dc, before, dz_k);
            // h_k's gradient through the step: dz U^T (the initial state's is not needed).
            if (bfloat16) {
                std::uint16_t* dz_rows = dz_bfloat16 + (k * s.batch + rows.first) * 4 * U;
                nng::to_bfloat16(dz_k + rows.first * 4 * U, dz_rows, rows.count * 4 * U);
                if (grads.bias) onednn::add_column_sums(dz_k + rows.first * 4 * U, rows.count, 4 * U, 4 * U, bias_sums);
                if (k > 0)
                    onednn::matmul(columns(dz_rows, rows.count, 0, 4 * U, 4 * U), recurrent_packed,
                                   matrix(before + rows.first * U, rows.count, U), {.beta = 1.0f});
            } else if (k > 0) {
                gemm_accumulate(rows.count, U, 4 * U, dz_k + rows.first * 4 * U, 4 * U, recurrent_transposed,
                                before + rows.first * U);
            }
            std::swap(after, before);
        }
    });
    if (bfloat16)
        weight_gradients_bfloat16(s, in, kernel_bfloat16, dz_bfloat16, stacked_gradients, worker_sums.bias_sums,
                                  parts.parts, grads);
    else
        weight_gradients(s, in, st.hidden, dz, workers_scratch, threads, grads);
    watch.lap(Phase::backward_compute);
}

}  // namespace nngraph_lstm
