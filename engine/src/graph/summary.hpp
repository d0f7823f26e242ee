// Human views of a graph: Keras's model.summary() table and a Graphviz picture.
#pragma once

#include <string>

#include "graph/graph.hpp"

namespace nngraph {

// Keras 3's summary table: three columns for a Sequential model (without its InputLayer) and a
// chain-shaped Functional one, the "Connected to" column too otherwise; then total, trainable and
// non-trainable parameter counts with their size.
std::string summary(const Graph& graph);

// A Graphviz digraph: one box per node (name, op, attributes, input and output shapes), the
// graph's inputs as ellipses and its outputs as their own nodes, one edge per tensor use, one font.
// `rankdir` is Graphviz's (TB, LR, BT, RL); `attributes`: label nodes with the attributes the model
// file gives.
std::string to_dot(const Graph& graph, const std::string& rankdir = "TB", bool attributes = true);

// "160,033"
std::string with_thousands(std::int64_t value);
// Keras's readable_memory_size: "625.13 KB".
std::string readable_bytes(double bytes);

}  // namespace nngraph
