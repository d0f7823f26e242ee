// Human views of a graph: Keras's model.summary() table and a Graphviz picture.
#pragma once

#include <string>

#include "graph/graph.hpp"

namespace nngraph {

// Keras 3's summary table (with the Functional model's "Connected to" column for both styles, so
// that one graph written either way prints the same), then total, trainable and non-trainable
// parameter counts with their size.
std::string summary(const Graph& graph);

// A Graphviz digraph: one box per node (name, op, output shape), one edge per tensor use.
std::string to_dot(const Graph& graph);

// "160,033"
std::string with_thousands(std::int64_t value);
// Keras's readable_memory_size: "625.13 KB".
std::string readable_bytes(double bytes);

}  // namespace nngraph
