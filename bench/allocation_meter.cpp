#include "allocation_meter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> metering{false};
std::atomic<std::int64_t> metered_bytes{0};

void* allocate(std::size_t size) {
    if (metering.load(std::memory_order_relaxed)) metered_bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
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

namespace nngraph::bench {

void start_allocation_meter() {
    metered_bytes = 0;
    metering = true;
}

std::int64_t stop_allocation_meter() {
    metering = false;
    return metered_bytes.load();
}

}  // namespace nngraph::bench
