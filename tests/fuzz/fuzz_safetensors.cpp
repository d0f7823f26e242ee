// The safetensors reader: header length, JSON header, dtypes, shapes, offsets and data. InputError
// is the expected answer to a bad file; anything else escaping is a bug.
#include "fuzz_input.hpp"
#include "nngraph/error.hpp"
#include "nngraph/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile file("weights.safetensors");
    try {
        nngraph::read_safetensors(file.write(data, size));
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
