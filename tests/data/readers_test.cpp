// Data formats: the table that names them, each reader, and the one rule that finds the data.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "nngraph/error.hpp"
#include "nngraph/nngraph.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"
#include "train/datasets.hpp"

namespace fs = std::filesystem;
using namespace nngraph;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;

namespace {

const std::string kPointModel = R"(name: points
input: {name: x, shape: [2], dtype: float32}
layers:
  - {op: Dense, units: 1, activation: sigmoid}
)";

const std::string kReviewModel = R"(name: reviews
input: {name: tokens, shape: [6], dtype: int32}
layers:
  - {op: Embedding, input_dim: 8, output_dim: 2}
  - {op: GlobalAveragePooling1D}
  - {op: Dense, units: 1, activation: sigmoid}
)";

// `model` with `data` as its data: section, written to dir/model.yaml and loaded.
std::shared_ptr<const Graph> load_model(const TempDir& dir, const std::string& model, const std::string& data) {
    write_bytes(dir / "model.yaml", model + "data: " + data + "\n");
    return Graph::load(dir / "model.yaml");
}

DataSplits load(const Graph& graph, std::optional<fs::path> flag = std::nullopt, fs::path cache_dir = {}) {
    return load_data(graph, {std::move(flag), "binary_crossentropy", std::move(cache_dir)});
}

std::string message_of(const std::function<void()>& run) {
    try {
        run();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no error)";
}

// Sets an environment variable for the life of the object, then puts back what was there.
class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const std::string& value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnvironment() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// A tiny aclImdb tree: two training and one test review per class.
void write_reviews(const fs::path& top) {
    const std::map<std::string, std::string> files = {
        {"train/pos/0_9.txt", "great great fun"}, {"train/pos/1_8.txt", "great cast"},
        {"train/neg/0_1.txt", "bad bad plot"},    {"train/neg/1_2.txt", "bad acting"},
        {"test/pos/0_10.txt", "great"},           {"test/neg/0_3.txt", "bad plot"},
    };
    for (const auto& [path, text] : files) write_bytes(top / path, text);
}

}  // namespace

TEST_CASE("the table holds each format once, and an unknown format names the known ones") {
    std::set<std::string> names;
    for (const DataReader* reader : data_readers()) CHECK(names.insert(reader->format).second);
    CHECK(names == std::set<std::string>{"aclimdb", "duplication", "safetensors", "synthetic", "tsv_pairs"});

    TempDir dir;
    const auto graph = load_model(dir, kPointModel, "{format: tsv}");
    const std::string message = message_of([&] { load(*graph); });
    CHECK(message.find("model.yaml:") != std::string::npos);
    CHECK(message.find("unknown data format 'tsv'; known formats: aclimdb, synthetic, safetensors, tsv_pairs") !=
          std::string::npos);
}

TEST_CASE("a format's data: section takes only that format's keys") {
    TempDir dir;
    const auto graph = load_model(dir, kPointModel, "{format: synthetic, path: points.bin}");
    CHECK(message_of([&] { load(*graph); })
              .find("unknown key 'path' in 'data' for format synthetic; expected one of: "
                    "format, task, samples, validation_samples, noise, seed") != std::string::npos);
    const auto imdb = load_model(dir, kReviewModel, "{format: aclimdb, task: xor}");
    CHECK(message_of([&] { load(*imdb); }).find("expected one of: format, path, num_words, maxlen") !=
          std::string::npos);
}

TEST_CASE("the synthetic reader generates labelled points of both tasks") {
    TempDir dir;
    const auto xor_graph = load_model(
        dir, kPointModel, "{format: synthetic, task: xor, samples: 100, validation_samples: 20, noise: 0.0}");
    const DataSplits xor_data = load(*xor_graph);
    REQUIRE(xor_data.train.size() == 100);
    REQUIRE(xor_data.validation->size() == 20);
    const float* xy = xor_data.train.inputs[0].data<float>();
    const float* label = xor_data.train.targets[0].data<float>();
    for (int i = 0; i < 100; ++i) CHECK(label[i] == ((xy[2 * i] > 0) != (xy[2 * i + 1] > 0) ? 1.0f : 0.0f));
    CHECK(xor_data.description == "synthetic xor: 100 training, 20 validation points");

    const auto spirals = load_model(dir, kPointModel, "{format: synthetic, task: spirals, samples: 10}");
    const DataSplits arms = load(*spirals);
    CHECK(arms.validation->size() == 2);  // a quarter of the samples by default
    for (int i = 0; i < 10; ++i) CHECK(arms.train.targets[0].data<float>()[i] == static_cast<float>(i % 2));

    const auto unknown = load_model(dir, kPointModel, "{format: synthetic, task: moons}");
    CHECK(message_of([&] { load(*unknown); }).find("unknown synthetic task 'moons'; known tasks: xor, spirals") !=
          std::string::npos);
    const auto wrong_input = load_model(dir, kReviewModel, "{format: synthetic}");
    CHECK(message_of([&] { load(*wrong_input); }).find("gives points of shape (None, 2)") != std::string::npos);
}

TEST_CASE("the duplication reader generates 0 w 0 w with next-token targets and the second copy scored") {
    // The graph may keep its inputs in another order than the file declares them (tokens, then
    // scored); the reader feeds them by the file's order.
    const std::string model = R"(name: copies
inputs:
  - {name: tokens, shape: [8], dtype: int32}
  - {name: scored, shape: [8], dtype: int32}
nodes:
  - {name: symbols, op: Embedding, inputs: [tokens], input_dim: 5, output_dim: 2}
  - {name: counted, op: Embedding, inputs: [scored], input_dim: 2, output_dim: 2, mask_zero: true}
  - {name: both, op: Add, inputs: [symbols, counted]}
  - {name: next, op: Dense, inputs: [both], units: 5, activation: softmax}
outputs: [next]
)";
    TempDir dir;
    const auto graph = load_model(dir, model, "{format: duplication, length: 8, vocab: 5, samples: 50, seed: 3}");
    const auto read = [&](const Graph& g) {
        return load_data(g, {std::nullopt, "sparse_categorical_crossentropy", {}});
    };
    const DataSplits data = read(*graph);
    REQUIRE(data.train.size() == 50);
    CHECK(data.validation->size() == 5);
    CHECK(data.description == "duplication task (0 w 0 w, 8 tokens, 5 symbols): 50 training, 5 validation sequences");
    const std::size_t tokens = graph->tensor(graph->inputs()[0]).name == "tokens" ? 0 : 1;
    const std::int32_t* x = data.train.inputs[tokens].data<std::int32_t>();
    const std::int32_t* scored = data.train.inputs[1 - tokens].data<std::int32_t>();
    const float* y = data.train.targets[0].data<float>();
    for (int s = 0; s < 50; ++s) {
        const std::int32_t* row = x + 8 * s;
        CHECK(row[0] == 0);
        CHECK(row[4] == 0);
        for (int t = 1; t < 4; ++t) {
            CHECK(row[t] == row[4 + t]);
            CHECK((row[t] >= 1 && row[t] < 5));
        }
        for (int t = 0; t < 8; ++t) {
            CHECK(y[8 * s + t] == (t < 7 ? static_cast<float>(row[t + 1]) : 0.0f));
            CHECK(scored[8 * s + t] == (t >= 4 && t < 7 ? 1 : 0));
        }
    }
    const DataSplits again = read(*graph);
    CHECK(std::equal(x, x + 400, again.train.inputs[tokens].data<std::int32_t>()));

    const auto odd = load_model(dir, model, "{format: duplication, length: 7}");
    CHECK(message_of([&] { read(*odd); }).find("length must be even") != std::string::npos);
    const auto longer = load_model(dir, model, "{format: duplication, length: 16}");
    CHECK(message_of([&] { read(*longer); }).find("sequences of shape (None, 16)") != std::string::npos);
}

TEST_CASE("evaluating the duplication task scores the second copy only, as the paper reports") {
    // With one symbol every sequence is 0 1 1 1 0 1 1 1 (targets 1 1 1 0 1 1 1 0). The model
    // predicts the current token: right at steps 1, 2, 5 and 6, so half the steps, but 2 of the 3
    // steps of the second copy (4, 5, 6). The scored input adds nothing but its mask.
    const std::string model = R"(name: copies
inputs:
  - {name: tokens, shape: [8], dtype: int32}
  - {name: scored, shape: [8], dtype: int32}
nodes:
  - {name: symbols, op: Embedding, inputs: [tokens], input_dim: 2, output_dim: 2,
     weights: {embeddings: [[1, 0], [0, 1]]}}
  - {name: counted, op: Embedding, inputs: [scored], input_dim: 2, output_dim: 2, mask_zero: true,
     weights: {embeddings: [[0, 0], [0, 0]]}}
  - {name: both, op: Add, inputs: [symbols, counted]}
  - {name: next, op: Dense, inputs: [both], units: 2, activation: softmax,
     weights: {kernel: [[4, 0], [0, 4]], bias: [0, 0]}}
outputs: [next]
training: {loss: sparse_categorical_crossentropy, metrics: [accuracy]}
)";
    TempDir dir;
    write_bytes(dir / "model.yaml",
                model + "data: {format: duplication, length: 8, vocab: 2, samples: 4, validation_samples: 3}\n");
    Model copies = Model::load(dir / "model.yaml", {{}, 1, {}});
    const Evaluation evaluation = copies.evaluate();
    CHECK(evaluation.samples == 3);
    REQUIRE(evaluation.metrics.accuracy);
    CHECK(*evaluation.metrics.accuracy == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("the safetensors reader takes inputs, targets and validation entries, and --data FILE.safetensors picks it") {
    TempDir dir;
    TensorFile file;
    file.tensors["x"] = Tensor::from<std::int32_t>({3, 2}, std::vector<std::int32_t>{1, 2, 3, 4, 5, 6});
    file.tensors["targets"] = Tensor::from<float>({3}, std::vector<float>{0, 1, 0});
    file.tensors["validation.x"] = Tensor::from<float>({1, 2}, std::vector<float>{7, 8});
    file.tensors["validation.targets"] = Tensor::from<float>({1}, std::vector<float>{1});
    write_safetensors(dir / "points.safetensors", file);

    const auto graph = load_model(dir, kPointModel, "{path: points.safetensors}");  // the default format
    const DataSplits data = load(*graph);
    REQUIRE(data.train.size() == 3);
    CHECK(data.train.inputs[0].dtype() == DType::F32);  // converted to the input's dtype
    CHECK(data.train.inputs[0].data<float>()[5] == 6.0f);
    CHECK(data.train.targets[0].shape() == Shape{3, 1});
    CHECK(data.validation->size() == 1);
    CHECK(data.description == "points.safetensors: 3 training samples, 1 validation samples");

    // The model file names another format; the file on the command line is read as what it is.
    const auto imdb = load_model(dir, kPointModel, "{format: aclimdb, num_words: 8, maxlen: 2}");
    CHECK(load(*imdb, dir / "points.safetensors").train.size() == 3);

    file.tensors.erase("targets");
    write_safetensors(dir / "untargeted.safetensors", file);
    CHECK(message_of([&] { load(*graph, dir / "untargeted.safetensors"); }).find("no tensor 'targets' (the targets)") !=
          std::string::npos);
}

TEST_CASE("the aclimdb reader encodes the reviews, validates on the test split and keeps slices") {
    TempDir dir;
    write_reviews(dir / "aclImdb");
    const auto graph = load_model(dir, kReviewModel, "{format: aclimdb, path: aclImdb, num_words: 8, maxlen: 6}");
    const DataSplits data = load(*graph, std::nullopt, dir / "cache");
    REQUIRE(data.train.size() == 4);
    REQUIRE(data.validation->size() == 2);
    CHECK(data.train.inputs[0].dtype() == DType::I32);
    // Ranked: bad 3, great 4 (three times each, ties alphabetical), acting 5, cast 6, fun 7; plot is
    // out of vocabulary. The first row is train/neg/0_1.txt, "bad bad plot".
    const std::int32_t* first = data.train.inputs[0].data<std::int32_t>();
    CHECK(std::vector<std::int32_t>(first, first + 6) == std::vector<std::int32_t>{0, 0, 1, 3, 3, 2});
    CHECK(data.train.targets[0].data<float>()[0] == 0.0f);
    REQUIRE(data.save_vocabulary);
    data.save_vocabulary(dir / "w.vocab.json");
    CHECK(Vocabulary::load(dir / "w.vocab.json").words() ==
          std::vector<std::string>{"bad", "great", "acting", "cast", "fun"});
    CHECK(data.description.find("IMDB (aclImdb): 4 training reviews, 2 validation reviews") == 0);

    const auto slice = load_model(
        dir, kReviewModel,
        "{format: aclimdb, path: aclImdb, num_words: 8, maxlen: 6, train_samples: 3, validation_samples: 1}");
    const DataSplits sliced = load(*slice, std::nullopt, dir / "cache");
    CHECK(sliced.train.size() == 3);
    CHECK(sliced.validation->size() == 1);

    const auto wrong_length = load_model(dir, kReviewModel, "{format: aclimdb, path: aclImdb, maxlen: 7}");
    CHECK(message_of([&] { load(*wrong_length); }).find("encoded to maxlen 7 ids, but input 'tokens' has shape") !=
          std::string::npos);
}

TEST_CASE("data is found from --data, then the model file's path, then the format's environment variable") {
    TempDir dir;
    write_bytes(dir / "models/flag.bin", "");
    write_bytes(dir / "models/file.bin", "");
    write_bytes(dir / "environment.bin", "");
    ModelSpec spec;
    spec.file = "models/model.yaml";
    spec.path = dir / "models/model.yaml";
    const YAML::Node with_path = YAML::Load("{path: file.bin}");
    const YAML::Node without_path = YAML::Load("{format: some}");
    const DataLocation location{true, "NNGRAPH_TEST_DATA", "give the data"};
    const ScopedEnvironment environment("NNGRAPH_TEST_DATA", (dir / "environment.bin").string());

    CHECK(find_data_path(dir / "models/flag.bin", spec, with_path, location) == dir / "models/flag.bin");
    CHECK(find_data_path(std::nullopt, spec, with_path, location) == dir / "models/file.bin");  // beside the model file
    CHECK(find_data_path(std::nullopt, spec, YAML::Load("{path: " + (dir / "environment.bin").string() + "}"),
                         location) == dir / "environment.bin");
    CHECK(find_data_path(std::nullopt, spec, without_path, location) == dir / "environment.bin");

    const DataLocation without_environment{true, nullptr, "give the data"};
    CHECK(message_of([&] { find_data_path(std::nullopt, spec, without_path, without_environment); }) ==
          "models/model.yaml: no training data; give the data");
    CHECK(message_of([&] { find_data_path(dir / "missing.bin", spec, with_path, location); }) ==
          "'" + (dir / "missing.bin").string() + "' does not exist; give the data");
    {
        const ScopedEnvironment empty("NNGRAPH_TEST_DATA", "");
        CHECK(message_of([&] { find_data_path(std::nullopt, spec, without_path, location); }) ==
              "models/model.yaml: no training data; give the data");
    }
}

TEST_CASE("without any data path, the aclimdb reader says where to download the data set") {
    TempDir dir;
    const ScopedEnvironment environment("NNGRAPH_DATA", "");
    const auto graph = load_model(dir, kReviewModel, "{format: aclimdb, maxlen: 6}");
    const std::string message = message_of([&] { load(*graph); });
    CHECK(message.find("no training data; download the Large Movie Review Dataset, "
                       "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz") != std::string::npos);
    CHECK(message.find("NNGRAPH_DATA=PATH") != std::string::npos);
}
