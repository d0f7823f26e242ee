// Arrays carved one after another out of one block of scratch memory, such as a declared buffer
// (header-only, part of the plugin SDK). Each array starts on a 64-byte boundary of the block and
// may hold any trivially copyable type. A carver made without memory only counts, so that one
// function both sizes a buffer and carves it, and the two cannot drift apart:
//
//   Pieces::Pieces(nng::Carver& c) : rows(c.take<float>(n)), sums(c.take<double>(m)) {}
//   nng::Carver counter;  Pieces(counter);  declare a buffer of counter.bytes()
//   nng::Carver carver(buffer, bytes);  Pieces pieces(carver);
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nngraph/arithmetic.hpp"

namespace nng {

class Carver {
public:
    static constexpr std::size_t kAlignment = 64;

    // Counts only: take() returns null and adds up the bytes.
    Carver() = default;
    // Carves `bytes` bytes at `memory` (null only with 0 bytes); take() throws once the arrays
    // outgrow them.
    Carver(void* memory, std::size_t bytes)
        : base_(static_cast<std::byte*>(memory)), capacity_(memory ? bytes : 0), counts_(false) {}

    // The next array of `count` T; null when counting.
    template <class T>
    T* take(std::int64_t count) {
        static_assert(std::is_trivially_copyable_v<T>, "a carved array holds trivially copyable values");
        if (count < 0) throw std::invalid_argument("nng::Carver: a negative element count");
        const std::size_t offset = used_;
        used_ += round_up(static_cast<std::size_t>(count) * sizeof(T), kAlignment);
        if (counts_) return nullptr;
        if (used_ > capacity_) {
            throw std::length_error("nng::Carver: arrays of " + std::to_string(used_) +
                                    " bytes carved from a block of " + std::to_string(capacity_) + " bytes");
        }
        return base_ ? reinterpret_cast<T*>(base_ + offset) : nullptr;
    }

    // Bytes taken so far, each array rounded up to kAlignment.
    std::size_t bytes() const { return used_; }
    // The same in whole floats, for a buffer declared as floats.
    std::int64_t floats() const { return static_cast<std::int64_t>(ceil_div(used_, sizeof(float))); }

private:
    std::byte* base_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t used_ = 0;
    bool counts_ = true;
};

}  // namespace nng
