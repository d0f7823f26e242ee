#include "exec/memory_planner.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "nngraph/arithmetic.hpp"
#include "nngraph/error.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph {

ArenaLayout plan_arena(const std::vector<BufferRequest>& requests) {
    auto aligned = [](std::size_t bytes) { return nng::round_up(bytes, kTensorAlignment); };
    ArenaLayout layout;
    layout.offsets.assign(requests.size(), 0);

    // Largest first; ties by earlier start, so the layout is the same on every run.
    std::vector<std::size_t> order(requests.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (requests[a].bytes != requests[b].bytes) return requests[a].bytes > requests[b].bytes;
        return requests[a].first_step < requests[b].first_step;
    });

    struct Placed {
        std::size_t offset, end;
        int first, last;
    };
    std::vector<Placed> placed;
    for (std::size_t index : order) {
        const BufferRequest& r = requests[index];
        // Every offset is at most the sum of the sizes before it, so bounding the sum bounds them all.
        if (r.bytes > kMaxTensorBytes ||
            aligned(std::max<std::size_t>(r.bytes, 1)) > kMaxTensorBytes - layout.requested_bytes) {
            throw RunError("buffer request " + std::to_string(index) + " of " + std::to_string(r.bytes) +
                           " bytes takes the buffers of one plan past 2^62 bytes (" +
                           std::to_string(layout.requested_bytes) + " bytes before it)");
        }
        const std::size_t size = aligned(std::max<std::size_t>(r.bytes, 1));
        layout.requested_bytes += size;
        // Buffers alive at the same time as this one, by offset: take the lowest gap that fits.
        std::vector<const Placed*> live;
        for (const Placed& p : placed) {
            if (p.first <= r.last_step && r.first_step <= p.last) live.push_back(&p);
        }
        std::sort(live.begin(), live.end(), [](const Placed* a, const Placed* b) { return a->offset < b->offset; });
        std::size_t offset = 0;
        for (const Placed* p : live) {
            if (offset + size <= p->offset) break;
            offset = std::max(offset, p->end);
        }
        placed.push_back({offset, offset + size, r.first_step, r.last_step});
        layout.offsets[index] = offset;
        layout.arena_bytes = std::max(layout.arena_bytes, offset + size);
    }
    return layout;
}

}  // namespace nngraph
