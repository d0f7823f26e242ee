// Fitting tensors read from data files to what a graph needs: the input's dtype, the loss's targets.
#pragma once

#include <cstddef>
#include <string>

#include "graph/graph.hpp"

namespace nngraph {

// The targets a loss needs for `graph`'s output `index`, from `values` (rows = samples): class ids
// become one-hot rows for categorical_crossentropy; other shapes must hold the same count per row.
Tensor fit_targets(const Graph& graph, std::size_t index, const std::string& loss, Tensor values,
                   const std::string& what);

// Converts a tensor to `dtype` (integers checked to fit); throws InputError naming `what`.
Tensor convert_dtype(const Tensor& tensor, DType dtype, const std::string& what);

}  // namespace nngraph
