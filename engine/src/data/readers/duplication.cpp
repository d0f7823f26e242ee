// `format: duplication`: the duplication task of the Reformer paper (Kitaev et al. 2020, section
// 5): sequences 0 w 0 w of `length` tokens, w random symbols in [1, vocab), generated here from a
// seed as the synthetic points are; no file is read. It is a next-token task: target t is token
// t + 1. The graph's second input marks the positions that count, 1 where the target is a
// symbol of the second copy (the first copy is random, so only the second can be predicted); an
// Embedding with mask_zero on it, merged into the output, gives the output that mask.
#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "nngraph/error.hpp"
#include "nngraph/random.hpp"

namespace nngraph {
namespace {

Dataset duplication_split(std::int64_t samples, std::int64_t length, std::int64_t vocab, std::uint64_t seed,
                          const Graph& graph, const std::size_t (&slots)[2], const std::string& loss) {
    nng::Random rng(seed);
    Tensor tokens(DType::F32, {samples, length});
    Tensor scored(DType::F32, {samples, length});
    Tensor targets(DType::F32, {samples, length});
    const std::int64_t half = length / 2;
    for (std::int64_t s = 0; s < samples; ++s) {
        float* x = tokens.data<float>() + s * length;
        float* counts = scored.data<float>() + s * length;
        float* y = targets.data<float>() + s * length;
        x[0] = x[half] = 0.0f;
        for (std::int64_t t = 1; t < half; ++t)
            x[t] = x[half + t] = static_cast<float>(1 + rng.below(static_cast<std::uint64_t>(vocab - 1)));
        for (std::int64_t t = 0; t < length; ++t) {
            y[t] = t + 1 < length ? x[t + 1] : 0.0f;
            counts[t] = t >= half && t + 1 < length ? 1.0f : 0.0f;
        }
    }
    Dataset d;
    d.inputs.resize(2);
    d.inputs[slots[0]] = convert_dtype(tokens, graph.tensor(graph.inputs()[slots[0]]).info.dtype, "duplication tokens");
    d.inputs[slots[1]] =
        convert_dtype(scored, graph.tensor(graph.inputs()[slots[1]]).info.dtype, "duplication scored positions");
    d.targets.push_back(fit_targets(graph, 0, loss, std::move(targets), "duplication targets"));
    return d;
}

DataSplits read_duplication(const DataSource& source) {
    const std::string& file = source.file();
    const std::int64_t length = source.integer("length", 1024);
    const std::int64_t vocab = source.integer("vocab", 128);
    const std::int64_t samples = source.integer("samples", 10000);
    const std::int64_t validation = source.integer("validation_samples", samples / 10);
    const auto seed = static_cast<std::uint64_t>(source.integer("seed", 7));
    if (length < 4 || length % 2 != 0)
        throw InputError(file + ": duplication length must be even and at least 4, got " + std::to_string(length));
    if (vocab < 2) throw InputError(file + ": duplication vocab must be at least 2 (0 and a symbol)");
    if (samples < 1 || validation < 0) throw InputError(file + ": duplication samples must be positive");
    // The graph's input slots of the tokens and of the scored positions, as the file declares them.
    const Graph& graph = source.graph;
    const auto& declared = graph.spec().inputs;
    if (declared.size() != 2) {
        throw InputError(file +
                         ": the duplication task feeds two inputs (the tokens, then the positions scored), but "
                         "the model has " +
                         std::to_string(declared.size()));
    }
    std::size_t slots[2] = {0, 0};
    for (std::size_t i = 0; i < 2; ++i) {
        for (std::size_t slot = 0; slot < graph.inputs().size(); ++slot) {
            if (graph.tensor(graph.inputs()[slot]).name == declared[i].name) slots[i] = slot;
        }
        const GraphTensor& input = graph.tensor(graph.inputs()[slots[i]]);
        if (input.info.shape.size() != 2 || input.info.shape[1] != length) {
            throw InputError(file + ": the duplication task gives sequences of shape (None, " + std::to_string(length) +
                             "), but input '" + input.name + "' has shape " + shape_to_string(input.info.shape));
        }
    }
    DataSplits splits;
    splits.train =
        duplication_split(samples, length, vocab, nng::derive_seed(seed, "train"), graph, slots, source.loss);
    if (validation > 0) {
        splits.validation = duplication_split(validation, length, vocab, nng::derive_seed(seed, "validation"), graph,
                                              slots, source.loss);
    }
    splits.description = "duplication task (0 w 0 w, " + std::to_string(length) + " tokens, " + std::to_string(vocab) +
                         " symbols): " + std::to_string(samples) + " training, " + std::to_string(validation) +
                         " validation sequences";
    return splits;
}

}  // namespace

extern const DataReader kDuplicationReader = {
    "duplication", {"length", "vocab", "samples", "validation_samples", "seed"}, {}, nullptr, read_duplication,
};

}  // namespace nngraph
