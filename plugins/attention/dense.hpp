// DenseCore: the whole (G, Tq, Tv) score matrix in memory. The oneDNN module does the matmuls of
// each direction and the softmax both ways (onednn::softmax_forward, a row kernel of its own for
// rows of 16 or more); the passes of its own are the masks (before the softmax), the zeroing of
// masked rows and dropout (after it), each one sweep over the scores. It saves the probabilities
// (and dropout's keep bits) for backward: with rows of 16 keys or more unnormalised, the division
// by each row's sum left to the rows of P·v and, in backward, of dL/dout.
#pragma once

#include "core.hpp"

namespace nngraph_attention {

class DenseCore final : public AttentionCore {
public:
    // Where the raw scores come from: alpha·q·kᵀ, or the op (another score function, e.g.
    // Attention's concat), which writes them into scores() before forward and takes dL/dscores
    // from backward_to_scores() instead of calling backward.
    enum class Scores { kDot, kGiven };
    explicit DenseCore(Scores scores = Scores::kDot) : scores_(scores) {}

    CoreWork work(const Problem& p, bool training) const override;
    const BufferList& buffers(const Problem& p, bool training) const override;
    // Its softmax backward takes each row's sum from dL/dout · out.
    bool backward_reads_output() const override { return true; }
    bool adds_dk_into_dq() const override { return scores_ == Scores::kDot; }
    bool adds_dq_onto_dv() const override { return scores_ == Scores::kDot; }
    void forward(const Problem& p, const Buffers& buffers) const override;
    void backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                  const CoreGradients& grads) const override;

    // kGiven: the (G, Tq, Tv) matrix forward reads the raw scores from.
    float* scores(const Problem& p, const Buffers& buffers) const;
    // kGiven: dv and the whole dL/dscores (G, Tq, Tv), which it returns (in its backward scratch).
    float* backward_to_scores(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                              const onednn::View& dv) const;

private:
    struct Ids;
    Ids declare(const Problem& p, bool training, BufferList& list) const;
    const DeclaredBuffers<BufferShape, Ids>::Entry& declared(const Problem& p, bool training) const;
    Ids ids(const Problem& p, const Buffers& buffers) const;

    Scores scores_;
    DeclaredBuffers<BufferShape, Ids> declared_;
};

}  // namespace nngraph_attention
