// Counts the process's C++ heap allocations (every library's operator new resolves to the one
// defined in this executable), for `nngraph bench`'s "allocated per step".
#pragma once

#include <cstdint>

namespace nngraph::cli {

struct AllocationCount {
    std::int64_t calls = 0;
    std::int64_t bytes = 0;
};

// Counting is off until started; it costs one relaxed atomic add per allocation while on.
void start_counting_allocations();
AllocationCount stop_counting_allocations();

}  // namespace nngraph::cli
