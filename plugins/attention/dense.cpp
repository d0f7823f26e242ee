// DenseCore (see dense.hpp).
#include "dense.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "masks.hpp"
#include "nngraph/carver.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/vector_math.hpp"
#include "symmetric_softmax.hpp"
#include "tiles.hpp"

namespace nngraph_attention {
namespace {

using DataType = onednn::DataType;

constexpr std::int64_t kParallelElements = 1 << 15;
const Pattern kNoPattern;

int threads_for(std::int64_t elements) { return elements > kParallelElements ? omp_get_max_threads() : 1; }

// Where the probabilities live: P (softmax output, masked rows zeroed) and, when dropout is
// active, the keep bits. Forward writes them; backward reads them. With inverse_sums forward
// left the softmax's division to its output: probs holds e^(s - max) and inverse_sums 1 / sum a
// row, and backward scales dL/dout by it instead of P.
struct ProbabilityState {
    float* probs = nullptr;         // (G, Tq, Tv)
    std::uint8_t* keep = nullptr;   // keep_bytes(), only with dropout
    float* inverse_sums = nullptr;  // (G, Tq), only where the division is deferred
};

// Rows [begin, end) of the score matrix, rows ordered (group, query).
struct RowRange {
    std::int64_t begin, end;
    std::int64_t count() const { return end - begin; }
};

// The masks before the softmax, in the op's mask style. `scores` holds `rows` of the (G, Tq, Tv)
// matrix, the first of them at scores[0].
void apply_masks(const Problem& p, const Masks& masks, float* scores, RowRange rows) {
    const std::int64_t tv = p.tv;
    const bool replace = p.style == MaskStyle::kReplace;
    const MaskedScore masked = masks.masked_score();
    nng::parallel_for(rows.count(), threads_for(rows.count() * tv), [&](std::int64_t offset) {
        const std::int64_t r = rows.begin + offset;
        const std::int64_t b = masks.batch_of_row(r), i = r % p.tq;
        float* s = scores + offset * tv;
        if (replace && !masks.query_kept(b, i)) {
            std::fill(s, s + tv, masked(0.0f));
            return;
        }
        const std::int64_t end = masks.causal_end(i);
        if (const std::uint8_t* k = masks.keys(b)) {
            for (std::int64_t j = 0; j < end; ++j) s[j] = k[j] ? s[j] : masked(s[j]);
        }
        for (std::int64_t j = end; j < tv; ++j) s[j] = masked(s[j]);
    });
}

// After the softmax: zero what Keras zeroes (masked query rows in Attention, masked entries in
// MultiHeadAttention's Softmax layer) and, with dropout, draw the keep bits and write the dropped
// probabilities.
bool zeroes_masked(const Problem& p) { return p.style == MaskStyle::kReplace && p.zero_masked && p.has_masks(); }
bool needs_post_pass(const Problem& p) {
    return (p.style == MaskStyle::kSubtract && p.query_mask) || zeroes_masked(p) || p.dropout;
}

// The 8 keys of a keep-mask byte as 0/1 factors: kKeepFactors[byte][l] is bit l of byte. Applying
// a byte is then 8 multiplications the compiler vectorises.
struct KeepFactors {
    float f[256][8];
    constexpr KeepFactors() : f() {
        for (int b = 0; b < 256; ++b)
            for (int l = 0; l < 8; ++l) f[b][l] = static_cast<float>((b >> l) & 1);
    }
};
constexpr KeepFactors kKeepFactors;

// Keep bits of one row r from the counter-based stream (KeepStream): two words per byte of 8 keys.
// Bit j of the row's bytes is key j.
void draw_row(const Problem& p, const KeepStream& stream, std::uint64_t row, const float* probs, float* dropped,
              std::uint8_t* bits) {
    for (std::int64_t j0 = 0; j0 < p.tv; j0 += 8) {
        const std::int64_t count = std::min<std::int64_t>(8, p.tv - j0);
        const std::uint64_t w = static_cast<std::uint64_t>(j0 / 4);
        unsigned byte = stream.nibble(row, w);
        if (count > 4) byte |= stream.nibble(row, w + 1) << 4;
        byte &= (1u << count) - 1u;
        bits[j0 >> 3] = static_cast<std::uint8_t>(byte);
        const float* factor = kKeepFactors.f[byte];
        for (std::int64_t l = 0; l < count; ++l) dropped[j0 + l] = probs[j0 + l] * (p.keep_scale * factor[l]);
    }
}

// probs, dropped and keep hold `rows`, the first at index 0.
void post_softmax(const Problem& p, const Masks& masks, float* probs, float* dropped, std::uint8_t* keep,
                  RowRange rows) {
    const std::int64_t tv = p.tv, row_bytes = nng::ceil_div(tv, 8);
    const bool zero_masked = zeroes_masked(p);
    const KeepStream stream(p);
    nng::parallel_for(rows.count(), threads_for(rows.count() * tv), [&](std::int64_t offset) {
        const std::int64_t r = rows.begin + offset;
        const std::int64_t b = masks.batch_of_row(r), i = r % p.tq;
        float* s = probs + offset * tv;
        if ((p.style == MaskStyle::kSubtract || zero_masked) && !masks.query_kept(b, i)) {
            std::fill(s, s + tv, 0.0f);
        } else if (zero_masked) {
            const std::int64_t end = masks.causal_end(i);
            if (const std::uint8_t* k = masks.keys(b)) {
                for (std::int64_t j = 0; j < end; ++j) s[j] = k[j] ? s[j] : 0.0f;
            }
            std::fill(s + end, s + tv, 0.0f);
        }
        if (p.dropout)
            draw_row(p, stream, static_cast<std::uint64_t>(r), s, dropped + offset * tv, keep + offset * row_bytes);
    });
}

// Backward of dropout, from the saved keep bits: dropped = probs ⊙ keep·scale (for dv) and
// dprobs ⊙= keep·scale in place.
void dropout_backward(const Problem& p, const float* probs, const std::uint8_t* keep, float* dropped, float* dprobs) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv, row_bytes = nng::ceil_div(tv, 8);
    nng::parallel_for(rows, threads_for(rows * tv), [&](std::int64_t r) {
        const std::uint8_t* bits = keep + r * row_bytes;
        const float* s = probs + r * tv;
        float* d = dropped + r * tv;
        float* g = dprobs + r * tv;
        for (std::int64_t j0 = 0; j0 < tv; j0 += 8) {
            const float* factor = kKeepFactors.f[bits[j0 >> 3]];
            const std::int64_t count = std::min<std::int64_t>(8, tv - j0);
            for (std::int64_t l = 0; l < count; ++l) {
                const float f = p.keep_scale * factor[l];
                d[j0 + l] = s[j0 + l] * f;
                g[j0 + l] *= f;
            }
        }
    });
}

// MultiHeadAttention puts a constant in place of masked scores, so none of their gradient
// survives. Where a row keeps a key, the masked probabilities are exactly 0 and so are their
// gradients already; only rows that mask every key (uniform probabilities) need zeroing. Zeroing
// a row of dL/dP and its softmax row term before the softmax's backward zeroes its dL/dscores.
void zero_fully_masked_rows(const Problem& p, const Masks& masks, float* dprobs, float* row_terms) {
    const std::int64_t rows = p.groups() * p.tq, tv = p.tv;
    nng::parallel_for(rows, threads_for(rows * tv), [&](std::int64_t r) {
        if (masks.any_allowed(masks.batch_of_row(r), r % p.tq)) return;
        std::fill(dprobs + r * tv, dprobs + (r + 1) * tv, 0.0f);
        row_terms[r] = 0.0f;
    });
}

// C = alpha·A·B + beta·C through sgemm group by group, where the call runs on one thread (parts
// share the threads, each with a count of one) and the views suit it: at these sizes it costs less
// a call than matmul's primitive. False, with nothing done, otherwise.
bool one_thread_sgemm(const onednn::View& a, const onednn::View& b, const onednn::View& c, float alpha,
                      float beta = 0.0f) {
    return omp_get_max_threads() == 1 && onednn::sgemm_each_group(a, b, c, alpha, beta);
}

// C = alpha·A·B + beta·C for a part of the problem.
void part_product(const onednn::View& a, const onednn::View& b, const onednn::View& c, float alpha = 1.0f,
                  float beta = 0.0f) {
    if (!one_thread_sgemm(a, b, c, alpha, beta)) onednn::matmul(a, b, c, {.alpha = alpha, .beta = beta});
}

// dst (G, Tv, d) = alpha · xᵀ·y, x (G, Tq, Tv) a score-sized matrix and y (G, Tq, d). sgemm, where
// a part runs on one thread, and oneDNN's gemm below AVX-512 take the transposed operand
// directly. On AVX-512 oneDNN's matmul (brgemm) runs the product with the big operand transposed
// markedly slower than yᵀ·x = (G, d, Tv) into `buffer` followed by a transposing reorder of the
// small result, so there the latter is used.
void transposed_product(const onednn::View& x, const onednn::View& y, const onednn::View& dst, float alpha,
                        float* buffer) {
    if (one_thread_sgemm(x.transposed(), y, dst, alpha)) return;
    if (!dst.contiguous() || !nng::cpu::has_avx512()) {
        onednn::matmul(x.transposed(), y, dst, {.alpha = alpha});
        return;
    }
    const onednn::View product = onednn::view(buffer, DataType::f32, {dst.dims[0], dst.dims[2], dst.dims[1]});
    onednn::matmul(y.transposed(), x, product, {.alpha = alpha});
    onednn::reorder(product.transposed(), dst);
}

onednn::View scores_view(const Problem& p, float* data) {
    return onednn::view(data, DataType::f32, {p.groups(), p.tq, p.tv});
}

void zero_view(const onednn::View& v) {
    if (!v.present()) return;
    if (!v.contiguous()) throw std::logic_error("attention dense core: zeroing a strided gradient view");
    std::memset(v.data, 0, static_cast<std::size_t>(v.numel()) * sizeof(float));
}

// v's data moved by `elements` of its type (f32, or bf16 under mixed_bfloat16).
void* advance(const onednn::View& v, std::int64_t elements) {
    return static_cast<std::byte*>(v.data) + elements * (v.type == DataType::bf16 ? 2 : 4);
}

// Query rows [i0, i0 + count) of group g of a (G, T, d) view, as a (1, count, d) view.
onednn::View group_rows(const onednn::View& v, std::int64_t g, std::int64_t i0, std::int64_t count) {
    onednn::View s = v;
    s.data = advance(v, g * v.strides[0] + i0 * v.strides[1]);
    s.dims[0] = 1;
    s.dims[1] = count;
    return s;
}

// What the matmuls read: the problem's f32 views, or under mixed_bfloat16 their bf16 copies
// (round to nearest even) with room for a bf16 score-sized matrix (P, then dL/dscores); the
// products accumulate in f32 either way.
struct MatmulOperands {
    onednn::View q, k, v, dout;
    std::uint16_t* scores = nullptr;  // null: f32

    // Under mixed_bfloat16, bf16 copies of q and k (when `copy_qk`), v and dout, made in `room` one
    // after the other; a view equal to an earlier one (self-attention's q, k and v) shares its copy.
    static MatmulOperands of(const Problem& p, const onednn::View& dout, std::uint16_t* room,
                             std::uint16_t* scores_room, bool copy_qk) {
        if (!p.bfloat16) return {p.q, p.k, p.v, dout, nullptr};
        MatmulOperands m{p.q, p.k, p.v, dout, scores_room};
        const std::array<onednn::View, 4> originals = {m.q, m.k, m.v, m.dout};
        const std::array<onednn::View*, 4> copies = {&m.q, &m.k, &m.v, &m.dout};
        for (std::size_t i = 0; i < copies.size(); ++i) {
            if (!originals[i].present() || (!copy_qk && i < 2)) continue;
            std::size_t same = 0;
            while (same < i && !(copies[same]->type == DataType::bf16 && same_view(originals[same], originals[i])))
                ++same;
            if (same < i) {
                *copies[i] = *copies[same];
                continue;
            }
            *copies[i] = onednn::to_bfloat16(originals[i], room);
            room += originals[i].numel();
        }
        return m;
    }
    static bool same_view(const onednn::View& a, const onednn::View& b) {
        return a.data == b.data && a.type == b.type && a.rank == b.rank && a.dims == b.dims && a.strides == b.strides;
    }
    // The elements `of` copies for p (dout's when `with_dout`).
    static std::int64_t count(const Problem& p, bool with_dout, bool copy_qk) {
        const std::int64_t g = p.groups();
        return (copy_qk ? g * (p.tq + p.tv) * p.dk : 0) + g * p.tv * p.dv + (with_dout ? g * p.tq * p.dv : 0);
    }
    // The operand for a score-sized f32 matrix `x`: x itself, or its bf16 copy (rows from `row0`).
    onednn::View score_operand(const onednn::View& x, std::int64_t row0 = 0) const {
        if (!scores) return x;
        return onednn::to_bfloat16(x, scores + row0 * x.dims[x.rank - 1]);
    }
};

// Groups [g0, g0 + count) of a (G, ...) view.
onednn::View group_slice(const onednn::View& v, std::int64_t g0, std::int64_t count) {
    if (!v.present()) return v;
    onednn::View s = v;
    s.data = advance(v, g0 * v.strides[0]);
    s.dims[0] = count;
    return s;
}

// What one forward pass works on: the whole problem, a block of groups, or one group's block of
// query rows.
struct ForwardPart {
    onednn::View q, k, v, out;
    RowRange rows;  // its rows of the score matrix
};

ForwardPart whole_problem(const Problem& p) { return {p.q, p.k, p.v, p.out, {0, p.groups() * p.tq}}; }
ForwardPart group_block(const Problem& p, std::int64_t g0, std::int64_t count) {
    return {group_slice(p.q, g0, count),
            group_slice(p.k, g0, count),
            group_slice(p.v, g0, count),
            group_slice(p.out, g0, count),
            {g0 * p.tq, (g0 + count) * p.tq}};
}
ForwardPart query_block(const Problem& p, std::int64_t g, std::int64_t i0, std::int64_t count) {
    return {group_rows(p.q, g, i0, count),
            group_rows(p.k, g, 0, p.tv),
            group_rows(p.v, g, 0, p.tv),
            group_rows(p.out, g, i0, count),
            {g * p.tq + i0, g * p.tq + i0 + count}};
}

// dst = the transpose of the (rows, cols) block at src: dst is (cols, rows); both have row stride
// `stride`. 8 x 8 tiles, then the rows and columns past the last whole tile one by one.
NNG_LOOP_CLONES void copy_transpose(const float* src, float* dst, std::int64_t rows, std::int64_t cols,
                                    std::int64_t stride) {
    const std::int64_t whole_rows = rows / 8 * 8, whole_cols = cols / 8 * 8;
    for (std::int64_t i0 = 0; i0 < whole_rows; i0 += 8) {
        for (std::int64_t j0 = 0; j0 < whole_cols; j0 += 8) {
            TileRow t[8];
            load_tile(src + i0 * stride + j0, stride, t);
            transpose_tiles(t);
            store_tile(dst + j0 * stride + i0, stride, t);
        }
        for (std::int64_t i = i0; i < i0 + 8; ++i)
            for (std::int64_t j = whole_cols; j < cols; ++j) dst[j * stride + i] = src[i * stride + j];
    }
    for (std::int64_t i = whole_rows; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j) dst[j * stride + i] = src[i * stride + j];
}

// Where one forward part writes its rows of the score matrix: the probabilities, and with
// dropout the dropped probabilities and the keep bits, each pointing at the part's first row.
// With `inverse_sums` (a float a row), nothing keeps the probabilities after the call, so the
// softmax leaves e^(s - max) in `probs` and the division to the part's rows of P·v.
// `symmetric_scratch` (symmetric_softmax_scratch floats) where the part's scores may go through
// symmetric_softmax.
struct PartRows {
    float* probs = nullptr;
    float* dropped = nullptr;
    std::uint8_t* keep = nullptr;
    float* inverse_sums = nullptr;
    float* symmetric_scratch = nullptr;
};

// Row i of a (rows, d) block with row stride `stride` and unit element stride, times factors[i]:
// cloned so that the rows go through whole AVX-512 vectors.
NNG_LOOP_CLONES void scale_block_rows(float* block, std::int64_t rows, std::int64_t d, std::int64_t stride,
                                      const float* factors) {
    for (std::int64_t r = 0; r < rows; ++r) {
        float* row = block + r * stride;
        const float factor = factors[r];
        for (std::int64_t e = 0; e < d; ++e) row[e] *= factor;
    }
}

// The row kernels' views: f32 (G, T, d) whose rows have element stride 1. `what` names the view.
void require_f32_rows(const onednn::View& v, const char* what) {
    if (v.type != DataType::f32 || (v.dims[2] > 1 && v.strides[2] != 1))
        throw std::logic_error(std::string("attention dense core: ") + what +
                               " must be f32 rows with element stride 1, got " + v.describe());
}

// Row i of the (G', rows, d) view `out` times factors[i], the rows in order over the groups.
void scale_rows(const onednn::View& out, const float* factors) {
    const std::int64_t rows = out.dims[1], d = out.dims[2];
    require_f32_rows(out, "the output the deferred division scales");
    float* base = static_cast<float*>(out.data);
    nng::parallel_for(out.dims[0], threads_for(out.numel()), [&](std::int64_t g) {
        scale_block_rows(base + g * out.strides[0], rows, d, out.strides[1], factors + g * rows);
    });
}

// Rows [i0, i0 + count) of every group of a (G, T, d) view.
onednn::View rows_of_groups(const onednn::View& v, std::int64_t i0, std::int64_t count) {
    onednn::View s = v;
    s.data = advance(v, i0 * v.strides[1]);
    s.dims[1] = count;
    return s;
}

// alpha·q·qᵀ of the part's groups into `scores` (G', T, T) in two products: the rows above
// `split` up to column `split`, the rows from it on in full. That covers every 8 x 8 tile on and
// left of the diagonal (split is a multiple of 8), which symmetric_softmax reads;
// mirror_symmetric_scores completes the rest.
void symmetric_products(const Problem& p, const ForwardPart& part, float* scores, std::int64_t split) {
    const std::int64_t t = p.tq, groups = part.q.dims[0], below = t - split;
    const auto block = [&](std::int64_t i0, std::int64_t rows, std::int64_t cols) {
        return onednn::view(scores + i0 * t, DataType::f32, {groups, rows, cols}, {t * t, t, 1});
    };
    const onednn::View above = rows_of_groups(part.q, 0, split);
    part_product(above, rows_of_groups(part.k, 0, split).transposed(), block(0, split, split), p.alpha);
    part_product(rows_of_groups(part.q, split, below), part.k.transposed(), block(split, below, t), p.alpha);
}
// The rows above `split` right of it, from the columns below it: the whole of one group's
// alpha·q·qᵀ, the (t, t) matrix s.
void mirror_symmetric_scores(float* s, std::int64_t t, std::int64_t split) {
    copy_transpose(s + split * t, s + split, t - split, split, t);
}

// The forward of `part` into `rows`. `operands` holds the bf16 room for P under mixed_bfloat16
// (part.q, k and v are then bf16). `symmetric`: symmetric_split's, used on whole groups.
void forward_part(const Problem& p, const ForwardPart& part, const PartRows& rows, const Masks& masks,
                  bool scores_given, const MatmulOperands& operands, std::int64_t symmetric) {
    const auto rows_of = [&](float* matrix) {
        return onednn::view(matrix, DataType::f32, {part.out.dims[0], part.out.dims[1], p.tv});
    };
    const onednn::View scores = rows_of(rows.probs);
    const bool symmetric_part = !scores_given && symmetric > 0 && part.q.dims[1] == p.tq;
    if (symmetric_part)
        symmetric_products(p, part, rows.probs, symmetric);
    else if (!scores_given)
        part_product(part.q, part.k.transposed(), scores, p.alpha);
    // The post pass only zeroes or drops probabilities, which commutes with the deferred division.
    float* inverse_sums = rows.inverse_sums && onednn::softmax_defers_division(scores) ? rows.inverse_sums : nullptr;
    if (symmetric_part && rows.symmetric_scratch && !p.has_masks()) {
        // Masks would break the symmetry. A group whose scores are too large for exponentials
        // without a shift goes through the plain softmax.
        const std::int64_t t = p.tq, groups = part.q.dims[0];
        for (std::int64_t g = 0; g < groups; ++g) {
            float* s = rows.probs + g * t * t;
            float* inverse = inverse_sums ? inverse_sums + g * t : nullptr;
            if (symmetric_softmax(s, t, inverse, rows.symmetric_scratch)) continue;
            mirror_symmetric_scores(s, t, symmetric);
            onednn::softmax_rows(s, t, s, t, t, t, inverse);
        }
    } else {
        if (symmetric_part) {
            const std::int64_t t = p.tq, groups = part.q.dims[0];
            nng::parallel_for(groups, threads_for(groups * t * t),
                              [&](std::int64_t g) { mirror_symmetric_scores(rows.probs + g * t * t, t, symmetric); });
        }
        if (p.has_masks()) apply_masks(p, masks, rows.probs, part.rows);
        onednn::softmax_forward(scores, scores, inverse_sums);
    }
    if (needs_post_pass(p)) post_softmax(p, masks, rows.probs, rows.dropped, rows.keep, part.rows);
    part_product(operands.score_operand(rows.dropped ? rows_of(rows.dropped) : scores, part.rows.begin), part.v,
                 part.out);
    if (inverse_sums) scale_rows(part.out, inverse_sums);
}

// Blocks of query rows per group when the groups alone cannot keep the threads busy and the
// problem is small: then each thread runs its blocks with single-threaded primitives, in one
// parallel region. At these sizes oneDNN's own threading loses (a single 200-step review runs its
// matmuls and softmax slower on two threads than on one), while halving the rows halves the work.
std::int64_t query_blocks(const Problem& p, int threads) {
    constexpr std::int64_t kSplitScoresBelow = std::int64_t{1} << 20;
    constexpr std::int64_t kLeastRows = 16;
    if (threads <= 1 || p.groups() >= threads || p.score_count() >= kSplitScoresBelow) return 1;
    const std::int64_t per_group = nng::ceil_div(threads, p.groups());
    return std::clamp<std::int64_t>(p.tq / kLeastRows, 1, per_group);
}

// Groups per forward part when the groups alone keep the threads busy: each thread then runs
// a few groups at a time through the products, masks and softmax with single-threaded
// primitives, so a part's scores stay in L2 between its passes instead of each pass streaming the
// whole (G, Tq, Tv) matrix through memory. 1 when the whole matrix is small enough to stay cached.
std::int64_t forward_chunk(const Problem& p, int threads) {
    constexpr std::int64_t kPartFloats = std::int64_t{1} << 17;
    constexpr std::int64_t kWholeBelow = std::int64_t{1} << 19;
    const std::int64_t groups = p.groups();
    if (groups < 2 * threads || p.score_count() < kWholeBelow) return groups;
    const std::int64_t per_group = std::max<std::int64_t>(p.tq * p.tv, 1);
    return std::clamp<std::int64_t>(kPartFloats / per_group, 1, groups / std::max(threads, 1));
}

// How forward splits a problem into parts: decided from the shapes and the thread count alone, so
// that declare() sizes the buffers for the split forward() runs.
struct ForwardSplit {
    enum class Kind {
        kWhole,        // the whole problem as one part, on threaded primitives
        kOneThread,    // the whole problem on the calling thread: waking another costs more
        kGroupBlocks,  // parts of `per_part` groups, each on one thread
        kQueryBlocks,  // parts of `per_part` query rows of one group, each on one thread
    };
    Kind kind = Kind::kWhole;
    std::int64_t parts = 1, per_part = 0;  // per_part: the largest part's

    // Whether every part runs on one thread with single-threaded primitives.
    bool one_thread_each() const { return kind != Kind::kWhole; }
    // Rows of the score matrix in the largest part.
    std::int64_t part_rows(const Problem& p) const { return kind == Kind::kQueryBlocks ? per_part : per_part * p.tq; }
};

// `count` items in about `per_part` of them a part, the parts a multiple of `threads` when there
// are enough, of sizes that differ by one at most (part i starts at nng::split_point): threads
// that take equal runs of parts then take equal work, where equal parts but the last leave one
// thread idle while the other finishes a whole extra part.
struct EvenParts {
    std::int64_t parts = 1, largest = 0;

    EvenParts() = default;
    EvenParts(std::int64_t count, std::int64_t per_part, int threads) {
        parts = nng::ceil_div(count, std::max<std::int64_t>(per_part, 1));
        if (parts >= threads) parts = std::min(nng::round_up(parts, threads), count);
        largest = parts > 0 ? nng::ceil_div(count, parts) : 0;
    }
};

ForwardSplit forward_split(const Problem& p, int threads) {
    using Kind = ForwardSplit::Kind;
    constexpr std::int64_t kOneThreadScores = 1 << 11;
    const std::int64_t groups = p.groups();
    if (groups == 0) return {};  // a batch not known yet
    if (const std::int64_t blocks = query_blocks(p, threads); blocks > 1)
        return {Kind::kQueryBlocks, groups * blocks, nng::ceil_div(p.tq, blocks)};
    if (p.score_count() <= kOneThreadScores) return {Kind::kOneThread, 1, groups};
    const std::int64_t chunk = forward_chunk(p, threads);
    if (chunk >= groups) return {Kind::kWhole, 1, groups};
    const EvenParts blocks(groups, chunk, threads);
    return {Kind::kGroupBlocks, blocks.parts, blocks.largest};
}

// Where alpha·q·kᵀ of one tensor as q and k, which is symmetric, is made in two parts: the rows
// from `split` on in full, the rows above it up to column `split`; the rest is their mirror image.
// Three quarters of the product's work. 0 where the whole product is made: other problems, and
// parts of query rows (which see no mirror).
std::int64_t symmetric_split(const Problem& p, const ForwardSplit& split) {
    constexpr std::int64_t kLeastSteps = 16;
    if (!p.key_is_query || split.kind == ForwardSplit::Kind::kQueryBlocks || p.tq < kLeastSteps) return 0;
    return nng::round_up(nng::ceil_div(p.tq, 2), 8);
}

// What backward works in for one piece of the batch (a chunk of the dot core's, the whole batch
// for given scores): dL/dscores, dropout's applied probabilities, the combined key masks, a
// (G, Tv, max(dk, dv)) product, the alpha product's (G, Tq, dk), the softmax's row terms (G, Tq),
// dL/dout scaled by the deferred division (G, Tq, dv), and under mixed_bfloat16 the operands' and
// dL/dscores' bf16 copies. One buffer holds them all, so that each thread can have its own.
struct BackwardScratch {
    float* dscores = nullptr;
    float* dropped = nullptr;
    std::uint8_t* keys = nullptr;
    float* product = nullptr;
    float* alpha = nullptr;
    float* row_terms = nullptr;
    float* scaled_dout = nullptr;
    std::uint16_t* operands = nullptr;
    std::uint16_t* score_operand = nullptr;
};

// The next `count` T of a carver, or null when the problem needs none.
template <class T>
T* take_or_null(nng::Carver& carver, std::int64_t count) {
    T* at = carver.take<T>(count);
    return count > 0 ? at : nullptr;
}

// How many of each piece of BackwardScratch a problem needs, and where they lie in one buffer
// (nng::Carver: each 64-byte aligned, carved in the order counted).
class BackwardLayout {
public:
    BackwardLayout() = default;
    BackwardLayout(const Problem& piece, bool dot, bool deferred_division) {
        const bool alpha = piece.alpha_gradient && dot;
        scores_ = piece.score_count();
        dropped_ = piece.may_drop ? scores_ : 0;
        keys_ = Masks::combined_bytes(piece);
        product_ = piece.groups() * piece.tv * std::max(piece.dk, piece.dv);
        alpha_ = alpha ? piece.groups() * piece.tq * piece.dk : 0;
        row_terms_ = piece.groups() * piece.tq;
        scaled_dout_ = deferred_division ? piece.groups() * piece.tq * piece.dv : 0;
        operands_ = piece.bfloat16 ? MatmulOperands::count(piece, true, dot) : 0;
        score_operand_ = piece.bfloat16 ? scores_ : 0;
        nng::Carver counter;
        carve(counter);
        bytes_ = static_cast<std::int64_t>(counter.bytes());
    }
    std::int64_t bytes() const { return bytes_; }
    BackwardScratch at(void* buffer) const {
        nng::Carver carver(buffer, static_cast<std::size_t>(bytes_));
        return carve(carver);
    }

private:
    BackwardScratch carve(nng::Carver& c) const {
        BackwardScratch s;
        s.dscores = take_or_null<float>(c, scores_);
        s.dropped = take_or_null<float>(c, dropped_);
        s.keys = take_or_null<std::uint8_t>(c, keys_);
        s.product = take_or_null<float>(c, product_);
        s.alpha = take_or_null<float>(c, alpha_);
        s.row_terms = take_or_null<float>(c, row_terms_);
        s.scaled_dout = take_or_null<float>(c, scaled_dout_);
        s.operands = take_or_null<std::uint16_t>(c, operands_);
        s.score_operand = take_or_null<std::uint16_t>(c, score_operand_);
        return s;
    }
    std::int64_t scores_ = 0, dropped_ = 0, keys_ = 0, product_ = 0, alpha_ = 0, row_terms_ = 0, scaled_dout_ = 0,
                 operands_ = 0, score_operand_ = 0, bytes_ = 0;
};

// Row by row of (rows, d) blocks of dL/dout and out: the softmax backward's term <dout, out>,
// which is <dL/dP, P> because out = P·v, and with `inverse` (the deferred division's 1 / sum a
// row) that term times it and the row of dout times it into `scaled` (rows, d).
template <int kBytes>
struct OutputRowTerms {
    using V = typename nng::simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = nng::simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(const float* dout, std::int64_t dout_stride, const float* out,
                                                          std::int64_t out_stride, std::int64_t rows, std::int64_t d,
                                                          const float* inverse, float* terms, float* scaled) {
        const std::int64_t whole = d / kLanes * kLanes, tail = d - whole;
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* g = dout + r * dout_stride;
            const float* y = out + r * out_stride;
            V sums = nng::simd::load_first<V>(g + whole, tail) * nng::simd::load_first<V>(y + whole, tail);
            for (std::int64_t e = 0; e < whole; e += kLanes)
                sums += nng::simd::load<V>(g + e) * nng::simd::load<V>(y + e);
            const float term = nng::simd::lane_sum(sums);
            if (!inverse) {
                terms[r] = term;
                continue;
            }
            const float factor = inverse[r];
            terms[r] = term * factor;
            float* row = scaled + r * d;
            for (std::int64_t e = 0; e < whole; e += kLanes)
                nng::simd::store(row + e, nng::simd::load<V>(g + e) * factor);
            nng::simd::store_first(row + whole, nng::simd::load_first<V>(g + whole, tail) * factor, tail);
        }
    }
};

// The softmax backward's row terms of p into `terms` (G, Tq), from dL/dout and the forward's
// output, which saves that backward the sweep over each row of P and dL/dP that sums them. Where
// forward deferred the division (state.inverse_sums) also dL/dout scaled by it into `scaled`
// (G, Tq, dv), which the products then read in place of dout: dL/dP and Pᵀ·dout both come out
// right from e^(s - max) in place of P. Returns the dL/dout the products read.
onednn::View output_row_terms(const Problem& p, const ProbabilityState& state, const onednn::View& dout, float* terms,
                              float* scaled) {
    require_f32_rows(dout, "dL/dout");
    require_f32_rows(p.out, "the output backward reads");
    const auto* g = static_cast<const float*>(dout.data);
    const auto* y = static_cast<const float*>(p.out.data);
    const std::int64_t tq = p.tq, dv = p.dv;
    nng::parallel_for(p.groups(), threads_for(p.groups() * tq * dv), [&](std::int64_t group) {
        const std::int64_t r0 = group * tq;
        nng::simd::run_widest<OutputRowTerms>(
            g + group * dout.strides[0], dout.strides[1], y + group * p.out.strides[0], p.out.strides[1], tq, dv,
            state.inverse_sums ? state.inverse_sums + r0 : nullptr, terms + r0, scaled ? scaled + r0 * dv : nullptr);
    });
    if (!state.inverse_sums) return dout;
    return onednn::view(scaled, DataType::f32, {p.groups(), tq, dv});
}

// What p's backward products read: dL/dout after output_row_terms (whose terms go into `scratch`)
// and p's views, or their bf16 copies (with q and k when `copy_qk`).
MatmulOperands backward_operands(const Problem& p, const ProbabilityState& state, const onednn::View& dout,
                                 const BackwardScratch& scratch, bool copy_qk) {
    const onednn::View used =
        dout.present() ? output_row_terms(p, state, dout, scratch.row_terms, scratch.scaled_dout) : dout;
    return MatmulOperands::of(p, used, scratch.operands, scratch.score_operand, copy_qk);
}

// dv and dL/dscores (G, Tq, Tv) into `dscores`, for any score function; the products read `m`
// (p's views and dout, or their bf16 copies; dout scaled by output_row_terms, whose row terms
// `scratch` holds).
void scores_backward(const Problem& p, const ProbabilityState& state, const MatmulOperands& m, const onednn::View& dv,
                     float* dscores, const BackwardScratch& scratch) {
    const onednn::View dS = scores_view(p, dscores);
    if (!m.dout.present()) {
        std::memset(dscores, 0, static_cast<std::size_t>(p.score_count()) * sizeof(float));
        zero_view(dv);
        return;
    }
    part_product(m.dout, m.v.transposed(), dS);  // dL/d(dropped probabilities)
    onednn::View used_probs = scores_view(p, state.probs);
    if (p.dropout) {
        dropout_backward(p, state.probs, state.keep, scratch.dropped, dscores);
        used_probs = scores_view(p, scratch.dropped);
    }
    if (dv.present()) transposed_product(m.score_operand(used_probs), m.dout, dv, 1.0f, scratch.product);
    if (p.style == MaskStyle::kReplace && p.has_masks())
        zero_fully_masked_rows(p, Masks(p, kNoPattern, scratch.keys), dscores, scratch.row_terms);
    // With one tensor as query and key, dot_backward runs the softmax's backward with dS + dSᵀ.
    if (!p.key_is_query) onednn::softmax_backward(scores_view(p, state.probs), dS, dS, scratch.row_terms);
}

// dq = alpha dS·k and dk (+)= alpha dSᵀ·q from dL/dscores, the products on `m`'s operands; see
// CoreGradients for d_alpha_product (added to, not overwritten, and in f32). With key_is_query
// `dscores` comes as dL/dP (scores_backward) and leaves as dS + dSᵀ, after the softmax's backward
// from `state` and `row_terms`. `buffer` holds (G, Tq, dk) floats when d_alpha_product is wanted.
void dot_backward(const Problem& p, const ProbabilityState& state, const float* row_terms, float* dscores,
                  const CoreGradients& grads, float* buffer, const MatmulOperands& m) {
    const onednn::View dS_f32 = scores_view(p, dscores);
    if (p.key_is_query) {
        // q and k are one tensor: dq + dk = alpha (dS + dSᵀ)·q, one product where there were two.
        const std::int64_t t = p.tq;
        nng::parallel_for(p.groups(), threads_for(p.score_count()), [&](std::int64_t g) {
            symmetrized_softmax_backward(state.probs + g * t * t, dscores + g * t * t, row_terms + g * t, t);
        });
    }
    if (grads.d_alpha_product) {
        // t = dS·k without alpha; <q, t> = <dS, q·kᵀ>, and with key_is_query <dS + dSᵀ, q·qᵀ> is
        // twice that, q·qᵀ being symmetric.
        const onednn::View t = onednn::view(buffer, DataType::f32, {p.groups(), p.tq, p.dk});
        part_product(dS_f32, p.k, t);
        const float* q = static_cast<const float*>(p.q.data);
        double sum = 0.0;
        const std::int64_t rows = p.groups() * p.tq;
        const int threads = threads_for(rows * p.dk);
#pragma omp parallel for reduction(+ : sum) num_threads(threads) schedule(static)
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* qr = q + (r / p.tq) * p.q.strides[0] + (r % p.tq) * p.q.strides[1];
            for (std::int64_t d = 0; d < p.dk; ++d)
                sum += double(qr[d * p.q.strides[2]]) * double(buffer[r * p.dk + d]);
        }
        *grads.d_alpha_product += p.key_is_query ? sum / 2 : sum;
    }
    const onednn::View dS = m.score_operand(dS_f32);
    if (grads.dq.present()) part_product(dS, m.k, grads.dq, p.alpha, grads.dq_accumulates ? 1.0f : 0.0f);
    if (grads.dk.present()) part_product(dS.transposed(), m.q, grads.dk, p.alpha, grads.dk_accumulates ? 1.0f : 0.0f);
}

// The problem of batch elements [b0, b0 + count): every view, mask and saved buffer shifted.
struct BatchSlice {
    Problem p;
    ProbabilityState state;
    onednn::View dout;
    CoreGradients grads;
};
BatchSlice batch_slice(const Problem& p, const ProbabilityState& state, const onednn::View& dout,
                       const CoreGradients& grads, std::int64_t b0, std::int64_t count) {
    BatchSlice s{p, state, dout, grads};
    const std::int64_t g0 = b0 * p.heads, groups = count * p.heads;
    s.p.batch = count;
    for (onednn::View* v : {&s.p.q, &s.p.k, &s.p.v, &s.p.out, &s.dout, &s.grads.dq, &s.grads.dk, &s.grads.dv})
        *v = group_slice(*v, g0, groups);
    if (s.p.query_mask) s.p.query_mask += b0 * p.tq;
    for (const std::uint8_t*& keys : s.p.key_masks) {
        if (keys) keys += b0 * p.tv;
    }
    s.state.probs += g0 * p.tq * p.tv;
    if (s.state.inverse_sums) s.state.inverse_sums += g0 * p.tq;
    if (s.state.keep) s.state.keep += g0 * p.tq * nng::ceil_div(p.tv, 8);
    return s;
}

// The batch in backward chunks of about 512 KiB of scores, so that a chunk's dL/dscores stays in
// its thread's L2 between passes and the step's peak holds no second score-sized matrix beside P.
EvenParts backward_chunks(const Problem& p, int threads) {
    constexpr std::int64_t kChunkFloats = std::int64_t{1} << 17;
    const std::int64_t per_sample = std::max<std::int64_t>(p.heads * p.tq * p.tv, 1);
    const std::int64_t most =
        std::clamp<std::int64_t>(kChunkFloats / per_sample, 1, std::max<std::int64_t>(p.batch, 1));
    return EvenParts(p.batch, most, threads);
}

}  // namespace

struct DenseCore::Ids {
    // How forward splits problems of this shape and thread count, and the dot core's backward
    // the batch, decided once with the buffers.
    ForwardSplit split;
    std::int64_t symmetric = 0;  // symmetric_split's for `split`
    // Whether the softmax leaves its division to P·v's rows (ProbabilityState), in training too.
    bool deferred_division = false;
    EvenParts backward_chunks;
    // Forward's: probs and keep saved in training; keep and dropped only in training. Inference
    // keeps no probabilities after the call, so when the parts run one a thread, each thread has
    // only its current part's rows (thread_probs), which then stay in its cache.
    BufferId probs, keep, dropped, keys;
    bool thread_probs = false;
    // The softmax's 1 / sum a row (PartRows) with the division deferred: saved in training, in
    // inference without thread_probs for the call.
    BufferId inverse_sums;
    // Where the parts run one a thread, each thread's: the 1 / sum of its part's rows with
    // thread_probs, then symmetric_softmax's scratch with a symmetric split; floats of each.
    BufferId part_scratch;
    std::int64_t part_inverse_sums = 0, part_symmetric = 0;
    // mixed_bfloat16: bf16 copies of the forward matmuls' operands (MatmulOperands).
    BufferId operands, score_operand;
    BufferId backward;  // BackwardScratch: per thread for the dot core, else one for the call
    BackwardLayout backward_layout;
    BufferId alpha_sums;  // the dot core's: a double a backward chunk, with an alpha gradient

    // What a training forward saves for backward, in this call's buffers.
    ProbabilityState saved(const Problem& p, const Buffers& buffers) const {
        return {buffers.floats(probs), p.dropout ? buffers.bytes(keep) : nullptr,
                buffers.training() && deferred_division ? buffers.floats(inverse_sums) : nullptr};
    }
};

DenseCore::Ids DenseCore::declare(const Problem& p, bool training, BufferList& list) const {
    Ids ids;
    const bool dot = scores_ == Scores::kDot;
    ids.split = forward_split(p, omp_get_max_threads());
    ids.symmetric = dot ? symmetric_split(p, ids.split) : 0;
    ids.backward_chunks = backward_chunks(p, omp_get_max_threads());
    ids.thread_probs = !training && dot && ids.split.one_thread_each();
    ids.deferred_division =
        onednn::softmax_defers_division(onednn::view(nullptr, DataType::f32, {std::int64_t{1}, p.tq, p.tv}));
    if (training) {
        ids.probs = list.floats("attention.probabilities", Lifetime::kSaved, p.heads * p.tq, p.tv);
        if (ids.deferred_division)
            ids.inverse_sums = list.floats("attention.inverse_sums", Lifetime::kSaved, p.heads * p.tq);
    } else if (ids.thread_probs) {
        ids.probs = list.floats("attention.probabilities", Lifetime::kThread, ids.split.part_rows(p), p.tv);
        ids.part_inverse_sums = ids.split.part_rows(p);
    } else {
        ids.probs = list.floats("attention.probabilities", Lifetime::kForward, p.groups() * p.tq, p.tv);
        if (!training) ids.inverse_sums = list.floats("attention.inverse_sums", Lifetime::kForward, p.groups() * p.tq);
    }
    if (ids.split.one_thread_each() && ids.symmetric > 0) ids.part_symmetric = symmetric_softmax_scratch(p.tq);
    if (ids.part_inverse_sums + ids.part_symmetric > 0)
        ids.part_scratch =
            list.floats("attention.part_scratch", Lifetime::kThread, ids.part_inverse_sums + ids.part_symmetric);
    if (p.may_drop && training) {
        ids.keep = list.bytes("attention.keep_bits", Lifetime::kSaved, p.heads * p.tq, nng::ceil_div(p.tv, 8));
        ids.dropped = list.floats("attention.dropped", Lifetime::kForward, p.score_count());
    }
    ids.keys = list.bytes("attention.key_mask", Lifetime::kForward, Masks::combined_bytes(p));
    if (p.bfloat16) {
        ids.operands =
            list.bytes("attention.bfloat16_operands", Lifetime::kForward, 2 * MatmulOperands::count(p, false, dot));
        ids.score_operand = list.bytes("attention.bfloat16_probabilities", Lifetime::kForward, 2 * p.score_count());
    }
    if (!training) return ids;
    // Backward runs the dot core a chunk of the batch at a time (backward_chunks), each thread its
    // own chunks, and a given score function over the whole batch at once.
    Problem piece = p;
    if (dot) piece.batch = std::max<std::int64_t>(ids.backward_chunks.largest, 1);
    ids.backward_layout = BackwardLayout(piece, dot, ids.deferred_division);
    ids.backward = list.bytes("attention.backward_scratch", dot ? Lifetime::kThread : Lifetime::kBackward,
                              ids.backward_layout.bytes());
    if (dot && p.alpha_gradient)
        ids.alpha_sums = list.bytes("attention.alpha_sums", Lifetime::kBackward,
                                    ids.backward_chunks.parts * std::int64_t{sizeof(double)});
    return ids;
}

CoreWork DenseCore::work(const Problem& p, bool training) const {
    // Forward q·kᵀ (unless the op gives the scores), the softmax (max, exp, sum: 3 a score, scores
    // read and exponentials written; the division a score, or a row of P·v where deferred) and
    // P·v; backward dv = Pᵀ·dout, dP = dout·vᵀ, the softmax's backward (its row terms from dout
    // and out, dout scaled where the division was deferred, then 2 a score over P, dP and dS),
    // then dq = dS·k and dk = dSᵀ·q.
    const std::int64_t G = p.groups(), scores = p.score_count(), out_values = G * p.tq * p.dv;
    const bool deferred = declared(p, training).ids.deferred_division;
    const nng::Work division = deferred ? nng::elementwise_work(out_values, 1, 2) : nng::elementwise_work(scores, 1, 0);
    const nng::Work softmax_backward = nng::elementwise_work(scores, 2, 3) + nng::elementwise_work(out_values, 2, 2) +
                                       (deferred ? nng::elementwise_work(out_values, 1, 1) : nng::Work{});
    const nng::Work product = scores_ == Scores::kDot ? nng::matmul_work(G, p.tq, p.dk, p.tv) : nng::Work{};
    const nng::Work weighted_sum = nng::matmul_work(G, p.tq, p.tv, p.dv);
    // With key_is_query: dS + dSᵀ (an add a pair of scores) and one product for dq + dk; forward
    // makes the symmetric q·qᵀ in two products (symmetric_products) and copies the rest.
    nng::Work scores_product = product, query_and_key = 2 * product;
    if (scores_ == Scores::kDot && p.key_is_query) {
        query_and_key = product + nng::elementwise_work(scores / 2, 1, 0);  // in the softmax's backward sweep
        if (const std::int64_t split = declared(p, training).ids.symmetric; split > 0) {
            const std::int64_t below = p.tq - split;
            scores_product = nng::matmul_work(G, split, p.dk, split) + nng::matmul_work(G, below, p.dk, p.tq) +
                             nng::elementwise_work(G * below * split, 0, 2);
        }
    }
    return {scores_product + nng::elementwise_work(scores, 3, 2) + division + weighted_sum,
            2 * weighted_sum + softmax_backward + query_and_key};
}

const DeclaredBuffers<BufferShape, DenseCore::Ids>::Entry& DenseCore::declared(const Problem& p, bool training) const {
    return declared_.get(BufferShape(p, training), [&](BufferList& list) { return declare(p, training, list); });
}

DenseCore::Ids DenseCore::ids(const Problem& p, const Buffers& buffers) const {
    return declared(p, buffers.training()).ids;
}

const BufferList& DenseCore::buffers(const Problem& p, bool training) const { return declared(p, training).list; }

float* DenseCore::scores(const Problem& p, const Buffers& buffers) const {
    return buffers.floats(ids(p, buffers).probs);
}

void DenseCore::forward(const Problem& p, const Buffers& buffers) const {
    const Ids ids = this->ids(p, buffers);
    const ProbabilityState state = ids.saved(p, buffers);
    if (p.dropout && !state.keep) throw std::logic_error("attention dense core: dropout without a keep mask buffer");
    const Masks masks(p, kNoPattern, buffers.bytes(ids.keys));
    float* dropped = p.dropout ? buffers.floats(ids.dropped) : nullptr;
    const bool scores_given = scores_ == Scores::kGiven;
    // The operands in bf16 once for the whole problem; the parts below take their rows of them.
    const MatmulOperands m =
        MatmulOperands::of(p, {}, static_cast<std::uint16_t*>(buffers.get(ids.operands)),
                           static_cast<std::uint16_t*>(buffers.get(ids.score_operand)), !scores_given);
    Problem mixed = p;
    mixed.q = m.q;
    mixed.k = m.k;
    mixed.v = m.v;
    const std::int64_t row_bytes = nng::ceil_div(p.tv, 8);
    const auto run = [&](const ForwardPart& part) {
        const std::int64_t r0 = part.rows.begin;
        float* part_scratch =
            ids.part_inverse_sums + ids.part_symmetric > 0 ? buffers.thread_floats(ids.part_scratch) : nullptr;
        float* inverse_sums = !ids.deferred_division ? nullptr
                              : ids.thread_probs     ? part_scratch
                                                     : buffers.floats(ids.inverse_sums) + r0;
        float* symmetric_scratch = ids.part_symmetric > 0 ? part_scratch + ids.part_inverse_sums : nullptr;
        const PartRows rows =
            ids.thread_probs
                ? PartRows{buffers.thread_floats(ids.probs), nullptr, nullptr, inverse_sums, symmetric_scratch}
                : PartRows{state.probs + r0 * p.tv, dropped ? dropped + r0 * p.tv : nullptr,
                           state.keep ? state.keep + r0 * row_bytes : nullptr, inverse_sums, symmetric_scratch};
        forward_part(p, part, rows, masks, scores_given, m, ids.symmetric);
    };
    using Kind = ForwardSplit::Kind;
    const ForwardSplit& split = ids.split;
    switch (split.kind) {
        case Kind::kWhole:
            run(whole_problem(mixed));
            return;
        case Kind::kOneThread:
            onednn::run_in_parts(1, [&](std::int64_t) { run(whole_problem(mixed)); });
            return;
        case Kind::kGroupBlocks:
            onednn::run_in_parts(split.parts, [&](std::int64_t part) {
                const std::int64_t g0 = nng::split_point(p.groups(), split.parts, part);
                run(group_block(mixed, g0, nng::split_point(p.groups(), split.parts, part + 1) - g0));
            });
            return;
        case Kind::kQueryBlocks: {
            const std::int64_t blocks = split.parts / p.groups();
            onednn::run_in_parts(split.parts, [&](std::int64_t item) {
                const std::int64_t g = item / blocks, i0 = (item % blocks) * split.per_part;
                if (i0 < p.tq) run(query_block(mixed, g, i0, std::min(split.per_part, p.tq - i0)));
            });
            return;
        }
    }
}

float* DenseCore::backward_to_scores(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                                     const onednn::View& dv) const {
    if (scores_ != Scores::kGiven)
        throw std::logic_error("attention dense core: backward_to_scores needs given scores");
    const Ids ids = this->ids(p, buffers);
    const ProbabilityState state = ids.saved(p, buffers);
    const BackwardScratch scratch = ids.backward_layout.at(buffers.get(ids.backward));
    const MatmulOperands m = backward_operands(p, state, dout, scratch, false);
    scores_backward(p, state, m, dv, scratch.dscores, scratch);
    return scratch.dscores;
}

void DenseCore::backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                         const CoreGradients& grads) const {
    if (scores_ != Scores::kDot)
        throw std::logic_error("attention dense core: given scores go through backward_to_scores");
    if (grads.d_alpha_product) *grads.d_alpha_product = 0.0;
    if (!dout.present()) {
        zero_view(grads.dv);
        zero_view(grads.dq);
        if (!grads.dk_accumulates) zero_view(grads.dk);
        return;
    }
    const Ids ids = this->ids(p, buffers);
    const ProbabilityState state = ids.saved(p, buffers);
    const std::int64_t chunks = ids.backward_chunks.parts;
    // Each chunk's alpha product apart, added in chunk order after: the same sum whichever thread
    // ran which chunk.
    double* chunk_alpha_sums = grads.d_alpha_product ? static_cast<double*>(buffers.get(ids.alpha_sums)) : nullptr;
    const auto backward_chunk_of = [&](std::int64_t c, const BackwardScratch& scratch) {
        const std::int64_t b0 = nng::split_point(p.batch, chunks, c);
        BatchSlice s = batch_slice(p, state, dout, grads, b0, nng::split_point(p.batch, chunks, c + 1) - b0);
        s.grads.d_alpha_product = chunk_alpha_sums ? chunk_alpha_sums + c : nullptr;
        if (chunk_alpha_sums) chunk_alpha_sums[c] = 0.0;
        const MatmulOperands m = backward_operands(s.p, s.state, s.dout, scratch, true);
        scores_backward(s.p, s.state, m, s.grads.dv, scratch.dscores, scratch);
        dot_backward(s.p, s.state, scratch.row_terms, scratch.dscores, s.grads, scratch.alpha, m);
    };
    const int threads = omp_get_max_threads();
    if (threads == 1 || chunks < threads) {  // too few chunks to share: threaded primitives on each
        const BackwardScratch scratch = ids.backward_layout.at(buffers.thread(ids.backward, 0));
        for (std::int64_t c = 0; c < chunks; ++c) backward_chunk_of(c, scratch);
    } else {
        // Chunks one a thread at a time with single-threaded primitives and the thread's own
        // scratch. Each thread's run of chunks goes last first: forward wrote their probabilities
        // in order, so where the batch's do not all fit in cache, the last are the likeliest still
        // there.
        onednn::run_in_parts(
            chunks, [&](std::int64_t c) { backward_chunk_of(c, ids.backward_layout.at(buffers.thread(ids.backward))); },
            onednn::PartOrder::kLastFirst);
    }
    if (grads.d_alpha_product) {
        for (std::int64_t c = 0; c < chunks; ++c) *grads.d_alpha_product += chunk_alpha_sums[c];
    }
}

}  // namespace nngraph_attention
