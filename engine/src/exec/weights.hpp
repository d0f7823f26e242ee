// Initial weight values (Keras's initializers, seeded per weight name) and weights by name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "graph/graph.hpp"

namespace nngraph {

// Fills `values` (one tensor per graph weight, already shaped) with each weight's inline value
// from the model file, or else its initializer drawn from a stream derived from `seed` and the
// weight's name: the same seed gives the same weights whatever else the graph contains.
void initialize_weights(const Graph& graph, std::uint64_t seed, std::vector<Tensor>& values);

// Draws one initializer into `out` (exposed for tests).
void apply_initializer(const WeightInfo& info, std::uint64_t seed, Tensor& out);

// Copies every graph weight from `file` by its name "<node>.<weight>". A weight missing from the
// file, or present with another shape or dtype, is an InputError naming it; entries the graph does
// not have are ignored (so a checkpoint with optimiser state loads too). `source` names the file.
void load_weights_by_name(const Graph& graph, const std::map<std::string, Tensor>& file, const std::string& source,
                          std::vector<Tensor>& values, bool require_all = true);

}  // namespace nngraph
