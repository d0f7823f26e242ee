// One rank of `mpirun -np N ring_attention_driver ...`: ring attention against single-process
// blockwise attention. Every rank computes the blockwise reference on the whole inputs itself
// (same inputs, weights and seeds everywhere), runs `implementation: ring` on its share of the
// steps, and compares its output and input gradients at its global positions, and the weight
// gradients summed over the ranks. Rank 0 prints the worst errors; every rank exits 1 when one
// exceeds the tolerance, 2 on an error. With --bfloat16 both run under mixed_bfloat16.
//
// Usage: ring_attention_driver (Attention|MultiHeadAttention) [--causal] [--masks] [--dropout]
//        [--window STEPS] [--contiguous] [--piece STEPS] [--weight-tolerance T] [--bfloat16 T]
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "gradcheck.hpp"
#include "nngraph/sequence_shard.hpp"

using namespace nngraph;
using nngraph::testing::fill_uniform;
using nngraph::testing::OpRunner;

namespace {

constexpr std::int64_t kBatch = 2;
constexpr double kTolerance = 1e-5;  // relative to max(1, |reference|)
// Weight gradients, summed over the ranks, to the same 1e-5. A bias gradient sums up to 560 rows
// whose float sums part by up to 4e-5 of max(1, |sum|) when taken in another order (each rank its
// share, then the ranks' sums); the sums over rows are taken in double (onednn::sum_rows), so
// every order rounds the same exact sum.

struct Options {
    std::string op;
    bool causal = false, masks = false, dropout = false, zigzag = true;
    std::int64_t window = -1, piece = 70;  // 70: pieces cut tiles of 64 and dropout's words of 4
    double weight_tolerance = kTolerance;
    nng_precision precision = NNG_PRECISION_FLOAT32;
    double tolerance = kTolerance;  // outputs and input gradients

    static Options parse(int argc, char** argv) {
        if (argc < 2) throw std::invalid_argument("usage: ring_attention_driver OP [options]");
        Options o;
        o.op = argv[1];
        for (int i = 2; i < argc; ++i) {
            const std::string a = argv[i];
            const auto value = [&] {
                if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
                return std::string(argv[++i]);
            };
            if (a == "--causal")
                o.causal = true;
            else if (a == "--masks")
                o.masks = true;
            else if (a == "--dropout")
                o.dropout = true;
            else if (a == "--contiguous")
                o.zigzag = false;
            else if (a == "--window")
                o.window = std::stoll(value());
            else if (a == "--piece")
                o.piece = std::stoll(value());
            else if (a == "--weight-tolerance")
                o.weight_tolerance = std::stod(value());
            else if (a == "--bfloat16") {  // with the tolerance for every comparison
                o.precision = NNG_PRECISION_MIXED_BFLOAT16;
                o.tolerance = o.weight_tolerance = std::stod(value());
            } else
                throw std::invalid_argument("unknown option " + a);
        }
        return o;
    }
    std::string attributes(const std::string& implementation) const {
        std::string a = "{implementation: " + implementation;
        a += op == "Attention" ? ", use_scale: true" : ", num_heads: 2, key_dim: 8, value_dim: 6";
        if (causal) a += ", use_causal_mask: true";
        if (dropout) a += ", dropout: 0.3, seed: 5";
        if (window >= 0) a += ", window: " + std::to_string(window);
        return a + "}";
    }
};

// Keeps step 0 of sample 0; sample 1 loses its first 10 keys, so that early causal rows see none.
void random_mask(Tensor& mask, std::uint64_t seed) {
    fill_uniform(mask, 0.0, 1.7, seed);
    auto* m = mask.data<std::uint8_t>();
    m[0] = 1;
    for (std::int64_t j = 0; j < 10; ++j) m[mask.dim(1) + j] = 0;
}

// The rows of `whole` (batch, steps, ...) at this rank's global positions.
Tensor share_of(const Tensor& whole, const SequenceShard& shard) {
    Shape shape = whole.shape();
    const std::int64_t steps = whole.dim(1), local = shard.local_steps();
    shape[1] = local;
    Tensor part(whole.dtype(), shape);
    const std::int64_t row = whole.numel() / (whole.dim(0) * steps);
    const std::size_t bytes = whole.nbytes() / static_cast<std::size_t>(whole.numel()) * row;
    for (std::int64_t b = 0; b < whole.dim(0); ++b)
        for (std::int64_t l = 0; l < local; ++l)
            std::memcpy(static_cast<std::byte*>(part.raw()) + (b * local + l) * bytes,
                        static_cast<const std::byte*>(whole.raw()) + (b * steps + shard.global_position(l)) * bytes,
                        bytes);
    return part;
}

// The worst error of `got` against `want`, both float.
double worst_error(const Tensor& got, const Tensor& want) {
    if (got.numel() != want.numel()) throw std::logic_error("compared tensors differ in size");
    double worst = 0.0;
    for (std::int64_t i = 0; i < got.numel(); ++i) {
        const double w = want.data<float>()[i];
        worst = std::max(worst, std::abs(double(got.data<float>()[i]) - w) / std::max(1.0, std::abs(w)));
    }
    return worst;
}

int run(const Options& o) {
    dist::Communicator& world = dist::world();
    const int ranks = world.size();
    const std::int64_t steps = o.piece * (o.zigzag ? 2 : 1) * ranks;
    const SequenceShard shard(o.zigzag ? NNG_SHARD_ZIGZAG : NNG_SHARD_CONTIGUOUS, ranks, world.rank(), steps);
    const std::int64_t features = o.op == "Attention" ? 8 : 12;
    const std::vector<bool> masked{o.masks, o.masks};
    const auto inputs = [&](std::int64_t t) {
        return std::vector<TensorInfo>{{DType::F32, {kBatch, t, features}}, {DType::F32, {kBatch, t, features}}};
    };

    OpRunner reference(o.op, o.attributes("blockwise"), inputs(steps), masked, true, o.precision);
    reference.initialize_weights(3);
    for (std::size_t i = 0; i < reference.inputs().size(); ++i) {
        fill_uniform(reference.inputs()[i], -1.0, 1.0, 10 + i);
        if (o.masks) random_mask(reference.input_masks()[i], 20 + i);
    }
    OpRunner ring(o.op, o.attributes("ring"), inputs(shard.local_steps()), masked, true, o.precision);
    ring.set_sequence_shard(shard);
    for (std::size_t w = 0; w < reference.weights().size(); ++w) ring.weights()[w] = reference.weights()[w];
    for (std::size_t i = 0; i < reference.inputs().size(); ++i) {
        ring.inputs()[i] = share_of(reference.inputs()[i], shard);
        if (o.masks) ring.input_masks()[i] = share_of(reference.input_masks()[i], shard);
    }

    constexpr std::uint64_t kSeed = 7;
    reference.forward(true, kSeed);
    ring.forward(true, kSeed);
    Tensor dout(DType::F32, reference.outputs()[0].shape());
    fill_uniform(dout, -1.0, 1.0, 30);
    reference.backward({dout}, kSeed);
    ring.backward({share_of(dout, shard)}, kSeed);

    struct Result {
        std::string what;
        double error, tolerance;
    };
    std::vector<Result> results;
    results.push_back({"output", worst_error(ring.outputs()[0], share_of(reference.outputs()[0], shard)), o.tolerance});
    for (std::size_t i = 0; i < ring.grad_inputs().size(); ++i) {
        results.push_back({"input " + std::to_string(i) + " gradient",
                           worst_error(ring.grad_inputs()[i], share_of(reference.grad_inputs()[i], shard)),
                           o.tolerance});
    }
    for (std::size_t w = 0; w < ring.grad_weights().size(); ++w) {
        Tensor summed = ring.grad_weights()[w];
        world.allreduce_sum(std::span<float>(summed.data<float>(), static_cast<std::size_t>(summed.numel())));
        results.push_back({"weight " + std::to_string(w) + " gradient",
                           worst_error(summed, reference.grad_weights()[w]), o.weight_tolerance});
    }
    // Every rank's verdict, so that all exit alike.
    std::vector<double> worst(results.size());
    for (std::size_t k = 0; k < results.size(); ++k) worst[k] = results[k].error;
    std::vector<double> all(results.size() * static_cast<std::size_t>(ranks), 0.0);
    std::copy(worst.begin(), worst.end(), all.begin() + static_cast<std::ptrdiff_t>(world.rank() * results.size()));
    world.allreduce_sum(std::span<double>(all));
    bool ok = true;
    for (std::size_t k = 0; k < results.size(); ++k) {
        double over_ranks = 0.0;
        for (int r = 0; r < ranks; ++r) over_ranks = std::max(over_ranks, all[r * results.size() + k]);
        ok &= over_ranks <= results[k].tolerance;
        if (world.rank() == 0)
            std::cout << o.op << " " << results[k].what << ": worst relative error " << over_ranks << "\n";
    }
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(Options::parse(argc, argv));
    } catch (const std::exception& e) {
        std::cerr << "ring_attention_driver: " << e.what() << "\n";
        return 2;
    }
}
