#include "allocation_counter.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define NNGRAPH_COUNT_ALLOCATIONS 0
#else
#define NNGRAPH_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<std::int64_t> calls{0};
std::atomic<std::int64_t> bytes{0};
std::atomic<std::int64_t> largest{0};
std::atomic<std::int64_t> aligned_calls{0};
std::atomic<std::int64_t> aligned_bytes{0};
}  // namespace

#if NNGRAPH_COUNT_ALLOCATIONS
namespace {
void* allocate(std::size_t size) {
    if (counting.load(std::memory_order_relaxed)) {
        const auto n = static_cast<std::int64_t>(size);
        calls.fetch_add(1, std::memory_order_relaxed);
        bytes.fetch_add(n, std::memory_order_relaxed);
        std::int64_t seen = largest.load(std::memory_order_relaxed);
        while (n > seen && !largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
        }
    }
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
}  // namespace

namespace {
void count_aligned(std::size_t size) {
    if (!counting.load(std::memory_order_relaxed)) return;
    aligned_calls.fetch_add(1, std::memory_order_relaxed);
    aligned_bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
}
// The C library's own function of that name, found past this executable.
template <class Function>
Function next_definition(const char* name) {
    return reinterpret_cast<Function>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
    using Function = int (*)(void**, std::size_t, std::size_t);
    static const Function next = next_definition<Function>("posix_memalign");
    count_aligned(size);
    return next(out, alignment, size);
}

extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) {
    using Function = void* (*)(std::size_t, std::size_t);
    static const Function next = next_definition<Function>("aligned_alloc");
    count_aligned(size);
    return next(alignment, size);
}

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace nngraph {

bool allocation_counting_available() { return NNGRAPH_COUNT_ALLOCATIONS != 0; }

void start_counting_allocations() {
    calls = 0;
    bytes = 0;
    largest = 0;
    aligned_calls = 0;
    aligned_bytes = 0;
    counting = true;
}

AllocationCount stop_counting_allocations() {
    counting = false;
    return {calls.load(), bytes.load(), largest.load(), aligned_calls.load(), aligned_bytes.load()};
}

}  // namespace nngraph
