// One attention layer over a long sequence, forward + backward: MultiHeadAttention (4 heads of 16,
// batch 1, self-attention on 64 features) with the blockwise core in one process, or with the
// ring core on this rank's share of the steps under `mpirun -np N` (contiguous shares). Each rank
// prints one line: the mean seconds per step (forward + backward, after one warm-up step), its
// peak resident memory (VmHWM, the whole process), and the share of the step the ring core spent
// waiting for transfers (the plugin's attention.ring_wait_ns counter).
//
// With --buffers 1, rank 0 also lists the buffers the layer declared (the host's view: one saved
// block, one scratch block shared by forward and backward, per-thread slices), in bytes and in
// bytes per local step, and the plugins' byte counters (memory held outside those buffers).
//
// Usage: bench_ring_attention --steps T --implementation blockwise|ring [--threads N] [--repeats R (0: the
//        warm-up step alone)]
//        [--buffers 0|1]
// bench/ring_attention.sh runs the comparison at 16k, 64k and 131,072 steps.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "dist/communicator.hpp"
#include "gradcheck.hpp"
#include "op_runner.hpp"

using namespace nngraph;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

constexpr std::int64_t kFeatures = 64;

// A /proc/self/status field in MiB (VmHWM).
double status_mib(const std::string& field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
    }
    return 0.0;
}

std::int64_t counter(const std::string& name) {
    const std::map<std::string, std::int64_t> all = testing::built_plugins().counters();
    const auto it = all.find(name);
    return it == all.end() ? 0 : it->second;
}

int run(int argc, char** argv) {
    std::int64_t steps = 16384;
    std::string implementation = "blockwise";
    int threads = 1, repeats = 2;
    bool list_buffers = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--steps")
            steps = std::stoll(v);
        else if (a == "--implementation")
            implementation = v;
        else if (a == "--threads")
            threads = std::stoi(v);
        else if (a == "--repeats")
            repeats = std::stoi(v);
        else if (a == "--buffers")
            list_buffers = v == "1";
        else
            throw std::invalid_argument("unknown option " + a);
    }
    const bool ring = implementation == "ring";
    dist::Communicator& world = ring ? dist::world() : dist::single_process();
    const SequenceShard shard(NNG_SHARD_CONTIGUOUS, world.size(), world.rank(), steps);
    const std::int64_t local = ring ? shard.local_steps() : steps;

    OpRunner layer("MultiHeadAttention", "{num_heads: 4, key_dim: 16, implementation: " + implementation + "}",
                   {{DType::F32, {1, local, kFeatures}}});
    if (ring) layer.set_sequence_shard(shard);
    layer.initialize_weights(1);
    fill_uniform(layer.inputs()[0], -1.0, 1.0, 2 + static_cast<std::uint64_t>(world.rank()));
    Tensor dout(DType::F32, {1, local, kFeatures});
    fill_uniform(dout, -1.0, 1.0, 3);

    const auto step = [&] {
        layer.forward(true, 1, false, threads);
        layer.backward({dout}, 1, {}, threads);
    };
    // The warm-up step plans buffers and touches memory; with --repeats 0 (memory only, for the
    // longest runs) it is the one timed.
    if (repeats > 0) step();
    const std::int64_t wait_before = counter("attention.ring_wait_ns");
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < std::max(repeats, 1); ++r) step();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double waited = double(counter("attention.ring_wait_ns") - wait_before) * 1e-9;
    std::cout << implementation << " steps " << steps << " rank " << world.rank() << "/" << world.size() << " threads "
              << threads << ": " << seconds / std::max(repeats, 1) << " s/step" << (repeats > 0 ? "" : " (warm-up)")
              << ", peak RSS " << status_mib("VmHWM") << " MiB, ring wait share " << (ring ? waited / seconds : 0.0)
              << std::endl;
    if (list_buffers && world.rank() == 0) {
        for (const auto& [name, value] : testing::built_plugins().counters())
            if (name.find("bytes") != std::string::npos) std::cout << "  counter " << name << ": " << value << "\n";
        for (const BufferDeclaration& b : layer.shapes().buffers) {
            const int slices = b.lifetime == NNG_BUFFER_PER_THREAD ? threads : 1;
            std::cout << "  buffer " << b.name << " (lifetime " << b.lifetime << ", x" << slices
                      << "): " << b.bytes * slices << " bytes, " << double(b.bytes * slices) / double(local)
                      << " per local step\n";
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "bench_ring_attention: " << e.what() << "\n";
        return 2;
    }
}
