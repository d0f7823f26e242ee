// Counts C++ heap allocations in a benchmark binary (every library's operator new resolves to the
// one defined here), for the "bytes allocated per step" counter.
#pragma once

#include <cstdint>

namespace nngraph::bench {

void start_allocation_meter();
// Bytes allocated since start (and stops counting).
std::int64_t stop_allocation_meter();

}  // namespace nngraph::bench
