// The tsv_pairs format (SPEC section 7): the split by distinct source sentence, the vocabularies and
// the padded rows, on small files and, when it is present, on the Tatoeba file itself.
#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "data/tsv_pairs.hpp"
#include "nngraph/error.hpp"
#include "temp_dir.hpp"
#include "text/bleu.hpp"
#include "text/translation_vocabulary.hpp"
#include "train/datasets.hpp"

namespace fs = std::filesystem;
using namespace nngraph;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;
using Ids = std::vector<std::int32_t>;

namespace {

// Encoder ids attended to by the decoder's embeddings: the smallest graph with both inputs and a
// (steps, vocabulary) softmax output.
std::string translation_model(int source_length, int target_length, int source_words, int target_words) {
    const std::string s = std::to_string(source_length), t = std::to_string(target_length);
    return "name: pairs\ninputs:\n  - {name: source, shape: [" + s + "], dtype: int32}\n  - {name: decoder, shape: [" +
           t +
           "], dtype: int32}\nnodes:\n"
           "  - {name: source_embedding, op: Embedding, inputs: [source], input_dim: " +
           std::to_string(source_words) +
           ", output_dim: 4}\n"
           "  - {name: target_embedding, op: Embedding, inputs: [decoder], input_dim: " +
           std::to_string(target_words) +
           ", output_dim: 4}\n"
           "  - {name: attention, op: Attention, inputs: [target_embedding, source_embedding]}\n"
           "  - {name: words, op: Dense, inputs: [attention], units: " +
           std::to_string(target_words) +
           ", activation: softmax}\n"
           "outputs: [words]\n";
}

// The data read for a model whose inputs are named source and decoder.
struct Loaded {
    std::shared_ptr<const Graph> graph;
    DataSplits data;
    // Dataset inputs follow the graph's input order, which need not be the declared one.
    const Tensor& input(const Dataset& d, const std::string& name) const {
        for (std::size_t i = 0; i < graph->inputs().size(); ++i) {
            if (graph->tensor(graph->inputs()[i]).name == name) return d.inputs.at(i);
        }
        FAIL("no input " << name);
        return d.inputs.front();
    }
    const Tensor& source(const Dataset& d) const { return input(d, "source"); }
    const Tensor& decoder(const Dataset& d) const { return input(d, "decoder"); }
};

Loaded load_pairs(const TempDir& dir, const std::string& data_file, int source_length = 4, int target_length = 5,
                  int source_words = 8, int target_words = 12) {
    write_bytes(dir / "model.yaml",
                translation_model(source_length, target_length, source_words, target_words) +
                    "data: {format: tsv_pairs, path: " + data_file + ", source_words: " + std::to_string(source_words) +
                    ", target_words: " + std::to_string(target_words) + ", source_length: " +
                    std::to_string(source_length) + ", target_length: " + std::to_string(target_length) + "}\n");
    Loaded loaded{Graph::load(dir / "model.yaml"), {}};
    loaded.data = load_data(*loaded.graph, {std::nullopt, "sparse_categorical_crossentropy", {}});
    return loaded;
}

std::string message_of(const std::function<void()>& run) {
    try {
        run();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no error)";
}

Ids row_of(const Tensor& t, std::int64_t row) {
    const std::int64_t width = t.dim(1);
    Ids out;
    for (std::int64_t i = 0; i < width; ++i) {
        out.push_back(t.dtype() == DType::F32 ? static_cast<std::int32_t>(t.data<float>()[row * width + i])
                                              : t.data<std::int32_t>()[row * width + i]);
    }
    return out;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
    archive* writer = archive_write_new();
    archive_write_add_filter_gzip(writer);
    archive_write_set_format_raw(writer);
    REQUIRE(archive_write_open_filename(writer, path.c_str()) == ARCHIVE_OK);
    archive_entry* entry = archive_entry_new();
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_size(entry, static_cast<la_int64_t>(bytes.size()));
    REQUIRE(archive_write_header(writer, entry) == ARCHIVE_OK);
    REQUIRE(archive_write_data(writer, bytes.data(), bytes.size()) == static_cast<la_ssize_t>(bytes.size()));
    archive_entry_free(entry);
    archive_write_close(writer);
    archive_write_free(writer);
}

// Four pairs of three English sentences, all in the training split; French with U+2019, U+202F
// and U+00A0 before '!'.
const std::string kFrenchPairs =
    "I'm cold.\tJ\u2019ai froid.\n"
    "Run!\tCours\u202F!\n"
    "Run!\tCourez\u00A0!\n"
    "I'm cold!\tJ'ai froid\u202F!\n";

// Sentence k has k % 3 + 1 translations, its pairs spread over the file after its first one.
std::string forty_sentences() {
    std::string text;
    for (int k = 0; k < 40; ++k) text += "Sentence " + std::to_string(k) + ".\tPhrase " + std::to_string(k) + ".\n";
    for (int k = 0; k < 40; ++k) {
        for (int t = 1; t <= k % 3; ++t)
            text += "Sentence " + std::to_string(k) + ".\tPhrase " + std::to_string(k) + " bis.\n";
    }
    return text;
}

}  // namespace

TEST_CASE("tsv_pairs: French tokens, vocabularies by count then code point, rows padded at the end") {
    TempDir dir;
    write_bytes(dir / "pairs.tsv", kFrenchPairs);
    const Loaded loaded = load_pairs(dir, "pairs.tsv");
    const DataSplits& data = loaded.data;
    REQUIRE(data.train.size() == 4);
    CHECK_FALSE(data.validation);
    REQUIRE(data.train.inputs.size() == 2);
    // Source counts: ! 3; ' cold i m run 2 each; . 1. With 8 ids, 4 tokens: ! 4, ' 5, cold 6, i 7.
    // "I'm cold." is i ' m cold ., cut to 4.
    CHECK(row_of(loaded.source(data.train), 0) == Ids{7, 5, 3, 6});
    CHECK(row_of(loaded.source(data.train), 1) == Ids{3, 4, 0, 0});
    // Target counts: ! 3; ' ai froid j 2; . cours courez 1: ! 4, ' 5, ai 6, froid 7, j 8, . 9, courez 10, cours 11.
    CHECK(row_of(loaded.decoder(data.train), 0) == Ids{1, 8, 5, 6, 7});
    CHECK(row_of(data.train.targets[0], 0) == Ids{8, 5, 6, 7, 9});  // the end id is cut with the rest
    CHECK(row_of(loaded.decoder(data.train), 1) == Ids{1, 11, 4, 0, 0});
    CHECK(row_of(data.train.targets[0], 1) == Ids{11, 4, 2, 0, 0});
    CHECK(row_of(data.train.targets[0], 2) == Ids{10, 4, 2, 0, 0});
    CHECK(data.train.targets[0].shape() == Shape{4, 5});
    CHECK(data.description.find("4 training, 0 validation pairs") != std::string::npos);

    REQUIRE(data.save_vocabulary);
    data.save_vocabulary(dir / "w.vocab.json");
    const TranslationVocabularies saved = TranslationVocabularies::load(dir / "w.vocab.json");
    CHECK(saved.source.tokens() == std::vector<std::string>{"!", "'", "cold", "i"});
    CHECK(saved.target.tokens() == std::vector<std::string>{"!", "'", "ai", "froid", "j", ".", "courez", "cours"});
    CHECK(saved.source.size() == 8);
    CHECK(saved.target.size() == 12);
    CHECK(saved.source_length == 4);
    CHECK(saved.target_length == 5);
    CHECK(saved.target.id_of("courez") == 10);
    CHECK(saved.target.id_of("nouveau") == TokenVocabulary::kOutOfVocabularyId);

    // Each length sizes every encoded sentence, so a file may not ask for an impossible one.
    std::ifstream file(dir / "w.vocab.json");
    const std::string saved_text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    const std::string text =
        std::regex_replace(saved_text, std::regex("\"source_length\": *4"), "\"source_length\": 555555555551");
    REQUIRE(text != saved_text);
    CHECK_THROWS_WITH_AS(TranslationVocabularies::from_json(text, "big.json"),
                         doctest::Contains("must be between 1 and"), nngraph::InputError);
}

TEST_CASE("train_samples keeps a seeded slice of the training pairs, encoded by the full vocabulary") {
    TempDir dir;
    write_bytes(dir / "pairs.tsv", kFrenchPairs);
    write_bytes(dir / "model.yaml",
                translation_model(4, 5, 8, 12) +
                    "data: {format: tsv_pairs, path: pairs.tsv, source_words: 8, target_words: 12, source_length: 4, "
                    "target_length: 5, train_samples: 2}\n");
    const auto graph = Graph::load(dir / "model.yaml");
    const DataSplits sliced = load_data(*graph, {std::nullopt, "sparse_categorical_crossentropy", {}});
    REQUIRE(sliced.train.size() == 2);
    CHECK(sliced.description.find("4 training, 0 validation pairs (using 2 and 0)") != std::string::npos);
    // Every kept target row is one of the full run's rows.
    const DataSplits full = load_pairs(dir, "pairs.tsv").data;
    for (std::int64_t r = 0; r < 2; ++r) {
        bool found = false;
        for (std::int64_t f = 0; f < 4; ++f)
            found = found || row_of(sliced.train.targets[0], r) == row_of(full.train.targets[0], f);
        CHECK(found);
    }
    CHECK(load_data(*graph, {std::nullopt, "sparse_categorical_crossentropy", {}}).train.targets[0].data<float>()[0] ==
          sliced.train.targets[0].data<float>()[0]);
}

TEST_CASE("tsv_pairs reads the same pairs from a .tsv.gz") {
    TempDir dir;
    write_bytes(dir / "pairs.tsv", kFrenchPairs);
    write_gzip(dir / "pairs.tsv.gz", kFrenchPairs);
    const DataSplits plain = load_pairs(dir, "pairs.tsv").data;
    const DataSplits packed = load_pairs(dir, "pairs.tsv.gz").data;
    REQUIRE(packed.train.size() == 4);
    for (std::int64_t r = 0; r < 4; ++r) {
        CHECK(row_of(packed.train.inputs[0], r) == row_of(plain.train.inputs[0], r));
        CHECK(row_of(packed.train.inputs[1], r) == row_of(plain.train.inputs[1], r));
        CHECK(row_of(packed.train.targets[0], r) == row_of(plain.train.targets[0], r));
    }
}

TEST_CASE("the split goes by distinct source sentence in order of first appearance") {
    CHECK(split_of_sentence(0) == PairSplit::train);
    CHECK(split_of_sentence(17) == PairSplit::train);
    CHECK(split_of_sentence(18) == PairSplit::validation);
    CHECK(split_of_sentence(19) == PairSplit::test);
    CHECK(split_of_sentence(38) == PairSplit::validation);
    CHECK(split_of_sentence(39) == PairSplit::test);
    CHECK(split_of_sentence(40) == PairSplit::train);

    TempDir dir;
    write_bytes(dir / "pairs.tsv", forty_sentences());
    const TranslationPairs pairs = read_tsv_pairs(dir / "pairs.tsv");
    // Validation: sentences 18 (1 pair) and 38 (3); test: 19 (2) and 39 (1).
    CHECK(pairs.validation.size() == 4);
    CHECK(pairs.test.size() == 3);
    CHECK(pairs.train.size() + pairs.validation.size() + pairs.test.size() == 40 + 13 * 1 + 13 * 2);
    const std::vector<ReferenceGroup> test = group_by_source(pairs.test);
    REQUIRE(test.size() == 2);
    CHECK(test[0].source == "Sentence 19.");
    CHECK(test[0].references == std::vector<std::string>{"Phrase 19.", "Phrase 19 bis."});
    CHECK(test[1].references == std::vector<std::string>{"Phrase 39."});
    for (const TranslationPair& pair : pairs.train) {
        CHECK(pair.source != "Sentence 18.");
        CHECK(pair.source != "Sentence 39.");
    }
}

TEST_CASE("tsv_pairs refuses a line without one tab, bytes that are not UTF-8, and inputs of the wrong length") {
    TempDir dir;
    write_bytes(dir / "no_tab.tsv", "Go.\tVa !\nHello\n");
    CHECK(message_of([&] { load_pairs(dir, "no_tab.tsv"); }).find("no_tab.tsv:2: expected 'source<TAB>target'") !=
          std::string::npos);
    write_bytes(dir / "two_tabs.tsv", "Go.\tVa !\tCC-BY\n");
    CHECK(message_of([&] { load_pairs(dir, "two_tabs.tsv"); }).find("two_tabs.tsv:1:") != std::string::npos);
    write_bytes(dir / "latin1.tsv", "Go.\tVa !\nCoffee\tCaf\xe9\n");
    CHECK(message_of([&] { load_pairs(dir, "latin1.tsv"); }).find("latin1.tsv:2: the line is not UTF-8") !=
          std::string::npos);
    write_bytes(dir / "pairs.tsv", kFrenchPairs);
    write_bytes(dir / "model.yaml",
                translation_model(4, 6, 8, 12) +
                    "data: {format: tsv_pairs, path: pairs.tsv, source_length: 4, target_length: 5}\n");
    const auto graph = Graph::load(dir / "model.yaml");
    CHECK(message_of([&] {
              load_data(*graph, {std::nullopt, "sparse_categorical_crossentropy", {}});
          }).find("tsv_pairs encodes target_length 5 ids, but input 'decoder' has shape") != std::string::npos);
}

// The development copy sits beside the repository; CI has it there too. Figures from Python's re,
// unicodedata and gzip over the same file.
TEST_CASE("the Tatoeba file: SPEC section 7's split counts, vocabularies and ids") {
    const fs::path file = fs::path(NNGRAPH_SOURCE_DIR) / "../shared/data/tatoeba_eng_fra.tsv.gz";
    if (!fs::exists(file)) {
        MESSAGE("skipped: no " << file.string());
        return;
    }
    const TranslationPairs pairs = read_tsv_pairs(file);
    CHECK(pairs.train.size() == 150345);
    CHECK(pairs.validation.size() == 8387);
    CHECK(pairs.test.size() == 8398);
    CHECK(group_by_source(pairs.test).size() == 5841);

    TempDir dir;
    const Loaded loaded = load_pairs(dir, file.string(), 20, 20, 10000, 10000);
    const DataSplits& data = loaded.data;
    REQUIRE(data.train.size() == 150345);
    REQUIRE(data.validation->size() == 8387);
    // "Go." / "Va !", then the first validation pair "Cheers!" / "Santé !" (cheers is only in validation).
    CHECK(row_of(loaded.source(data.train), 0) == Ids{51, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(row_of(loaded.decoder(data.train), 0) == Ids{1, 130, 41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(row_of(data.train.targets[0], 0) == Ids{130, 41, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(row_of(loaded.source(*data.validation), 0) ==
          Ids{3, 124, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(row_of(data.validation->targets[0], 0) == Ids{602, 41, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    data.save_vocabulary(dir / "v.json");
    const TranslationVocabularies v = TranslationVocabularies::load(dir / "v.json");
    // 13,424 English and 22,922 French tokens in the training split; the last kept are ranked 9,996th.
    CHECK(v.source.tokens().size() == 9996);
    CHECK(std::vector<std::string>(v.source.tokens().begin(), v.source.tokens().begin() + 8) ==
          std::vector<std::string>{".", "'", "i", "you", "to", "the", "?", "a"});
    CHECK(std::vector<std::string>(v.target.tokens().begin(), v.target.tokens().begin() + 8) ==
          std::vector<std::string>{".", "'", "je", "de", "-", "?", "pas", "est"});
    CHECK(v.source.id_of("clobbered") == 9999);
    CHECK(v.target.id_of("fisse") == 9999);
    CHECK(v.target.id_of("fitzgerald") == TokenVocabulary::kOutOfVocabularyId);
    CHECK(v.target.id_of("l\u00E8ve") != TokenVocabulary::kOutOfVocabularyId);
}

// BLEU at the scale of the test split, against sacrebleu's arithmetic written out in Python over
// the same file: for each test sentence with several translations, the first as the hypothesis and
// the others as references.
TEST_CASE("the Tatoeba file: BLEU of one reference against the others, as Python computes it") {
    const fs::path file = fs::path(NNGRAPH_SOURCE_DIR) / "../shared/data/tatoeba_eng_fra.tsv.gz";
    if (!fs::exists(file)) {
        MESSAGE("skipped: no " << file.string());
        return;
    }
    std::vector<std::string> translations;
    std::vector<std::vector<std::string>> references;
    for (const ReferenceGroup& group : group_by_source(read_tsv_pairs(file).test)) {
        if (group.references.size() < 2) continue;
        translations.push_back(group.references.front());
        references.emplace_back(group.references.begin() + 1, group.references.end());
    }
    CHECK(translations.size() == 1688);
    const BleuScore s = translation_bleu(translations, references);
    CHECK(s.hypothesis_length == 14510);
    CHECK(s.reference_length == 14659);
    CHECK(s.precisions[0] == doctest::Approx(100.0 * 11517 / 14510).epsilon(1e-12));
    CHECK(s.precisions[3] == doctest::Approx(100.0 * 3841 / 9448).epsilon(1e-12));
    CHECK(s.brevity_penalty == doctest::Approx(0.9897837637635095).epsilon(1e-12));
    CHECK(s.score == doctest::Approx(55.86224627172664).epsilon(1e-12));
}

TEST_CASE("the test split for evaluate: all its pairs, or those of its first test_sentences sentences") {
    TempDir dir;
    write_bytes(dir / "pairs.tsv", forty_sentences());
    // Test sentences 19 (2 pairs) and 39 (1 pair).
    const Loaded all = load_pairs(dir, "pairs.tsv", 4, 5, 30, 30);
    REQUIRE(all.data.test);
    CHECK(all.data.test->size() == 3);
    CHECK(all.data.test_scores);
    write_bytes(dir / "first.yaml", translation_model(4, 5, 30, 30) +
                                        "data: {format: tsv_pairs, path: pairs.tsv, source_words: 30, target_words: "
                                        "30, source_length: 4, target_length: 5, test_sentences: 1}\n");
    const auto graph = Graph::load(dir / "first.yaml");
    const DataSplits first = load_data(*graph, {std::nullopt, "sparse_categorical_crossentropy", {}});
    REQUIRE(first.test);
    CHECK(first.test->size() == 2);
    CHECK(row_of(all.source(*all.data.test), 1) == row_of(all.source(*first.test), 1));
}
