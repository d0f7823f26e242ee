// The plain greedy decoder and the BLEU of a decoded split, on a small random translation model.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "text/translation_vocabulary.hpp"
#include "translate/greedy_reference.hpp"
#include "translate/translation_score.hpp"

using namespace nngraph;

namespace {

// The decoder input is declared second but runs first, so the graph's input order differs from the
// declared one, as in graphs/translate_eng_fra.yaml.
const char* kModel = R"(inputs:
  - {name: source, shape: [5], dtype: int32}
  - {name: decoder_input, shape: [6], dtype: int32}
nodes:
  - {name: target_tokens, op: Embedding, inputs: [decoder_input], input_dim: 9, output_dim: 8, mask_zero: true}
  - {name: target_positions, op: PositionEmbedding, inputs: [target_tokens], sequence_length: 6}
  - {name: target_embedding, op: Add, inputs: [target_tokens, target_positions]}
  - {name: self_attention, op: MultiHeadAttention, inputs: [target_embedding], num_heads: 2, key_dim: 4,
     use_causal_mask: true}
  - {name: source_tokens, op: Embedding, inputs: [source], input_dim: 8, output_dim: 8, mask_zero: true}
  - {name: cross_attention, op: MultiHeadAttention, inputs: [self_attention, source_tokens], num_heads: 2, key_dim: 4}
  - {name: out, op: Dense, inputs: [cross_attention], units: 9, activation: softmax}
outputs: [out]
)";

struct Model {
    std::shared_ptr<const Graph> graph = Graph::from_spec(parse_model(kModel, "model.yaml", "."));
    Executor executor{graph, {1, 3}};
    explicit Model(std::uint64_t seed) { initialize_weights(*graph, seed, executor.weights()); }
};

Tensor sources() {
    Tensor t(DType::I32, {3, 5});
    const std::int32_t ids[] = {4, 5, 6, 0, 0, 7, 0, 0, 0, 0, 3, 4, 5, 6, 7};
    std::copy(std::begin(ids), std::end(ids), t.data<std::int32_t>());
    return t;
}

}  // namespace

TEST_CASE("greedy decoding: every id is the model's best guess after the prefix before it") {
    for (const std::uint64_t seed : {1, 2, 3, 4}) {
        CAPTURE(seed);
        Model m(seed);
        const Tensor source = sources();
        const std::vector<TargetIds> decoded = greedy_reference(m.executor, source, 2);
        REQUIRE(decoded.size() == 3);
        // Teacher-force each decoded sentence (start + ids) and read the argmax at every position:
        // the ids again, then end or pad where the sentence stopped early.
        const TranslationInputs slots = translation_inputs(*m.graph);
        for (std::int64_t r = 0; r < 3; ++r) {
            const TargetIds& ids = decoded[static_cast<std::size_t>(r)];
            CHECK(ids.size() <= 6);
            Tensor decoder(DType::I32, {1, 6});
            std::fill_n(decoder.data<std::int32_t>(), 6, 0);
            decoder.data<std::int32_t>()[0] = TokenVocabulary::kStartId;
            for (std::size_t t = 0; t + 1 < 6 && t < ids.size(); ++t) decoder.data<std::int32_t>()[t + 1] = ids[t];
            Tensor one(DType::I32, {1, 5});
            std::copy_n(source.data<std::int32_t>() + r * 5, 5, one.data<std::int32_t>());
            BatchRef batch;
            batch.inputs.resize(2);
            batch.inputs[slots.source] = &one;
            batch.inputs[slots.decoder] = &decoder;
            m.executor.run(batch, StepKind::Infer);
            const float* p = m.executor.output(0).as<float>();
            for (std::size_t t = 0; t <= ids.size() && t < 6; ++t) {
                const auto best = static_cast<std::int32_t>(std::max_element(p + t * 9, p + t * 9 + 9) - (p + t * 9));
                if (t < ids.size())
                    CHECK(best == ids[t]);
                else
                    CHECK((best == TokenVocabulary::kEndId || best == TokenVocabulary::kPadId));
            }
        }
    }
}

TEST_CASE("the model's inputs are found by declaration, whatever their order in the graph") {
    Model m(1);
    const TranslationInputs slots = translation_inputs(*m.graph);
    CHECK(m.graph->tensor(m.graph->inputs()[slots.source]).name == "source");
    CHECK(m.graph->tensor(m.graph->inputs()[slots.decoder]).name == "decoder_input");
    CHECK(slots.source_length == 5);
    CHECK(slots.target_length == 6);
}

TEST_CASE("score_translations: decoded ids become target tokens and are scored against every reference") {
    Model m(1);
    const TranslationVocabularies vocabularies{TokenVocabulary({"a", "b", "c", "d"}, 8),
                                               TokenVocabulary({"le", "chat", "noir", "dort", "!"}, 9), 5, 6};
    const std::vector<ReferenceGroup> groups{{"a b c d", {"le chat noir dort !", "le chat dort"}},
                                             {"d c b a", {"le chat noir dort !"}}};
    // A decoder that answers the first reference, checking the source rows it is given.
    const DecodeFunction perfect = [](Executor&, const Tensor& source, std::int64_t) {
        CHECK(source.dim(0) == 2);
        CHECK(source.data<std::int32_t>()[0] == 4);  // "a"
        CHECK(source.data<std::int32_t>()[5] == 7);  // "d"
        return std::vector<TargetIds>{{4, 5, 6, 7, 8}, {4, 5, 6, 7, 8}};
    };
    CHECK(score_translations(m.executor, vocabularies, groups, perfect, 4).score == doctest::Approx(100.0));
    // Out-of-vocabulary ids match nothing: one wrong token in five lowers every precision.
    const DecodeFunction one_unknown = [](Executor&, const Tensor&, std::int64_t) {
        return std::vector<TargetIds>{{4, 5, 3, 7, 8}, {4, 5, 6, 7, 8}};
    };
    CHECK(score_translations(m.executor, vocabularies, groups, one_unknown, 4).score < 80.0);
    CHECK(target_tokens(vocabularies, {4, 3, 8}) == Tokens{"le", "[UNK]", "!"});
}
