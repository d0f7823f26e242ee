#include "nngraph/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "nngraph/arithmetic.hpp"
#include "nngraph/buffer.hpp"
#include "nngraph/error.hpp"

namespace nngraph {

std::size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F32:
            return 4;
        case DType::I32:
            return 4;
        case DType::I64:
            return 8;
        case DType::U8:
            return 1;
    }
    throw RunError("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

std::string_view dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32:
            return "F32";
        case DType::I32:
            return "I32";
        case DType::I64:
            return "I64";
        case DType::U8:
            return "U8";
    }
    return "?";
}

bool parse_dtype(std::string_view name, DType& out) {
    for (DType d : {DType::F32, DType::I32, DType::I64, DType::U8}) {
        if (dtype_name(d) == name) {
            out = d;
            return true;
        }
    }
    return false;
}

std::int64_t shape_numel(const Shape& shape) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
}

std::optional<std::uint64_t> checked_byte_count(const Shape& shape, DType dtype) {
    std::uint64_t bytes = dtype_size(dtype);
    for (std::int64_t dim : shape) {
        const auto d = static_cast<std::uint64_t>(dim < 0 ? 1 : dim);
        if (d != 0 && bytes > kMaxTensorBytes / d) return std::nullopt;
        bytes *= d;
    }
    return bytes;
}

std::string shape_to_string(const Shape& shape) {
    std::ostringstream out;
    out << '(';
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) out << ", ";
        if (shape[i] < 0)
            out << "None";
        else
            out << shape[i];
    }
    if (shape.size() == 1) out << ',';
    out << ')';
    return out.str();
}

static_assert(kTensorAlignment == nng::kBufferAlignment, "tensors are aligned as the blocks they live in");

void Tensor::FreeBlock::operator()(std::byte* block) const noexcept { nng::FreeBuffer{}(block); }

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
    for (std::int64_t d : shape_) {
        if (d < 0) throw RunError("tensor shape " + shape_to_string(shape_) + " has a negative dimension");
    }
    if (!checked_byte_count(shape_, dtype_)) {
        throw RunError("a tensor of shape " + shape_to_string(shape_) + " and type " + std::string(dtype_name(dtype_)) +
                       " would exceed 2^62 bytes");
    }
    numel_ = shape_numel(shape_);
    // Never a zero-byte allocation, so that empty() means "no tensor" and not "no elements".
    const std::size_t bytes = std::max<std::size_t>(nbytes(), 1);
    auto* p = nng::allocate_buffer(bytes);
    if (!p) throw RunError("out of memory allocating a tensor of " + std::to_string(bytes) + " bytes");
    // Zeros up to the end of the last 64-byte line, which vector kernels may read; the rest of a
    // block's last huge page is never read.
    std::memset(p, 0, nng::round_up(bytes, nng::kBufferAlignment));
    buffer_.reset(p);
}

Tensor::Tensor(const Tensor& other) : Tensor() { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
    if (this == &other) return *this;
    if (other.empty()) {
        *this = Tensor();
        return *this;
    }
    Tensor copy(other.dtype_, other.shape_);
    std::memcpy(copy.raw(), other.raw(), other.nbytes());
    *this = std::move(copy);
    return *this;
}

void Tensor::reshape(Shape shape) {
    if (shape_numel(shape) != numel_) {
        throw RunError("cannot reshape a tensor of shape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
    }
    shape_ = std::move(shape);
}

Tensor Tensor::slice_rows(std::int64_t begin, std::int64_t end) const {
    if (shape_.empty() || begin < 0 || end < begin || end > shape_[0]) {
        throw RunError("row slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") is outside a tensor of shape " + shape_to_string(shape_));
    }
    Shape out_shape = shape_;
    out_shape[0] = end - begin;
    Tensor out(dtype_, out_shape);
    const std::size_t row_bytes = shape_[0] ? nbytes() / static_cast<std::size_t>(shape_[0]) : 0;
    std::memcpy(out.raw(), static_cast<const std::byte*>(raw()) + row_bytes * begin, row_bytes * (end - begin));
    return out;
}

void Tensor::check_dtype(DType wanted) const {
    if (wanted != dtype_) {
        throw RunError("tensor holds " + std::string(dtype_name(dtype_)) + ", read as " +
                       std::string(dtype_name(wanted)));
    }
}

void Tensor::check_count(std::size_t count) const {
    if (static_cast<std::int64_t>(count) != numel_) {
        throw RunError(std::to_string(count) + " values given for a tensor of shape " + shape_to_string(shape_));
    }
}

}  // namespace nngraph
