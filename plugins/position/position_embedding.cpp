// keras_hub.layers.PositionEmbedding: a learned embedding per position. The output is the input's
// shape, (batch, ..., steps, features), holding row t of `embeddings` at every step t; it is meant
// to be added to the token embeddings with Add. The input contributes only its shape: its gradient
// is zero, and the gradient of `embeddings` row t is the output gradient summed over everything but
// the step (rows past the input's steps get zero). The output carries no mask of its own; Add keeps
// the token embeddings' mask. A call that starts at a later position (a decoding session's steps,
// nng_context.position_offset) reads the rows from that position on; a call on one rank's share of
// the steps (sequence parallelism) reads the rows of its steps' global positions.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "nngraph/sdk.hpp"

namespace {

using nng::Dims;

struct PositionEmbedding {
    static constexpr const char* kName = "PositionEmbedding";
    static constexpr const char* kDoc = "Learned position embeddings broadcast to the input's shape (keras_hub)";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::int_attr("sequence_length", nullptr, "the most steps an input may have")),
        nng::string_attr("initializer", "glorot_uniform", nng::kInitializerChoices, "initial embeddings"),
    };

    explicit PositionEmbedding(const nng::Attrs& attrs)
        : length_(attrs.get_int("sequence_length")),
          init_(nng::keras_initializer(attrs.get_string("initializer"), "initializer")) {
        nng::check_attr(length_ > 0, "sequence_length", "a positive number of steps, got " + std::to_string(length_));
    }

    void infer(nng::InferContext& ctx) const {
        ctx.expect_rank(0, 3, NNG_MAX_RANK, "(batch, ..., steps, features)");
        ctx.expect_dtype(0, NNG_F32, "float32");
        const Dims d = ctx.input_dims(0);
        const std::int64_t steps = d[d.size() - 2];
        if (steps > length_) {
            throw nng::OpError("PositionEmbedding: the input has " + std::to_string(steps) + " steps (shape " +
                                   nng::dims_string(d) + "), more than sequence_length " + std::to_string(length_),
                               "sequence_length");
        }
        ctx.add_output(NNG_F32, d);
        ctx.add_weight("embeddings", {length_, d.back()}, init_);
        ctx.set_backward_needs(0);                                            // backward reads only the output gradient
        if (d.size() == 3) ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);  // the steps are axis 1
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        if (ctx.counting_work()) {
            // One add a value, x read and y written; backward copies dy and sums it into the table.
            const nng::Work pass = nng::elementwise_work(nng::product(d), 1, 2);
            ctx.count_work(pass, pass);
        }
    }

    // Rows (steps x features) of one broadcast copy, and how many copies.
    struct Layout {
        std::int64_t copies, steps, features;
    };
    static Layout layout(const nng::TensorRef& t) {
        const std::int64_t steps = t.dim(-2), features = t.dim(-1);
        return {t.numel() / (steps * features), steps, features};
    }

    // The runs of consecutive positions a call holds: `visit(local, first, count)` for local steps
    // local.. local + count - 1 at table rows first.. first + count - 1, checked to fit the table.
    template <class Visit>
    void for_each_run(const nng::Exec& exec, std::int64_t steps, Visit visit) const {
        const auto check = [&](std::int64_t first, std::int64_t count) {
            if (first < 0 || first + count > length_) {
                throw nng::OpError("PositionEmbedding: positions " + std::to_string(first) + " to " +
                                   std::to_string(first + count - 1) + " are outside sequence_length " +
                                   std::to_string(length_));
            }
        };
        const auto shard = exec.sequence_shard();
        if (!shard) {
            check(exec.position_offset(), steps);
            return visit(std::int64_t{0}, exec.position_offset(), steps);
        }
        const std::int64_t piece = shard->piece_steps();
        for (std::int64_t local = 0; local < steps; local += piece) {
            const std::int64_t count = std::min(piece, steps - local);
            check(shard->global_position(local), count);
            visit(local, shard->global_position(local), count);
        }
    }

    void forward(nng::Exec& exec) {
        const nng::TensorRef y = exec.output(0);
        const Layout l = layout(y);
        const float* table = exec.weight(0).f32();
        float* out = y.f32();
        for_each_run(exec, l.steps, [&](std::int64_t local, std::int64_t first, std::int64_t count) {
            const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(count * l.features);
#pragma omp parallel for num_threads(threads(exec, l)) schedule(static)
            for (std::int64_t c = 0; c < l.copies; ++c)
                std::memcpy(out + (c * l.steps + local) * l.features, table + first * l.features, bytes);
        });
    }

    void backward(nng::Exec& exec) {
        if (const nng::TensorRef dx = exec.grad_input(0)) std::memset(dx.raw(), 0, dx.nbytes());
        const nng::TensorRef dw = exec.grad_weight(0);
        if (!dw) return;
        std::memset(dw.raw(), 0, dw.nbytes());
        const nng::TensorRef dy = exec.grad_output(0);
        if (!dy) return;
        const Layout l = layout(dy);
        const float* g = dy.f32();
        for_each_run(exec, l.steps, [&](std::int64_t local, std::int64_t first, std::int64_t count) {
            float* out = dw.f32() + first * l.features;
            const std::int64_t run = count * l.features, row = l.steps * l.features;
            // Each thread owns a range of table entries and sums them over the copies.
#pragma omp parallel for num_threads(threads(exec, l)) schedule(static)
            for (std::int64_t e = 0; e < run; e += 256) {
                const std::int64_t end = std::min(run, e + 256);
                for (std::int64_t c = 0; c < l.copies; ++c) {
                    const float* src = g + c * row + local * l.features;
                    for (std::int64_t k = e; k < end; ++k) out[k] += src[k];
                }
            }
        });
    }

    static int threads(const nng::Exec& exec, const Layout& l) {
        if (l.copies * l.steps * l.features < (1 << 16)) return 1;
        return std::max(1, exec.num_threads() > 0 ? exec.num_threads() : omp_get_max_threads());
    }

    std::int64_t length_;
    nng::Initializer init_;
};

}  // namespace

NNG_PLUGIN("position", "0.1.0", nng::op<PositionEmbedding>())
