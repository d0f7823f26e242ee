// The aclImdb archive reader: any archive libarchive opens (tar, tar.gz, zip...), its entry names
// and the review layout. InputError is the expected answer to a bad archive; anything else
// escaping is a bug.
#include "data/imdb_reader.hpp"
#include "fuzz_input.hpp"
#include "nngraph/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile file("aclImdb.tar.gz");
    try {
        std::size_t bytes = 0;
        nngraph::read_imdb_reviews(file.write(data, size), [&](const nngraph::RawReview& review) {
            bytes += review.text.size() + review.relative_path.size();
        });
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
