// Sequence parallelism: under mpirun every rank holds the whole batch but only its share of every
// sample's steps (SequenceShard says which). Decided once per model at load: which tensors hold
// shares, which op calls see them, and whether each weight's gradient is a partial sum over a
// share of the steps or the same whole gradient on every rank.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "dist/communicator.hpp"
#include "exec/loss.hpp"
#include "graph/graph.hpp"
#include "nngraph/sequence_shard.hpp"

namespace nngraph {

struct SequenceParallelism {
    SequenceShard shard;              // this rank's share of the steps
    std::vector<bool> sharded;        // per tensor (masks included): holds shares along axis 1
    std::vector<bool> sharded_call;   // per node: its inputs hold shares (its calls get the shard)
    std::vector<bool> partial_grads;  // per weight: a sum over this rank's steps, to be summed over ranks
};

// What `graph` asks of a job of `parts` ranks (this one `part`): nothing when it runs whole
// sequences (one rank; sequence_parallel false, or auto without an op that spreads the sequence).
// Throws InputError naming the node and why when an op cannot run on a share of the steps, and
// naming the input when its steps do not split over the ranks.
std::optional<SequenceParallelism> plan_sequence_parallelism(const Graph& graph, int parts, int part);

// The whole tensor of which `share` (batch, local steps, ...) is this rank's share: every rank's
// steps in their global places (an allreduce over `comm`). F32 only.
Tensor whole_sequence(const TensorView& share, const SequenceShard& shard, dist::Communicator& comm);

}  // namespace nngraph
