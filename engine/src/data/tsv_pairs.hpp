// Translation pairs in a `source<TAB>target` file, one pair a line (Tatoeba as manythings.org/Anki
// packages it), and the split of SPEC section 7.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace nngraph {

struct TranslationPair {
    std::string source;
    std::string target;
    std::int64_t line = 0;  // 1-based, for messages
};

// Pairs by split, each in file order.
struct TranslationPairs {
    std::vector<TranslationPair> train;
    std::vector<TranslationPair> validation;
    std::vector<TranslationPair> test;
};

enum class PairSplit { train, validation, test };

// The split of the `index`-th distinct source sentence (0-based, in order of first appearance):
// index % 20 == 19 test, == 18 validation, else train. Every pair goes with its source sentence.
PairSplit split_of_sentence(std::int64_t index);

// Reads a .tsv, or a gzip-compressed .tsv.gz, of UTF-8 lines with exactly one tab each, and splits
// it. Raises InputError naming the file and line for a line that is not UTF-8 or has no single tab,
// and naming the file when it cannot be read or decompressed.
TranslationPairs read_tsv_pairs(const std::filesystem::path& path);

// One source sentence and all its targets, the references BLEU scores a translation against.
struct ReferenceGroup {
    std::string source;
    std::vector<std::string> references;
};

// The pairs grouped by source sentence, in order of first appearance.
std::vector<ReferenceGroup> group_by_source(const std::vector<TranslationPair>& pairs);

}  // namespace nngraph
