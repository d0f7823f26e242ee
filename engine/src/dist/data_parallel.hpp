// Data parallelism over a communicator: which rows of a global batch a rank takes, and the
// start-up check that all ranks hold the same model, weights and data (the gradient average is
// gradient_reducer.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "nngraph/tensor.hpp"

namespace nngraph::dist {

// A rank's contiguous share of `count` rows: as even as the ranks allow, the first ranks one row
// more when `count` does not divide.
struct Share {
    std::int64_t offset = 0;
    std::int64_t count = 0;
};
Share share_of(std::int64_t count, int rank, int size);

// A stable 64-bit fingerprint (FNV-1a) of bytes, for comparing ranks' inputs.
std::uint64_t fingerprint(const void* data, std::size_t bytes, std::uint64_t hash = 0xcbf29ce484222325ULL);
std::uint64_t fingerprint(const std::vector<Tensor>& tensors, std::uint64_t hash = 0xcbf29ce484222325ULL);

struct Fingerprint {
    std::string what;    // the kind of input: "model file"
    std::string source;  // where this rank read it, which may differ between ranks: "'m.yaml'"
    std::uint64_t value = 0;
};
// Compares every rank's fingerprints (the same list in the same order on every rank) with rank 0's.
// On any difference every rank throws an InputError naming the first rank and input that differ
// (the differing rank also names its source), so the job stops instead of training diverged copies.
void check_ranks_agree(Communicator& comm, const std::vector<Fingerprint>& fingerprints);

}  // namespace nngraph::dist
