// The .keras import: the zip, config.json, metadata.json and model.weights.h5 (through the HDF5
// library) and their conversion to a model file. Sizes are bounded below the defaults so a zip bomb
// or a forged dimension ends in InputError quickly; anything else escaping is a bug.
#include "fuzz_input.hpp"
#include "keras/keras_import.hpp"
#include "nngraph/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile file("model.keras");
    nngraph::keras::ImportLimits limits;
    limits.archive.json_bytes = 1 << 20;
    limits.archive.weights_bytes = 8 << 20;
    limits.archive.entries = 64;
    limits.weights.elements = 1 << 20;
    limits.json_depth = 32;
    try {
        const nngraph::KerasImport imported = nngraph::keras::import_keras_file(file.write(data, size), limits);
        (void)imported;
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
