// Places buffers with known lifetimes in one arena, sharing space between buffers whose
// lifetimes do not overlap (the greedy-by-size offset assignment of TFLite's arena planner and
// ggml-alloc): planned once per batch size, so a steady-state step allocates nothing.
#pragma once

#include <cstddef>
#include <vector>

namespace nngraph {

struct BufferRequest {
    std::size_t bytes = 0;
    int first_step = 0;  // inclusive
    int last_step = 0;   // inclusive
};

struct ArenaLayout {
    std::vector<std::size_t> offsets;  // per request, 64-byte aligned
    std::size_t arena_bytes = 0;
    std::size_t requested_bytes = 0;  // the sum of all requests, for comparison
};

ArenaLayout plan_arena(const std::vector<BufferRequest>& requests);

}  // namespace nngraph
