// The padding mask of a sequence output reaches the loss: from the decoder's Embedding (mask_zero)
// through Dense on 3-D input, LayerNormalization, Add, Dropout and MultiHeadAttention (query and key
// masks, causal in the decoder), so a padded batch has the unpadded batch's loss and gradients.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "train/losses.hpp"
#include "train/trainer.hpp"

using namespace nngraph;

namespace {

// A small encoder-decoder of the translation model's shape; positions are learned for 8 steps so
// that every length below has the same weights.
std::string translation_model(int source_steps, int target_steps) {
    const std::string s = std::to_string(source_steps), t = std::to_string(target_steps);
    return R"(inputs:
  - {name: source, shape: [)" +
           s + R"(], dtype: int32}
  - {name: decoder_input, shape: [)" +
           t + R"(], dtype: int32}
nodes:
  - {name: source_tokens, op: Embedding, inputs: [source], input_dim: 9, output_dim: 8, mask_zero: true}
  - {name: source_positions, op: PositionEmbedding, inputs: [source_tokens], sequence_length: 8}
  - {name: source_embedding, op: Add, inputs: [source_tokens, source_positions]}
  - {name: encoder_attention, op: MultiHeadAttention, inputs: [source_embedding], num_heads: 2, key_dim: 4}
  - {name: encoder_add, op: Add, inputs: [source_embedding, encoder_attention]}
  - {name: encoder_output, op: LayerNormalization, inputs: [encoder_add]}
  - {name: target_tokens, op: Embedding, inputs: [decoder_input], input_dim: 7, output_dim: 8, mask_zero: true}
  - {name: target_positions, op: PositionEmbedding, inputs: [target_tokens], sequence_length: 8}
  - {name: target_embedding, op: Add, inputs: [target_tokens, target_positions]}
  - {name: self_attention, op: MultiHeadAttention, inputs: [target_embedding], num_heads: 2, key_dim: 4,
     use_causal_mask: true}
  - {name: decoder_add_1, op: Add, inputs: [target_embedding, self_attention]}
  - {name: decoder_norm_1, op: LayerNormalization, inputs: [decoder_add_1]}
  - {name: cross_attention, op: MultiHeadAttention, inputs: [decoder_norm_1, encoder_output], num_heads: 2,
     key_dim: 4}
  - {name: decoder_add_2, op: Add, inputs: [decoder_norm_1, cross_attention]}
  - {name: decoder_norm_2, op: LayerNormalization, inputs: [decoder_add_2]}
  - {name: ffn, op: Dense, inputs: [decoder_norm_2], units: 12, activation: relu}
  - {name: dropout, op: Dropout, inputs: [ffn], rate: 0.3}
  - {name: out, op: Dense, inputs: [dropout], units: 7, activation: softmax}
outputs: [out]
training: {loss: sparse_categorical_crossentropy}
)";
}

// Two sentence pairs of different lengths, padded at the end to the given steps.
const std::vector<std::vector<int>> kSources{{3, 5, 8, 2}, {4, 1}};
const std::vector<std::vector<int>> kDecoderInputs{{1, 6, 2}, {1, 3}};
const std::vector<std::vector<int>> kTargets{{6, 2, 2}, {3, 2}};

Tensor padded(const std::vector<std::vector<int>>& rows, std::int64_t steps, DType dtype, float pad) {
    Tensor t(dtype, {static_cast<std::int64_t>(rows.size()), steps});
    for (std::size_t r = 0; r < rows.size(); ++r) {
        for (std::int64_t s = 0; s < steps; ++s) {
            const bool real = s < static_cast<std::int64_t>(rows[r].size());
            const float v = real ? static_cast<float>(rows[r][static_cast<std::size_t>(s)]) : pad;
            if (dtype == DType::I32)
                t.data<std::int32_t>()[r * static_cast<std::size_t>(steps) + static_cast<std::size_t>(s)] =
                    static_cast<std::int32_t>(v);
            else
                t.data<float>()[r * static_cast<std::size_t>(steps) + static_cast<std::size_t>(s)] = v;
        }
    }
    return t;
}

// The batch's inputs in the graph's input order, which follows execution rather than declaration.
std::vector<const Tensor*> inputs_of(const Graph& graph, const Tensor& source, const Tensor& decoder) {
    std::vector<const Tensor*> inputs;
    for (const TensorId t : graph.inputs()) inputs.push_back(graph.tensor(t).name == "source" ? &source : &decoder);
    return inputs;
}

struct Run {
    double loss = 0.0;
    std::vector<Tensor> grads;
    std::vector<std::uint8_t> mask;
};

// The loss and weight gradients (dropout off) of the two pairs at the given padded lengths; the
// padded targets hold `target_pad`, which a masked loss must never read.
Run run(int source_steps, int target_steps, float target_pad) {
    auto graph = Graph::from_spec(parse_model(translation_model(source_steps, target_steps), "model.yaml", "."));
    Executor executor(graph, {1, 11});
    initialize_weights(*graph, 11, executor.weights());
    executor.set_loss(make_loss("sparse_categorical_crossentropy"));
    const Tensor source = padded(kSources, source_steps, DType::I32, 0);
    const Tensor decoder = padded(kDecoderInputs, target_steps, DType::I32, 0);
    const Tensor targets = padded(kTargets, target_steps, DType::F32, target_pad);
    Run out;
    out.loss = executor.run({inputs_of(*graph, source, decoder), {&targets}, {}}, StepKind::Gradient);
    for (const Tensor& g : executor.weight_grads()) out.grads.push_back(g);
    const auto mask = executor.output_mask(0);
    out.mask.assign(mask.begin(), mask.end());
    return out;
}

}  // namespace

TEST_CASE("a padded batch has the unpadded batch's loss and gradients: padding carries no loss") {
    const Run tight = run(4, 3, 0);
    for (const float target_pad : {0.0f, 5.0f}) {
        CAPTURE(target_pad);
        const Run loose = run(7, 6, target_pad);
        CHECK(loose.loss == doctest::Approx(tight.loss).epsilon(1e-5));
        REQUIRE(loose.grads.size() == tight.grads.size());
        // Some gradients vanish in exact arithmetic (a key bias under softmax): theirs is rounding
        // of the model's larger ones, which sets the floor.
        double largest = 0.0;
        for (const Tensor& g : tight.grads)
            for (const float v : g.values<float>()) largest = std::max(largest, double(std::abs(v)));
        for (std::size_t w = 0; w < tight.grads.size(); ++w) {
            CAPTURE(w);
            const auto a = tight.grads[w].values<float>(), b = loose.grads[w].values<float>();
            REQUIRE(a.size() == b.size());
            double worst = 0.0, scale = 1e-3 * largest;
            for (std::size_t i = 0; i < a.size(); ++i) {
                worst = std::max(worst, double(std::abs(a[i] - b[i])));
                scale = std::max(scale, double(std::abs(a[i])));
            }
            CHECK(worst <= 1e-4 * scale);
        }
    }
}

TEST_CASE("the output's mask is the decoder input's padding, one byte per sample and step") {
    const Run r = run(4, 5, 0);
    CHECK(r.mask == std::vector<std::uint8_t>{1, 1, 1, 0, 0, 1, 1, 0, 0, 0});
}

TEST_CASE("the masked loss is the mean over real tokens") {
    // The second pair alone, then the first pair alone: the batch of both weighs each by its tokens.
    auto graph = Graph::from_spec(parse_model(translation_model(4, 3), "model.yaml", "."));
    Executor executor(graph, {1, 11});
    initialize_weights(*graph, 11, executor.weights());
    executor.set_loss(make_loss("sparse_categorical_crossentropy"));
    const Tensor source = padded(kSources, 4, DType::I32, 0);
    const Tensor decoder = padded(kDecoderInputs, 3, DType::I32, 0);
    const Tensor targets = padded(kTargets, 3, DType::F32, 0);
    const std::vector<const Tensor*> inputs = inputs_of(*graph, source, decoder);
    const std::int64_t first[] = {0}, second[] = {1};
    const double both = executor.run({inputs, {&targets}, {}}, StepKind::Evaluate);
    const double one = executor.run({inputs, {&targets}, first}, StepKind::Evaluate);
    const double two = executor.run({inputs, {&targets}, second}, StepKind::Evaluate);
    CHECK(both == doctest::Approx((3 * one + 2 * two) / 5).epsilon(1e-6));
    CHECK(both != doctest::Approx((one + two) / 2).epsilon(1e-3));
}

TEST_CASE("training scores weigh every real token the same, across batches of different lengths") {
    auto graph = Graph::from_spec(parse_model(translation_model(4, 3), "model.yaml", "."));
    Executor executor(graph, {1, 11});
    initialize_weights(*graph, 11, executor.weights());
    TrainingConfig config;
    config.loss = "sparse_categorical_crossentropy";
    config.accuracy = true;
    config.batch_size = 1;
    Trainer trainer(executor, config);
    Dataset data;
    const Tensor source = padded(kSources, 4, DType::I32, 0);
    const Tensor decoder = padded(kDecoderInputs, 3, DType::I32, 0);
    for (const Tensor* input : inputs_of(*graph, source, decoder)) data.inputs.push_back(*input);
    data.targets.push_back(padded(kTargets, 3, DType::F32, 0));
    const Scores scores = trainer.evaluate(data);

    // The same by hand: each pair's mean loss and right guesses over its real tokens.
    double loss_sum = 0.0, right = 0.0, tokens = 0.0;
    for (const std::int64_t row : {0, 1}) {
        const std::int64_t rows[] = {row};
        const double loss =
            executor.run({inputs_of(*graph, source, decoder), {&data.targets[0]}, rows}, StepKind::Evaluate);
        const TensorView out = executor.output(0);
        const auto mask = executor.output_mask(0);
        for (std::int64_t t = 0; t < 3; ++t) {
            if (!mask[static_cast<std::size_t>(t)]) continue;
            const float* scores_at = out.as<float>() + t * 7;
            const auto guess = std::max_element(scores_at, scores_at + 7) - scores_at;
            right += guess == kTargets[static_cast<std::size_t>(row)][static_cast<std::size_t>(t)];
            tokens += 1;
            loss_sum += loss;
        }
    }
    CHECK(tokens == 5);
    CHECK(scores.loss == doctest::Approx(loss_sum / tokens).epsilon(1e-6));
    REQUIRE(scores.accuracy);
    CHECK(*scores.accuracy == doctest::Approx(right / tokens));
}
