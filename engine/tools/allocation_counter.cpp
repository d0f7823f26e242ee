#include "allocation_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> counting{false};
std::atomic<std::int64_t> calls{0};
std::atomic<std::int64_t> bytes{0};

void* allocate(std::size_t size) {
    if (counting.load(std::memory_order_relaxed)) {
        calls.fetch_add(1, std::memory_order_relaxed);
        bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
    }
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace nngraph::cli {

void start_counting_allocations() {
    calls = 0;
    bytes = 0;
    counting = true;
}

AllocationCount stop_counting_allocations() {
    counting = false;
    return {calls.load(), bytes.load()};
}

}  // namespace nngraph::cli
