// The pooling plugin: Keras's GlobalAveragePooling1D, GlobalMaxPooling1D, AveragePooling1D and
// MaxPooling1D.
#include "nngraph/onednn.hpp"
#include "pooling.hpp"

NNG_PLUGIN_WITH_COUNTERS("pooling", "0.1.0", &nng::onednn::counters, nngraph_pooling::global_average_pooling_op(),
                         nngraph_pooling::global_max_pooling_op(), nngraph_pooling::average_pooling_op(),
                         nngraph_pooling::max_pooling_op())
