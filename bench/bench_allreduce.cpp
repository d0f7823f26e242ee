// The communicator's float sum-allreduce timed under mpirun, to check the cost model of
// docs/distributed.md (T = 2(p-1)/p * n/beta + 2(p-1) * alpha) on this machine. Every rank runs the
// same fixed repetitions (an adaptive benchmark loop could let ranks disagree on the count and
// hang), each after a barrier, so what is timed is the reduction, not the ranks' imbalance.
//
// Usage: mpirun -np P bench_allreduce [--repeat N] [FLOATS...]
//   default sizes: 1 float, 256, 16,384, then imdb_attention's 160,033 and imdb_lstm's 248,901
//   gradients; default 200 repetitions. Rank 0 prints the median and the 90th percentile of the
//   blocking allreduce and of the non-blocking one waited for (what the gradient average uses),
//   then alpha and beta as the two ends of the size range imply them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dist/communicator.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
    double median_ms = 0.0, p90_ms = 0.0;
};

Timing summarize(std::vector<double> ms) {
    std::sort(ms.begin(), ms.end());
    return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 9 / 10)]};
}

// Times `reduce` over `values` `repeat` times after a few untimed rounds that set up the transfer.
template <class Reduce>
Timing time_reduce(nngraph::dist::Communicator& comm, std::vector<float>& values, int repeat, Reduce reduce) {
    for (int i = 0; i < 5; ++i) reduce(values);
    std::vector<double> ms;
    for (int i = 0; i < repeat; ++i) {
        comm.barrier();
        const auto start = Clock::now();
        reduce(values);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        // Sums of ones grow by the rank count each round; restart them so they stay finite.
        std::fill(values.begin(), values.end(), 1.0f);
    }
    return summarize(ms);
}

}  // namespace

int main(int argc, char** argv) {
    int repeat = 200;
    std::vector<std::size_t> sizes;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--repeat" && i + 1 < argc)
            repeat = std::max(1, std::atoi(argv[++i]));
        else
            sizes.push_back(std::strtoull(arg.c_str(), nullptr, 10));
    }
    if (sizes.empty()) sizes = {1, 256, 16384, 160033, 248901};
    std::sort(sizes.begin(), sizes.end());
    nngraph::dist::Communicator& comm = nngraph::dist::world();
    const int p = comm.size();
    const bool leader = comm.rank() == 0;
    if (leader) {
        std::printf("float sum-allreduce over %d ranks, %d repetitions a size (rank 0's times)\n", p, repeat);
        std::printf("%10s %10s   %-24s %-24s\n", "floats", "bytes", "blocking (median, p90)",
                    "async+wait (median, p90)");
    }
    std::vector<Timing> blocking;
    for (const std::size_t n : sizes) {
        std::vector<float> values(std::max<std::size_t>(n, 1), 1.0f);
        const Timing b = time_reduce(comm, values, repeat, [&](std::vector<float>& v) { comm.allreduce_sum(v); });
        const Timing a = time_reduce(comm, values, repeat, [&](std::vector<float>& v) {
            comm.allreduce_sum_async(std::span<float>(v))->wait();
        });
        blocking.push_back(b);
        if (leader)
            std::printf("%10zu %10zu   %8.4f %8.4f ms      %8.4f %8.4f ms\n", n, n * sizeof(float), b.median_ms,
                        b.p90_ms, a.median_ms, a.p90_ms);
    }
    if (leader && p > 1 && sizes.size() > 1) {
        // The smallest message is nearly all latency; the largest, after that latency, bandwidth.
        const double messages = 2.0 * (p - 1);
        const double alpha_s = blocking.front().median_ms * 1e-3 / messages;
        const double bytes = messages / p * double(sizes.back() * sizeof(float));
        const double transfer_s = blocking.back().median_ms * 1e-3 - messages * alpha_s;
        std::printf("implied by the medians: alpha %.2f us a message, beta %.2f GB/s\n", alpha_s * 1e6,
                    transfer_s > 0 ? bytes / transfer_s * 1e-9 : 0.0);
    }
    return 0;
}
