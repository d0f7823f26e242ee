#include "text/bleu.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "nngraph/error.hpp"
#include "text/tokens.hpp"

namespace nngraph {
namespace {

constexpr std::size_t kMaxOrder = 4;

// Every n-gram of `tokens` for n = 1..4, with its count; an n-gram is its tokens joined by a byte
// no token holds.
std::map<std::string, std::int64_t> ngram_counts(const Tokens& tokens) {
    std::map<std::string, std::int64_t> counts;
    for (std::size_t start = 0; start < tokens.size(); ++start) {
        std::string ngram;
        for (std::size_t n = 1; n <= kMaxOrder && start + n <= tokens.size(); ++n) {
            ngram += '\n';
            ngram += tokens[start + n - 1];
            ++counts[ngram];
        }
    }
    return counts;
}

std::size_t order_of(const std::string& ngram) {
    return static_cast<std::size_t>(std::count(ngram.begin(), ngram.end(), '\n'));
}

}  // namespace

void CorpusBleu::add(const Tokens& hypothesis, const std::vector<Tokens>& references) {
    if (references.empty()) throw InputError("BLEU needs at least one reference for every hypothesis");
    const auto length = static_cast<std::int64_t>(hypothesis.size());
    // A reference n-gram may be matched as often as the reference that holds it most often.
    std::map<std::string, std::int64_t> allowed;
    std::int64_t closest = -1;
    for (const Tokens& reference : references) {
        for (const auto& [ngram, count] : ngram_counts(reference)) allowed[ngram] = std::max(allowed[ngram], count);
        const auto candidate = static_cast<std::int64_t>(reference.size());
        const std::int64_t distance = std::abs(candidate - length);
        const std::int64_t best = std::abs(closest - length);
        if (closest < 0 || distance < best || (distance == best && candidate < closest)) closest = candidate;
    }
    for (const auto& [ngram, count] : ngram_counts(hypothesis)) {
        const std::size_t n = order_of(ngram) - 1;
        totals_[n] += count;
        const auto found = allowed.find(ngram);
        if (found != allowed.end()) matches_[n] += std::min(count, found->second);
    }
    hypothesis_length_ += length;
    reference_length_ += closest;
}

BleuScore CorpusBleu::score() const {
    BleuScore result;
    result.hypothesis_length = hypothesis_length_;
    result.reference_length = reference_length_;
    double log_sum = 0;
    bool any_zero = false;
    for (std::size_t n = 0; n < kMaxOrder; ++n) {
        if (totals_[n] > 0)
            result.precisions[n] = 100.0 * static_cast<double>(matches_[n]) / static_cast<double>(totals_[n]);
        if (result.precisions[n] == 0)
            any_zero = true;
        else
            log_sum += std::log(result.precisions[n]);
    }
    if (hypothesis_length_ > 0) {
        result.brevity_penalty =
            hypothesis_length_ > reference_length_
                ? 1.0
                : std::exp(1.0 - static_cast<double>(reference_length_) / static_cast<double>(hypothesis_length_));
    }
    // Without smoothing, a missing n-gram order makes the geometric mean, and BLEU, zero.
    if (!any_zero) result.score = result.brevity_penalty * std::exp(log_sum / static_cast<double>(kMaxOrder));
    return result;
}

BleuScore translation_bleu(const std::vector<std::string>& translations,
                           const std::vector<std::vector<std::string>>& references) {
    if (translations.size() != references.size()) {
        throw InputError("BLEU needs one translation per source sentence: " + std::to_string(translations.size()) +
                         " translations for " + std::to_string(references.size()) + " sentences");
    }
    CorpusBleu corpus;
    std::vector<Tokens> tokenized;
    for (std::size_t i = 0; i < translations.size(); ++i) {
        tokenized.clear();
        for (const std::string& reference : references[i]) tokenized.push_back(translation_tokens(reference));
        corpus.add(translation_tokens(translations[i]), tokenized);
    }
    return corpus.score();
}

}  // namespace nngraph
