#include "core.hpp"

#include <cmath>

#include "blockwise.hpp"
#include "dense.hpp"
#include "lsh.hpp"
#include "ring.hpp"

namespace nngraph_attention {

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
