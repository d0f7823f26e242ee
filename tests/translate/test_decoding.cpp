// Incremental decoding: a session's cached steps give the outputs of the full decoder run on each
// prefix; reordering a session's rows (beam search) carries their caches along; greedy search picks
// what a full-prefix loop picks.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "gradcheck.hpp"
#include "graph/graph.hpp"
#include "graph/model_file.hpp"
#include "nngraph/random.hpp"
#include "translate/decoder_session.hpp"
#include "translate/search.hpp"

using namespace nngraph;

namespace {

constexpr std::int64_t kSourceLength = 7, kPositions = 6, kVocabulary = 24;

std::shared_ptr<const Graph> tiny_model() {
    const std::string file = std::string(NNGRAPH_SOURCE_DIR) + "/tests/translate/tiny_translate.yaml";
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return Graph::from_spec(parse_model(text.str(), file, std::string(NNGRAPH_SOURCE_DIR) + "/tests/translate"));
}

// Initial weights plus noise, so that biases and LayerNormalization's gamma and beta matter too.
std::vector<Tensor> noisy_weights(const Graph& graph, std::uint64_t seed) {
    std::vector<Tensor> weights;
    for (const GraphWeight& w : graph.weights()) weights.emplace_back(DType::F32, w.info.shape);
    initialize_weights(graph, seed, weights);
    for (std::size_t k = 0; k < weights.size(); ++k) {
        Tensor noise(DType::F32, weights[k].shape());
        testing::fill_uniform(noise, -0.1, 0.1, nng::derive_seed(seed, k + 10));
        for (std::int64_t e = 0; e < noise.numel(); ++e) weights[k].data<float>()[e] += noise.data<float>()[e];
    }
    return weights;
}

// Three sources of different lengths, padded with 0.
Tensor sources() {
    const std::int32_t ids[] = {5,  6, 7, 8, 9, 10, 11,  //
                                3,  4, 5, 0, 0, 0,  0,   //
                                12, 0, 0, 0, 0, 0,  0};
    return Tensor::from<std::int32_t>({3, kSourceLength}, ids);
}

// The decoder's tokens per row: start, then a fixed target.
const std::int32_t kTokens[3][kPositions] = {{1, 4, 9, 17, 5, 22}, {1, 20, 6, 6, 11, 8}, {1, 13, 4, 19, 7, 10}};

struct FullDecoder {
    Executor executor;
    FullDecoder(std::shared_ptr<const Graph> graph, const std::vector<Tensor>& weights)
        : executor(std::move(graph), {1, 0}) {
        executor.weights() = weights;
    }
    // Output rows (rows x vocabulary) at `position` of the full decoder run on prefixes [0, position]
    // of `tokens` (rows x kPositions), padded with 0 after.
    std::vector<float> at(const Tensor& src, const std::vector<std::array<std::int32_t, kPositions>>& tokens,
                          std::int64_t position) {
        const auto rows = static_cast<std::int64_t>(tokens.size());
        Tensor decoder(DType::I32, {rows, kPositions});
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t t = 0; t <= position; ++t)
                decoder.data<std::int32_t>()[r * kPositions + t] =
                    tokens[static_cast<std::size_t>(r)][static_cast<std::size_t>(t)];
        BatchRef batch;
        for (TensorId t : executor.graph().inputs())
            batch.inputs.push_back(executor.graph().tensor(t).name == "source" ? &src : &decoder);
        executor.run(batch, StepKind::Infer);
        const TensorView out = executor.output(0);
        const auto* p = static_cast<const float*>(out.data);
        std::vector<float> rows_at;
        for (std::int64_t r = 0; r < rows; ++r)
            rows_at.insert(rows_at.end(), p + (r * kPositions + position) * kVocabulary,
                           p + (r * kPositions + position + 1) * kVocabulary);
        return rows_at;
    }
};

// The largest difference of log probabilities (logits up to each row's constant).
double log_difference(std::span<const float> a, std::span<const float> b) {
    REQUIRE(a.size() == b.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::abs(std::log(static_cast<double>(a[i])) - std::log(static_cast<double>(b[i]))));
    return worst;
}

}  // namespace

TEST_CASE("cached decoding gives the full decoder's outputs on every prefix, for padded sources of several lengths") {
    const auto graph = tiny_model();
    const std::vector<Tensor> weights = noisy_weights(*graph, 3);
    FullDecoder full(graph, weights);
    DecoderSession session(graph, weights, 1);
    CHECK(session.source_length() == kSourceLength);
    CHECK(session.max_positions() == kPositions);
    const Tensor src = sources();
    std::vector<std::array<std::int32_t, kPositions>> tokens;
    for (const auto& row : kTokens) tokens.push_back(std::to_array(row));
    session.start(src);
    for (std::int64_t position = 0; position < kPositions; ++position) {
        std::vector<std::int32_t> step_tokens;
        for (const auto& row : tokens) step_tokens.push_back(row[static_cast<std::size_t>(position)]);
        const std::span<const float> cached = session.step(step_tokens);
        const std::vector<float> expected = full.at(src, tokens, position);
        CAPTURE(position);
        CHECK(log_difference(cached, expected) < 1e-5);
    }
    // Past the decoder's length there is no position to embed nor room in the caches.
    const std::vector<std::int32_t> one_more(3, 4);
    CHECK_THROWS_WITH_AS(session.step(one_more), doctest::Contains("outside the session's 6 positions"), InputError);
    // A second session on the same executor starts afresh: nothing of the first is seen.
    const Tensor shorter = src.slice_rows(1, 3);
    session.start(shorter);
    tokens.erase(tokens.begin());
    for (std::int64_t position = 0; position < 3; ++position) {
        const std::vector<std::int32_t> step_tokens{tokens[0][static_cast<std::size_t>(position)],
                                                    tokens[1][static_cast<std::size_t>(position)]};
        const std::span<const float> cached = session.step(step_tokens);
        CAPTURE(position);
        CHECK(log_difference(cached, full.at(shorter, tokens, position)) < 1e-5);
    }
}

TEST_CASE("reordering a session's rows carries their caches: row r continues the hypothesis it was given") {
    const auto graph = tiny_model();
    const std::vector<Tensor> weights = noisy_weights(*graph, 5);
    FullDecoder full(graph, weights);
    DecoderSession session(graph, weights, 1);
    const Tensor src = sources();
    session.start(src);
    for (std::int64_t position = 0; position < 2; ++position) {
        std::vector<std::int32_t> step_tokens;
        for (const auto& row : kTokens) step_tokens.push_back(row[position]);
        session.step(step_tokens);
    }
    const std::int64_t from[] = {2, 0, 0};
    session.reorder(from);
    // Rows now hold the sources and prefixes of rows 2, 0, 0.
    Tensor reordered(DType::I32, {3, kSourceLength});
    std::vector<std::array<std::int32_t, kPositions>> tokens;
    for (std::int64_t r = 0; r < 3; ++r) {
        std::copy_n(src.data<std::int32_t>() + from[r] * kSourceLength, kSourceLength,
                    reordered.data<std::int32_t>() + r * kSourceLength);
        tokens.push_back(std::to_array(kTokens[from[r]]));
    }
    tokens[1][2] = 21;  // the two copies of row 0 go on with different tokens
    for (std::int64_t position = 2; position < kPositions; ++position) {
        std::vector<std::int32_t> step_tokens;
        for (const auto& row : tokens) step_tokens.push_back(row[static_cast<std::size_t>(position)]);
        const std::span<const float> cached = session.step(step_tokens);
        CAPTURE(position);
        CHECK(log_difference(cached, full.at(reordered, tokens, position)) < 1e-5);
    }
}

TEST_CASE("greedy search picks what a loop over the full decoder picks; a beam of one is greedy") {
    const auto graph = tiny_model();
    const std::vector<Tensor> weights = noisy_weights(*graph, 7);
    FullDecoder full(graph, weights);
    DecoderSession session(graph, weights, 1);
    const Tensor src = sources();
    const SearchTokens steering{1, 2};
    const std::vector<std::vector<std::int32_t>> greedy = greedy_search(session, src, steering);

    std::vector<std::array<std::int32_t, kPositions>> tokens(3);
    std::vector<std::vector<std::int32_t>> expected(3);
    std::vector<bool> ended(3, false);
    for (auto& row : tokens) row.fill(0), row[0] = steering.start;
    for (std::int64_t position = 0; position < kPositions; ++position) {
        const std::vector<float> p = full.at(src, tokens, position);
        for (std::size_t r = 0; r < 3; ++r) {
            const float* row = p.data() + r * kVocabulary;
            const auto best = static_cast<std::int32_t>(std::max_element(row, row + kVocabulary) - row);
            if (ended[r]) continue;
            if (best == steering.end || best == steering.pad) {
                ended[r] = true;
                continue;
            }
            expected[r].push_back(best);
            if (position + 1 < kPositions) tokens[r][static_cast<std::size_t>(position + 1)] = best;
        }
    }
    CHECK(greedy == expected);
    CHECK(beam_search(session, src, 1, steering) == greedy);
    Executor model(graph, {1, 0});
    model.weights() = weights;
    CHECK(cached_greedy(model, src, 2) == greedy);  // in batches of two rows
}

TEST_CASE("beam search scores hypotheses by their mean log probability and is never worse than greedy by it") {
    const auto graph = tiny_model();
    const std::vector<Tensor> weights = noisy_weights(*graph, 11);
    FullDecoder full(graph, weights);
    DecoderSession session(graph, weights, 1);
    const Tensor src = sources();
    const SearchTokens steering{1, 2};
    // The mean log probability of `ids` (then its end unless it fills every position) for row r.
    const auto score = [&](std::size_t r, const std::vector<std::int32_t>& ids) {
        std::vector<std::array<std::int32_t, kPositions>> tokens(3);
        for (auto& row : tokens) row.fill(0), row[0] = steering.start;
        for (std::size_t t = 0; t < ids.size() && t + 1 < kPositions; ++t) tokens[r][t + 1] = ids[t];
        double sum = 0.0;
        const std::size_t steps = std::min<std::size_t>(ids.size() + 1, kPositions);
        for (std::size_t t = 0; t < steps; ++t) {
            const std::vector<float> p = full.at(src, tokens, static_cast<std::int64_t>(t));
            const float* row = p.data() + r * kVocabulary;
            // A hypothesis ends with the end token or a pad, whichever is likelier.
            const float last = std::max(row[steering.end], row[steering.pad]);
            sum += std::log(static_cast<double>(t < ids.size() ? row[ids[t]] : last));
        }
        return sum / static_cast<double>(steps);
    };
    const auto greedy = greedy_search(session, src, steering);
    const auto beam = beam_search(session, src, 4, steering);
    REQUIRE(beam.size() == 3);
    for (std::size_t r = 0; r < 3; ++r) {
        CAPTURE(r);
        CHECK(score(r, beam[r]) >= score(r, greedy[r]) - 1e-9);
    }
}
