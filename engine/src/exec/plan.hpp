// A plan: everything one step of one batch size needs, decided before the step runs. Concrete
// shapes, every buffer's place in the arena, and the argument table of every op call; binding it
// to an arena sets the tables' pointers, after which a step only copies its batch in and calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "exec/loss.hpp"
#include "exec/memory_planner.hpp"
#include "graph/graph.hpp"
#include "nngraph/plugin.h"

namespace nngraph {

// The plan of an incremental-decoding session: the graph inputs that advance (bring the next
// positions at every call: the decoder's), the others staying the same for the whole session (the
// encoder's). Nodes that read only those run at the session's first call; the advancing ones run
// at every call, one position at a time.
struct SessionShape {
    std::vector<bool> advancing_inputs;  // per graph input
    std::int64_t positions = 0;          // the most positions a session reaches
};

// One argument list of an op call (nng_tensor or nng_buffer entries), and the arena buffer
// behind each entry (-1: none, or memory outside the arena).
template <class Entry>
struct ArgumentTable {
    std::vector<Entry> entries;
    std::vector<int> buffers;

    void bind(std::byte* base, const std::vector<std::size_t>& offsets) {
        for (std::size_t i = 0; i < entries.size(); ++i) {
            if (buffers[i] >= 0) entries[i].data = base + offsets[static_cast<std::size_t>(buffers[i])];
        }
    }
    const Entry* data() const { return entries.empty() ? nullptr : entries.data(); }
    std::int32_t size() const { return static_cast<std::int32_t>(entries.size()); }
};

struct TensorTable : ArgumentTable<nng_tensor> {
    void add(DType dtype, const Shape& shape, int buffer);
};

// The buffers an op declared, as one call sees them.
struct BufferTable : ArgumentTable<nng_buffer> {
    void add(std::uint64_t slice_bytes, std::uint64_t slice_stride, int slices, int buffer);
};

// One op node's calls: argument tables filled at plan time, pointers set when the plan is bound.
struct NodeCall {
    NodeId node = -1;
    int forward_step = 0;
    int backward_step = 0;
    bool runs_backward = false;
    bool skipped = false;  // inference of an identity (Dropout): output 0 is the input's buffer
    bool advances = true;  // in a decoding session: runs at every call, not only the first
    // The op's count of one forward and one backward call at the plan's shapes.
    std::int64_t forward_flops = 0, forward_bytes = 0, backward_flops = 0, backward_bytes = 0;
    nng_batch_slicing batch_slicing = NNG_SLICING_REFUSED;  // what the op said of slicing an inference batch
    TensorTable inputs, input_masks, outputs, output_masks, weights;
    TensorTable grad_outputs, grad_inputs, grad_weights;
    BufferTable forward_buffers, backward_buffers;  // saved ones in both, scratch apart
    std::vector<WeightId> weight_ids;               // weights live outside the arena: bound at every run
    // After backward: gradient buffer `into` += temporary buffer `from`, `count` floats.
    struct Accumulation {
        int into, from;
        std::int64_t count;
    };
    std::vector<Accumulation> accumulate;
    nng_exec_args args{}, backward_args{};

    void bind(std::byte* base, const std::vector<std::size_t>& offsets);
};

struct ExecutionPlan {
    std::int64_t batch = 0;
    bool training = false;
    std::vector<BufferRequest> requests;
    std::vector<std::string> request_names;  // what each buffer holds, for memory reports
    ArenaLayout layout;
    std::vector<Shape> shapes;       // per tensor, concrete
    std::vector<int> tensor_buffer;  // per tensor: buffer index
    std::vector<int> grad_buffer;    // per tensor: buffer index or -1
    std::vector<int> target_buffer;  // per loss output
    std::vector<Shape> target_shapes;
    std::vector<NodeCall> calls;  // forward order
    std::byte* bound_base = nullptr;
    std::size_t backward_bytes = 0;  // alive across the loss step (training plans)
    // A decoding session's state, kept across its calls: buffers that hold the batch's rows one
    // after another (session buffers, and the encoder's tensors the decoder reads).
    std::vector<int> session_buffers;

    // Points every argument table at `base`, an arena of at least layout.arena_bytes.
    void bind(std::byte* base);
    std::byte* buffer(int b) const {
        return b < 0 ? nullptr : bound_base + layout.offsets[static_cast<std::size_t>(b)];
    }
    TensorView view(TensorId t, DType dtype, const std::vector<int>& buffers) const {
        return {dtype, shapes[static_cast<std::size_t>(t)], buffer(buffers[static_cast<std::size_t>(t)])};
    }
    // The step at which the most bytes are alive, and the buffers alive then.
    std::string memory_report() const;
};

}  // namespace nngraph
