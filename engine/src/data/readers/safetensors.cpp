// `format: safetensors` (the default), or --data FILE.safetensors whatever the model file says:
// inputs by graph input name, targets as "targets" (or "targets.<output>" with several outputs),
// and "validation.<name>" entries for the validation set.
#include "nngraph/safetensors.hpp"
#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "nngraph/error.hpp"
#include "train/datasets.hpp"

namespace nngraph {
namespace fs = std::filesystem;

DataSplits load_safetensors_data(const Graph& graph, const fs::path& path, const std::string& loss) {
    TensorFile file = read_safetensors(path);
    const std::string source = path.string();
    auto take = [&](const std::string& prefix, bool required) -> std::optional<Dataset> {
        Dataset d;
        for (TensorId t : graph.inputs()) {
            const GraphTensor& input = graph.tensor(t);
            auto it = file.tensors.find(prefix + input.name);
            if (it == file.tensors.end()) {
                if (!required) return std::nullopt;
                throw InputError(source + ": no tensor '" + prefix + input.name + "' for graph input '" + input.name +
                                 "'");
            }
            d.inputs.push_back(convert_dtype(it->second, input.info.dtype, source + ": '" + it->first + "'"));
        }
        const auto& outputs = graph.outputs();
        for (std::size_t i = 0; i < outputs.size(); ++i) {
            const std::string name =
                prefix + (outputs.size() == 1 ? "targets" : "targets." + graph.tensor(outputs[i]).name);
            auto it = file.tensors.find(name);
            if (it == file.tensors.end()) throw InputError(source + ": no tensor '" + name + "' (the targets)");
            d.targets.push_back(fit_targets(graph, i, loss, it->second, source + ": '" + name + "'"));
        }
        return d;
    };
    DataSplits splits;
    splits.train = *take("", true);
    splits.validation = take("validation.", false);
    splits.description =
        path.filename().string() + ": " + std::to_string(splits.train.size()) + " training samples" +
        (splits.validation ? ", " + std::to_string(splits.validation->size()) + " validation samples" : "");
    return splits;
}

extern const DataReader kSafetensorsReader = {
    "safetensors",
    {},
    {true, nullptr, "give --data FILE.safetensors or a 'data:' section in the model file"},
    ".safetensors",
    [](const DataSource& source) { return load_safetensors_data(source.graph, *source.path, source.loss); },
};

}  // namespace nngraph
