#include "translate/search.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace nngraph {

std::vector<std::vector<std::int32_t>> greedy_search(DecoderSession& session, const Tensor& sources,
                                                     SearchTokens tokens) {
    session.start(sources);
    const std::int64_t rows = session.rows(), width = session.vocabulary();
    std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(rows));
    std::vector<std::int32_t> next(static_cast<std::size_t>(rows), tokens.start);
    std::vector<bool> done(static_cast<std::size_t>(rows), false);
    std::int64_t remaining = rows;
    for (std::int64_t position = 0; position < session.max_positions() && remaining > 0; ++position) {
        const std::span<const float> p = session.step(next);
        for (std::int64_t r = 0; r < rows; ++r) {
            const auto row = static_cast<std::size_t>(r);
            if (done[row]) continue;  // an ended row still steps with the others; its output is ignored
            const float* probabilities = p.data() + r * width;
            const auto best =
                static_cast<std::int32_t>(std::max_element(probabilities, probabilities + width) - probabilities);
            next[row] = best;
            if (tokens.ends(best)) {
                done[row] = true;
                --remaining;
            } else {
                out[row].push_back(best);
            }
        }
    }
    return out;
}

namespace {

struct Hypothesis {
    std::vector<std::int32_t> ids;  // the end token left out
    double log_probability = 0.0;
    double score = 0.0;  // log_probability / length, end included
};

// The live beams of one sentence and the hypotheses that ended.
struct SentenceBeams {
    std::vector<Hypothesis> live;
    std::vector<Hypothesis> ended;
    bool done = false;

    double worst_ended() const {
        double worst = std::numeric_limits<double>::infinity();
        for (const Hypothesis& h : ended) worst = std::min(worst, h.score);
        return worst;
    }
};

double log_of(float p) { return std::log(std::max(static_cast<double>(p), 1e-30)); }

}  // namespace

std::vector<std::vector<std::int32_t>> beam_search(DecoderSession& session, const Tensor& sources, int beam,
                                                   SearchTokens tokens) {
    if (beam < 1) throw InputError("beam search needs a beam of 1 or more, got " + std::to_string(beam));
    const std::int64_t sentences = sources.dim(0), width = session.vocabulary(), k = beam;
    // Every sentence's source repeated once per beam: row s·k + j is beam j of sentence s.
    Tensor repeated(DType::I32, {sentences * k, sources.dim(1)});
    const std::int64_t length = sources.dim(1);
    for (std::int64_t s = 0; s < sentences; ++s)
        for (std::int64_t j = 0; j < k; ++j)
            std::copy_n(sources.data<std::int32_t>() + s * length, length,
                        repeated.data<std::int32_t>() + (s * k + j) * length);
    session.start(repeated);

    std::vector<SentenceBeams> beams(static_cast<std::size_t>(sentences));
    for (SentenceBeams& b : beams) b.live.assign(1, Hypothesis{});  // one beam until the first step branches
    std::vector<std::int32_t> next(static_cast<std::size_t>(sentences * k), tokens.start);
    std::vector<std::int64_t> from(static_cast<std::size_t>(sentences * k));
    struct Candidate {
        double log_probability;
        std::int64_t parent;
        std::int32_t token;
    };
    std::vector<Candidate> candidates;
    std::vector<std::int32_t> best_tokens(static_cast<std::size_t>(width));
    const std::int64_t last = session.max_positions() - 1;
    for (std::int64_t position = 0; position <= last; ++position) {
        const std::span<const float> p = session.step(next);
        bool all_done = true;
        for (std::int64_t s = 0; s < sentences; ++s) {
            SentenceBeams& b = beams[static_cast<std::size_t>(s)];
            if (b.done) {
                for (std::int64_t j = 0; j < k; ++j) from[static_cast<std::size_t>(s * k + j)] = s * k + j;
                continue;
            }
            // The k best tokens of each live beam hold the sentence's k best continuations.
            candidates.clear();
            for (std::size_t j = 0; j < b.live.size(); ++j) {
                const float* row = p.data() + (s * k + static_cast<std::int64_t>(j)) * width;
                std::iota(best_tokens.begin(), best_tokens.end(), 0);
                const auto take = std::min<std::int64_t>(k + 1, width);
                std::partial_sort(best_tokens.begin(), best_tokens.begin() + take, best_tokens.end(),
                                  [&](std::int32_t a, std::int32_t c) { return row[a] > row[c]; });
                for (std::int64_t t = 0; t < take; ++t) {
                    const std::int32_t token = best_tokens[static_cast<std::size_t>(t)];
                    candidates.push_back(
                        {b.live[j].log_probability + log_of(row[token]), static_cast<std::int64_t>(j), token});
                }
            }
            std::sort(candidates.begin(), candidates.end(),
                      [](const Candidate& a, const Candidate& c) { return a.log_probability > c.log_probability; });
            std::vector<Hypothesis> live;
            for (const Candidate& c : candidates) {
                if (static_cast<std::int64_t>(live.size()) == k) break;
                Hypothesis h = b.live[static_cast<std::size_t>(c.parent)];
                h.log_probability = c.log_probability;
                const bool ends = tokens.ends(c.token) || position == last;
                if (!tokens.ends(c.token)) h.ids.push_back(c.token);
                if (ends) {
                    h.score = h.log_probability / static_cast<double>(position + 1);
                    b.ended.push_back(std::move(h));
                    continue;
                }
                from[static_cast<std::size_t>(s * k) + live.size()] = s * k + c.parent;
                next[static_cast<std::size_t>(s * k) + live.size()] = c.token;
                live.push_back(std::move(h));
            }
            // Unused rows keep stepping on a copy of beam 0; their output is ignored.
            for (std::size_t j = live.size(); j < static_cast<std::size_t>(k); ++j) {
                from[static_cast<std::size_t>(s * k) + j] = s * k;
                next[static_cast<std::size_t>(s * k) + j] = tokens.end;
            }
            b.live = std::move(live);
            // The heuristic stop: judged by the live beams' means so far.
            double best_live = -std::numeric_limits<double>::infinity();
            for (const Hypothesis& h : b.live)
                best_live = std::max(best_live, h.log_probability / static_cast<double>(position + 1));
            b.done = b.live.empty() || (static_cast<std::int64_t>(b.ended.size()) >= k && best_live <= b.worst_ended());
            all_done = all_done && b.done;
        }
        if (all_done || position == last) break;
        session.reorder(from);
    }
    std::vector<std::vector<std::int32_t>> out;
    for (SentenceBeams& b : beams) {
        const auto best = std::max_element(b.ended.begin(), b.ended.end(),
                                           [](const Hypothesis& a, const Hypothesis& c) { return a.score < c.score; });
        out.push_back(best == b.ended.end() ? std::vector<std::int32_t>{} : best->ids);
    }
    return out;
}

std::vector<std::vector<std::int32_t>> cached_greedy(Executor& model, const Tensor& source_ids,
                                                     std::int64_t batch_size) {
    if (batch_size < 1) throw InputError("decoding needs a batch size of 1 or more");
    DecoderSession session(model.shared_graph(), model.weights(), model.options().threads);
    std::vector<std::vector<std::int32_t>> out;
    for (std::int64_t first = 0; first < source_ids.dim(0); first += batch_size) {
        const Tensor batch = source_ids.slice_rows(first, std::min(source_ids.dim(0), first + batch_size));
        for (std::vector<std::int32_t>& ids : greedy_search(session, batch)) out.push_back(std::move(ids));
    }
    return out;
}

}  // namespace nngraph
