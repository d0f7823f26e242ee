// The vocabulary file (JSON). A vocabulary that loads must encode text and survive its own round
// trip; InputError is the expected answer to a bad file, anything else escaping is a bug.
#include <stdexcept>
#include <string>

#include "nngraph/error.hpp"
#include "nngraph/imdb.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const nngraph::Vocabulary vocabulary = nngraph::Vocabulary::from_json(text, "fuzz.json");
        vocabulary.encode(text);
        const nngraph::Vocabulary again = nngraph::Vocabulary::from_json(vocabulary.to_json(), "round trip");
        if (again.words() != vocabulary.words() || again.num_words() != vocabulary.num_words() ||
            again.maxlen() != vocabulary.maxlen()) {
            throw std::logic_error("fuzz_vocabulary: a saved vocabulary reads back different");
        }
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
