// The .keras import: the zip, config.json, metadata.json and model.weights.h5 (through the HDF5
// library, in the child process the import reads it in) and their conversion to a model file.
// Sizes are bounded below the defaults so a zip bomb or a forged dimension ends in InputError
// quickly; anything else escaping is a bug.
#include <pthread.h>
#include <unistd.h>

#include <csignal>

#include "fuzz_input.hpp"
#include "keras/keras_import.hpp"
#include "nngraph/error.hpp"

extern "C" __attribute__((weak)) void __sanitizer_set_death_callback(void (*callback)());

namespace {

// Set in the import's child process (the only child this program forks), right after the fork.
volatile bool in_reader_child = false;

// Far above what the reader needs for the sizes the limits below allow, and below libFuzzer's
// malloc limit (scripts/fuzz.sh: -rss_limit_mb=2048).
constexpr std::size_t kReaderAllocationLimit = std::size_t{1} << 30;

}  // namespace

// The HDF5 library, reading a damaged file in the import's child, may ask for gigabytes (a forged
// variable-length string). libFuzzer's malloc limit, inherited through fork, would keep the input as
// an out-of-memory of this process; the child ends as the kernel's OOM killer would end it instead,
// and the parent reports that. The sanitizer runtime calls this hook before libFuzzer's.
extern "C" void __sanitizer_malloc_hook(const volatile void*, std::size_t size) {
    if (in_reader_child && size >= kReaderAllocationLimit) ::kill(::getpid(), SIGKILL);
}

// When the HDF5 library misbehaves in the import's child process, AddressSanitizer (which sees its
// memcpy calls) ends the child; libFuzzer's death callback, inherited through fork, would then keep
// the input as a crash of this process, which lives on and gets the import's InputError.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    pthread_atfork(nullptr, nullptr, [] {
        in_reader_child = true;
        if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
    });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nngraph::fuzz::InputFile file("model.keras");
    nngraph::keras::ImportLimits limits;
    limits.archive.json_bytes = 1 << 20;
    limits.archive.weights_bytes = 8 << 20;
    limits.archive.entries = 64;
    limits.weights.elements = 1 << 20;
    // Below libFuzzer's -timeout, so that the HDF5 library looping on a damaged file is answered by
    // the import's own deadline (InputError), as a user would see it.
    limits.weights.answer_time = std::chrono::seconds(2);
    limits.json_depth = 32;
    try {
        const nngraph::KerasImport imported = nngraph::keras::import_keras_file(file.write(data, size), limits);
        (void)imported;
    } catch (const nngraph::InputError&) {
    }
    return 0;
}
