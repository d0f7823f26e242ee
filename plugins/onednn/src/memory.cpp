// Views, oneDNN memory wrappers and reorders.
#include <immintrin.h>

#include <algorithm>

#include "internal.hpp"
#include "nngraph/bfloat16.hpp"
#include "nngraph/cpu.hpp"

namespace nng::onednn {
namespace {

constexpr Tag kReorderViews{"onednn.reorder"};
constexpr Tag kReorderMemory{"onednn.reorder_memory"};

const char* type_name(DataType type) {
    switch (type) {
        case DataType::f32:
            return "f32";
        case DataType::s32:
            return "s32";
        case DataType::u8:
            return "u8";
        case DataType::s8:
            return "s8";
        case DataType::bf16:
            return "bf16";
        case DataType::f16:
            return "f16";
        default:
            return "?";
    }
}

std::string list(const std::int64_t* values, int n) {
    std::string out = "(";
    for (int i = 0; i < n; ++i) out += (i ? ", " : "") + std::to_string(values[i]);
    return out + ")";
}

void set_row_major_strides(View& v) {
    std::int64_t stride = 1;
    for (int i = v.rank - 1; i >= 0; --i) {
        v.strides[i] = stride;
        stride *= v.dims[i];
    }
}

template <class Range>
View make_view(void* data, DataType type, const Range& dims) {
    if (dims.size() > static_cast<std::size_t>(kMaxRank)) {
        throw std::runtime_error("oneDNN helper: a view of rank " + std::to_string(dims.size()) +
                                 " exceeds the maximum of " + std::to_string(kMaxRank));
    }
    View v;
    v.data = data;
    v.type = type;
    v.rank = 0;
    for (const std::int64_t d : dims) {
        if (d < 0)
            throw std::runtime_error("oneDNN helper: a view needs concrete dims, got " +
                                     dims_string(Dims(dims.begin(), dims.end())));
        v.dims[v.rank++] = d;
    }
    if (v.rank == 0) v.dims[v.rank++] = 1;  // a scalar is (1,) to oneDNN
    set_row_major_strides(v);
    return v;
}

template <class Range>
View reshaped(const TensorRef& tensor, const Range& dims) {
    if (!tensor.present()) return View{};  // a gradient nobody needs, a missing mask
    View v = make_view(tensor.raw(), data_type(tensor.dtype()), dims);
    if (v.numel() != tensor.numel()) {
        throw std::runtime_error("oneDNN helper: cannot view a tensor of shape " + dims_string(tensor.dims()) + " as " +
                                 dims_string(Dims(dims.begin(), dims.end())));
    }
    return v;
}

}  // namespace

// ---- Types and tags ----------------------------------------------------------------------------

DataType data_type(nng_dtype dtype) {
    switch (dtype) {
        case NNG_F32:
            return DataType::f32;
        case NNG_I32:
            return DataType::s32;
        case NNG_U8:
            return DataType::u8;
        default:
            throw std::runtime_error("oneDNN has no element type for nngraph dtype " + std::to_string(dtype) +
                                     " (f32, i32 and u8 only)");
    }
}

dnnl::memory::format_tag plain_tag(int rank) {
    using tag = dnnl::memory::format_tag;
    static constexpr tag kTags[] = {tag::a,     tag::ab,     tag::abc,     tag::abcd,
                                    tag::abcde, tag::abcdef, tag::abcdefg, tag::abcdefgh};
    if (rank < 1 || rank > kMaxRank)
        throw std::runtime_error("oneDNN helper: no plain format for rank " + std::to_string(rank));
    return kTags[rank - 1];
}

// ---- View --------------------------------------------------------------------------------------

std::int64_t View::numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
}

bool View::contiguous() const {
    View plain = *this;
    set_row_major_strides(plain);
    return std::equal(strides.begin(), strides.begin() + rank, plain.strides.begin());
}

View View::transposed() const {
    if (rank < 2)
        throw std::runtime_error("oneDNN helper: cannot transpose " + describe() + ", of rank " + std::to_string(rank));
    View out = *this;
    std::swap(out.dims[rank - 2], out.dims[rank - 1]);
    std::swap(out.strides[rank - 2], out.strides[rank - 1]);
    return out;
}

View View::permuted(std::initializer_list<int> order) const {
    View out = *this;
    if (order.size() != static_cast<std::size_t>(rank)) {
        throw std::runtime_error("oneDNN helper: a permutation of " + std::to_string(order.size()) + " axes for " +
                                 describe());
    }
    std::array<bool, kMaxRank> used{};
    int i = 0;
    for (const int axis : order) {
        if (axis < 0 || axis >= rank || used[axis]) {
            throw std::runtime_error("oneDNN helper: the axes given do not permute those of " + describe());
        }
        used[axis] = true;
        out.dims[i] = dims[axis];
        out.strides[i] = strides[axis];
        ++i;
    }
    return out;
}

std::string View::describe() const {
    std::string out = std::string(type_name(type)) + " " + list(dims.data(), rank);
    if (!contiguous()) out += " strides " + list(strides.data(), rank);
    return out;
}

View view(void* data, DataType type, std::initializer_list<std::int64_t> dims) { return make_view(data, type, dims); }
View view(void* data, DataType type, const Dims& dims) { return make_view(data, type, dims); }

View view(void* data, DataType type, const Dims& dims, const Dims& strides) {
    View v = make_view(data, type, dims);
    if (strides.size() != dims.size()) {
        throw std::runtime_error("oneDNN helper: dims " + dims_string(dims) + " with " +
                                 std::to_string(strides.size()) + " strides");
    }
    std::copy(strides.begin(), strides.end(), v.strides.begin());
    return v;
}

View view(const TensorRef& tensor) { return reshaped(tensor, tensor.dims()); }
View view(const TensorRef& tensor, std::initializer_list<std::int64_t> dims) { return reshaped(tensor, dims); }
View view(const TensorRef& tensor, const Dims& dims) { return reshaped(tensor, dims); }

// ---- Memory ------------------------------------------------------------------------------------

dnnl::memory::desc desc_of(const View& v) {
    // The C call takes the inline arrays as they are: no vectors to build.
    dnnl_memory_desc_t md;
    const dnnl_status_t status = dnnl_memory_desc_init_by_strides(&md, v.rank, v.dims.data(),
                                                                  dnnl::memory::convert_to_c(v.type), v.strides.data());
    if (status != dnnl_success) throw std::runtime_error("oneDNN cannot describe " + v.describe());
    return dnnl::memory::desc(md);
}

dnnl::memory::desc desc_of(const TensorRef& tensor) {
    if (!tensor.present()) throw std::runtime_error("oneDNN helper: cannot describe an absent tensor");
    Dims dims = tensor.dims();
    if (dims.empty()) dims.push_back(1);
    return dnnl::memory::desc(dims, data_type(tensor.dtype()), plain_tag(static_cast<int>(dims.size())));
}

dnnl::memory memory_of(const View& v) { return dnnl::memory(desc_of(v), engine(), v.data); }
dnnl::memory memory_of(const TensorRef& tensor) { return dnnl::memory(desc_of(tensor), engine(), tensor.raw()); }
dnnl::memory memory_of(const dnnl::memory::desc& desc, void* data) { return dnnl::memory(desc, engine(), data); }

// ---- Reorders ----------------------------------------------------------------------------------

dnnl::memory reorder_if_needed(const dnnl::memory& source, const dnnl::memory::desc& wanted, void* destination) {
    if (source.get_desc() == wanted) return source;
    dnnl::memory copy = memory_of(wanted, destination);
    reorder(source, copy);
    return copy;
}

dnnl::memory output_in(const dnnl::memory& user, const dnnl::memory::desc& wanted, void* scratch) {
    if (user.get_desc() == wanted) return user;
    return memory_of(wanted, scratch);
}

void write_back(const dnnl::memory& produced, const dnnl::memory& user) {
    if (produced.get_data_handle() == user.get_data_handle() && produced.get_desc() == user.get_desc()) return;
    reorder(produced, user);
}

View to_bfloat16(const View& src, void* room) {
    const View dst = view(room, DataType::bf16, Dims(src.dims.begin(), src.dims.begin() + src.rank));
    reorder(src, dst);
    return dst;
}

void reorder(const View& src, const View& dst) {
    if (!src.present() || !dst.present() || src.rank != dst.rank ||
        !std::equal(src.dims.begin(), src.dims.begin() + src.rank, dst.dims.begin())) {
        detail::fail("reorder", {{"src", &src}, {"dst", &dst}}, "both must be present with the same dims");
    }
    detail::with_context("reorder", {{"src", &src}, {"dst", &dst}}, [&] {
        const Cached& r = cached<dnnl::reorder>(Key(kReorderViews).add(src, dst), [&] {
            return dnnl::reorder::primitive_desc(engine(), desc_of(src), engine(), desc_of(dst), attributes());
        });
        execute(r, {{DNNL_ARG_FROM, &src}, {DNNL_ARG_TO, &dst}});
    });
}

void reorder(const dnnl::memory& src, const dnnl::memory& dst) {
    const dnnl::memory::desc from = src.get_desc(), to = dst.get_desc();
    const Cached& r = cached<dnnl::reorder>(Key(kReorderMemory).add(from, to), [&] {
        return dnnl::reorder::primitive_desc(engine(), from, engine(), to, attributes());
    });
    execute(r, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
}

}  // namespace nng::onednn

namespace nng {

namespace {

NNG_LOOP_CLONES void to_bfloat16_bits(const float* src, std::uint16_t* dst, std::int64_t n) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, src + i, sizeof bits);
        dst[i] = static_cast<std::uint16_t>(bfloat16_bits(bits) >> 16);
    }
}

// AVX512_BF16's conversion, 16 floats an instruction, rounding as bfloat16_bits does; like
// oneDNN's own conversion on these CPUs it flushes subnormal floats to zero, as vdpbf16ps reads
// them anyway.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void to_bfloat16_instruction(const float* src,
                                                                                             std::uint16_t* dst,
                                                                                             std::int64_t n) {
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i))));
    if (i < n) {
        const __mmask16 rest = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm256_mask_storeu_epi16(dst + i, rest,
                                 reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(rest, src + i))));
    }
}

}  // namespace

void to_bfloat16(const float* src, std::uint16_t* dst, std::int64_t n) {
    if (cpu::has_bfloat16_dot_product())
        to_bfloat16_instruction(src, dst, n);
    else
        to_bfloat16_bits(src, dst, n);
}

namespace {
// to_bfloat16_instruction with non-temporal stores from dst's first 32-byte boundary on, then a
// fence so that the values are visible before the caller's threads meet again.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void to_bfloat16_streaming_instruction(
    const float* src, std::uint16_t* dst, std::int64_t n) {
    const auto misalignment = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(dst) % 32);
    std::int64_t i = misalignment % 2 == 0 ? std::min(n, (32 - misalignment) % 32 / 2) : n;
    to_bfloat16_instruction(src, dst, i);
    for (; i + 16 <= n; i += 16)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i))));
    to_bfloat16_instruction(src + i, dst + i, n - i);
    _mm_sfence();
}
}  // namespace

void to_bfloat16_streaming(const float* src, std::uint16_t* dst, std::int64_t n) {
    if (cpu::has_bfloat16_dot_product())
        to_bfloat16_streaming_instruction(src, dst, n);
    else
        to_bfloat16_bits(src, dst, n);
}

NNG_LOOP_CLONES void from_bfloat16(const std::uint16_t* src, float* dst, std::int64_t n) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint32_t bits = std::uint32_t{src[i]} << 16;
        std::memcpy(dst + i, &bits, sizeof bits);
    }
}

}  // namespace nng
