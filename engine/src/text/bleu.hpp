// Corpus BLEU-4 (Papineni et al. 2002) with sacrebleu's arithmetic on pre-tokenised text, as SPEC
// section 7 scores translation: clipped n-gram precisions, the brevity penalty against the closest
// reference length (the shorter on a tie), uniform weights, no smoothing.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace nngraph {

using Tokens = std::vector<std::string>;

struct BleuScore {
    double score = 0;                    // in percent, 0 to 100
    std::array<double, 4> precisions{};  // clipped n-gram precisions, in percent
    double brevity_penalty = 0;
    std::int64_t hypothesis_length = 0;  // tokens of all hypotheses
    std::int64_t reference_length = 0;   // the closest reference's tokens, summed over sentences
};

// Accumulates sentence statistics; score() gives the corpus BLEU of everything added.
class CorpusBleu {
public:
    // One hypothesis and all its references; raises InputError when there is no reference.
    void add(const Tokens& hypothesis, const std::vector<Tokens>& references);
    BleuScore score() const;

private:
    std::array<std::int64_t, 4> matches_{};
    std::array<std::int64_t, 4> totals_{};
    std::int64_t hypothesis_length_ = 0;
    std::int64_t reference_length_ = 0;
};

// SPEC section 7's score: corpus BLEU of UTF-8 `translations`, one a source sentence, each against
// all that sentence's `references`, every text cut into translation_tokens. Raises InputError when
// the counts differ or a text is not UTF-8.
BleuScore translation_bleu(const std::vector<std::string>& translations,
                           const std::vector<std::vector<std::string>>& references);

}  // namespace nngraph
