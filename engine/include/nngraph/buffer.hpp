// Aligned blocks for tensors, the step's arena and the oneDNN helper's scratch, allocated in one
// place. Header-only: a plugin uses it without linking the engine.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "nngraph/arithmetic.hpp"

namespace nng {

// Vector kernels and oneDNN never see a misaligned pointer.
inline constexpr std::size_t kBufferAlignment = 64;
// A transparent huge page on x86-64 Linux.
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// Whether blocks of a huge page or more ask the kernel for huge pages: yes unless
// NNGRAPH_HUGE_PAGES is 0. Where the kernel's setting is "never" the request does nothing.
inline bool huge_pages_requested() {
    static const bool requested = [] {
        const char* setting = std::getenv("NNGRAPH_HUGE_PAGES");
        return !(setting && std::strcmp(setting, "0") == 0);
    }();
    return requested;
}

// How many bytes allocate_buffer takes for `bytes`: whole huge pages from one huge page up (when
// they are requested), else whole 64-byte lines.
inline std::size_t buffer_capacity(std::size_t bytes) {
    if (bytes >= kHugePageBytes && huge_pages_requested()) return round_up(bytes, kHugePageBytes);
    return round_up(bytes == 0 ? 1 : bytes, kBufferAlignment);
}

// A block of buffer_capacity(bytes) bytes, or nullptr when memory runs out; std::free releases it.
// A block of a huge page or more starts on a huge page and is marked for transparent huge pages:
// the products and the passes over a large arena then miss the TLB far less, and the kernel
// (set to "madvise", as Debian's is) gives large blocks no huge pages unless asked.
inline std::byte* allocate_buffer(std::size_t bytes) {
    const std::size_t capacity = buffer_capacity(bytes);
    const bool huge = capacity >= kHugePageBytes && huge_pages_requested();
    auto* block = static_cast<std::byte*>(std::aligned_alloc(huge ? kHugePageBytes : kBufferAlignment, capacity));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Only a hint: a kernel without transparent huge pages refuses it and the block works as it is.
    if (block && huge) (void)madvise(block, capacity, MADV_HUGEPAGE);
#endif
    return block;
}

struct FreeBuffer {
    void operator()(std::byte* block) const noexcept { std::free(block); }
};

}  // namespace nng
