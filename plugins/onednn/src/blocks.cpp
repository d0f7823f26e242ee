// The building blocks: matmul (and sgemm for small products in loops), softmax, eltwise, sum over rows.
// and options that define its primitive, gets the primitive from the cache and runs it.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "internal.hpp"
#include "nngraph/bfloat16.hpp"
#include "nngraph/vector_math.hpp"

namespace nng::onednn {
namespace {

using dnnl::algorithm;

constexpr Tag kMatmul{"onednn.matmul"};
constexpr Tag kMatmulPacked{"onednn.matmul_packed"};
constexpr Tag kPackedLayout{"onednn.matmul_packed_layout"};
constexpr Tag kSoftmaxForward{"onednn.softmax_forward"};
constexpr Tag kSoftmaxBackward{"onednn.softmax_backward"};
constexpr Tag kEltwiseForward{"onednn.eltwise_forward"};
constexpr Tag kEltwiseBackward{"onednn.eltwise_backward"};

// softmax_forward and softmax_backward: rows of at least kShortSoftmaxRow floats run on the row
// kernels, kSoftmaxRowsPerTask rows a task so that a task costs little beside them, on the calling
// thread alone (no OpenMP region) up to kSerialSoftmaxFloats.
constexpr std::int64_t kShortSoftmaxRow = 16, kSoftmaxRowsPerTask = 16, kSerialSoftmaxFloats = 32768;

bool same_dims(const View& a, const View& b) {
    return a.rank == b.rank && std::equal(a.dims.begin(), a.dims.begin() + a.rank, b.dims.begin());
}
bool same_layout(const View& a, const View& b) {
    return same_dims(a, b) && a.type == b.type &&
           std::equal(a.strides.begin(), a.strides.begin() + a.rank, b.strides.begin());
}

void require_present(std::string_view op, std::initializer_list<detail::Named> views) {
    for (const detail::Named& named : views) {
        if (!named.view->present()) detail::fail(op, views, std::string(named.name) + " is absent");
    }
}

// A forward's (src, dst): present, in one layout (oneDNN describes both with one descriptor).
void check_forward(std::string_view op, std::initializer_list<detail::Named> views) {
    require_present(op, views);
    if (!same_layout(*views.begin()[0].view, *views.begin()[1].view))
        detail::fail(op, views, "src and dst need the same layout");
}

// A backward's (data, diff_dst, diff_src): present, data with diff_dst's dims, and the two diffs
// in one layout.
void check_backward(std::string_view op, std::initializer_list<detail::Named> views) {
    require_present(op, views);
    const View &data = *views.begin()[0].view, &diff_dst = *views.begin()[1].view, &diff_src = *views.begin()[2].view;
    if (!same_dims(data, diff_dst) || !same_layout(diff_dst, diff_src)) {
        detail::fail(op, views,
                     std::string(views.begin()[0].name) + " needs diff_dst's dims, diff_src diff_dst's layout");
    }
}

// The matrix of the last two axes of v, a view whose other axes are all 1.
View last_two_axes(const View& v) {
    View out;
    out.data = v.data;
    out.type = v.type;
    out.rank = 2;
    for (int i = 0; i < 2; ++i) {
        out.dims[i] = v.dims[v.rank - 2 + i];
        out.strides[i] = v.strides[v.rank - 2 + i];
    }
    return out;
}

// `v` with leading axes of size 1 up to `rank`, as oneDNN's matmul wants equal ranks. Their stride
// is the extent of the rest, which keeps a contiguous view recognisably plain.
View with_rank(const View& v, int rank) {
    if (v.rank >= rank) return v;
    View out;
    out.data = v.data;
    out.type = v.type;
    out.rank = rank;
    const int pad = rank - v.rank;
    std::int64_t extent = 1;
    for (int i = 0; i < v.rank; ++i) extent = std::max(extent, v.dims[i] * v.strides[i]);
    for (int i = 0; i < pad; ++i) {
        out.dims[i] = 1;
        out.strides[i] = extent;
    }
    std::copy_n(v.dims.begin(), v.rank, out.dims.begin() + pad);
    std::copy_n(v.strides.begin(), v.rank, out.strides.begin() + pad);
    return out;
}

// The oneDNN algorithm that differentiates `a` from its output; undef when there is none.
algorithm from_dst_variant(algorithm a) {
    switch (a) {
        case algorithm::eltwise_relu:
            return algorithm::eltwise_relu_use_dst_for_bwd;
        case algorithm::eltwise_tanh:
            return algorithm::eltwise_tanh_use_dst_for_bwd;
        case algorithm::eltwise_elu:
            return algorithm::eltwise_elu_use_dst_for_bwd;
        case algorithm::eltwise_sqrt:
            return algorithm::eltwise_sqrt_use_dst_for_bwd;
        case algorithm::eltwise_logistic:
            return algorithm::eltwise_logistic_use_dst_for_bwd;
        case algorithm::eltwise_exp:
            return algorithm::eltwise_exp_use_dst_for_bwd;
        case algorithm::eltwise_clip_v2:
            return algorithm::eltwise_clip_v2_use_dst_for_bwd;
        case algorithm::eltwise_linear:
            return algorithm::eltwise_linear;  // a constant derivative
        default:
            return algorithm::undef;
    }
}

// The identity as an eltwise oneDNN knows: linear with slope 1.
Eltwise resolved(const Eltwise& f) { return f.identity() ? Eltwise{algorithm::eltwise_linear, 1.0f, 0.0f} : f; }

dnnl::eltwise_forward::primitive_desc eltwise_forward_pd(const Eltwise& f, const dnnl::memory::desc& data) {
    return {{dnnl::prop_kind::forward_training, f.algorithm, data, f.alpha, f.beta}, attributes(), engine()};
}

// eltwise_backward and eltwise_backward_from_dst: `data` is the forward's src or dst, passed as
// `data_arg`, matching what f.algorithm differentiates from.
void eltwise_backward_impl(const Eltwise& f, const View& data, int data_arg, const View& diff_dst,
                           const View& diff_src) {
    const char* op = "eltwise_backward";
    const std::initializer_list<detail::Named> views = {
        {"data", &data}, {"diff_dst", &diff_dst}, {"diff_src", &diff_src}};
    check_backward(op, views);
    detail::with_context(op, views, [&] {
        Key key(kEltwiseBackward);
        key.add(f.algorithm, f.alpha, f.beta, data, diff_dst);
        const Cached& c = cached<dnnl::eltwise_backward>(key, [&] {
            const dnnl::memory::desc data_md = desc_of(data);
            return dnnl::eltwise_backward::primitive_desc({f.algorithm, desc_of(diff_dst), data_md, f.alpha, f.beta},
                                                          attributes(), engine(), eltwise_forward_pd(f, data_md));
        });
        execute(c, {{data_arg, &data}, {DNNL_ARG_DIFF_DST, &diff_dst}, {DNNL_ARG_DIFF_SRC, &diff_src}});
    });
}

}  // namespace

// ---- Matmul ------------------------------------------------------------------------------------

namespace {

// Below this many floats C may still sit in cache when oneDNN's gemm adds the bias to it.
constexpr std::int64_t kBiasPassFloats = std::int64_t{1} << 20;

// A product with this many columns of C or more (a vocabulary-wide output layer) runs on oneDNN's
// sgemm on AVX-512 too: brgemm reads B unpacked, a row of B a page apart, where sgemm packs it.
constexpr std::int64_t kWideProductColumns = 8192;

bool routes_through_sgemm(std::int64_t cols) { return !cpu::has_avx512() || cols >= kWideProductColumns; }

// A matrix's layout for sgemm, from v's last two axes: 'N', element (i, j) at i·ld + j, or 'T', at
// j·ld + i, with ld at least the contiguous extent as sgemm requires; transpose 0 where neither
// fits. An axis of one element takes any stride.
struct SgemmLayout {
    char transpose = 0;
    std::int64_t ld = 0;
};
SgemmLayout sgemm_layout(const View& v) {
    if (v.type != DataType::f32 || v.rank < 2) return {};
    const int row = v.rank - 2, col = v.rank - 1;
    const std::int64_t rows = v.dims[row], cols = v.dims[col];
    if (cols == 1 || v.strides[col] == 1) {
        const std::int64_t ld = rows == 1 ? std::max<std::int64_t>(cols, 1) : v.strides[row];
        if (ld >= std::max<std::int64_t>(cols, 1)) return {'N', ld};
    }
    if (rows == 1 || v.strides[row] == 1) {
        const std::int64_t ld = cols == 1 ? std::max<std::int64_t>(rows, 1) : v.strides[col];
        if (ld >= std::max<std::int64_t>(rows, 1)) return {'T', ld};
    }
    return {};
}

// C = alpha A·B + beta C of 2-D f32 views through sgemm, where the product is wide enough to gain
// and the layouts suit it; false, doing nothing, otherwise.
bool wide_product_through_sgemm(const View& a, const View& b, const View& c, const MatmulOptions& options) {
    // Below AVX-512 every product is already oneDNN's gemm primitive, which the key caches.
    if (c.rank != 2 || !cpu::has_avx512() || c.dims[1] < kWideProductColumns) return false;
    if (options.bias.present() || !options.post.identity()) return false;
    const SgemmLayout la = sgemm_layout(a), lb = sgemm_layout(b), lc = sgemm_layout(c);
    if (!la.transpose || !lb.transpose || lc.transpose != 'N') return false;
    sgemm(la.transpose, lb.transpose, c.dims[0], c.dims[1], a.dims[1], options.alpha, static_cast<const float*>(a.data),
          la.ld, static_cast<const float*>(b.data), lb.ld, options.beta, static_cast<float*>(c.data), lc.ld);
    return true;
}

// C = [A 1]·[B; bias] through the rooms options.bias_rows gives, then the rest of options.
void matmul_with_bias_row(const View& a, const View& b, const View& c, const MatmulOptions& options) {
    const char* op = "matmul";
    const View& bias = options.bias;
    const std::initializer_list<detail::Named> views = {{"A", &a}, {"B", &b}, {"C", &c}, {"bias", &bias}};
    require_present(op, views);
    const bool plain = a.rank == 2 && b.rank == 2 && c.rank == 2 && a.type == DataType::f32 &&
                       b.type == DataType::f32 && bias.type == DataType::f32;
    if (!plain || a.dims[1] != b.dims[0] || bias.numel() != b.dims[1]) {
        detail::fail(op, views, "a bias carried as a row of B needs f32 A (M, K), B (K, N) and a bias of N values");
    }
    const std::int64_t rows = a.dims[0], inner = a.dims[1], cols = b.dims[1];
    const std::int64_t bias_stride = bias.strides[bias.rank - 1];
    const auto* a_in = static_cast<const float*>(a.data);
    const auto* b_in = static_cast<const float*>(b.data);
    const auto* bias_in = static_cast<const float*>(bias.data);
    float* const a_out = options.bias_rows.a;
    float* const b_out = options.bias_rows.b;
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (std::int64_t r = 0; r < rows; ++r) {
            float* row = a_out + r * (inner + 1);
            for (std::int64_t k = 0; k < inner; ++k) row[k] = a_in[r * a.strides[0] + k * a.strides[1]];
            row[inner] = 1.0f;
        }
#pragma omp for schedule(static) nowait
        for (std::int64_t k = 0; k <= inner; ++k) {
            const float* from = k < inner ? b_in + k * b.strides[0] : bias_in;
            const std::int64_t step = k < inner ? b.strides[1] : bias_stride;
            float* row = b_out + k * cols;
            if (step == 1) {
                std::memcpy(row, from, static_cast<std::size_t>(cols) * sizeof(float));
            } else {
                for (std::int64_t j = 0; j < cols; ++j) row[j] = from[j * step];
            }
        }
    }
    MatmulOptions rest = options;
    rest.bias = {};
    rest.bias_rows = {};
    matmul(view(a_out, DataType::f32, {rows, inner + 1}), view(b_out, DataType::f32, {inner + 1, cols}), c, rest);
}

// The cached matmul primitive for C = post(alpha (A·B + bias) + beta C) of these layouts; `key`
// holds what tells the operands' layouts apart, the options are added here.
const Cached& matmul_primitive(Key key, const dnnl::memory::desc& a, const dnnl::memory::desc& b,
                               const dnnl::memory::desc& c, const View& bias, const MatmulOptions& options) {
    key.add(options.alpha, options.beta, options.post.algorithm, options.post.alpha, options.post.beta);
    return cached<dnnl::matmul>(key, [&] {
        dnnl::primitive_attr attr = attributes();
        if (options.alpha != 1.0f) attr.set_output_scales(0, {options.alpha});
        dnnl::post_ops post;
        if (options.beta != 0.0f) post.append_sum(options.beta);
        if (!options.post.identity()) {
            post.append_eltwise(1.0f, options.post.algorithm, options.post.alpha, options.post.beta);
        }
        attr.set_post_ops(post);
        const auto desc = bias.present() ? dnnl::matmul::desc(a, b, desc_of(bias), c) : dnnl::matmul::desc(a, b, c);
        return dnnl::matmul::primitive_desc(desc, attr, engine());
    });
}

// Runs it, the weights given as a view or in a layout of oneDNN's own.
void run_matmul(const Cached& mm, const View& a, const ViewArg& weights, const View& c, const View& bias) {
    if (bias.present())
        execute(mm, {{DNNL_ARG_SRC, &a}, weights, {DNNL_ARG_DST, &c}, {DNNL_ARG_BIAS, &bias}});
    else
        execute(mm, {{DNNL_ARG_SRC, &a}, weights, {DNNL_ARG_DST, &c}});
}

}  // namespace

std::int64_t transposed_left_values(DataType type, std::int64_t rows, std::int64_t inner, std::int64_t cols) {
    if (type != DataType::bf16 || cols < kWideProductColumns || rows <= 0 || inner <= 0) return 0;
    std::int64_t values = 0;
    return nng::multiply_overflows(rows, inner, values) ? 0 : values;
}

BiasRowFloats bias_row_floats(std::int64_t rows, std::int64_t inner, std::int64_t cols) {
    // Where the product runs on brgemm (AVX-512, all but the widest), the bias is added to each
    // block of C in cache.
    if (!routes_through_sgemm(cols) || rows <= 0 || inner <= 0 || cols <= 0) return {};
    // Sizes that overflow (a hostile model file) leave the bias to oneDNN; the shapes' own checks
    // refuse them.
    BiasRowFloats copies;
    std::int64_t c_floats = 0;
    if (inner == std::numeric_limits<std::int64_t>::max() || nng::multiply_overflows(rows, inner + 1, copies.a) ||
        nng::multiply_overflows(inner + 1, cols, copies.b) || nng::multiply_overflows(rows, cols, c_floats))
        return {};
    // The copies together a quarter of C at most, compared without forming their sum.
    const std::int64_t quarter = c_floats / 4;
    if (c_floats < kBiasPassFloats || copies.a > quarter || copies.b > quarter - copies.a) return {};
    return copies;
}

void matmul(const View& a, const View& b, const View& c, const MatmulOptions& options) {
    if (options.bias.present() && options.bias_rows.a && options.bias_rows.b)
        return matmul_with_bias_row(a, b, c, options);
    if (options.plain_left && a.rank == 2 && c.rank == 2 && a.strides[0] == 1 && a.dims[0] > 1 &&
        transposed_left_values(a.type, a.dims[0], a.dims[1], c.dims[1]) > 0) {
        const View plain = view(options.plain_left, a.type, {a.dims[0], a.dims[1]});
        reorder(a, plain);
        MatmulOptions rest = options;
        rest.plain_left = nullptr;
        return matmul(plain, b, c, rest);
    }
    const char* op = "matmul";
    const View& bias_in = options.bias;
    const std::initializer_list<detail::Named> views = {{"A", &a}, {"B", &b}, {"C", &c}, {"bias", &bias_in}};
    require_present(op, {{"A", &a}, {"B", &b}, {"C", &c}});
    if (a.rank < 2 || b.rank < 2 || c.rank < 2) detail::fail(op, views, "A, B and C need two axes or more");

    const int rank = std::max({a.rank, b.rank, c.rank});
    View A = with_rank(a, rank), B = with_rank(b, rank), C = with_rank(c, rank);
    View bias = bias_in.present() ? with_rank(bias_in, rank) : View{};
    const int m = rank - 2, n = rank - 1;  // the row and column axes
    if (A.dims[n] != B.dims[m] || C.dims[m] != A.dims[m] || C.dims[n] != B.dims[n]) {
        detail::fail(op, views, "C (..., M, N) = A (..., M, K) B (..., K, N) does not fit");
    }
    for (int i = 0; i < m; ++i) {
        const bool broadcasts = (A.dims[i] == 1 || A.dims[i] == B.dims[i] || B.dims[i] == 1);
        if (!broadcasts || C.dims[i] != std::max(A.dims[i], B.dims[i])) {
            detail::fail(op, views,
                         "batch axis " + std::to_string(i) + ": C's must be A's or B's, the other 1 or equal");
        }
    }
    if (bias.present()) {
        for (int i = 0; i < rank; ++i) {
            if (bias.dims[i] != 1 && bias.dims[i] != C.dims[i]) detail::fail(op, views, "bias does not broadcast to C");
        }
    }

    // oneDNN 2.6 runs a batched product whose batch is one on its gemm driver, which allocates
    // on every call outside our scratchpad; as a matrix product it runs on brgemm, within it.
    if (rank > 2 && std::all_of(C.dims.begin(), C.dims.begin() + m, [](std::int64_t d) { return d == 1; })) {
        A = last_two_axes(A);
        B = last_two_axes(B);
        C = last_two_axes(C);
        if (bias.present()) bias = last_two_axes(bias);
    }
    detail::with_context(op, views, [&] {
        if (wide_product_through_sgemm(A, B, C, options)) return;
        Key key(kMatmul);
        key.add(A, B, C, bias.present());
        if (bias.present()) key.add(bias);
        const Cached& mm = matmul_primitive(key, desc_of(A), desc_of(B), desc_of(C), bias, options);
        run_matmul(mm, A, {DNNL_ARG_WEIGHTS, &B}, C, bias);
    });
}

void linear_backward(const View& x, const View& w, const View& dy, const LinearGradients& grads,
                     const Bfloat16Rooms& rooms) {
    View dy_product = dy, x_product = x, w_product = w;
    if (rooms.dy) {
        dy_product = grads.db.present() ? sum_rows(dy, grads.db, 0.0f, rooms.dy) : to_bfloat16(dy, rooms.dy);
        const auto rounded = [](const View& v, void* room, const char* name) {
            if (v.type == DataType::bf16) return v;
            if (!room) detail::fail("linear_backward", {{name, &v}}, "an f32 operand needs a room to round it to bf16");
            return to_bfloat16(v, room);
        };
        if (grads.dw.present()) x_product = rounded(x, rooms.x, "x");
        if (grads.dx.present()) w_product = rounded(w, rooms.w, "w");
    } else if (grads.db.present()) {
        sum_rows(dy, grads.db);
    }
    if (grads.dw.present()) matmul(x_product.transposed(), dy_product, grads.dw, {.plain_left = rooms.x_transposed});
    if (grads.dx.present()) matmul(dy_product, w_product.transposed(), grads.dx, {.beta = grads.dx_beta});
}

namespace {

// The layout oneDNN's matmul picks for B (K, N) under C (rows, N) = A (rows, K)·B.
dnnl::memory::desc packed_right_desc(DataType type, std::int64_t rows, std::int64_t K, std::int64_t N) {
    const View a{nullptr, type, 2, {rows, K}, {K, 1}};
    const View c{nullptr, DataType::f32, 2, {rows, N}, {N, 1}};
    const Cached& mm = cached<dnnl::matmul>(Key(kPackedLayout).add(a, c), [&] {
        const dnnl::memory::desc any({K, N}, type, dnnl::memory::format_tag::any);
        return dnnl::matmul::primitive_desc(dnnl::matmul::desc(desc_of(a), any, desc_of(c)), attributes(), engine());
    });
    return mm.pd.weights_desc();
}

}  // namespace

std::size_t packed_right_bytes(DataType type, std::int64_t rows, std::int64_t K, std::int64_t N) {
    return packed_right_desc(type, rows, K, N).get_size();
}

PackedRight pack_right(const View& b, DataType type, std::int64_t rows, void* room) {
    if (b.rank != 2) detail::fail("pack_right", {{"B", &b}}, "B must be (K, N)");
    PackedRight packed{room, packed_right_desc(type, rows, b.dims[0], b.dims[1])};
    reorder(memory_of(b), memory_of(packed.desc, room));
    return packed;
}

void matmul(const View& a, const PackedRight& b, const View& c, const MatmulOptions& options) {
    const char* op = "matmul (packed B)";
    const View& bias = options.bias;
    const std::initializer_list<detail::Named> views = {{"A", &a}, {"C", &c}, {"bias", &bias}};
    require_present(op, {{"A", &a}, {"C", &c}});
    const dnnl::memory::dims b_dims = b.desc.dims();
    if (a.rank != 2 || c.rank != 2 || b_dims.size() != 2 || a.dims[1] != b_dims[0] || c.dims[0] != a.dims[0] ||
        c.dims[1] != b_dims[1] || a.type != b.desc.data_type()) {
        detail::fail(op, views, "C (M, N) = A (M, K) B (K, N) with A of B's type does not fit");
    }
    detail::with_context(op, views, [&] {
        Key key(kMatmulPacked);
        key.add(a, c, bias.present(), b.desc);
        if (bias.present()) key.add(bias);
        const Cached& mm = matmul_primitive(key, desc_of(a), b.desc, desc_of(c), bias, options);
        const View none{};
        run_matmul(mm, a, {DNNL_ARG_WEIGHTS, &none, &b.desc, b.data}, c, bias);
    });
}

void sgemm(char transpose_a, char transpose_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
           const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
    const dnnl::status status = dnnl::sgemm(transpose_a, transpose_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (status != dnnl::status::success) {
        throw std::runtime_error("oneDNN's sgemm failed on (" + std::to_string(M) + ", " + std::to_string(K) + ") x (" +
                                 std::to_string(K) + ", " + std::to_string(N) + ") with status " +
                                 std::to_string(static_cast<int>(status)));
    }
}

bool sgemm_each_group(const View& a, const View& b, const View& c, float alpha, float beta) {
    const char* op = "sgemm_each_group";
    const std::initializer_list<detail::Named> views = {{"A", &a}, {"B", &b}, {"C", &c}};
    require_present(op, views);
    if (a.rank != 3 || b.rank != 3 || c.rank != 3) return false;
    const SgemmLayout la = sgemm_layout(a), lb = sgemm_layout(b), lc = sgemm_layout(c);
    if (!la.transpose || !lb.transpose || lc.transpose != 'N') return false;
    if (a.dims[0] != c.dims[0] || b.dims[0] != c.dims[0] || a.dims[2] != b.dims[1] || c.dims[1] != a.dims[1] ||
        c.dims[2] != b.dims[2]) {
        detail::fail(op, views, "C (G, M, N) = A (G, M, K) B (G, K, N) does not fit");
    }
    const std::int64_t M = c.dims[1], N = c.dims[2], K = a.dims[2];
    detail::with_context(op, views, [&] {
        for (std::int64_t g = 0; g < c.dims[0]; ++g) {
            sgemm(la.transpose, lb.transpose, M, N, K, alpha, static_cast<const float*>(a.data) + g * a.strides[0],
                  la.ld, static_cast<const float*>(b.data) + g * b.strides[0], lb.ld, beta,
                  static_cast<float*>(c.data) + g * c.strides[0], lc.ld);
        }
    });
    return true;
}

// ---- Softmax -----------------------------------------------------------------------------------

namespace {

// The row kernels at one vector width: kBytes / 4 lanes, the row's tail in a vector of its own.
template <int kBytes>
struct SoftmaxRows {
    using V = typename simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = simd::Vectors<kBytes>::kLanes;

    static inline __attribute__((always_inline)) void run(const float* src, std::int64_t src_stride, float* dst,
                                                          std::int64_t dst_stride, std::int64_t rows, std::int64_t n,
                                                          float* inverse_sums) {
        const std::int64_t whole = n / kLanes * kLanes, tail = n - whole;
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* in = src + r * src_stride;
            float* out = dst + r * dst_stride;
            // The tail padded with -inf: it adds nothing to the max or the sum.
            V last = simd::load_first<V>(in + whole, tail, -__builtin_inff());
            V highest = last;
            for (std::int64_t c = 0; c < whole; c += kLanes) {
                const V v = simd::load<V>(in + c);
                highest = v > highest ? v : highest;
            }
            float shift = highest[0];
            for (int l = 1; l < kLanes; ++l) shift = std::max(shift, highest[l]);
            last = simd::vexp(last - shift);
            const float inverse = 1.0f / simd::lane_sum(simd::exponentiate<V>(in, out, whole, shift) + last);
            if (inverse_sums) {
                inverse_sums[r] = inverse;
            } else {
                for (std::int64_t c = 0; c < whole; c += kLanes) simd::store(out + c, simd::load<V>(out + c) * inverse);
                last *= inverse;
            }
            simd::store_first(out + whole, last, tail);
        }
    }
};

template <int kBytes>
struct SoftmaxBackwardRows {
    using V = typename simd::Vectors<kBytes>::Float;
    static constexpr std::int64_t kLanes = simd::Vectors<kBytes>::kLanes;

    // With row_terms, row r's term is row_terms[r] instead of its sum of dst * diff_dst.
    static inline __attribute__((always_inline)) void run(const float* dst, const float* diff_dst, float* diff_src,
                                                          std::int64_t rows, std::int64_t n, const float* row_terms) {
        const std::int64_t whole = n / kLanes * kLanes, tail = n - whole;
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* y = dst + r * n;
            const float* dy = diff_dst + r * n;
            float* dx = diff_src + r * n;
            // The tail padded with zeros: it adds nothing to the sum.
            const V y_tail = simd::load_first<V>(y + whole, tail), dy_tail = simd::load_first<V>(dy + whole, tail);
            const float term = row_terms ? row_terms[r] : row_dot(y, dy, whole, y_tail * dy_tail);
            for (std::int64_t c = 0; c < whole; c += kLanes)
                simd::store(dx + c, simd::load<V>(y + c) * (simd::load<V>(dy + c) - term));
            simd::store_first(dx + whole, y_tail * (dy_tail - term), tail);
        }
    }

    // The sum of y * dy over the first `whole` floats, plus the lanes of `tail_products`.
    static inline __attribute__((always_inline)) float row_dot(const float* y, const float* dy, std::int64_t whole,
                                                               V tail_products) {
        // Two sums, so that consecutive multiply-adds do not wait for each other.
        V sums = tail_products, odd_sums = V{};
        std::int64_t pair = 0;
        for (; pair + 2 * kLanes <= whole; pair += 2 * kLanes) {
            sums += simd::load<V>(y + pair) * simd::load<V>(dy + pair);
            odd_sums += simd::load<V>(y + pair + kLanes) * simd::load<V>(dy + pair + kLanes);
        }
        if (pair < whole) sums += simd::load<V>(y + pair) * simd::load<V>(dy + pair);
        return simd::lane_sum(sums + odd_sums);
    }
};

}  // namespace

void softmax_rows(const float* src, std::int64_t src_stride, float* dst, std::int64_t dst_stride, std::int64_t rows,
                  std::int64_t n, float* inverse_sums) {
    simd::run_widest<SoftmaxRows>(src, src_stride, dst, dst_stride, rows, n, inverse_sums);
}

void softmax_backward_rows(const float* dst, const float* diff_dst, float* diff_src, std::int64_t rows, std::int64_t n,
                           const float* row_terms) {
    simd::run_widest<SoftmaxBackwardRows>(dst, diff_dst, diff_src, rows, n, row_terms);
}

namespace {

bool rows_end_to_end(std::initializer_list<const View*> views) {
    for (const View* v : views) {
        if (v->type != DataType::f32 || !v->contiguous()) return false;
    }
    return true;
}
// Row kernels take f32 rows of kShortSoftmaxRow or more laid end to end; oneDNN the others.
bool rows_for_kernel(std::initializer_list<const View*> views) {
    return rows_end_to_end(views) && views.begin()[0]->dims[views.begin()[0]->rank - 1] >= kShortSoftmaxRow;
}

// run(first, count) for the rows in tasks of kSoftmaxRowsPerTask rows, over the threads when
// there are enough floats.
template <typename RunRows>
void over_row_tasks(std::int64_t rows, std::int64_t n, const RunRows& run) {
    const std::int64_t tasks = nng::ceil_div(rows, kSoftmaxRowsPerTask);
    const int threads = rows * n > kSerialSoftmaxFloats ? omp_get_max_threads() : 1;
    nng::parallel_for(tasks, threads, [&](std::int64_t t) {
        const std::int64_t first = t * kSoftmaxRowsPerTask;
        run(first, std::min(kSoftmaxRowsPerTask, rows - first));
    });
}

}  // namespace

bool softmax_defers_division(const View& src) { return rows_for_kernel({&src}); }

void softmax_forward(const View& src, const View& dst, float* inverse_sums) {
    const char* op = "softmax_forward";
    const std::initializer_list<detail::Named> views = {{"src", &src}, {"dst", &dst}};
    check_forward(op, views);
    const std::int64_t n = src.dims[src.rank - 1];
    if (rows_for_kernel({&src})) {
        const auto* in = static_cast<const float*>(src.data);
        auto* out = static_cast<float*>(dst.data);
        over_row_tasks(src.numel() / n, n, [&](std::int64_t first, std::int64_t count) {
            softmax_rows(in + first * n, n, out + first * n, n, count, n,
                         inverse_sums ? inverse_sums + first : nullptr);
        });
        return;
    }
    if (inverse_sums) detail::fail(op, views, "the division is deferred only for rows softmax_rows takes");
    detail::with_context(op, views, [&] {
        const Cached& c = cached<dnnl::softmax_forward>(Key(kSoftmaxForward).add(src), [&] {
            return dnnl::softmax_forward::primitive_desc(
                {dnnl::prop_kind::forward_training, desc_of(src), src.rank - 1}, attributes(), engine());
        });
        execute(c, {{DNNL_ARG_SRC, &src}, {DNNL_ARG_DST, &dst}});
    });
}

void softmax_backward(const View& dst, const View& diff_dst, const View& diff_src, const float* row_terms) {
    const char* op = "softmax_backward";
    const std::initializer_list<detail::Named> views = {
        {"dst", &dst}, {"diff_dst", &diff_dst}, {"diff_src", &diff_src}};
    check_backward(op, views);
    const std::int64_t n = dst.dims[dst.rank - 1];
    const bool laid_end_to_end = rows_end_to_end({&dst, &diff_dst});
    if (row_terms && !laid_end_to_end)
        detail::fail(op, views, "given row terms need f32 rows laid end to end (contiguous)");
    if (row_terms || (laid_end_to_end && n >= kShortSoftmaxRow)) {
        const auto* y = static_cast<const float*>(dst.data);
        const auto* dy = static_cast<const float*>(diff_dst.data);
        auto* dx = static_cast<float*>(diff_src.data);
        over_row_tasks(dst.numel() / n, n, [&](std::int64_t first, std::int64_t count) {
            softmax_backward_rows(y + first * n, dy + first * n, dx + first * n, count, n,
                                  row_terms ? row_terms + first : nullptr);
        });
        return;
    }
    detail::with_context(op, views, [&] {
        const Cached& c = cached<dnnl::softmax_backward>(Key(kSoftmaxBackward).add(dst, diff_dst), [&] {
            const dnnl::memory::desc data = desc_of(dst);
            const int axis = dst.rank - 1;
            const dnnl::softmax_forward::primitive_desc hint({dnnl::prop_kind::forward_training, data, axis},
                                                             attributes(), engine());
            return dnnl::softmax_backward::primitive_desc({desc_of(diff_dst), data, axis}, attributes(), engine(),
                                                          hint);
        });
        execute(c, {{DNNL_ARG_DST, &dst}, {DNNL_ARG_DIFF_DST, &diff_dst}, {DNNL_ARG_DIFF_SRC, &diff_src}});
    });
}

// ---- Eltwise -----------------------------------------------------------------------------------

Eltwise activation(std::string_view name) {
    if (name == "linear") return {};
    if (name == "relu") return {algorithm::eltwise_relu};
    if (name == "sigmoid") return {algorithm::eltwise_logistic};
    if (name == "tanh") return {algorithm::eltwise_tanh};
    if (name == "gelu") return {algorithm::eltwise_gelu_erf};  // Keras's gelu is exact (approximate=False)
    if (name == "elu") return {algorithm::eltwise_elu, 1.0f};
    if (name == "softplus") return {algorithm::eltwise_soft_relu};
    if (name == "swish" || name == "silu") return {algorithm::eltwise_swish, 1.0f};
    if (name == "exponential") return {algorithm::eltwise_exp};
    if (name == "softmax") throw OpError("softmax is not elementwise: apply it over the last axis", "activation");
    throw OpError("unknown activation '" + std::string(name) +
                      "' (known: linear, relu, sigmoid, tanh, gelu, elu, softplus, swish, exponential, softmax)",
                  "activation");
}

bool has_backward_from_dst(const Eltwise& f) {
    const Eltwise g = resolved(f);
    if ((g.algorithm == algorithm::eltwise_relu || g.algorithm == algorithm::eltwise_elu) && g.alpha < 0.0f)
        return false;
    return from_dst_variant(g.algorithm) != algorithm::undef;
}

void eltwise_forward(const Eltwise& f, const View& src, const View& dst) {
    const char* op = "eltwise_forward";
    const std::initializer_list<detail::Named> views = {{"src", &src}, {"dst", &dst}};
    check_forward(op, views);
    if (f.identity() && src.data == dst.data) return;
    const Eltwise g = resolved(f);
    detail::with_context(op, views, [&] {
        Key key(kEltwiseForward);
        key.add(g.algorithm, g.alpha, g.beta, src);
        const Cached& c = cached<dnnl::eltwise_forward>(key, [&] { return eltwise_forward_pd(g, desc_of(src)); });
        execute(c, {{DNNL_ARG_SRC, &src}, {DNNL_ARG_DST, &dst}});
    });
}

void eltwise_backward(const Eltwise& f, const View& src, const View& diff_dst, const View& diff_src) {
    eltwise_backward_impl(resolved(f), src, DNNL_ARG_SRC, diff_dst, diff_src);
}

void eltwise_backward_from_dst(const Eltwise& f, const View& dst, const View& diff_dst, const View& diff_src) {
    if (!has_backward_from_dst(f)) {
        throw std::runtime_error("eltwise_backward_from_dst: oneDNN cannot differentiate algorithm " +
                                 std::to_string(static_cast<int>(f.algorithm)) + " (alpha " + std::to_string(f.alpha) +
                                 ") from its output; keep the input and use eltwise_backward");
    }
    Eltwise g = resolved(f);
    // Linear's derivative is a constant, so its output may stand in for its input.
    const int data_arg = g.algorithm == algorithm::eltwise_linear ? DNNL_ARG_SRC : DNNL_ARG_DST;
    g.algorithm = from_dst_variant(g.algorithm);
    eltwise_backward_impl(g, dst, data_arg, diff_dst, diff_src);
}

// ---- Sum over rows -----------------------------------------------------------------------------

namespace {
// The most columns a thread sums at once: their double sums (16 KB) stay in L1.
constexpr std::int64_t kSumColumns = 2048;

// sum[c] += x(r, c) over `rows` rows of `width` contiguous columns.
NNG_LOOP_CLONES void add_rows(const float* x, std::int64_t rows, std::int64_t row_stride, std::int64_t width,
                              double* sum) {
    std::int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {  // four rows a pass: a quarter of the loads and stores of `sum`
        const float *x0 = x + r * row_stride, *x1 = x0 + row_stride, *x2 = x1 + row_stride, *x3 = x2 + row_stride;
        for (std::int64_t c = 0; c < width; ++c)
            sum[c] += (double(x0[c]) + double(x1[c])) + (double(x2[c]) + double(x3[c]));
    }
    for (; r < rows; ++r)
        for (std::int64_t c = 0; c < width; ++c) sum[c] += x[r * row_stride + c];
}

// The same, writing each x(r, c) rounded to bf16 at copy[r * copy_stride + c] as it goes.
NNG_LOOP_CLONES void add_rows_rounding(const float* x, std::int64_t rows, std::int64_t row_stride, std::int64_t width,
                                       double* sum, std::uint16_t* copy, std::int64_t copy_stride) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = x + r * row_stride;
        nng::to_bfloat16(row, copy + r * copy_stride, width);  // the row stays in L1 for the sums
#pragma omp simd
        for (std::int64_t c = 0; c < width; ++c) sum[c] += row[c];
    }
}
}  // namespace

// Sums in double: a bias gradient adds up thousands of rows, and float sums taken in different
// orders (one process over every row, or each rank of a sequence-parallel job over its share)
// part by more than 1e-5 of the total. Threads take blocks of columns, so the order is fixed. The
// blocks are as wide as they can be, a whole number of them a thread: a thread then reads each row
// in long runs, where narrow blocks step from page to page down the rows.
View sum_rows(const View& x, const View& out, float beta, void* bfloat16_copy) {
    const char* op = "sum_rows";
    const std::initializer_list<detail::Named> views = {{"x", &x}, {"out", &out}};
    require_present(op, views);
    const std::int64_t n = x.rank == 2 ? x.dims[1] : -1;
    const bool out_fits =
        (out.rank == 1 && out.dims[0] == n) || (out.rank == 2 && out.dims[0] == 1 && out.dims[1] == n);
    if (x.rank != 2 || !out_fits) detail::fail(op, views, "x must be (M, N) and out (N) or (1, N)");
    if (x.type != DataType::f32 || out.type != DataType::f32) detail::fail(op, views, "x and out must be f32");
    const std::int64_t rows = x.dims[0], row_stride = x.strides[0], column_stride = x.strides[1];
    const std::int64_t out_stride = out.strides[out.rank - 1];
    const float* in = static_cast<const float*>(x.data);
    float* sums = static_cast<float*>(out.data);
    const View copy = bfloat16_copy ? view(bfloat16_copy, DataType::bf16, {rows, n}) : View{};
    if (copy.present() && column_stride != 1) to_bfloat16(x, bfloat16_copy);  // rare: a separate pass
    auto* const copy_rows = column_stride == 1 ? static_cast<std::uint16_t*>(bfloat16_copy) : nullptr;
    if (n == 0) return copy;
    const bool parallel = rows * n > 65536;
    const std::int64_t threads = parallel ? omp_get_max_threads() : 1;
    const std::int64_t blocks = nng::round_up(nng::ceil_div(n, kSumColumns), threads);
    const std::int64_t block_width = nng::round_up(nng::ceil_div(n, blocks), 16);
#pragma omp parallel for schedule(static) if (parallel)
    for (std::int64_t c0 = 0; c0 < n; c0 += block_width) {
        const std::int64_t width = std::min(block_width, n - c0);
        double sum[kSumColumns] = {};
        if (copy_rows) {
            add_rows_rounding(in + c0, rows, row_stride, width, sum, copy_rows + c0, n);
        } else if (column_stride == 1) {
            add_rows(in + c0, rows, row_stride, width, sum);
        } else {
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* row = in + r * row_stride + c0 * column_stride;
                for (std::int64_t c = 0; c < width; ++c) sum[c] += row[c * column_stride];
            }
        }
        for (std::int64_t c = 0; c < width; ++c) {
            float& o = sums[(c0 + c) * out_stride];
            o = static_cast<float>(beta == 0.0f ? sum[c] : sum[c] + double(beta) * o);
        }
    }
    return copy;
}

void add_column_sums(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t row_stride, double* sums) {
    for (std::int64_t c0 = 0; c0 < cols; c0 += kSumColumns)
        add_rows(x + c0, rows, row_stride, std::min(kSumColumns, cols - c0), sums + c0);
}

}  // namespace nng::onednn
