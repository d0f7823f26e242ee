// model.weights.h5, read in memory with the HDF5 library: each Keras object's variables sit in
// `<path>/vars/<i>` (i = 0, 1, ... in the object's variable order), where <path> is built from class
// names in snake_case (layers/dense_1, layers/lstm/cell); recent Keras versions also store the
// object's name as the `name` attribute of `vars`.
#pragma once

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
};

class WeightsFile {
public:
    // `image` is the whole HDF5 file; `label` names it in messages.
    WeightsFile(const std::string& image, std::string label, const WeightsLimits& limits = {});
    WeightsFile(const WeightsFile&) = delete;
    WeightsFile& operator=(const WeightsFile&) = delete;
    ~WeightsFile();

    bool has_group(const std::string& path) const;
    // The variables in `<path>/vars`, as float32 in their stored order; none when the group is absent.
    std::vector<Tensor> variables(const std::string& path) const;
    // The `name` attribute of `<path>/vars`, when this Keras version wrote one.
    std::optional<std::string> stored_name(const std::string& path) const;
    // How many variables the groups below `path` hold (the optimizer's state, to report it).
    std::int64_t count_variables(const std::string& path) const;

private:
    struct ErrorReporting;
    std::unique_ptr<ErrorReporting> error_reporting_;
    std::int64_t file_ = -1;
    std::string label_;
    WeightsLimits limits_;
};

}  // namespace nngraph::keras
