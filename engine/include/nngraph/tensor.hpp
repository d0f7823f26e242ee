// An owning, contiguous, row-major tensor: what the engine hands to users, files and the executor.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nngraph {

enum class DType : std::uint8_t { F32 = 1, I32 = 2, I64 = 3, U8 = 4 };

std::size_t dtype_size(DType dtype);
// The safetensors spelling: "F32", "I32", "I64", "U8".
std::string_view dtype_name(DType dtype);
// Inverse of dtype_name; returns false for a name nngraph does not support.
bool parse_dtype(std::string_view name, DType& out);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
    return DType::F32;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
    return DType::I32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
    return DType::I64;
}
template <>
constexpr DType dtype_of<std::uint8_t>() {
    return DType::U8;
}

// Dimensions; -1 marks the dynamic batch dimension in load-time shapes.
using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
// Every size computed from a file goes through this: the bytes of `shape` (a -1 batch counts as 1)
// in `dtype`, or nothing when they exceed kMaxTensorBytes, so no product can overflow.
inline constexpr std::uint64_t kMaxTensorBytes = std::uint64_t{1} << 62;
// The most tokens a vocabulary file may pad or truncate a text to (its maxlen, source or target
// length): far beyond any real model, and small enough that encoding a text cannot exhaust memory.
inline constexpr std::int64_t kMaxSequenceLength = std::int64_t{1} << 24;
std::optional<std::uint64_t> checked_byte_count(const Shape& shape, DType dtype);
// Keras's spelling: (None, 200, 32).
std::string shape_to_string(const Shape& shape);

// Buffers are 64-byte aligned so that vector kernels and oneDNN never see a misaligned pointer
// (nng::kBufferAlignment, which allocates them; tensor.cpp checks that the two agree).
inline constexpr std::size_t kTensorAlignment = 64;

class Tensor {
public:
    Tensor() = default;
    // Zero-filled.
    Tensor(DType dtype, Shape shape);

    template <class T>
    static Tensor from(Shape shape, std::span<const T> values) {
        Tensor t(dtype_of<T>(), std::move(shape));
        t.check_count(values.size());
        std::copy(values.begin(), values.end(), t.data<T>());
        return t;
    }

    Tensor(const Tensor& other);
    Tensor& operator=(const Tensor& other);
    Tensor(Tensor&&) noexcept = default;
    Tensor& operator=(Tensor&&) noexcept = default;

    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    std::int64_t dim(std::size_t axis) const { return shape_.at(axis); }
    std::size_t rank() const { return shape_.size(); }
    std::int64_t numel() const { return numel_; }
    std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
    bool empty() const { return !buffer_; }

    void* raw() { return buffer_.get(); }
    const void* raw() const { return buffer_.get(); }

    template <class T>
    T* data() {
        check_dtype(dtype_of<T>());
        return static_cast<T*>(raw());
    }
    template <class T>
    const T* data() const {
        check_dtype(dtype_of<T>());
        return static_cast<const T*>(raw());
    }
    template <class T>
    std::span<T> values() {
        return {data<T>(), static_cast<std::size_t>(numel_)};
    }
    template <class T>
    std::span<const T> values() const {
        return {data<T>(), static_cast<std::size_t>(numel_)};
    }

    // Same data, new shape with the same element count.
    void reshape(Shape shape);
    // Rows [begin, end) of the first axis, copied.
    Tensor slice_rows(std::int64_t begin, std::int64_t end) const;

private:
    void check_dtype(DType wanted) const;
    void check_count(std::size_t count) const;

    DType dtype_ = DType::F32;
    Shape shape_;
    std::int64_t numel_ = 0;
    // Out of line, so that this header does not bring in how blocks are allocated.
    struct FreeBlock {
        void operator()(std::byte* block) const noexcept;
    };
    std::unique_ptr<std::byte, FreeBlock> buffer_;
};

}  // namespace nngraph
