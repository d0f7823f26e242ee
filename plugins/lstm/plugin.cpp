// The lstm plugin: Keras's LSTM layer on oneDNN.
#include "lstm.hpp"

NNG_PLUGIN_WITH_COUNTERS("lstm", "0.1.0", &nngraph_lstm::counters, nngraph_lstm::lstm_op())
