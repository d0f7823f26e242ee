// `nngraph translate` as users meet it: one line out per line in, in order; empty lines; a line
// longer than the model reads; bytes that are not UTF-8; greedy and beam search; --output-file.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "cli_runner.hpp"
#include "nngraph/nngraph.hpp"
#include "temp_dir.hpp"
#include "text/translation_vocabulary.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

const std::string kModel = std::string(NNGRAPH_SOURCE_DIR) + "/tests/translate/tiny_translate.yaml";

// The tiny model's weights (its seeded initial values, scaled up so that the source sways the
// output) with vocabularies beside them: 16 English and 20 French words.
std::string save_model(const TempDir& dir) {
    Model model = Model::load(kModel);
    for (const ModelWeight& w : model.weights()) {
        Tensor value = model.weight(w.name);
        float* v = value.data<float>();
        for (std::int64_t i = 0; i < value.numel(); ++i) v[i] *= 4.0f;
        model.set_weight(w.name, value);
    }
    const std::string weights = (dir / "tiny.safetensors").string();
    model.save_weights(weights);
    std::vector<std::string> english, french;
    for (const char* w :
         {"the", "cat", "is", "black", ".", "a", "dog", "runs", "i", "am", "hungry", "!", "you", "see", "it", "?"})
        english.push_back(w);
    for (const char* w : {"le",   "chat", "est", "noir", ".",  "un", "chien", "court", "je", "suis",
                          "faim", "!",    "tu",  "vois", "il", "?",  "j",     "'",     "ai", "la"})
        french.push_back(w);
    TranslationVocabularies vocabularies{TokenVocabulary(english, 20), TokenVocabulary(french, 24), 7, 6};
    vocabularies.save(vocabulary_path(weights));
    return weights;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

void write(const std::filesystem::path& file, const std::string& text) {
    std::ofstream(file, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("translate prints one line per input line, in order; an empty line gives an empty line") {
    TempDir dir;
    const std::string weights = save_model(dir);
    const std::vector<std::string> sentences = {"The cat is black.", "", "I am hungry!", "a dog runs"};
    std::vector<std::string> one_by_one;
    for (const std::string& s : sentences) {
        const CliResult r = run_nngraph({"translate", kModel, "--weights", weights, "--text", s});
        REQUIRE(r.status == 0);
        const std::vector<std::string> lines = lines_of(r.out);
        REQUIRE(lines.size() == 1);
        one_by_one.push_back(lines[0]);
    }
    CHECK(one_by_one[1].empty());
    CHECK_FALSE(one_by_one[0].empty());
    CHECK(one_by_one[0] != one_by_one[2]);  // the source matters

    std::string file_text;
    for (const std::string& s : sentences) file_text += s + "\n";
    write(dir / "in.txt", file_text);
    const CliResult batch = run_nngraph(
        {"translate", kModel, "--weights", weights, "--input-file", (dir / "in.txt").string(), "--batch-size", "3"});
    REQUIRE(batch.status == 0);
    CHECK(lines_of(batch.out) == one_by_one);  // batching changes nothing

    const CliResult to_file = run_nngraph({"translate", kModel, "--weights", weights, "--input-file",
                                           (dir / "in.txt").string(), "--output-file", (dir / "out.txt").string()});
    REQUIRE(to_file.status == 0);
    CHECK(to_file.out.empty());
    std::ifstream written(dir / "out.txt");
    std::stringstream text;
    text << written.rdbuf();
    CHECK(lines_of(text.str()) == one_by_one);

    const CliResult beam = run_nngraph({"translate", kModel, "--weights", weights, "--input-file",
                                        (dir / "in.txt").string(), "--beam", "3", "--verbose"});
    REQUIRE(beam.status == 0);
    const std::vector<std::string> beam_lines = lines_of(beam.out);
    REQUIRE(beam_lines.size() == sentences.size());
    CHECK(beam_lines[1].empty());
    CHECK(beam.err.find("sentences/s") != std::string::npos);
    for (const std::string& line : beam_lines) {  // detokenised: words joined by single spaces
        CHECK(line.find("  ") == std::string::npos);
        CHECK((line.empty() || (line.front() != ' ' && line.back() != ' ')));
    }
}

TEST_CASE(
    "a line longer than the model's source length is truncated with a note; non-UTF-8 is refused naming the line") {
    TempDir dir;
    const std::string weights = save_model(dir);
    std::string long_line;
    for (int i = 0; i < 10000; ++i) long_line += i % 2 ? "cat " : "the ";
    write(dir / "long.txt", "i am\n" + long_line + "\n");
    const CliResult r =
        run_nngraph({"translate", kModel, "--weights", weights, "--input-file", (dir / "long.txt").string()});
    CHECK_FALSE(r.crashed);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("line 2 has 10000 tokens; only the first 7") != std::string::npos);
    const std::vector<std::string> lines = lines_of(r.out);
    REQUIRE(lines.size() == 2);
    const CliResult first_seven =
        run_nngraph({"translate", kModel, "--weights", weights, "--text", "the cat the cat the cat the"});
    REQUIRE(first_seven.status == 0);
    CHECK(lines[1] == lines_of(first_seven.out).at(0));

    write(dir / "bad.txt", "the cat\nthe \xff\xfe dog\n");
    const CliResult bad =
        run_nngraph({"translate", kModel, "--weights", weights, "--input-file", (dir / "bad.txt").string()});
    CHECK_FALSE(bad.crashed);
    CHECK(bad.status == 2);
    CHECK(bad.err.find("line 2") != std::string::npos);
    CHECK(bad.err.find("UTF-8") != std::string::npos);
}

TEST_CASE("translate refuses bad usage and a missing vocabulary with status 2") {
    TempDir dir;
    const std::string weights = save_model(dir);
    CHECK(run_nngraph({"translate", kModel, "--weights", weights}).status == 2);  // no --text nor --input-file
    CHECK(run_nngraph({"translate", kModel, "--weights", weights, "--text", "a", "--beam", "0"}).status == 2);
    std::filesystem::remove(vocabulary_path(weights));
    const CliResult r = run_nngraph({"translate", kModel, "--weights", weights, "--text", "the cat"});
    CHECK(r.status == 2);
    CHECK(r.err.find("vocab") != std::string::npos);
}
