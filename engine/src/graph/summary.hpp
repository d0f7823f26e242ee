// Human views of a graph: Keras's model.summary() table and a Graphviz picture.
#pragma once

#include <string>

#include "graph/graph.hpp"

namespace nngraph {

// Keras 3's summary table: three columns for a Sequential model (without its InputLayer) and a
// chain-shaped Functional one, the "Connected to" column too otherwise; then total, trainable and
// non-trainable parameter counts with their size. The table is `line_length` columns wide, split
// as Keras splits it; text that does not fit wraps at spaces, and a word longer than its column
// is cut with an ellipsis; 0: summary_line_length(graph). Throws InputError when a column would be
// narrower than 4.
std::string summary(const Graph& graph, int line_length = 0);
// Keras's default line length: 88 columns (108 with "Connected to"), at most the terminal's width
// less 4.
int summary_line_length(const Graph& graph, int terminal_columns = 80);

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
