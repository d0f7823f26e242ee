// LshCore: Reformer's LSH attention (Kitaev, Kaiser and Levskaya, ICLR 2020) on shared query-keys.
//
// Keys are the queries scaled to unit length (p.k is not read). In each of `num_hashes` rounds the
// positions are hashed by a random rotation of their head (lsh_hashing.hpp), sorted by (bucket,
// position) and cut into chunks of `bucket_size`; a chunk's queries attend to the keys of that
// chunk and of the one before it (the first chunk's is the last: the order wraps around). Masks
// and causality apply in original positions; a position's score with itself is -1e5. The rounds'
// partial softmaxes are merged by their log-sum-exp, so the output is Σ_rounds Σ_keys
// exp(score - LSE) · value, LSE the log-sum-exp over every (round, key) a query saw.
//
// Forward saves per query its score maximum m and 1 / its exponential sum (over all rounds) and
// per round the sorted order; backward recomputes each chunk's scores from them, as the blockwise
// core does, so memory is linear in the steps (nothing of size steps x steps unless one chunk is
// the whole sequence). With the total LSE saved, no round needs its own output or weight in
// backward: dscore = exp(score - LSE) · (dO·v - dO·O) for every (round, key).
// No dropout: the ops refuse a dropout rate with lsh.
#pragma once

#include "core.hpp"

namespace nngraph_attention {

class LshCore final : public AttentionCore {
public:
    LshCore(std::int64_t num_hashes, std::int64_t bucket_size) : hashes_(num_hashes), bucket_size_(bucket_size) {}

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
    Ids ids(const Problem& p, const Buffers& buffers) const;

    std::int64_t hashes_, bucket_size_;
    DeclaredBuffers<BufferShape, Ids> declared_;
};

}  // namespace nngraph_attention
