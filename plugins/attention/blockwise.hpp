// BlockwiseCore: attention without the (Tq, Tv) score matrix (FlashAttention's scheme, Dao et al.
// 2022). Queries and keys go in tiles of 64; each query tile keeps a running row maximum, a running
// sum of exponentials and an unnormalised output, rescaled whenever the maximum grows (the online
// softmax). Forward saves two floats per query row (the maximum and 1 / the sum); backward
// recomputes each tile's probabilities from them, so memory grows linearly with the sequence.
//
// The same core computes the sparse patterns (see Pattern in core.hpp) by skipping the tiles a
// pattern excludes. Masks, causal masking, scales and dropout are those of every core; dropout's
// keep decisions are the same counter-based draws as the dense core's, so for one seed both cores
// drop the same probabilities.
#pragma once

#include "core.hpp"

namespace nngraph_attention {

class BlockwiseCore final : public AttentionCore {
public:
    explicit BlockwiseCore(const Pattern& pattern) : pattern_(pattern) {}

    CoreWork work(const Problem& p) const override;
    const BufferList& buffers(const Problem& p, bool training) const override;
    bool backward_reads_output() const override { return true; }
    void forward(const Problem& p, const Buffers& buffers) const override;
    void backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                  const CoreGradients& grads) const override;

private:
    struct Ids;
    Ids declare(const Problem& p, bool training, BufferList& list) const;
    const DeclaredBuffers<BufferShape, Ids>::Entry& declared(const Problem& p, bool training) const;
    Ids ids(const Problem& p, const Buffers& buffers) const;

    Pattern pattern_;
    DeclaredBuffers<BufferShape, Ids> declared_;
};

}  // namespace nngraph_attention
