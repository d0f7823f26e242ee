#include "core.hpp"

#include <omp.h>

#include <cmath>

#include "blockwise.hpp"
#include "dense.hpp"
#include "lsh.hpp"
#include "ring.hpp"

namespace nngraph_attention {

BufferShape::BufferShape(const Problem& p, bool training)
    : batch(p.batch),
      heads(p.heads),
      tq(p.tq),
      tv(p.tv),
      dk(p.dk),
      dv(p.dv),
      style(p.style),
      may_drop(p.may_drop),
      zero_masked(p.zero_masked),
      alpha_gradient(p.alpha_gradient),
      key_is_query(p.key_is_query),
      two_key_masks(p.two_key_masks),
      bfloat16(p.bfloat16),
      training(training),
      threads(omp_get_max_threads()),
      lent_gradient_blocks(p.lent_gradient_blocks) {}

void set_dropout_rate(Problem& p, double rate) {
    p.drop_threshold = static_cast<std::uint32_t>(std::llround(std::ldexp(rate, 16)));
    p.keep_scale = static_cast<float>(1.0 / (1.0 - rate));
}

std::unique_ptr<AttentionCore> make_core(CoreKind kind, const Pattern& pattern) {
    if (pattern.lsh()) return std::make_unique<LshCore>(pattern.lsh_hashes, pattern.lsh_bucket_size);
    if (kind == CoreKind::kRing) return std::make_unique<RingCore>(pattern);
    if (kind == CoreKind::kBlockwise || pattern.sparse()) return std::make_unique<BlockwiseCore>(pattern);
    return std::make_unique<DenseCore>();
}

}  // namespace nngraph_attention
