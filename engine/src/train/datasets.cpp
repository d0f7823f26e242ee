#include "train/datasets.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>

#include "nngraph/random.hpp"
#include "nngraph/safetensors.hpp"
#include "train/losses.hpp"

namespace nngraph {
namespace fs = std::filesystem;
namespace {

template <class From, class To> void convert_values(const Tensor& in, Tensor& out, const std::string& what) {
    const From* src = in.data<From>();
    To* dst = out.data<To>();
    for (std::int64_t i = 0; i < in.numel(); ++i) {
        if constexpr (std::is_integral_v<To>) {
            const long double v = static_cast<long double>(src[i]);
            if (v != std::floor(v) || v < static_cast<long double>(std::numeric_limits<To>::min()) ||
                v > static_cast<long double>(std::numeric_limits<To>::max())) {
                throw InputError(what + ": value " + std::to_string(static_cast<double>(src[i])) + " at element " + std::to_string(i) +
                                 " does not fit " + std::string(dtype_name(out.dtype())));
            }
        }
        dst[i] = static_cast<To>(src[i]);
    }
}

template <class From> void convert_from(const Tensor& in, Tensor& out, const std::string& what) {
    switch (out.dtype()) {
    case DType::F32: convert_values<From, float>(in, out, what); break;
    case DType::I32: convert_values<From, std::int32_t>(in, out, what); break;
    case DType::I64: convert_values<From, std::int64_t>(in, out, what); break;
    case DType::U8: convert_values<From, std::uint8_t>(in, out, what); break;
    }
}

const char* kDownloadHelp =
    "the IMDB data set was not found. Download the Large Movie Review Dataset, "
    "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (84 MB), and point nngraph at the "
    "archive or its unpacked aclImdb folder with one of: --data PATH, 'data: {path: PATH}' in the model file, "
    "or the environment variable NNGRAPH_DATA=PATH";

// The tensor of a single-input graph, or a clear error.
const GraphTensor& single_input(const Graph& graph, const char* source) {
    if (graph.inputs().size() != 1) {
        throw InputError(graph.spec().file + ": " + source + " data feeds one input, but the model has " +
                         std::to_string(graph.inputs().size()));
    }
    return graph.tensor(graph.inputs()[0]);
}

std::int64_t data_int(const YAML::Node& data, const std::string& file, const char* key, std::int64_t fallback) {
    if (!data[key]) return fallback;
    return yaml_as<std::int64_t>(data[key], SourceLocation::of(file, data[key]), std::string("data ") + key);
}

// Rows `rows` of `t`, in that order.
Tensor take_rows(const Tensor& t, const std::vector<std::int64_t>& rows) {
    Shape shape = t.shape();
    shape[0] = static_cast<std::int64_t>(rows.size());
    Tensor out(t.dtype(), shape);
    const std::size_t row_bytes = t.nbytes() / static_cast<std::size_t>(t.dim(0));
    for (std::size_t r = 0; r < rows.size(); ++r) {
        std::memcpy(static_cast<std::byte*>(out.raw()) + r * row_bytes, static_cast<const std::byte*>(t.raw()) + rows[r] * row_bytes, row_bytes);
    }
    return out;
}

// A seeded random subset of `count` rows of a data set (all of it when count is 0 or too big):
// for quick runs on a slice of a large data set, the same slice every time.
void keep_subset(Dataset& d, std::int64_t count, const char* which) {
    const std::int64_t n = d.size();
    if (count <= 0 || count >= n) return;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
    nng::Random rng(nng::derive_seed(0, which));
    for (std::int64_t i = 0; i < count; ++i) std::swap(rows[static_cast<std::size_t>(i)], rows[static_cast<std::size_t>(i) + rng.below(static_cast<std::uint64_t>(n - i))]);
    rows.resize(static_cast<std::size_t>(count));
    for (Tensor& t : d.inputs) t = take_rows(t, rows);
    for (Tensor& t : d.targets) t = take_rows(t, rows);
}

void check_data_keys(const YAML::Node& data, const std::string& file, const std::string& format, const std::vector<std::string>& allowed) {
    for (const auto& kv : data) {
        const std::string key = kv.first.as<std::string>();
        if (key == "format" || std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
        std::string expected = "format";
        for (const auto& a : allowed) expected += ", " + a;
        throw model_error(SourceLocation::of(file, kv.first), "", "unknown key '" + key + "' in 'data' for format " + format + "; expected one of: " + expected);
    }
}

DataSplits load_imdb_data(const Graph& graph, const DataRequest& request, const YAML::Node& data) {
    const std::string& file = graph.spec().file;
    check_data_keys(data, file, "aclimdb", {"path", "num_words", "maxlen", "train_samples", "validation_samples"});
    std::optional<fs::path> path = request.path;
    if (!path && data && data["path"]) {
        fs::path p = yaml_as<std::string>(data["path"], SourceLocation::of(file, data["path"]), "data path");
        path = p.is_absolute() || graph.spec().path.empty() ? p : fs::absolute(graph.spec().path).parent_path() / p;
    }
    if (!path) {
        if (const char* env = std::getenv("NNGRAPH_DATA"); env && *env) path = fs::path(env);
    }
    if (!path) throw InputError(kDownloadHelp);
    std::error_code ec;
    if (!fs::exists(*path, ec)) throw InputError("'" + path->string() + "' does not exist; " + kDownloadHelp);

    ImdbOptions options;
    options.path = *path;
    options.num_words = data_int(data, file, "num_words", options.num_words);
    options.maxlen = data_int(data, file, "maxlen", options.maxlen);
    options.cache_dir = request.cache_dir;
    const GraphTensor& input = single_input(graph, "IMDB");
    if (input.info.shape.size() != 2 || input.info.shape[1] != options.maxlen) {
        throw InputError(file + ": the IMDB reviews are encoded to maxlen " + std::to_string(options.maxlen) +
                         " ids, but input '" + input.name + "' has shape " + shape_to_string(input.info.shape));
    }
    ImdbData imdb = load_imdb(options);
    DataSplits splits;
    splits.train.inputs.push_back(convert_dtype(imdb.train.tokens, input.info.dtype, "IMDB tokens"));
    splits.train.targets.push_back(fit_targets(graph, 0, request.loss, std::move(imdb.train.labels), "IMDB labels"));
    Dataset validation;
    validation.inputs.push_back(convert_dtype(imdb.test.tokens, input.info.dtype, "IMDB tokens"));
    validation.targets.push_back(fit_targets(graph, 0, request.loss, std::move(imdb.test.labels), "IMDB labels"));
    splits.validation = std::move(validation);
    keep_subset(splits.train, data_int(data, file, "train_samples", 0), "train subset");
    keep_subset(*splits.validation, data_int(data, file, "validation_samples", 0), "validation subset");
    splits.description = "IMDB (" + path->filename().string() + "): " + std::to_string(splits.train.size()) +
                         " training reviews, " + std::to_string(splits.validation->size()) + " validation reviews" +
                         (imdb.from_cache ? ", from the cache" : "");
    if (!imdb.cache_note.empty()) splits.description += " (" + imdb.cache_note + ")";
    splits.vocabulary = std::move(imdb.vocabulary);
    return splits;
}

// Two-class tasks in the plane: xor (the sign quadrants) and spirals (two interleaved arms).
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

DataSplits load_synthetic_data(const Graph& graph, const DataRequest& request, const YAML::Node& data) {
    const std::string& file = graph.spec().file;
    check_data_keys(data, file, "synthetic", {"task", "samples", "validation_samples", "noise", "seed"});
    const std::string task = data["task"] ? yaml_as<std::string>(data["task"], SourceLocation::of(file, data["task"]), "data task") : "xor";
    if (task != "xor" && task != "spirals") {
        throw model_error(SourceLocation::of(file, data["task"]), "", "unknown synthetic task '" + task + "'; known tasks: xor, spirals");
    }
    const GraphTensor& input = single_input(graph, "synthetic");
    if (input.info.shape.size() != 2 || input.info.shape[1] != 2) {
        throw InputError(file + ": the synthetic '" + task + "' task gives points of shape (None, 2), but input '" +
                         input.name + "' has shape " + shape_to_string(input.info.shape));
    }
    const std::int64_t samples = data_int(data, file, "samples", 2000);
    const std::int64_t validation = data_int(data, file, "validation_samples", samples / 4);
    const double noise = data["noise"] ? yaml_as<double>(data["noise"], SourceLocation::of(file, data["noise"]), "data noise") : 0.05;
    const auto seed = static_cast<std::uint64_t>(data_int(data, file, "seed", 7));
    if (samples < 1 || validation < 0) throw InputError(file + ": synthetic samples must be positive");
    DataSplits splits;
    splits.train = synthetic_split(task, samples, noise, nng::derive_seed(seed, "train"), graph, request.loss);
    if (validation > 0) splits.validation = synthetic_split(task, validation, noise, nng::derive_seed(seed, "validation"), graph, request.loss);
    splits.description = "synthetic " + task + ": " + std::to_string(samples) + " training, " + std::to_string(validation) + " validation points";
    return splits;
}

}  // namespace

Tensor convert_dtype(const Tensor& tensor, DType dtype, const std::string& what) {
    if (tensor.dtype() == dtype) return tensor;
    Tensor out(dtype, tensor.shape());
    switch (tensor.dtype()) {
    case DType::F32: convert_from<float>(tensor, out, what); break;
    case DType::I32: convert_from<std::int32_t>(tensor, out, what); break;
    case DType::I64: convert_from<std::int64_t>(tensor, out, what); break;
    case DType::U8: convert_from<std::uint8_t>(tensor, out, what); break;
    }
    return out;
}

Tensor fit_targets(const Graph& graph, std::size_t index, const std::string& loss, Tensor values, const std::string& what) {
    Tensor targets = convert_dtype(values, DType::F32, what);
    if (loss.empty()) return targets;
    const TensorId output = graph.outputs().at(index);
    Shape prediction = graph.tensor(output).info.shape;
    const std::int64_t rows = targets.rank() ? targets.dim(0) : 0;
    prediction[0] = rows;
    Shape wanted = make_loss(loss)->target_shape(prediction);
    const std::int64_t per_row = rows ? targets.numel() / rows : 0;
    const std::int64_t wanted_per_row = rows ? shape_numel(wanted) / rows : 0;
    if (per_row == wanted_per_row) {
        targets.reshape(wanted);
        return targets;
    }
    // Class ids for a one-hot loss.
    if (loss == "categorical_crossentropy" && per_row == 1) {
        const std::int64_t classes = wanted.back();
        Tensor one_hot(DType::F32, wanted);
        for (std::int64_t r = 0; r < rows; ++r) {
            const float id = targets.data<float>()[r];
            if (id < 0 || id >= float(classes) || id != std::floor(id)) {
                throw InputError(what + ": row " + std::to_string(r) + " holds " + std::to_string(id) + ", not a class id below " + std::to_string(classes));
            }
            one_hot.data<float>()[r * classes + static_cast<std::int64_t>(id)] = 1.0f;
        }
        return one_hot;
    }
    Shape shown = wanted;
    shown[0] = -1;
    throw InputError(what + " has shape " + shape_to_string(targets.shape()) + ", but " + loss + " on output '" +
                     graph.tensor(output).name + "' needs targets of shape " + shape_to_string(shown));
}

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
                throw InputError(source + ": no tensor '" + prefix + input.name + "' for graph input '" + input.name + "'");
            }
            d.inputs.push_back(convert_dtype(it->second, input.info.dtype, source + ": '" + it->first + "'"));
        }
        const auto& outputs = graph.outputs();
        for (std::size_t i = 0; i < outputs.size(); ++i) {
            const std::string name = prefix + (outputs.size() == 1 ? "targets" : "targets." + graph.tensor(outputs[i]).name);
            auto it = file.tensors.find(name);
            if (it == file.tensors.end()) throw InputError(source + ": no tensor '" + name + "' (the targets)");
            d.targets.push_back(fit_targets(graph, i, loss, it->second, source + ": '" + name + "'"));
        }
        return d;
    };
    DataSplits splits;
    splits.train = *take("", true);
    splits.validation = take("validation.", false);
    splits.description = path.filename().string() + ": " + std::to_string(splits.train.size()) + " training samples" +
                         (splits.validation ? ", " + std::to_string(splits.validation->size()) + " validation samples" : "");
    return splits;
}

DataSplits load_data(const Graph& graph, const DataRequest& request) {
    // An absent `data:` reads as a null node; treat it as an empty map.
    const bool given = graph.spec().data.IsDefined() && !graph.spec().data.IsNull();
    const YAML::Node data = given ? graph.spec().data : YAML::Node(YAML::NodeType::Map);
    const std::string& file = graph.spec().file;
    if (!data.IsMap()) throw model_error(SourceLocation::of(file, data), "", "'data' must be a map such as {format: aclimdb, num_words: 5000, maxlen: 200}");
    std::string format;
    if (data["format"]) format = yaml_as<std::string>(data["format"], SourceLocation::of(file, data["format"]), "data format");
    if (request.path && request.path->extension() == ".safetensors") return load_safetensors_data(graph, *request.path, request.loss);
    if (format == "aclimdb") return load_imdb_data(graph, request, data);
    if (format == "synthetic") return load_synthetic_data(graph, request, data);
    if (format == "safetensors" || format.empty()) {
        check_data_keys(data, file, "safetensors", {"path"});
        std::optional<fs::path> path = request.path;
        if (!path && data["path"]) path = fs::absolute(graph.spec().path).parent_path() / yaml_as<std::string>(data["path"], SourceLocation::of(file, data["path"]), "data path");
        if (!path) throw InputError(file + ": no training data: give --data FILE.safetensors or a 'data:' section in the model file");
        return load_safetensors_data(graph, *path, request.loss);
    }
    throw model_error(SourceLocation::of(file, data["format"]), "", "unknown data format '" + format + "'; known formats: aclimdb, synthetic, safetensors");
}

}  // namespace nngraph
