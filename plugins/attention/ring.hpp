// RingCore: attention over a sequence shared by the ranks of a job (ring attention, Liu, Zaharia
// and Abbeel 2023). Each rank holds its share of the steps (Problem::shard, nngraph::SequenceShard):
// its queries stay home while the key and value blocks, with their key masks, travel around the
// ring of ranks; each transfer is overlapped with the blockwise computation on the block that has
// arrived (two slots: one computed on, one being received into).
//
// Every (query piece, key piece) pair is a blockwise problem (BlockwiseCore) placed at its global
// positions (Problem::query_start, key_start), so causality, windows and dropout's draws are those
// of the whole sequence; the pairs' outputs merge by their log-sum-exp into the rank's output and
// row statistics, the same two floats per row the blockwise core saves. Backward sends the key and
// value blocks around again, followed by their gradient accumulators, each rank adding what its
// queries contribute; after a full turn every accumulator is back home.
//
// With the zigzag layout a rank holds pieces r and 2N-1-r, so under causal masking every rank
// computes the same number of visible pairs. Without a shard (one process) it is the blockwise
// core on the whole sequence.
#pragma once

#include "blockwise.hpp"
#include "core.hpp"

namespace nngraph_attention {

class RingCore final : public AttentionCore {
public:
    explicit RingCore(const Pattern& pattern)
        : pattern_(pattern), blocks_(pattern, BlockwiseCore::Statistics::kEveryCall) {}

    CoreWork work(const Problem& p, bool training) const override;
    const BufferList& buffers(const Problem& p, bool training) const override;
    bool backward_reads_output() const override { return true; }
    void forward(const Problem& p, const Buffers& buffers) const override;
    void backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                  const CoreGradients& grads) const override;

private:
    struct Ids;
    Ids declare(const Problem& p, bool training, BufferList& list) const;
    const DeclaredBuffers<BufferShape, Ids>::Entry& declared(const Problem& p, bool training) const;

    Pattern pattern_;
    BlockwiseCore blocks_;  // computes every (query piece, key piece) pair
    DeclaredBuffers<BufferShape, Ids> declared_;
};

// What this process's ring cores have spent, for the plugin's counters: nanoseconds inside their
// forward and backward calls, and of those, waiting for transfers (what the overlap left exposed).
struct RingTimes {
    std::int64_t call_nanoseconds, wait_nanoseconds;
};
RingTimes ring_times();

}  // namespace nngraph_attention
