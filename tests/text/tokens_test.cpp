// The translation tokens (SPEC section 7): French text, and Python's \w and \s over every code point.
#include <doctest/doctest.h>

#include <unicode/uchar.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "nngraph/error.hpp"
#include "text/tokens.hpp"

using namespace nngraph;
using Words = std::vector<std::string>;

TEST_CASE("French text: apostrophes, accents, punctuation and the spaces before it") {
    CHECK(translation_tokens("J'ai froid.") == Words{"j", "'", "ai", "froid", "."});
    CHECK(translation_tokens("Cours\u202F!") == Words{"cours", "!"});
    CHECK(translation_tokens("Qu'est-ce que c'est\u00A0?") ==
          Words{"qu", "'", "est", "-", "ce", "que", "c", "'", "est", "?"});
    CHECK(translation_tokens("\u00C7a m\u2019\u00E9tonne") == Words{"\u00E7a", "m", "'", "\u00E9tonne"});
    CHECK(translation_tokens("\u00C9COLE \u00AB\u00A0Noël\u00A0\u00BB") ==
          Words{"\u00E9cole", "\u00AB", "no\u00EBl", "\u00BB"});
    CHECK(translation_tokens("10\u20092") == Words{"10", "2"});
    CHECK(translation_tokens("  \t ").empty());
    CHECK(translation_tokens("").empty());
}

TEST_CASE("NFC comes first, and the zero-width space and soft hyphen vanish inside words") {
    // e + combining acute composes to one letter, so the word is not cut at the mark.
    CHECK(translation_tokens("e\u0301te\u0301") == Words{"\u00E9t\u00E9"});
    CHECK(translation_tokens("in\u00ADcroyable ab\u200Bcd") == Words{"incroyable", "abcd"});
}

TEST_CASE("word characters are Python's: letters, numeric characters and '_', but no marks") {
    // Roman numeral eight (Nl) is lower-cased to its small form and stays a word.
    CHECK(translation_tokens("x_1\u00B2 \u2167") == Words{"x_1\u00B2", "\u2177"});
    // q + dot above has no composed form: the mark is not \w, so it is a token of its own.
    CHECK(translation_tokens("q\u0307") == Words{"q", "\u0307"});
    // Connector punctuation other than '_' is not \w either.
    CHECK(translation_tokens("a\u203Fb") == Words{"a", "\u203F", "b"});
}

TEST_CASE("bytes that are not UTF-8 are refused, saying where") {
    CHECK_THROWS_WITH_AS(translation_tokens("abc\xff"), doctest::Contains("offset 3"), InputError);
    CHECK_THROWS_AS(translation_tokens("\xed\xa0\x80"), InputError);  // an encoded surrogate
    CHECK_THROWS_AS(translation_tokens("caf\xc3"), InputError);       // cut inside a character
}

// python_classes.txt lists, as ranges, the code points Python's re matches with \w and \s; it
// was made by make_python_classes.py beside it. Code points that Python's Unicode version does not
// assign yet are left out, since ICU knows a later version.
TEST_CASE("\\w and \\s agree with Python's re on every code point Python knows") {
    std::ifstream in(NNGRAPH_SOURCE_DIR "/tests/text/python_classes.txt");
    REQUIRE(in);
    std::string header;
    std::getline(in, header);
    const std::size_t at = header.find("unicode ");
    REQUIRE(at != std::string::npos);
    const int python_major = std::stoi(header.substr(at + 8));
    std::set<char32_t> word, space;
    for (std::string kind, first, last; in >> kind >> first >> last;) {
        auto& set = kind == "w" ? word : space;
        for (auto c = static_cast<char32_t>(std::stoul(first, nullptr, 16)); c <= std::stoul(last, nullptr, 16); ++c)
            set.insert(c);
    }
    REQUIRE(word.size() > 100000);
    int compared = 0;
    std::vector<std::string> mismatches;
    for (char32_t c = 0; c < 0x110000; ++c) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        UVersionInfo age;
        u_charAge(static_cast<UChar32>(c), age);
        const bool assigned = u_charType(static_cast<UChar32>(c)) != U_UNASSIGNED;
        if (assigned && age[0] > python_major) continue;
        ++compared;
        if (is_python_word_char(c) != (word.count(c) > 0) || is_python_space(c) != (space.count(c) > 0)) {
            std::ostringstream name;
            name << std::hex << static_cast<unsigned>(c);
            mismatches.push_back(name.str());
        }
    }
    INFO("compared " << compared
                     << " code points; first mismatch: " << (mismatches.empty() ? "none" : mismatches.front()));
    CHECK(mismatches.empty());
    CHECK(compared > 1000000);
}
