// Corpus BLEU on cases worked by hand (SPEC section 7).
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "nngraph/error.hpp"
#include "text/bleu.hpp"

using namespace nngraph;

namespace {

Tokens words(const std::string& text) {
    Tokens out;
    std::istringstream in(text);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

BleuScore bleu(const std::string& hypothesis, const std::vector<std::string>& references) {
    CorpusBleu corpus;
    std::vector<Tokens> refs;
    for (const auto& r : references) refs.push_back(words(r));
    corpus.add(words(hypothesis), refs);
    return corpus.score();
}

}  // namespace

TEST_CASE("a perfect match scores 100") {
    CHECK(bleu("the cat sat on the mat", {"the cat sat on the mat"}).score == doctest::Approx(100.0));
}

TEST_CASE("clipped precisions: a repeated word counts at most as often as a reference has it") {
    // the: 2 in the hypothesis, 1 in the reference. Precisions 5/6, 3/5, 2/4, 1/3; equal lengths.
    const BleuScore s = bleu("the cat sat on the mat", {"the cat sat on a mat"});
    CHECK(s.precisions[0] == doctest::Approx(500.0 / 6));
    CHECK(s.precisions[1] == doctest::Approx(60.0));
    CHECK(s.precisions[2] == doctest::Approx(50.0));
    CHECK(s.precisions[3] == doctest::Approx(100.0 / 3));
    CHECK(s.brevity_penalty == 1.0);
    CHECK(s.score == doctest::Approx(100.0 * std::pow(1.0 / 12, 0.25)));
    // Clipping takes the most any one reference holds: a second reference with "the" twice lifts 1/7 to 2/7.
    CHECK(bleu("the the the the the the the", {"the cat is on a mat"}).precisions[0] == doctest::Approx(100.0 / 7));
    CHECK(bleu("the the the the the the the", {"the cat is on a mat", "the mat and the cat"}).precisions[0] ==
          doctest::Approx(200.0 / 7));
}

TEST_CASE("brevity penalty against the closest reference, the shorter on a tie") {
    // Lengths 7 and 9 for a hypothesis of 5: the closest is 7, BP = exp(1 - 7/5).
    const BleuScore closest = bleu("a b c d e", {"a b c d e f g", "a b c d e f g h i"});
    CHECK(closest.reference_length == 7);
    CHECK(closest.score == doctest::Approx(100.0 * std::exp(-0.4)));
    // 4 and 6 are both 1 away from 5: the shorter, 4, leaves no penalty.
    const BleuScore tie = bleu("a b c d e", {"a b c d e f", "a b c d"});
    CHECK(tie.reference_length == 4);
    CHECK(tie.brevity_penalty == 1.0);
    CHECK(tie.score == doctest::Approx(100.0));
}

TEST_CASE("statistics add up over the corpus before the score is taken") {
    CorpusBleu corpus;
    corpus.add(words("a b c d"), {words("a b c d")});
    corpus.add(words("a b c d e f"), {words("a b c d e f g h")});
    const BleuScore s = corpus.score();
    CHECK(s.hypothesis_length == 10);
    CHECK(s.reference_length == 12);
    CHECK(s.score == doctest::Approx(100.0 * std::exp(1.0 - 12.0 / 10)));
}

TEST_CASE("without 4-grams, or with none matching, BLEU is 0") {
    CHECK(bleu("a b c", {"a b c"}).score == 0.0);
    CHECK(bleu("a b c", {"a b c"}).precisions[2] == doctest::Approx(100.0));
    CHECK(bleu("a b c d e", {"a b c x e"}).score == 0.0);
    CHECK(bleu("", {"a b c"}).score == 0.0);
    CorpusBleu nothing;
    CHECK_THROWS_AS(nothing.add(words("a"), {}), InputError);
}

TEST_CASE("translation_bleu scores raw text in translation tokens") {
    // "J’ai froid !" is j ' ai froid ! whatever the apostrophe and the space before '!'.
    const BleuScore s =
        translation_bleu({"J'ai tr\u00E8s froid\u00A0!"}, {{"J\u2019ai tr\u00E8s froid\u202F!", "Il fait froid."}});
    CHECK(s.score == doctest::Approx(100.0));
    CHECK_THROWS_AS(translation_bleu({"a", "b"}, {{"a"}}), InputError);
    CHECK_THROWS_AS(translation_bleu({"caf\xe9 au lait"}, {{"caf\u00E9 au lait"}}), InputError);
}
