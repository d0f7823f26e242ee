// The dense plugin: Keras's core layers Dense and Activation.
#include "activation.hpp"

NNG_PLUGIN_WITH_COUNTERS("dense", "0.1.0", &nng::onednn::counters, nngraph_dense::dense_op(),
                         nngraph_dense::activation_op())
