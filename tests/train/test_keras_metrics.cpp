// Keras's named metrics against their definitions written out: AUC (200 thresholds, ROC,
// interpolation), precision, recall, top-k with ties, the accuracies; sums that add up across
// ranks; the names in the logs, sorted as Keras sorts them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "nngraph/error.hpp"
#include "train/datasets.hpp"
#include "train/metrics.hpp"
#include "train/trainer.hpp"
#include "train/training_config.hpp"
#include "training_section.hpp"

using namespace nngraph;
using doctest::Approx;

namespace {

// A read-only prediction as the trainer hands it over; `shape` must outlive the view.
TensorView view(const Shape& shape, const float* values) { return {DType::F32, shape, const_cast<float*>(values)}; }

double metric_on(const MetricSpec& spec, const std::string& loss, const std::vector<float>& prediction,
                 const Shape& shape, const std::vector<float>& targets) {
    auto metric = make_metric(spec, loss);
    const std::int64_t rows = shape[0];
    metric->update(view(shape, prediction.data()), targets.data(), static_cast<std::int64_t>(targets.size()) / rows,
                   nullptr, rows, {});
    return metric->result();
}

TrainingConfig training(const std::string& metrics) {
    return testing::training_section("loss: binary_crossentropy\n  metrics: " + metrics);
}

}  // namespace

TEST_CASE("AUC is Keras's: confusion counts at 200 thresholds, the ROC curve summed by interpolation") {
    const std::vector<float> p = {0.9f, 0.8f, 0.35f, 0.6f, 0.3f, 0.1f, 0.65f, 0.2f};
    const std::vector<float> y = {1, 1, 1, 0, 1, 0, 0, 0};
    // Written out: thresholds -1e-7, 1/199 .. 198/199, 1 + 1e-7; tpr and fpr at each; the area is
    // sum (fpr[i] - fpr[i+1]) * (tpr[i] + tpr[i+1]) / 2.
    std::vector<double> thresholds = {-1e-7};
    for (int i = 1; i < 199; ++i) thresholds.push_back(i / 199.0);
    thresholds.push_back(1 + 1e-7);
    std::vector<double> tpr, fpr;
    for (double t : thresholds) {
        double tp = 0, fp = 0, fn = 0, tn = 0;
        for (std::size_t i = 0; i < p.size(); ++i) {
            const bool predicted = p[i] > t;
            (y[i] ? (predicted ? tp : fn) : (predicted ? fp : tn)) += 1;
        }
        tpr.push_back(tp / (tp + fn));
        fpr.push_back(fp / (fp + tn));
    }
    double expected = 0;
    for (std::size_t i = 0; i + 1 < thresholds.size(); ++i)
        expected += (fpr[i] - fpr[i + 1]) * (tpr[i] + tpr[i + 1]) / 2;
    const double auc = metric_on({"auc"}, "binary_crossentropy", p, {8, 1}, y);
    CHECK(auc == Approx(expected).epsilon(1e-12));
    // Pairs of a positive and a negative ranked right: 12 of 16, which the interpolated curve
    // matches here (no two values share a threshold interval).
    CHECK(auc == Approx(12.0 / 16.0).epsilon(1e-9));
    CHECK(metric_on({"auc"}, "binary_crossentropy", {0.2f, 0.9f}, {2, 1}, {0, 1}) == Approx(1.0));
}

TEST_CASE("precision and recall count every value above the threshold; top-k counts ties as in") {
    const std::vector<float> p = {0.9f, 0.6f, 0.4f, 0.7f, 0.2f};
    const std::vector<float> y = {1, 0, 1, 1, 0};
    // Above 0.5: 0.9 (tp), 0.6 (fp), 0.7 (tp); 0.4 is a fn.
    CHECK(metric_on({"precision"}, "binary_crossentropy", p, {5, 1}, y) == Approx(2.0 / 3.0));
    CHECK(metric_on({"recall"}, "binary_crossentropy", p, {5, 1}, y) == Approx(2.0 / 3.0));
    MetricSpec strict{"precision"};
    strict.threshold = 0.8;
    CHECK(metric_on(strict, "binary_crossentropy", p, {5, 1}, y) == Approx(1.0));
    CHECK(metric_on({"precision"}, "binary_crossentropy", {0.1f}, {1, 1}, {1}) == 0.0);  // no positives: 0, not NaN

    // Rows of 4 classes; k = 2. Row 0: target 2 scores highest-but-one (in); row 1: target 0 is third
    // (out); row 2: target 3 ties the second place (in, as Keras's in_top_k counts ties).
    const std::vector<float> scores = {0.1f, 0.5f, 0.3f, 0.1f, 0.2f, 0.4f, 0.3f, 0.1f, 0.5f, 0.2f, 0.1f, 0.2f};
    MetricSpec top2{"sparse_top_k_categorical_accuracy"};
    top2.k = 2;
    CHECK(metric_on(top2, "sparse_categorical_crossentropy", scores, {3, 4}, {2, 0, 3}) == Approx(2.0 / 3.0));
    MetricSpec onehot{"top_k_categorical_accuracy"};
    onehot.k = 2;
    CHECK(metric_on(onehot, "categorical_crossentropy", scores, {3, 4}, {0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1}) ==
          Approx(2.0 / 3.0));
    CHECK(metric_on({"sparse_categorical_accuracy"}, "sparse_categorical_crossentropy", scores, {3, 4}, {1, 0, 0}) ==
          Approx(2.0 / 3.0));
    CHECK_THROWS_WITH_AS(make_metric({"auc"}, "sparse_categorical_crossentropy"),
                         doctest::Contains("needs one-hot or 0/1 targets"), InputError);
}

TEST_CASE("metric tallies are sums: two halves added give the whole, as ranks add theirs") {
    const std::vector<MetricSpec> specs = {{"auc"}, {"precision"}, {"recall"}, {"binary_accuracy"}};
    const std::vector<float> p = {0.9f, 0.8f, 0.35f, 0.6f, 0.3f, 0.1f, 0.65f, 0.2f};
    const std::vector<float> y = {1, 1, 1, 0, 1, 0, 0, 0};
    MetricSet whole(specs, "binary_crossentropy"), first(specs, "binary_crossentropy"),
        second(specs, "binary_crossentropy");
    const Shape eight{8, 1}, three{3, 1}, five{5, 1};
    whole.update(view(eight, p.data()), y.data(), 1, nullptr, 8);
    first.update(view(three, p.data()), y.data(), 1, nullptr, 3);
    second.update(view(five, p.data() + 3), y.data() + 3, 1, nullptr, 5);
    first.add(second);
    for (const auto& [name, value] : whole.results()) CHECK(first.results().at(name) == Approx(value).epsilon(1e-12));
    // Above 0.5: 1 1 0 1 0 0 1 0 against 1 1 1 0 1 0 0 0: four agree.
    CHECK(whole.results().at("binary_accuracy") == Approx(4.0 / 8.0));
}

TEST_CASE("metrics are read by Keras's names, and the logs list them sorted as Keras's do") {
    const TrainingConfig config = training(
        "[acc, AUC, Precision, recall, {class_name: SparseTopKCategoricalAccuracy, config: {k: 3, name: top3}}]");
    CHECK(config.accuracy);
    REQUIRE(config.metrics.size() == 4);
    CHECK(config.metrics[0].name == "auc");
    CHECK(config.metrics[1].name == "precision");
    CHECK(config.metrics[3].name == "sparse_top_k_categorical_accuracy");
    CHECK(config.metrics[3].k == 3);
    CHECK(config.metrics[3].display_name == "top3");
    try {
        training("[f1_score]");
        FAIL("f1_score parsed");
    } catch (const InputError& e) {
        CHECK(std::string(e.what()).find("unknown metric 'f1_score'; known metrics: accuracy, binary_accuracy") !=
              std::string::npos);
    }
    Scores scores{0.5, 0.75, {{"recall", 0.25}, {"auc", 0.875}}};
    const auto named = scores.named("val_");
    REQUIRE(named.size() == 4);
    CHECK(named[0].first == "val_accuracy");
    CHECK(named[1].first == "val_auc");
    CHECK(named[2].first == "val_loss");
    CHECK(named[3].first == "val_recall");
}

TEST_CASE("training reports the named metrics each epoch, and a callback may monitor them") {
    auto graph = Graph::load(std::filesystem::path(NNGRAPH_SOURCE_DIR) / "graphs/mlp_xor.yaml");
    TrainingConfig config = parse_training_config(graph->spec());
    config.epochs = 3;
    config.metrics = {{"auc"}, {"precision"}};
    EarlyStoppingConfig early;
    early.monitor.name = "val_auc";
    early.patience = 5;
    config.callbacks = {early};
    Executor executor(graph, {1, config.seed});
    initialize_weights(*graph, config.seed, executor.weights());
    Trainer trainer(executor, config);
    const DataSplits data = load_data(*graph, {std::nullopt, config.loss, {}});
    std::vector<EpochLog> logs;
    std::ostringstream log;
    trainer.fit(data.train, &*data.validation, 0, log, false, {.on_epoch_end = [&](const EpochLog& entry) {
                    logs.push_back(entry);
                    return true;
                }});
    REQUIRE(logs.size() == 3);
    const double val_auc = logs.back().validation->metrics.at("auc");
    CHECK(val_auc > 0.9);
    CHECK(val_auc <= 1.0);
    CHECK(log.str().find(" - accuracy: ") < log.str().find(" - auc: "));
    CHECK(log.str().find(" - auc: ") < log.str().find(" - loss: "));
    CHECK(log.str().find(" - val_auc: ") != std::string::npos);
    // evaluate gives the same tallies as the epoch's validation.
    const Scores again = trainer.evaluate(*data.validation);
    CHECK(again.metrics.at("auc") == Approx(val_auc).epsilon(1e-12));
}

TEST_CASE("under the output's mask every named metric skips the masked steps, and the tallies still add up") {
    // Two samples of three steps; sample 0 keeps steps 0 and 1, sample 1 keeps step 0.
    const std::vector<std::uint8_t> mask = {1, 1, 0, 1, 0, 0};
    const Shape steps{2, 3, 2};
    const std::vector<float> scores = {0.9f, 0.1f, 0.2f, 0.8f, 0.7f, 0.3f, 0.4f, 0.6f, 0.6f, 0.4f, 0.1f, 0.9f};
    const std::vector<float> ids = {0, 0, 0, 1, 0, 1};
    // Kept steps: right, wrong, right. All steps would give (2/3 + 3/3) / 2.
    const std::vector<MetricSpec> sparse = {{"sparse_categorical_accuracy"},
                                            {"sparse_top_k_categorical_accuracy", "top1", 1}};
    MetricSet masked(sparse, "sparse_categorical_crossentropy"), unmasked(sparse, "sparse_categorical_crossentropy");
    masked.update(view(steps, scores.data()), ids.data(), 3, nullptr, 2, mask);
    unmasked.update(view(steps, scores.data()), ids.data(), 3, nullptr, 2);
    CHECK(masked.results().at("sparse_categorical_accuracy") == Approx(2.0 / 3.0));
    CHECK(masked.results().at("top1") == Approx(2.0 / 3.0));
    CHECK(unmasked.results().at("sparse_categorical_accuracy") == Approx(5.0 / 6.0));

    // One probability a step: kept are 0.9 (target 1), 0.8 (target 0), 0.2 (target 0): TP, FP, TN.
    const Shape binary{2, 3, 1};
    const std::vector<float> probabilities = {0.9f, 0.8f, 0.7f, 0.2f, 0.6f, 0.9f};
    const std::vector<float> labels = {1, 0, 0, 0, 1, 1};
    const std::vector<MetricSpec> confusion = {{"precision"}, {"recall"}, {"binary_accuracy"}, {"auc"}};
    MetricSet whole(confusion, "binary_crossentropy"), first(confusion, "binary_crossentropy"),
        second(confusion, "binary_crossentropy");
    whole.update(view(binary, probabilities.data()), labels.data(), 3, nullptr, 2, mask);
    CHECK(whole.results().at("precision") == Approx(1.0 / 2.0));
    CHECK(whole.results().at("recall") == Approx(1.0));
    CHECK(whole.results().at("binary_accuracy") == Approx(2.0 / 3.0));
    // The ranks' halves, each with its rows' mask, add up to the whole.
    const Shape one{1, 3, 1};
    first.update(view(one, probabilities.data()), labels.data(), 3, nullptr, 1, std::span(mask).first(3));
    second.update(view(one, probabilities.data() + 3), labels.data() + 3, 3, nullptr, 1, std::span(mask).last(3));
    first.add(second);
    for (const auto& [name, value] : whole.results()) CHECK(first.results().at(name) == Approx(value).epsilon(1e-12));
}

TEST_CASE("training a masked sequence model reports named accuracies over its real steps") {
    // Token ids with 0 as padding. The padded steps' targets are set below to a class the model
    // does not predict there, so counting them would lower the named accuracies below `accuracy`.
    const std::string text = R"(name: tagger
inputs: [{name: tokens, shape: [4], dtype: int32}]
nodes:
  - {name: embed, op: Embedding, inputs: [tokens], input_dim: 6, output_dim: 4, mask_zero: true}
  - {name: out, op: Dense, inputs: [embed], units: 3, activation: softmax}
outputs: [out]
training:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy, sparse_categorical_accuracy, {class_name: SparseTopKCategoricalAccuracy, config: {k: 1, name: top1}}]
  batch_size: 4
)";
    auto graph = Graph::from_spec(parse_model(text, "tagger.yaml", "."));
    TrainingConfig config = parse_training_config(graph->spec());
    Executor executor(graph, {1, config.seed});
    initialize_weights(*graph, config.seed, executor.weights());
    Trainer trainer(executor, config);
    const std::vector<std::int32_t> tokens = {1, 2, 3, 0, 4, 5, 0, 0, 2, 0, 0, 0, 3, 1, 4, 2};
    std::vector<float> targets = {0, 1, 2, 0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 2, 1, 1};
    Dataset data;
    data.inputs.push_back(Tensor::from<std::int32_t>({4, 4}, tokens));
    data.targets.push_back(Tensor::from<float>({4, 4}, targets));
    trainer.evaluate(data);  // one batch: the output holds every step's scores
    const float* scores = executor.output(0).as<float>();
    for (std::size_t step = 0; step < tokens.size(); ++step) {
        if (tokens[step] != 0) continue;
        const float* p = scores + 3 * step;
        const auto predicted = std::max_element(p, p + 3) - p;
        targets[step] = static_cast<float>((predicted + 1) % 3);
    }
    data.targets[0] = Tensor::from<float>({4, 4}, targets);
    const Scores result = trainer.evaluate(data);
    REQUIRE(result.accuracy);
    REQUIRE(*result.accuracy > 0.0);
    CHECK(result.metrics.at("sparse_categorical_accuracy") == Approx(*result.accuracy).epsilon(1e-12));
    CHECK(result.metrics.at("top1") == Approx(*result.accuracy).epsilon(1e-12));
}
