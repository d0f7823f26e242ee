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
    // Where the row statistics live: saved by a training forward for its backward, or (for a core
    // that runs this one on parts of its problem and merges them, ring.hpp) written by every
    // forward into call scratch, where backward reads them too.
    enum class Statistics { kSavedForBackward, kEveryCall };

    explicit BlockwiseCore(const Pattern& pattern, Statistics statistics = Statistics::kSavedForBackward)
        : pattern_(pattern), statistics_(statistics) {}

    CoreWork work(const Problem& p, bool training) const override;
    const BufferList& buffers(const Problem& p, bool training) const override;
    bool backward_reads_output() const override { return true; }
    void forward(const Problem& p, const Buffers& buffers) const override;
    void backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                  const CoreGradients& grads) const override;
    // The row statistics (G, tq, 2) as a forward writes them and a backward reads them: per query
    // row its score maximum m and 1 / its exponential sum l (m = -inf and 0 for a row that saw no
    // key: a skipped or uniform one).
    float* statistics(const Problem& p, const Buffers& buffers) const;

private:
    struct Ids;
    Ids declare(const Problem& p, bool training, BufferList& list) const;
    const DeclaredBuffers<BufferShape, Ids>::Entry& declared(const Problem& p, bool training) const;
    Ids ids(const Problem& p, const Buffers& buffers) const;

    Pattern pattern_;
    DeclaredBuffers<BufferShape, Ids> declared_;
    Statistics statistics_;
};

}  // namespace nngraph_attention
