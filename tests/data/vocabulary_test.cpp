#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "nngraph/error.hpp"
#include "nngraph/imdb.hpp"
#include "temp_dir.hpp"

using nngraph::tokenize;
using nngraph::Vocabulary;
using Words = std::vector<std::string>;
using Ids = std::vector<std::int32_t>;

TEST_CASE("tokenizer lower-cases ASCII letters and keeps runs of letters, digits and apostrophes") {
    CHECK(tokenize("Hello WORLD") == Words{"hello", "world"});
    CHECK(tokenize("Don't 'quote' it's") == Words{"don't", "'quote'", "it's"});
    CHECK(tokenize("10/10 in 2009, a 3rd time") == Words{"10", "10", "in", "2009", "a", "3rd", "time"});
    CHECK(tokenize("wow!!!...really?yes--well-made (sort of)") ==
          Words{"wow", "really", "yes", "well", "made", "sort", "of"});
    CHECK(tokenize("tab\there\nnewline\r\nend") == Words{"tab", "here", "newline", "end"});
    CHECK(tokenize("").empty());
    CHECK(tokenize(" ?! -- ").empty());
}

TEST_CASE("tokenizer reads <br /> as a space, in any letter case, but only in that exact spelling") {
    CHECK(tokenize("one<br />two") == Words{"one", "two"});
    CHECK(tokenize("one<br /><br />two") == Words{"one", "two"});
    CHECK(tokenize("one<BR />two<Br />") == Words{"one", "two"});
    CHECK(tokenize("<br />") == Words{});
    CHECK(tokenize("one<br/>two") == Words{"one", "br", "two"});
    CHECK(tokenize("one<br >two") == Words{"one", "br", "two"});
    CHECK(tokenize("text ending in <br /") == Words{"text", "ending", "in", "br"});
}

TEST_CASE("tokenizer splits at every non-ASCII byte and leaves non-ASCII letters alone") {
    // UTF-8: é = C3 A9, ü = C3 BC, É = C3 89; none of these bytes is a word byte.
    CHECK(tokenize("Caf\xc3\xa9 \xc3\xbc"
                   "ber na\xc3\xafve \xc3\x89t\xc3\xa9") == Words{"caf", "ber", "na", "ve", "t"});
    CHECK(tokenize("\xff\xfe"
                   "abc\x80"
                   "def") == Words{"abc", "def"});
}

TEST_CASE("Tokenizer::next streams the same words as tokenize") {
    const std::string text = "It's a <br />GREAT film, 10/10!";
    nngraph::Tokenizer tokenizer(text);
    Words streamed;
    for (std::string_view word; tokenizer.next(word);) streamed.emplace_back(word);
    CHECK(streamed == tokenize(text));
    CHECK(streamed == Words{"it's", "a", "great", "film", "10", "10"});
}

TEST_CASE("pad_front pads and truncates at the front, as Keras's pad_sequences does by default") {
    Ids row(5, -1);
    nngraph::pad_front(Ids{1, 7, 8}, row);
    CHECK(row == Ids{0, 0, 1, 7, 8});
    nngraph::pad_front(Ids{1, 3, 4, 5, 6, 7, 8}, row);
    CHECK(row == Ids{4, 5, 6, 7, 8});
    nngraph::pad_front(Ids{1, 3, 4, 5, 6}, row);
    CHECK(row == Ids{1, 3, 4, 5, 6});
    nngraph::pad_front(Ids{}, row);
    CHECK(row == Ids{0, 0, 0, 0, 0});
}

TEST_CASE("vocabulary ranks by count, breaks ties alphabetically and keeps num_words - 3 words") {
    const std::vector<Vocabulary::WordCount> counts = {{"movie", 5}, {"the", 9},    {"zebra", 2}, {"acting", 5},
                                                       {"bad", 2},   {"unseen", 0}, {"good", 2}};
    const Vocabulary all = Vocabulary::from_counts(counts, 100, 10);
    CHECK(all.words() == Words{"the", "acting", "movie", "bad", "good", "zebra"});
    CHECK(all.id_of("the") == 3);
    CHECK(all.id_of("acting") == 4);
    CHECK(all.id_of("zebra") == 8);
    CHECK(all.id_of("unseen") == Vocabulary::kOutOfVocabularyId);  // counted 0: only in the test split

    const Vocabulary five = Vocabulary::from_counts(counts, 5, 10);  // ids 3 and 4 only
    CHECK(five.words() == Words{"the", "acting"});
    CHECK(five.id_of("movie") == Vocabulary::kOutOfVocabularyId);
    CHECK(five.num_words() == 5);
    CHECK(five.maxlen() == 10);

    const Vocabulary none = Vocabulary::from_counts(counts, 3, 10);
    CHECK(none.words().empty());
    CHECK(none.id_of("the") == Vocabulary::kOutOfVocabularyId);
}

TEST_CASE("encode starts with 1, maps unknown words to 2 and pads or truncates at the front") {
    const Vocabulary vocabulary(Words{"the", "movie", "was", "great"}, 6, 6);  // "great" would be id 6: cut
    CHECK(vocabulary.words() == Words{"the", "movie", "was"});
    CHECK(vocabulary.encode("The movie") == Ids{0, 0, 0, 1, 3, 4});
    CHECK(vocabulary.encode("the MOVIE was great") == Ids{0, 1, 3, 4, 5, 2});
    CHECK(vocabulary.encode("") == Ids{0, 0, 0, 0, 0, 1});
    CHECK(vocabulary.encode("the movie was the movie") == Ids{1, 3, 4, 5, 3, 4});
    // Seven ids [1, 3, 4, 5, 3, 4, 2]: the start id is the one cut.
    CHECK(vocabulary.encode("the movie was the movie dull") == Ids{3, 4, 5, 3, 4, 2});
}

TEST_CASE("vocabulary refuses sizes it cannot encode with and repeated words") {
    CHECK_THROWS_WITH_AS(Vocabulary(Words{}, 2, 10), doctest::Contains("num_words must be between 3"),
                         nngraph::InputError);
    CHECK_THROWS_WITH_AS(Vocabulary(Words{}, 5000, 0), doctest::Contains("maxlen must be between 1 and"),
                         nngraph::InputError);
    // A file's maxlen sizes every encoded text: the fuzzer's 555555555551 asked for 2 TB per text.
    CHECK_THROWS_WITH_AS(Vocabulary(Words{}, 5000, 555555555551), doctest::Contains("not 555555555551"),
                         nngraph::InputError);
    CHECK_THROWS_WITH_AS(Vocabulary(Words{"a", "b", "a"}, 10, 10), doctest::Contains("'a' twice"), nngraph::InputError);
}

TEST_CASE("vocabulary files round trip and bad ones name the file and the problem") {
    nngraph::testing::TempDir dir;
    const Vocabulary vocabulary(Words{"the", "and", "a", "don't"}, 5000, 200);
    const auto path = dir / "vocabulary.json";
    vocabulary.save(path);
    const Vocabulary loaded = Vocabulary::load(path);
    CHECK(loaded.words() == vocabulary.words());
    CHECK(loaded.num_words() == 5000);
    CHECK(loaded.maxlen() == 200);
    CHECK(loaded.encode("The end, don't") == vocabulary.encode("The end, don't"));
    CHECK(dir.listing() == Words{"vocabulary.json"});

    const auto bad = dir / "bad.json";
    const auto load_error = [&](const std::string& text) -> std::string {
        nngraph::testing::write_bytes(bad, text);
        try {
            Vocabulary::load(bad);
        } catch (const nngraph::InputError& error) {
            return error.what();
        }
        return "";
    };
    CHECK(load_error("{").find("bad.json") != std::string::npos);
    CHECK(load_error("{").find("does not parse") != std::string::npos);
    CHECK(load_error(R"({"words": []})").find(R"(expected a JSON object with "format")") != std::string::npos);
    CHECK(load_error(R"({"format": 1e400})").find("does not parse") != std::string::npos);
    CHECK(load_error(R"({"format": 7})").find(R"(expected a JSON object with "format")") != std::string::npos);
    const std::string header = R"({"format": "nngraph-imdb-vocabulary", "tokenizer_version": )";
    CHECK(load_error(header + R"(99, "num_words": 10, "maxlen": 5, "words": []})").find("tokenizer version 99") !=
          std::string::npos);
    CHECK(load_error(header + R"(1, "maxlen": 5, "words": []})").find("\"num_words\" must be an integer") !=
          std::string::npos);
    CHECK(load_error(header + R"(1, "num_words": 10, "maxlen": 5, "words": [1]})").find("list of strings") !=
          std::string::npos);
    CHECK(
        load_error(header + R"(1, "num_words": 10, "maxlen": 0, "words": []})").find("maxlen must be between 1 and") !=
        std::string::npos);
    CHECK(load_error(header + R"(1, "num_words": 10, "maxlen": 5, "words": ["x"]})").empty());
    CHECK_THROWS_WITH_AS(Vocabulary::load(dir / "absent.json"), doctest::Contains("absent.json"), nngraph::InputError);
}
