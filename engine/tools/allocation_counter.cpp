#include "allocation_counter.hpp"

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
    counting = true;
}

AllocationCount stop_counting_allocations() {
    counting = false;
    return {calls.load(), bytes.load(), largest.load()};
}

}  // namespace nngraph
