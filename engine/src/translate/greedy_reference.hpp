// Greedy decoding the plain way: each new token reruns the whole model over the source and the
// prefix so far. Slow but obviously right, it is the reference cached decoders are checked against.
#pragma once

#include "translate/decoding.hpp"

namespace nngraph {

// A DecodeFunction: at each step the most probable token at the prefix's last position is appended,
// until the end id (or the pad id, never a real token) or the decoder's length is reached.
std::vector<TargetIds> greedy_reference(Executor& model, const Tensor& source_ids, std::int64_t batch_size);

}  // namespace nngraph
