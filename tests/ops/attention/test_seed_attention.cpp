// graphs/seed_attention.yaml, the seed's from-scratch example, through the command line: the
// attention output must be softmax(Q Kᵀ / sqrt(3)) V to 1e-6, recomputed here by hand.
#include <doctest/doctest.h>

#include <cmath>

#include "cli_runner.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using nngraph::DType;
using nngraph::Tensor;
using nngraph::TensorFile;
using nngraph::testing::run_nngraph;
using nngraph::testing::source_dir;
using nngraph::testing::TempDir;

namespace {

using Matrix = std::vector<std::vector<double>>;

const Matrix kWords = {{1, 0, 0}, {0, 1, 0}, {1, 1, 0}, {0, 0, 1}};
const Matrix kWq = {{2, 0, 2}, {2, 0, 0}, {2, 1, 2}};
const Matrix kWk = {{2, 2, 2}, {0, 2, 1}, {0, 1, 1}};
const Matrix kWv = {{1, 1, 0}, {0, 1, 1}, {0, 0, 0}};

Matrix multiply(const Matrix& a, const Matrix& b) {
    Matrix c(a.size(), std::vector<double>(b[0].size(), 0.0));
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t k = 0; k < b.size(); ++k)
            for (std::size_t j = 0; j < b[0].size(); ++j) c[i][j] += a[i][k] * b[k][j];
    return c;
}

// softmax(Q Kᵀ / sqrt(3)) V, row by row.
Matrix seed_attention() {
    const Matrix q = multiply(kWords, kWq), k = multiply(kWords, kWk), v = multiply(kWords, kWv);
    Matrix out;
    for (const auto& qi : q) {
        std::vector<double> w;
        double total = 0.0;
        for (const auto& kj : k) {
            const double score = (qi[0] * kj[0] + qi[1] * kj[1] + qi[2] * kj[2]) / std::sqrt(3.0);
            w.push_back(std::exp(score));
            total += w.back();
        }
        std::vector<double> row(3, 0.0);
        for (std::size_t j = 0; j < v.size(); ++j)
            for (std::size_t e = 0; e < 3; ++e) row[e] += w[j] / total * v[j][e];
        out.push_back(row);
    }
    return out;
}

}  // namespace

TEST_CASE("the reference reproduces the seed's printed row") {
    const Matrix a = seed_attention();
    CHECK(a[0][0] == doctest::Approx(0.98522025).epsilon(1e-8));
    CHECK(a[0][1] == doctest::Approx(1.74174051).epsilon(1e-8));
    CHECK(a[0][2] == doctest::Approx(0.75652026).epsilon(1e-8));
}

TEST_CASE("graphs/seed_attention.yaml predicts the seed's attention to 1e-6") {
    TempDir dir;
    TensorFile inputs;
    Tensor words(DType::F32, {1, 4, 3});
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t e = 0; e < 3; ++e) words.data<float>()[i * 3 + e] = static_cast<float>(kWords[i][e]);
    inputs.tensors["words"] = words;
    nngraph::write_safetensors(dir / "words.safetensors", inputs);

    const auto r = run_nngraph({"predict", (source_dir() / "graphs" / "seed_attention.yaml").string(), "--inputs",
                                (dir / "words.safetensors").string(), "--out", (dir / "out.safetensors").string()});
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    const TensorFile out = nngraph::read_safetensors(dir / "out.safetensors");
    REQUIRE(out.tensors.count("attention") == 1);
    REQUIRE(out.tensors.count("residual") == 1);
    const Tensor& attention = out.tensors.at("attention");
    const Tensor& residual = out.tensors.at("residual");
    REQUIRE(attention.shape() == nngraph::Shape{1, 4, 3});

    const double seed_row0[3] = {0.98522025, 1.74174051, 0.75652026};
    for (int e = 0; e < 3; ++e) CHECK(std::abs(attention.data<float>()[e] - seed_row0[e]) <= 1e-6);
    const Matrix want = seed_attention();
    for (std::size_t i = 0; i < 4; ++i) {
        for (std::size_t e = 0; e < 3; ++e) {
            CAPTURE(i);
            CAPTURE(e);
            const float got = attention.data<float>()[i * 3 + e];
            CHECK(std::abs(got - want[i][e]) <= 1e-6);
            CHECK(std::abs(residual.data<float>()[i * 3 + e] - (want[i][e] + kWords[i][e])) <= 1e-6);
        }
    }
}
