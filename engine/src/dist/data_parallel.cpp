#include "dist/data_parallel.hpp"

#include <algorithm>
#include <cstring>

#include "nngraph/error.hpp"

namespace nngraph::dist {

Share share_of(std::int64_t count, int rank, int size) {
    const std::int64_t base = count / size, extra = count % size;
    return {rank * base + std::min<std::int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

std::uint64_t fingerprint(const void* data, std::size_t bytes, std::uint64_t hash) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 0x100000001b3ULL;
    return hash;
}

std::uint64_t fingerprint(const std::vector<Tensor>& tensors, std::uint64_t hash) {
    for (const Tensor& t : tensors) {
        for (std::int64_t d : t.shape()) hash = fingerprint(&d, sizeof d, hash);
        if (!t.empty()) hash = fingerprint(t.raw(), t.nbytes(), hash);
    }
    return hash;
}

void check_ranks_agree(Communicator& comm, const std::vector<Fingerprint>& fingerprints) {
    if (comm.size() == 1) return;
    const std::size_t k = fingerprints.size();
    std::vector<std::uint64_t> root(k);
    for (std::size_t i = 0; i < k; ++i) root[i] = fingerprints[i].value;
    comm.broadcast(std::as_writable_bytes(std::span(root)), 0);
    // One slot per (rank, input): summing them tells every rank who differs in what.
    std::vector<double> differs(static_cast<std::size_t>(comm.size()) * k, 0.0);
    for (std::size_t i = 0; i < k; ++i) {
        if (fingerprints[i].value != root[i]) differs[static_cast<std::size_t>(comm.rank()) * k + i] = 1.0;
    }
    comm.allreduce_sum(std::span(differs));
    for (std::size_t slot = 0; slot < differs.size(); ++slot) {
        if (differs[slot] == 0.0) continue;
        const std::size_t rank = slot / k;
        const Fingerprint& input = fingerprints[slot % k];
        const bool mine = rank == static_cast<std::size_t>(comm.rank());
        throw InputError("rank " + std::to_string(rank) + " disagrees with rank 0 on the " + input.what +
                         (mine ? " " + input.source : std::string()) +
                         ": every rank must train the same model on the same data");
    }
}

}  // namespace nngraph::dist
