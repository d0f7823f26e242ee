// The .keras import behind nngraph::import_keras, with its bounds open to the fuzz target.
#pragma once

#include <filesystem>

#include "keras/keras_archive.hpp"
#include "keras/keras_weights.hpp"
#include "nngraph/nngraph.hpp"

namespace nngraph::keras {

struct ImportLimits {
    ArchiveLimits archive;
    WeightsLimits weights;
    int json_depth = 64;
};

KerasImport import_keras_file(const std::filesystem::path& path, const ImportLimits& limits);

}  // namespace nngraph::keras
