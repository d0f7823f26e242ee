// The attention plugin: Keras's Attention and MultiHeadAttention on one attention core.
#include "nngraph/onednn.hpp"

namespace nngraph_attention {
const nng_op_def* attention_op();
const nng_op_def* multi_head_attention_op();
}  // namespace nngraph_attention

NNG_PLUGIN_WITH_COUNTERS("attention", "0.1.0", &nng::onednn::counters, nngraph_attention::attention_op(),
                         nngraph_attention::multi_head_attention_op())
