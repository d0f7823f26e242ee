// The translation pairs reader: a .tsv of `source<TAB>target` lines, or the same gzip-compressed
// (.tsv.gz, chosen when the input starts with gzip's magic number), then the grouping by source.
// InputError is the expected answer to a bad file; anything else escaping is a bug.
#include "data/tsv_pairs.hpp"
#include "fuzz_input.hpp"
#include "nngraph/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile plain("pairs.tsv");
    static nngraph::fuzz::InputFile compressed("pairs.tsv.gz");
    const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    try {
        const nngraph::TranslationPairs pairs = nngraph::read_tsv_pairs((gzip ? compressed : plain).write(data, size));
        nngraph::group_by_source(pairs.train);
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
