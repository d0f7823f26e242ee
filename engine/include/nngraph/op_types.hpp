// What shape inference says about an op instance: its outputs, weights and the buffers it needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nngraph/plugin.h"
#include "nngraph/tensor.hpp"

namespace nngraph {

struct TensorInfo {
    DType dtype = DType::F32;
    Shape shape;  // dim 0 is -1 while the batch is unknown
};

struct OutputInfo {
    TensorInfo tensor;
    nng_output_role role = NNG_OUTPUT_VISIBLE;
    int logits_of = -1;
    nng_mask_rule mask_rule = NNG_MASK_NONE;
    int mask_source = -1;
    Shape mask_shape;
};

struct WeightInfo {
    std::string name;  // Keras's name within the node: "kernel"
    Shape shape;
    nng_initializer initializer = NNG_INIT_ZEROS;
    double params[2] = {0, 0};
    bool trainable = true;
};

// A scratch or saved buffer an op declared (nng_buffer_spec).
struct BufferDeclaration {
    std::string name;
    nng_buffer_lifetime lifetime = NNG_BUFFER_PER_CALL;
    std::uint64_t bytes = 0;  // of one slice for NNG_BUFFER_PER_THREAD
};

struct InferResult {
    std::vector<OutputInfo> outputs;
    std::vector<WeightInfo> weights;
    std::uint32_t backward_needs = NNG_NEEDS_ALL;
    int inference_identity = -1;  // the input output 0 is when not training, or -1
    std::vector<BufferDeclaration> buffers;
    // The op's count of one call's work at these shapes (nng_infer_io.forward_flops, ...).
    std::int64_t forward_flops = 0, forward_bytes = 0, backward_flops = 0, backward_bytes = 0;
    // On one rank's share of the steps (nng_infer_io.sequence_role, sequence_layout).
    nng_sequence_role sequence_role = NNG_SEQUENCE_REFUSED;
    nng_shard_layout sequence_layout = NNG_SHARD_CONTIGUOUS;
    // In an inference plan run slice by slice (nng_infer_io.batch_slicing).
    nng_batch_slicing batch_slicing = NNG_SLICING_REFUSED;
    // Backward sums a tensor's gradients over the inputs it is given as (nng_infer_io.sums_repeated_gradients).
    bool sums_repeated_gradients = false;

    bool backward_needs_input(int i) const { return backward_needs & NNG_NEEDS_INPUT(i); }
    bool backward_needs_output(int j) const { return backward_needs & NNG_NEEDS_OUTPUT(j); }
};

}  // namespace nngraph
