#include "exec/plan.hpp"

#include <algorithm>
#include <cstdio>

#include "plugins/op_instance.hpp"

namespace nngraph {

void TensorTable::add(DType dtype, const Shape& shape, int buffer) {
    nng_tensor t{};
    t.struct_size = sizeof(nng_tensor);
    t.dtype = static_cast<nng_dtype>(dtype);
    t.shape = to_c_shape(shape);
    entries.push_back(t);
    buffers.push_back(buffer);
}

void BufferTable::add(std::uint64_t slice_bytes, std::uint64_t slice_stride, int slices, int buffer) {
    entries.push_back(nng_buffer{nullptr, slice_bytes, slice_stride, slices});
    buffers.push_back(buffer);
}

void NodeCall::bind(std::byte* base, const std::vector<std::size_t>& offsets) {
    for (TensorTable* table :
         {&inputs, &input_masks, &outputs, &output_masks, &weights, &grad_outputs, &grad_inputs, &grad_weights}) {
        table->bind(base, offsets);
    }
    forward_buffers.bind(base, offsets);
    backward_buffers.bind(base, offsets);
    args = nng_exec_args{};
    args.struct_size = sizeof(nng_exec_args);
    args.num_inputs = inputs.size();
    args.inputs = inputs.data();
    args.input_masks = input_masks.data();
    args.num_outputs = outputs.size();
    args.outputs = outputs.data();
    args.output_masks = output_masks.data();
    args.num_weights = weights.size();
    args.weights = weights.data();
    args.grad_outputs = grad_outputs.data();
    args.grad_inputs = grad_inputs.data();
    args.grad_weights = grad_weights.data();
    args.num_buffers = forward_buffers.size();
    args.buffers = forward_buffers.data();
    backward_args = args;
    backward_args.buffers = backward_buffers.data();
}

void ExecutionPlan::bind(std::byte* base) {
    if (bound_base == base) return;
    bound_base = base;
    for (NodeCall& call : calls) call.bind(base, layout.offsets);
}

std::string ExecutionPlan::memory_report() const {
    int last_step = 0;
    for (const BufferRequest& r : requests) last_step = std::max(last_step, r.last_step);
    int peak_step = 0;
    std::size_t peak = 0;
    for (int step = 0; step <= last_step; ++step) {
        std::size_t live = 0;
        for (const BufferRequest& r : requests) live += r.first_step <= step && step <= r.last_step ? r.bytes : 0;
        if (live > peak) {
            peak = live;
            peak_step = step;
        }
    }
    std::vector<std::size_t> order(requests.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return requests[a].bytes > requests[b].bytes; });
    char line[256];
    std::string out;
    std::snprintf(
        line, sizeof line,
        "arena %.2f MB for %zu buffers (%.2f MB laid end to end); %.2f MB alive at step %d, the most at any step:\n",
        double(layout.arena_bytes) / 1048576.0, requests.size(), double(layout.requested_bytes) / 1048576.0,
        double(peak) / 1048576.0, peak_step);
    out += line;
    for (std::size_t i : order) {
        const BufferRequest& r = requests[i];
        if (r.first_step > peak_step || r.last_step < peak_step || r.bytes < 4096) continue;
        std::snprintf(line, sizeof line, "  %9.3f MB  steps %3d..%-3d  %s\n", double(r.bytes) / 1048576.0, r.first_step,
                      r.last_step, request_names[i].c_str());
        out += line;
    }
    return out;
}

}  // namespace nngraph
