// model.weights.h5, read in memory with the HDF5 library: each Keras object's variables sit in
// `<path>/vars/<i>` (i = 0, 1, ... in the object's variable order), where <path> is built from class
// names in snake_case (layers/dense_1, layers/lstm/cell); recent Keras versions also store the
// object's name as the `name` attribute of `vars`.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nngraph/tensor.hpp"

namespace nngraph::keras {

struct WeightsLimits {
    std::int64_t elements = std::int64_t{1} << 32;  // per variable
    int rank = 8;
    int variables = 1024;  // per object
    // How long the reader in its child process may take over one answer: this much, and as much
    // again per GiB of the file. The HDF5 library can loop for ever on a damaged file.
    std::chrono::milliseconds answer_time{10'000};
};

// What the converter asks of model.weights.h5. Every answer may raise InputError naming the file.
class WeightsFile {
public:
    virtual ~WeightsFile() = default;

    virtual bool has_group(const std::string& path) const = 0;
    // The variables in `<path>/vars`, as float32 in their stored order; none when the group is absent.
    virtual std::vector<Tensor> variables(const std::string& path) const = 0;
    // The `name` attribute of `<path>/vars`, when this Keras version wrote one.
    virtual std::optional<std::string> stored_name(const std::string& path) const = 0;
    // How many variables the groups below `path` hold (the optimizer's state, to report it).
    virtual std::int64_t count_variables(const std::string& path) const = 0;
};

// The file read by the HDF5 library in this process. The library is not proof against damaged
// files (it can crash on them), so an untrusted file is read through IsolatedWeightsFile instead.
class Hdf5WeightsFile final : public WeightsFile {
public:
    // `image` is the whole HDF5 file; `label` names it in messages.
    Hdf5WeightsFile(const std::string& image, std::string label, const WeightsLimits& limits = {});
    Hdf5WeightsFile(const Hdf5WeightsFile&) = delete;
    Hdf5WeightsFile& operator=(const Hdf5WeightsFile&) = delete;
    ~Hdf5WeightsFile() override;

    bool has_group(const std::string& path) const override;
    std::vector<Tensor> variables(const std::string& path) const override;
    std::optional<std::string> stored_name(const std::string& path) const override;
    std::int64_t count_variables(const std::string& path) const override;

private:
    struct ErrorReporting;
    std::unique_ptr<ErrorReporting> error_reporting_;
    std::int64_t file_ = -1;
    std::string label_;
    WeightsLimits limits_;
};

}  // namespace nngraph::keras
