// The work ops count in infer (floating-point operations and bytes of one forward and one backward
// call), checked against the formulas written out here from the shapes.
#include <doctest/doctest.h>

#include "op_runner.hpp"

using nngraph::DType;
using nngraph::testing::OpRunner;

namespace {

struct Counted {
    std::int64_t forward_flops, forward_bytes, backward_flops, backward_bytes;
};

Counted counted(const OpRunner& op) {
    const nngraph::InferResult& r = op.shapes();
    return {r.forward_flops, r.forward_bytes, r.backward_flops, r.backward_bytes};
}

}  // namespace

TEST_CASE("Dense counts x·kernel and the bias forward, both gradients' products backward") {
    const std::int64_t B = 6, in = 10, U = 7;
    const Counted c = counted(OpRunner("Dense", "{units: 7, activation: relu}", {{DType::F32, {B, in}}}));
    const std::int64_t product_flops = 2 * B * in * U, product_bytes = 4 * (B * in + in * U + B * U);
    CHECK(c.forward_flops == product_flops + B * U);
    CHECK(c.forward_bytes == product_bytes + 4 * B * U);
    CHECK(c.backward_flops == 2 * product_flops + B * U);
    CHECK(c.backward_bytes == 2 * product_bytes + 4 * B * U);

    const Counted no_bias =
        counted(OpRunner("Dense", "{units: 3, use_bias: false}", {{DType::F32, {2, 5, 4}}}));  // rows = 2 * 5
    CHECK(no_bias.forward_flops == 2 * 10 * 4 * 3);
    CHECK(no_bias.backward_flops == 2 * 2 * 10 * 4 * 3);
}

TEST_CASE("LSTM counts four gates' products of x and h per step and the cell's elementwise work") {
    const std::int64_t N = 3, T = 5, F = 4, U = 6;
    const Counted c = counted(OpRunner("LSTM", "{units: 6}", {{DType::F32, {N, T, F}}}));
    const std::int64_t products = 2 * T * N * F * 4 * U + 2 * T * N * U * 4 * U;
    const std::int64_t product_bytes =
        4 * T * (N * F + F * 4 * U + N * 4 * U) + 4 * T * (N * U + U * 4 * U + N * 4 * U);
    const std::int64_t cell = 13 * T * N * U, cell_bytes = 4 * 6 * T * N * U;
    CHECK(c.forward_flops == products + cell);
    CHECK(c.forward_bytes == product_bytes + cell_bytes);
    CHECK(c.backward_flops == 2 * (products + cell));
    CHECK(c.backward_bytes == 2 * (product_bytes + cell_bytes));
}

TEST_CASE("dense attention counts q·kᵀ, the softmax and P·v, and five products back") {
    // Rows of 7 keys take the softmax's own division; rows of 20 leave it to P·v's rows, and
    // backward then scales dL/dout.
    for (const std::int64_t Tv : {7, 20}) {
        CAPTURE(Tv);
        const std::int64_t B = 2, Tq = 5, d = 4;
        const Counted c =
            counted(OpRunner("Attention", "{}", {{DType::F32, {B, Tq, d}}, {DType::F32, {B, Tv, d}}}, {false, false}));
        const bool deferred = Tv >= 16;
        const std::int64_t scores = B * Tq * Tv, out = B * Tq * d;
        const std::int64_t product = 2 * scores * d, product_bytes = 4 * B * (Tq * d + d * Tv + Tq * Tv);
        const std::int64_t weighted = 2 * scores * d, weighted_bytes = 4 * B * (Tq * Tv + Tv * d + Tq * d);
        const std::int64_t division = deferred ? out : scores, division_bytes = deferred ? 8 * out : 0;
        CHECK(c.forward_flops == product + 3 * scores + division + weighted);
        CHECK(c.forward_bytes == product_bytes + 8 * scores + division_bytes + weighted_bytes);
        // The softmax's backward: 2 a score, and its row terms <dout, out> (2 an output value).
        const std::int64_t scaling = deferred ? out : 0;
        CHECK(c.backward_flops == 2 * weighted + 2 * scores + 2 * out + scaling + 2 * product);
        CHECK(c.backward_bytes == 2 * weighted_bytes + 12 * scores + 8 * out + 4 * scaling + 2 * product_bytes);
    }
}

TEST_CASE("blockwise causal attention counts only the tiles causality leaves") {
    // 256 steps: 4 x 4 tiles of 64, of which causality leaves the 10 on and below the diagonal.
    const std::int64_t B = 2, T = 256, d = 8, tile = 64, visited = 10;
    const std::string attributes = "{implementation: blockwise, use_causal_mask: true}";
    const Counted causal =
        counted(OpRunner("Attention", attributes, {{DType::F32, {B, T, d}}, {DType::F32, {B, T, d}}}, {false, false}));
    const Counted full = counted(OpRunner("Attention", "{implementation: blockwise}",
                                          {{DType::F32, {B, T, d}}, {DType::F32, {B, T, d}}}, {false, false}));
    const auto forward_flops = [&](std::int64_t tiles) {
        const std::int64_t tile_scores = B * tiles * tile * tile;
        return 2 * tile_scores * d + 6 * tile_scores + 2 * tile_scores * d;
    };
    const auto backward_flops = [&](std::int64_t tiles) {
        const std::int64_t tile_scores = B * tiles * tile * tile;
        return 2 * 2 * tile_scores * d + 3 * 2 * tile_scores * d + 5 * tile_scores;
    };
    CHECK(causal.forward_flops == forward_flops(visited));
    CHECK(full.forward_flops == forward_flops(16));
    CHECK(causal.backward_flops == backward_flops(visited));
    CHECK(full.backward_flops == backward_flops(16));
}
