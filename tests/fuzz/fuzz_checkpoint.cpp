// Checkpoint metadata: the training state (epochs, steps, seed, best value) read from a safetensors
// file's "__metadata__". InputError is the expected answer to a bad file; anything else escaping
// is a bug.
#include "fuzz_input.hpp"
#include "nngraph/error.hpp"
#include "train/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile file("checkpoint.safetensors");
    try {
        nngraph::read_training_state(file.write(data, size));
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
