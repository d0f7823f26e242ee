// `format: synthetic`: two-class tasks in the plane that the engine generates, xor (the sign
// quadrants) and spirals (two interleaved arms), with Gaussian noise; no file is read.
#include <cmath>

#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "nngraph/error.hpp"
#include "nngraph/random.hpp"

namespace nngraph {
namespace {

Dataset synthetic_split(const std::string& task, std::int64_t samples, double noise, std::uint64_t seed,
                        const Graph& graph, const std::string& loss) {
    nng::Random rng(seed);
    Tensor points(DType::F32, {samples, 2});
    Tensor labels(DType::F32, {samples, 1});
    float* xy = points.data<float>();
    float* y = labels.data<float>();
    for (std::int64_t i = 0; i < samples; ++i) {
        double a, b;
        int label;
        if (task == "xor") {
            a = rng.uniform(-1, 1);
            b = rng.uniform(-1, 1);
            label = (a > 0) != (b > 0) ? 1 : 0;
        } else {
            label = static_cast<int>(i % 2);
            const double t = rng.uniform(0.0, 1.0);
            const double angle = t * 3.0 * 3.141592653589793 + label * 3.141592653589793;
            a = t * std::cos(angle);
            b = t * std::sin(angle);
        }
        xy[2 * i] = static_cast<float>(a + noise * rng.normal());
        xy[2 * i + 1] = static_cast<float>(b + noise * rng.normal());
        y[i] = static_cast<float>(label);
    }
    Dataset d;
    d.inputs.push_back(convert_dtype(points, graph.tensor(graph.inputs()[0]).info.dtype, "synthetic points"));
    d.targets.push_back(fit_targets(graph, 0, loss, std::move(labels), "synthetic labels"));
    return d;
}

DataSplits read_synthetic(const DataSource& source) {
    const std::string& file = source.file();
    const std::string task = source.text("task", "xor");
    if (task != "xor" && task != "spirals") {
        throw model_error(SourceLocation::of(file, source.settings["task"]), "",
                          "unknown synthetic task '" + task + "'; known tasks: xor, spirals");
    }
    const GraphTensor& input = source.single_input("synthetic");
    if (input.info.shape.size() != 2 || input.info.shape[1] != 2) {
        throw InputError(file + ": the synthetic '" + task + "' task gives points of shape (None, 2), but input '" +
                         input.name + "' has shape " + shape_to_string(input.info.shape));
    }
    const std::int64_t samples = source.integer("samples", 2000);
    const std::int64_t validation = source.integer("validation_samples", samples / 4);
    const double noise = source.number("noise", 0.05);
    const auto seed = static_cast<std::uint64_t>(source.integer("seed", 7));
    if (samples < 1 || validation < 0) throw InputError(file + ": synthetic samples must be positive");
    DataSplits splits;
    splits.train = synthetic_split(task, samples, noise, nng::derive_seed(seed, "train"), source.graph, source.loss);
    if (validation > 0) {
        splits.validation =
            synthetic_split(task, validation, noise, nng::derive_seed(seed, "validation"), source.graph, source.loss);
    }
    splits.description = "synthetic " + task + ": " + std::to_string(samples) + " training, " +
                         std::to_string(validation) + " validation points";
    return splits;
}

}  // namespace

extern const DataReader kSyntheticReader = {
    "synthetic", {"task", "samples", "validation_samples", "noise", "seed"}, {}, nullptr, read_synthetic,
};

}  // namespace nngraph
