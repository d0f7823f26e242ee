// Counts the process's C++ heap allocations, and its aligned allocations: every library's operator
// new, posix_memalign and aligned_alloc resolve to the ones this object defines, once it is linked
// into an executable (the nngraph command, benchmarks, tests) that exports them.
// Under AddressSanitizer, which must own operator new, it counts nothing and says so.
#pragma once

#include <cstdint>

namespace nngraph {

struct AllocationCount {
    std::int64_t calls = 0;
    std::int64_t bytes = 0;
    std::int64_t largest = 0;  // the largest single allocation
    // posix_memalign and aligned_alloc, which C libraries call directly (oneDNN's own buffers)
    std::int64_t aligned_calls = 0;
    std::int64_t aligned_bytes = 0;
};

bool allocation_counting_available();
// Counting is off until started; while on it costs a few relaxed atomic operations per allocation.
void start_counting_allocations();
AllocationCount stop_counting_allocations();

}  // namespace nngraph
