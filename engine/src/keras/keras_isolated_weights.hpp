// model.weights.h5 read by the HDF5 library in a child process. Debian 12's libhdf5 (1.10.8) can
// crash or loop for ever inside its own reads of a damaged file (in H5HG_read, on the
// variable-length layer names Keras 3.6+ writes) before any check of ours could see the damage.
// In a child, such a crash ends only the child, and a loop ends at WeightsLimits::answer_time:
// the caller gets an InputError naming the file and what was being read.
#pragma once

#include <memory>
#include <string>

#include "keras/keras_weights.hpp"

namespace nngraph::keras {

class IsolatedWeightsFile final : public WeightsFile {
public:
    // Forks the reader, which opens `image` (the whole HDF5 file) with Hdf5WeightsFile; `label`
    // names the file in messages. Only the calling thread exists in the reader: no other thread
    // may be using the HDF5 library meanwhile.
    IsolatedWeightsFile(const std::string& image, std::string label, const WeightsLimits& limits = {});
    IsolatedWeightsFile(const IsolatedWeightsFile&) = delete;
    IsolatedWeightsFile& operator=(const IsolatedWeightsFile&) = delete;
    ~IsolatedWeightsFile() override;

    bool has_group(const std::string& path) const override;
    std::vector<Tensor> variables(const std::string& path) const override;
    std::optional<std::string> stored_name(const std::string& path) const override;
    std::int64_t count_variables(const std::string& path) const override;

private:
    class Reader;  // the child process and the socket to it
    std::unique_ptr<Reader> reader_;
};

}  // namespace nngraph::keras
