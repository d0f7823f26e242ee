// Whether a run under mpirun ended where one process does: its checkpoint and its epoch log.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

namespace nngraph::testing {

// A CSV log's values by row: the epoch, then the logs sorted by name; the header is skipped.
inline std::vector<std::vector<double>> csv_rows(const std::filesystem::path& file) {
    std::istringstream in(read_bytes(file));
    std::string line;
    std::getline(in, line);
    std::vector<std::vector<double>> rows;
    while (std::getline(in, line)) {
        std::vector<double>& row = rows.emplace_back();
        std::istringstream fields(line);
        std::string field;
        while (std::getline(fields, field, ',')) row.push_back(std::stod(field));
    }
    return rows;
}

// Every epoch's logged values to `epsilon` relative.
inline void check_same_log(const std::filesystem::path& got, const std::filesystem::path& expected,
                           double epsilon = 1e-4) {
    const auto rows = csv_rows(got), expected_rows = csv_rows(expected);
    REQUIRE(rows.size() == expected_rows.size());
    for (std::size_t e = 0; e < rows.size(); ++e) {
        REQUIRE(rows[e].size() == expected_rows[e].size());
        for (std::size_t k = 0; k < rows[e].size(); ++k)
            CHECK(rows[e][k] == doctest::Approx(expected_rows[e][k]).epsilon(epsilon));
    }
}

// Every tensor of `expected` in `got`, of the same shape and type: other types bit for bit, floats
// within 1e-5 of the tensor's largest entry (taken as at least `least_scale`), since the ranks sum in
// another order than one process. Returns the worst difference relative to that scale.
inline double check_same_tensors(const TensorFile& got, const TensorFile& expected, double least_scale = 0.0) {
    double worst = 0.0;
    for (const auto& [tensor_name, want] : expected.tensors) {
        CAPTURE(tensor_name);
        REQUIRE(got.tensors.count(tensor_name) == 1);
        const Tensor& have = got.tensors.at(tensor_name);
        REQUIRE(have.shape() == want.shape());
        REQUIRE(have.dtype() == want.dtype());
        if (want.dtype() != DType::F32) {
            CHECK(std::string(static_cast<const char*>(have.raw()), have.nbytes()) ==
                  std::string(static_cast<const char*>(want.raw()), want.nbytes()));
            continue;
        }
        double largest = least_scale, difference = 0.0;
        for (std::int64_t i = 0; i < want.numel(); ++i) {
            largest = std::max(largest, double(std::abs(want.data<float>()[i])));
            difference = std::max(difference, double(std::abs(have.data<float>()[i] - want.data<float>()[i])));
        }
        CHECK(difference <= 1e-5 * largest);
        worst = std::max(worst, largest > 0.0 ? difference / largest : difference);
    }
    return worst;
}

// The same weights and optimiser state to 1e-5, relative to each tensor's largest entry (the ranks
// sum in another order than one process), and the same epochs, steps and seed.
inline void check_same_checkpoint(const TensorFile& got, const TensorFile& expected, int ranks) {
    // The metadata alike; the best score kept (a validation loss, say) as the epoch lines, to 1e-4.
    CHECK(got.metadata.size() == expected.metadata.size());
    for (const auto& [key, value] : expected.metadata) {
        CAPTURE(key);
        REQUIRE(got.metadata.count(key) == 1);
        if (key == "best")
            CHECK(std::stod(got.metadata.at(key)) == doctest::Approx(std::stod(value)).epsilon(1e-4));
        else
            CHECK(got.metadata.at(key) == value);
    }
    REQUIRE(got.tensors.size() == expected.tensors.size());
    const double worst = check_same_tensors(got, expected);
    MESSAGE(ranks << " ranks: weights and optimiser state within " << worst
                  << " of one process, relative to each tensor's largest entry");
}

}  // namespace nngraph::testing
