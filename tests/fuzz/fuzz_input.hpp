// Shared by the fuzz targets: readers that take a path get the fuzzer's bytes through one file per
// process, rewritten for every input, so no target needs a reader of its own for memory.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace nngraph::fuzz {

class InputFile {
public:
    // `name` ends the file's name, so that readers which look at the extension see the usual one.
    explicit InputFile(const std::string& name)
        : path_(std::filesystem::temp_directory_path() / ("nngraph-fuzz-" + std::to_string(::getpid()) + "-" + name)) {}
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() {
        std::error_code ignored;
        std::filesystem::remove(path_, ignored);
    }

    const std::filesystem::path& write(const std::uint8_t* data, std::size_t size) {
        std::ofstream out(path_, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        out.close();
        if (!out) throw std::runtime_error("fuzz harness: cannot write " + path_.string());
        return path_;
    }

private:
    std::filesystem::path path_;
};

}  // namespace nngraph::fuzz
