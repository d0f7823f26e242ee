// The row softmax of self-attention's scores with one tensor as query and key, s = alpha·x·xᵀ:
// one exponential for each pair of mirror entries, where the plain softmax takes two.
#pragma once

#include <cstdint>

namespace nngraph_attention {

// The floats of scratch symmetric_softmax takes for an (n, n) matrix.
std::int64_t symmetric_softmax_scratch(std::int64_t n);

// The softmax of each row of the (n, n) matrix s = alpha·x·xᵀ, row-major, in place. Reads only
// the 8 x 8 tiles on and left of the diagonal (s[i][j] for j < 8·(i/8 + 1)) and the rows past the
// last whole tile (from 8·(n/8) on) in full; the other entries are written, never read.
//
// The softmax is e^(s_ij - m) / sum_j e^(s_ij - m) for any shift m; the plain one takes each
// row's maximum, so that nothing overflows. For such an s, |s_ij| <= |alpha|·|x_i|·|x_j| is at
// most the largest |s_ii| (Cauchy and Schwarz), so when that is small every e^(s_ij) is safe with
// no shift at all: then s_ij and s_ji share one exponential, taken on the given side and copied
// across. Where the diagonal is too large for that (or not finite) it returns false having written
// nothing to s, for the caller to run the plain softmax.
//
// With inverse_sums the division is left to the caller as in onednn::softmax_forward: s gets the
// exponentials and inverse_sums[i] 1 / row i's sum.
bool symmetric_softmax(float* s, std::int64_t n, float* inverse_sums, float* scratch);

// The softmax's backward with given row terms (see onednn::softmax_backward), dS = e ⊙ (d - terms[i])
// for row i, then dS + dSᵀ, the gradient of one tensor as query and key, into both halves of the
// (n, n) matrix d (dL/dP in). e is the forward's saved (n, n) matrix (probabilities, or
// exponentials with the terms scaled to match). dS is never stored apart.
void symmetrized_softmax_backward(const float* e, float* d, const float* terms, std::int64_t n);

}  // namespace nngraph_attention
