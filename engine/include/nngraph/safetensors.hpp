// safetensors files (https://github.com/huggingface/safetensors): weights, inputs, outputs,
// gradients and checkpoints. nngraph reads and writes the dtypes F32, I32, I64 and U8.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the tensor data, with offsets relative to the end of the header.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "nngraph/tensor.hpp"

namespace nngraph {

struct TensorFile {
    std::map<std::string, Tensor> tensors;
    // The free-form "__metadata__" string map.
    std::map<std::string, std::string> metadata;
};

// Reads and validates a whole file. Any problem (a file too short or truncated, a header length
// beyond the file, bad JSON, an unsupported dtype, data offsets out of range, overlapping or not
// matching shape and dtype) raises InputError naming the file and, where it applies, the tensor.
TensorFile read_safetensors(const std::filesystem::path& path);

// Writes atomically (see write_file_atomically): a killed run leaves the old file or the new one.
// The header is padded with spaces so the data starts 8-byte aligned, and tensors are laid out by
// element size, largest first, then by name, so every tensor is aligned to its element size.
// A tensor without data raises RunError naming it; failures to write raise RunError.
void write_safetensors(const std::filesystem::path& path, const TensorFile& file);

}  // namespace nngraph
