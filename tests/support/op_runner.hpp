// Drives one op straight through the plugin ABI, with no graph around it: the op under a
// microscope. Gradient checks, reference comparisons and benchmarks of single ops build on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nngraph/op_types.hpp"
#include "nngraph/registry.hpp"
#include "nngraph/sequence_shard.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph {
class OpInstance;
class AttributeValues;
}  // namespace nngraph

namespace nngraph::testing {

// The plugins built with the engine (loaded once per process).
const OpRegistry& built_plugins();

class OpRunner {
public:
    // `attributes` is a YAML map, e.g. "{units: 4, activation: relu}". `input_masks[i]` says whether
    // input i arrives with a mask. Shapes are concrete (batch included). Throws on any op error.
    // `precision` is the node's dtype policy.
    OpRunner(const std::string& op, const std::string& attributes, const std::vector<TensorInfo>& inputs,
             const std::vector<bool>& input_masks = {}, bool training = true,
             nng_precision precision = NNG_PRECISION_FLOAT32)
        : OpRunner(built_plugins(), op, attributes, inputs, input_masks, training, precision) {}
    // The same with the op looked up in `registry` (which must outlive the runner).
    OpRunner(const OpRegistry& registry, const std::string& op, const std::string& attributes,
             const std::vector<TensorInfo>& inputs, const std::vector<bool>& input_masks = {}, bool training = true,
             nng_precision precision = NNG_PRECISION_FLOAT32);
    ~OpRunner();
    OpRunner(const OpRunner&) = delete;
    OpRunner& operator=(const OpRunner&) = delete;

    const InferResult& shapes() const { return shapes_; }
    // The bytes the op declared for buffer `name` (of one slice, for a per-thread one) in the last
    // plan; throws when it declared none of that name.
    std::uint64_t buffer_bytes(const std::string& name) const;
    // The bytes of every declared buffer, all slices, as the last call had them.
    std::uint64_t declared_bytes() const;
    std::vector<Tensor>& inputs() { return inputs_; }
    std::vector<Tensor>& input_masks() { return input_masks_; }  // (batch, steps) U8; empty tensor: none
    std::vector<Tensor>& weights() { return weights_; }
    const std::vector<Tensor>& outputs() const { return outputs_; }
    const std::vector<Tensor>& output_masks() const { return output_masks_; }
    const std::vector<Tensor>& grad_inputs() const { return grad_inputs_; }
    const std::vector<Tensor>& grad_weights() const { return grad_weights_; }

    // nng_context.batch_offset of the following calls: where the batch starts in a global one.
    void set_batch_offset(std::int64_t rows) { batch_offset_ = rows; }
    // nng_context.sequence_shard of the following calls: the inputs hold this share of the steps.
    void set_sequence_shard(const SequenceShard& shard) { sequence_shard_ = shard.to_c(), has_shard_ = true; }

    // Initialises weights with their declared initializers.
    void initialize_weights(std::uint64_t seed);
    // `training` and `deterministic` as in nng_context; the same seed reproduces random ops.
    // Declared buffers are planned for `threads` and `training`; backward follows a training
    // forward with the same thread count.
    void forward(bool training, std::uint64_t seed = 1, bool deterministic = false, int threads = 1);
    // Backward after a training forward; an empty tensor in `grad_outputs` means zero gradient.
    // `want_input[i]` false passes no buffer for input i's gradient.
    void backward(const std::vector<Tensor>& grad_outputs, std::uint64_t seed = 1, std::vector<bool> want_input = {},
                  int threads = 1);

private:
    struct Call;
    std::unique_ptr<Call> prepare_call(bool training, std::uint64_t seed, int threads);
    // Infers again when `threads` or `training` differs from what the declared buffers were
    // planned for (as the executor plans each apart), and gives every buffer memory of its own.
    void plan_buffers(int threads, bool training);

    std::unique_ptr<AttributeValues> attributes_;
    std::unique_ptr<OpInstance> instance_;
    InferResult shapes_;
    std::vector<Tensor> inputs_, input_masks_, weights_, outputs_, output_masks_;
    std::vector<Tensor> grad_inputs_, grad_weights_;
    std::vector<TensorInfo> input_infos_;
    std::int64_t batch_offset_ = 0;
    nng_sequence_shard sequence_shard_{};
    bool has_shard_ = false;
    std::vector<bool> input_has_mask_;
    int buffer_threads_ = 0;
    bool buffer_training_ = true;
    std::vector<Tensor> buffers_;  // per declared buffer, all slices
    std::vector<nng_buffer> buffer_views_;
};

}  // namespace nngraph::testing
