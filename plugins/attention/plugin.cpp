// The attention plugin: Keras's Attention and MultiHeadAttention on one attention core.
#include "nngraph/onednn.hpp"
#include "ring.hpp"

namespace nngraph_attention {
const nng_op_def* attention_op();
const nng_op_def* multi_head_attention_op();

// oneDNN's counters and the ring cores' time.
std::int32_t counters(nng_counter* out, std::int32_t capacity) {
    std::int32_t n = nng::onednn::counters(out, capacity);
    if (!out) return 0;
    const RingTimes ring = ring_times();
    if (n < capacity) out[n++] = {"attention.ring_call_ns", ring.call_nanoseconds};
    if (n < capacity) out[n++] = {"attention.ring_wait_ns", ring.wait_nanoseconds};
    return n;
}
}  // namespace nngraph_attention

NNG_PLUGIN_WITH_COUNTERS("attention", "0.1.0", &nngraph_attention::counters, nngraph_attention::attention_op(),
                         nngraph_attention::multi_head_attention_op())
