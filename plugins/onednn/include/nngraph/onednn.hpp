// nngraph's oneDNN helper: everything an oneDNN-accelerated op plugin shares.
//
// One static library, linked into each plugin that uses oneDNN (never into the engine):
//   - the CPU engine and stream, created lazily once;
//   - View: a typed, non-owning, strided window on a tensor, and its oneDNN memory wrappers;
//   - a primitive cache keyed by small integer Keys, counting every primitive it creates;
//   - a grow-only scratchpad per thread (primitives run in scratchpad_mode::user), so that after
//     warm-up no call allocates a buffer (oneDNN's small per-call bookkeeping objects aside); its
//     size is the onednn.scratchpad_bytes counter, which memory reports add to the planned arena.
//     Every other buffer an op needs it declares in infer, and the host plans it;
//   - the building blocks ops call again and again: matmul, softmax, eltwise, sum over rows,
//     reorder.
//
// Errors are thrown (std::runtime_error) with the shapes involved; the SDK's adapter turns them
// into a status at the plugin boundary. Nothing here aborts or prints.
//
// Threads: calls may come from several threads; the cache is shared (and locked), the stream and
// scratchpad are per thread.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "nngraph/sdk.hpp"

namespace nng::onednn {

using DataType = dnnl::memory::data_type;
inline constexpr int kMaxRank = NNG_MAX_RANK;
// nngraph's dims are oneDNN's: shapes pass between the two unchanged.
static_assert(std::is_same_v<dnnl::memory::dims, Dims>);

// ---- Engine, stream, threads -------------------------------------------------------------------

// The plugin's CPU engine, created on first use.
const dnnl::engine& engine();
// The calling thread's stream on engine().
const dnnl::stream& stream();
// Applies nng_context.num_threads: calls omp_set_num_threads(n) when n > 0 and differs from the
// current setting. Call it first in forward and backward.
void set_num_threads(int n);

// Runs part(0), ..., part(parts - 1) side by side, at most one thread each (up to the current
// thread count), with every part's primitives single-threaded: for independent pieces of work too
// small for oneDNN to spread over threads well. Thread t takes the t-th of equal runs of parts,
// [split_point(parts, threads, t), split_point(parts, threads, t + 1)), in `order`; where there are
// more parts than threads, one whose run is done takes parts from the other end of another's. The
// first exception a part throws is rethrown once every part has ended.
enum class PartOrder { kFirstFirst, kLastFirst };
void run_in_parts(std::int64_t parts, void (*run_part)(void* context, std::int64_t part), void* context,
                  PartOrder order = PartOrder::kFirstFirst);
template <class Part>
void run_in_parts(std::int64_t parts, Part&& part, PartOrder order = PartOrder::kFirstFirst) {
    run_in_parts(
        parts, [](void* context, std::int64_t p) { (*static_cast<std::remove_reference_t<Part>*>(context))(p); },
        static_cast<void*>(&part), order);
}

// ---- Memory ------------------------------------------------------------------------------------

// f32, s32 and u8; throws for i64, which oneDNN has no type for.
DataType data_type(nng_dtype dtype);
// The plain row-major tag for a rank: a, ab, abc, ... (rank 1 to 8).
dnnl::memory::format_tag plain_tag(int rank);

// A non-owning window on memory: element type, shape and strides (in elements). Dims and strides
// live inline, so building and passing views never allocates. A default View is absent.
struct View {
    void* data = nullptr;
    DataType type = DataType::f32;
    int rank = 0;
    std::array<std::int64_t, kMaxRank> dims{};
    std::array<std::int64_t, kMaxRank> strides{};

    bool present() const { return data != nullptr; }
    std::int64_t numel() const;
    // Dims and strides are those of a row-major array of these dims.
    bool contiguous() const;
    // The same elements with the last two axes swapped (a transposed matrix, or batch of them).
    View transposed() const;
    // The same elements with the axes reordered: result axis i is this view's axis order[i].
    View permuted(std::initializer_list<int> order) const;
    // For messages: "f32 (64, 200, 32)", with strides when they are not row-major.
    std::string describe() const;
};

// A row-major view of raw memory; `dims` may be empty for a scalar (treated as (1,)).
View view(void* data, DataType type, std::initializer_list<std::int64_t> dims);
View view(void* data, DataType type, const Dims& dims);
// A view with explicit strides (in elements), e.g. one block of a larger matrix.
View view(void* data, DataType type, const Dims& dims, const Dims& strides);
// A tensor of a call, row-major in its own shape or reshaped (same element count) to `dims`.
// An absent tensor (no data, or none at all) gives an absent View.
View view(const TensorRef& tensor);
View view(const TensorRef& tensor, std::initializer_list<std::int64_t> dims);
View view(const TensorRef& tensor, const Dims& dims);

// oneDNN wrappers, without copying: descriptors carry the view's strides; a tensor's descriptor
// is its plain row-major format_tag (and throws for an absent tensor).
dnnl::memory::desc desc_of(const View& v);
dnnl::memory::desc desc_of(const TensorRef& tensor);
dnnl::memory memory_of(const View& v);
dnnl::memory memory_of(const TensorRef& tensor);
dnnl::memory memory_of(const dnnl::memory::desc& desc, void* data);

// ---- Reorders ----------------------------------------------------------------------------------

// `source` in layout `wanted`: source itself when it already is, else a copy in `destination`
// (at least wanted.get_size() bytes, in a buffer the op declared). For a primitive's inputs in
// the layout it picked with format_tag::any (LSTM weights).
dnnl::memory reorder_if_needed(const dnnl::memory& source, const dnnl::memory::desc& wanted, void* destination);
// Where a primitive should write an output it wants in layout `wanted`: `user` itself when its
// layout already is that, else uninitialized memory in `scratch`. Pair with write_back.
dnnl::memory output_in(const dnnl::memory& user, const dnnl::memory::desc& wanted, void* scratch);
// Copies what a primitive wrote in its layout back into the user's memory (a gradient); nothing
// when they are the same memory.
void write_back(const dnnl::memory& produced, const dnnl::memory& user);
// dst = src, element by element, between any layouts and types of the same dims (transposes,
// permutes, blocked formats, conversions).
void reorder(const View& src, const View& dst);
void reorder(const dnnl::memory& src, const dnnl::memory& dst);

// ---- bfloat16 (mixed precision) ------------------------------------------------------------------

// `src` converted to bfloat16 (round to nearest even) into `room`, a buffer the op declared of at
// least src.numel() 16-bit values: the row-major bf16 view of src's dims. Ops under the
// mixed_bfloat16 policy feed their matmuls such copies and keep f32 everywhere else.
View to_bfloat16(const View& src, void* room);

// ---- Primitive cache ---------------------------------------------------------------------------

// What kind of primitive a Key is for: a name made at compile time ("onednn.matmul",
// "lstm.forward") with its hash. Equal tags have equal names.
class Tag {
public:
    consteval Tag(const char* name) : name_(name), hash_(fnv1a(name)) {}
    std::string_view name() const { return name_; }
    std::uint64_t hash() const { return hash_; }
    friend bool operator==(const Tag& a, const Tag& b) { return a.hash_ == b.hash_ && a.name_ == b.name_; }

private:
    static consteval std::uint64_t fnv1a(std::string_view s) {
        std::uint64_t h = 14695981039346656037ull;
        for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511627211ull;
        return h;
    }
    std::string_view name_;
    std::uint64_t hash_;
};

// Everything that defines a primitive: a tag plus integers (dims, strides, types, flags; floats
// by their bits). Views add their type, rank, dims and strides, never their address; memory
// descriptors add their whole layout. Every
// variable-length part is preceded by its length, so different inputs never give equal keys.
// The current OpenMP thread count is added by the cache itself.
class Key {
public:
    static constexpr int kCapacity = 160;

    explicit Key(Tag tag) : tag_(tag) {}

    template <class... Ts>
    Key& add(const Ts&... values) {
        (add_one(values), ...);
        return *this;
    }

    Tag tag() const { return tag_; }
    std::size_t hash() const;
    friend bool operator==(const Key& a, const Key& b);

private:
    void push(std::int64_t v);
    void add_one(const View& v);
    void add_one(const dnnl::memory::desc& desc);  // any layout oneDNN picked, blocked or packed
    template <class T>
    void add_one(const T& v) {
        if constexpr (std::is_enum_v<T>)
            push(static_cast<std::int64_t>(v));
        else if constexpr (std::is_integral_v<T>)
            push(static_cast<std::int64_t>(v));
        else if constexpr (std::is_same_v<T, float>)
            push(std::bit_cast<std::uint32_t>(v));
        else if constexpr (std::is_same_v<T, double>)
            push(std::bit_cast<std::int64_t>(v));
        else
            static_assert(sizeof(T) == 0, "a Key holds integers, enums, floats and Views");
    }

    Tag tag_;
    int size_ = 0;
    std::array<std::int64_t, kCapacity> values_{};
};

// A cached primitive and its descriptor (query its layouts: src_desc(i), weights_desc(i),
// workspace_desc(), scratchpad_desc(), ...).
struct Cached {
    dnnl::primitive primitive;
    dnnl::primitive_desc_base pd;
    std::string_view name;  // the key's tag, for messages
};

// Attributes every cached primitive is built with (scratchpad_mode::user); start from these when
// adding post-ops or scales.
dnnl::primitive_attr attributes();

namespace detail {
const Cached* find(const Key& key);
const Cached& insert(const Key& key, const dnnl::primitive_desc_base& pd, dnnl::primitive primitive);
[[noreturn]] void creation_failed(const Key& key, const dnnl::error& e);
}  // namespace detail

// The primitive for `key`, created once from make_pd() (which returns a Primitive::primitive_desc
// built with attributes()). Throws std::runtime_error when oneDNN cannot build it.
template <class Primitive, class MakePd>
const Cached& cached(const Key& key, MakePd&& make_pd) {
    if (const Cached* hit = detail::find(key)) return *hit;
    try {
        const typename Primitive::primitive_desc pd = make_pd();
        return detail::insert(key, pd, Primitive(pd));
    } catch (const dnnl::error& e) {
        detail::creation_failed(key, e);
    }
}

// Runs a cached primitive on this thread's stream with the module's scratchpad, and waits.
void execute(const Cached& c, std::unordered_map<int, dnnl::memory> args);

// One argument of a call on views: which (DNNL_ARG_SRC, ...) and the view bound to it, or, for
// memory in a layout of oneDNN's own (packed weights), its descriptor and data instead.
struct ViewArg {
    int which;
    const View* view;
    const dnnl::memory::desc* desc = nullptr;
    void* data = nullptr;
};
// The same for arguments that are views, without allocating: each thread keeps one oneDNN memory
// object per primitive and argument and only points it at the call's data (a new object only when
// the argument's layout differs from the last call's).
void execute(const Cached& c, std::initializer_list<ViewArg> args);

// ---- Counters ----------------------------------------------------------------------------------

struct Stats {
    std::int64_t primitives_created = 0;
    std::int64_t cache_hits = 0;
    std::int64_t buffer_allocations = 0;  // scratchpads grown, all threads
    std::int64_t scratchpad_bytes = 0;    // scratchpad capacity, all threads
};
Stats stats();
// For NNG_PLUGIN_WITH_COUNTERS: fills up to `capacity` of "onednn.primitives_created",
// "onednn.cache_hits", "onednn.buffer_allocations", "onednn.scratchpad_bytes"; returns how many
// it filled.
std::int32_t counters(nng_counter* out, std::int32_t capacity);
// Drops every cached primitive (counters keep counting). Only while no other call is running:
// a Cached& handed out before becomes invalid.
void clear_cache();

// ---- Building blocks ---------------------------------------------------------------------------

// An elementwise function: a oneDNN eltwise algorithm with its alpha and beta. `undef` is the
// identity (Keras's "linear").
struct Eltwise {
    dnnl::algorithm algorithm = dnnl::algorithm::undef;
    float alpha = 0.0f;
    float beta = 0.0f;

    bool identity() const { return algorithm == dnnl::algorithm::undef; }
};
// Keras's activation by name (linear, relu, sigmoid, tanh, gelu, elu, selu, softplus, swish,
// exponential); for parsing attributes once. Throws nng::OpError for others, softmax included
// (not elementwise: see softmax_forward).
Eltwise activation(std::string_view keras_name);
// Whether eltwise_backward_from_dst can differentiate f from its output alone.
bool has_backward_from_dst(const Eltwise& f);

// Room for a product that carries its bias as one more inner step, C = [A 1]·[B; bias]: A with a
// column of ones (M, K + 1) and B with the bias as its last row (K + 1, N).
struct BiasRowRooms {
    float* a = nullptr;
    float* b = nullptr;
};

struct MatmulOptions {
    float alpha = 1.0f;  // oneDNN's output scale: multiplies A·B + bias
    float beta = 0.0f;   // adds beta * C (C's old values): 1 accumulates a gradient
    View bias = {};      // broadcast to C's shape: (N) over rows, (M, 1) over columns, ...
    Eltwise post = {};   // applied last
    // Given (both, with bias_row_floats' sizes), the bias (N) rides in the product; 2-D f32 only.
    BiasRowRooms bias_rows = {};
    // Given (transposed_left_values' size), a transposed bf16 A is copied there into plain rows
    // first where oneDNN reads it slowly in place.
    void* plain_left = nullptr;
};

// The floats of BiasRowRooms' a and b for C (rows, cols) = A (rows, inner) B (inner, cols) + bias;
// both 0 where the bias is better left to oneDNN. A product on sgemm (every one below AVX-512, the
// widest on AVX-512: see matmul) would add a bias in a pass of its own over C, a round trip to
// memory once C outgrows the cache, where copying A and B costs a small fraction of that.
struct BiasRowFloats {
    std::int64_t a = 0, b = 0;
};
BiasRowFloats bias_row_floats(std::int64_t rows, std::int64_t inner, std::int64_t cols);

// The bf16 values of MatmulOptions::plain_left for C (rows, cols) = Aᵀ·B with A of type `type`
// stored (inner, rows): 0 unless the copy pays. brgemm reads a transposed bf16 A in place at a
// fraction of its plain rate once C is as wide as a vocabulary.
std::int64_t transposed_left_values(DataType type, std::int64_t rows, std::int64_t inner, std::int64_t cols);

// C = post(alpha * (A·B + bias) + beta * C), batched over the leading axes.
// A is (..., M, K), B (..., K, N), C (..., M, N); a transposed operand is a transposed() view.
// Leading axes broadcast as oneDNN allows: missing or 1 in A or B; C has the full batch.
// On AVX-512 a 2-D f32 product of 8192 columns or more without bias or post-op runs on sgemm,
// which packs B, rather than on brgemm, which reads B's rows where they lie.
void matmul(const View& a, const View& b, const View& c, const MatmulOptions& options = {});

// ---- A linear layer's backward -------------------------------------------------------------------

// What linear_backward computes; an absent view is skipped.
struct LinearGradients {
    View dw, db, dx;       // xᵀ·dy (K, N); dy's column sums (N); dy·wᵀ (M, K)
    float dx_beta = 0.0f;  // 1 adds dy·wᵀ onto dx (an input that reaches the layer twice)
};
// Where linear_backward rounds operands to bf16 (mixed_bfloat16), each null in float32: dy
// (M·N values), x (M·K) and w (K·N) when given in f32, and MatmulOptions::plain_left for dw.
struct Bfloat16Rooms {
    void* dy = nullptr;
    void* x = nullptr;
    void* w = nullptr;
    void* x_transposed = nullptr;
};
// The gradients of y = x·w + b from dy (M, N): x (M, K) and w (K, N) as the forward read them (f32,
// or the bf16 copies it kept). With rooms.dy the products run in bf16: dy rounded in the pass that
// sums it for the bias, x and w rounded into their rooms unless already bf16, read transposed.
void linear_backward(const View& x, const View& w, const View& dy, const LinearGradients& grads,
                     const Bfloat16Rooms& rooms = {});

// ---- Products with a packed right operand -------------------------------------------------------

// B (K, N) reordered once into the layout oneDNN's matmul picks for it, for products that read the
// same B many times (a recurrent layer's weights over its steps): brgemm then reads B's blocks
// in order instead of rows of B a row apart. `rows` (below) is the M of the products that will read it.
struct PackedRight {
    void* data = nullptr;
    dnnl::memory::desc desc;
};
// The bytes B (K, N) takes packed for C (rows, N) = A (rows, K)·B, A and B of `type`, C f32.
std::size_t packed_right_bytes(DataType type, std::int64_t rows, std::int64_t K, std::int64_t N);
// b packed (converted to `type` on the way) into `room` of packed_right_bytes.
PackedRight pack_right(const View& b, DataType type, std::int64_t rows, void* room);
// C = post(alpha (A·B + bias) + beta C) of a 2-D A of B's type and an f32 C (bias_rows and
// plain_left do not apply). Any number of rows: B keeps the layout packed for its `rows`.
void matmul(const View& a, const PackedRight& b, const View& c, const MatmulOptions& options = {});

// C (M, N) = alpha op(A) op(B) + beta C through oneDNN's sgemm: row-major, op transposing where
// the flag is 'T', on the calling thread's OpenMP threads. No primitive: for the many small
// products a loop makes, where a primitive's cost a call shows.
void sgemm(char transpose_a, char transpose_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
           const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc);
// C (G, M, N) = alpha·A·B + beta·C, group by group through sgemm, for products of a few groups
// on one thread, where a primitive's cost a call shows: below AVX-512 matmul runs them on the same
// sgemm kernels, and on AVX-512 its brgemm is no faster at these sizes. Returns false, doing
// nothing, where the views do not suit sgemm: unless they are f32 of rank 3, A (G, M, K) and
// B (G, K, N) each with one of its last two axes contiguous (a transposed() view is one), C with
// its last.
bool sgemm_each_group(const View& a, const View& b, const View& c, float alpha = 1.0f, float beta = 0.0f);

// Softmax over the last axis; dst may be src (in place). dst and src have the same layout. f32
// rows of 16 or more in a contiguous layout run on softmax_rows, the others on oneDNN's (which
// vectorises across rows, the better for short ones; its backward has no AVX2 kernel).
// With inverse_sums the division is left to the caller, who divides a smaller product of the
// probabilities instead (P·v has fewer columns than P): dst gets e^(x - max) and inverse_sums[r]
// 1 / sum for row r of the rows in order. Only where softmax_defers_division(src).
void softmax_forward(const View& src, const View& dst, float* inverse_sums = nullptr);
bool softmax_defers_division(const View& src);
// The softmax, e^(x - max) / sum, of `rows` rows of n floats (row strides src_stride and
// dst_stride; dst may be src), three sweeps a row while it sits in cache, on the calling thread.
// With inverse_sums: two sweeps, e^(x - max) into dst and 1 / sum into inverse_sums[r].
// A row of -inf gives NaN, as the formula does.
void softmax_rows(const float* src, std::int64_t src_stride, float* dst, std::int64_t dst_stride, std::int64_t rows,
                  std::int64_t n, float* inverse_sums = nullptr);
// diff_src = dst * (diff_dst - sum(diff_dst * dst)) over the last axis, from the forward's dst;
// diff_src may be diff_dst. As softmax_forward: f32 rows of 16 or more in a contiguous layout run
// on softmax_backward_rows, the others on oneDNN's.
// With row_terms (f32 rows laid end to end, any length), row r's term is row_terms[r] in place of
// its sum: for a caller who knows the sums another way, which saves a sweep a row (attention: the
// sum is dL/dout · out), or whose dst holds e^(x - max) and whose terms carry the 1 / sum.
void softmax_backward(const View& dst, const View& diff_dst, const View& diff_src, const float* row_terms = nullptr);
// That backward for `rows` rows of n floats laid end to end, on the calling thread.
void softmax_backward_rows(const float* dst, const float* diff_dst, float* diff_src, std::int64_t rows, std::int64_t n,
                           const float* row_terms = nullptr);

// dst = f(src); dst may be src.
void eltwise_forward(const Eltwise& f, const View& src, const View& dst);
// diff_src = f'(src) * diff_dst, from the forward's input.
void eltwise_backward(const Eltwise& f, const View& src, const View& diff_dst, const View& diff_src);
// The same from the forward's output (relu with alpha >= 0, tanh, sigmoid, elu, exp, linear).
void eltwise_backward_from_dst(const Eltwise& f, const View& dst, const View& diff_dst, const View& diff_src);

// out(n) = sum over m of x(m, n) + beta * out(n): a bias gradient. x is (M, N); out is (N) or
// (1, N), both f32; the sums are taken in double (see the .cpp). Given `bfloat16_copy` (room for
// x.numel() values), x is also rounded to bf16 there, row-major, in the same pass over x: a
// gradient that feeds both a bias and bf16 products is read from memory once. Returns that copy's
// view, or an absent one.
View sum_rows(const View& x, const View& out, float beta = 0.0f, void* bfloat16_copy = nullptr);
// sums(c) += x(r, c) over `rows` rows of `cols` contiguous floats, in double, on the calling thread:
// sum_rows' arithmetic for a caller that sums blocks of rows itself.
void add_column_sums(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t row_stride, double* sums);

}  // namespace nng::onednn
