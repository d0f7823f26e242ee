#include "data/readers/reader.hpp"

#include <cstring>

#include "nngraph/error.hpp"
#include "nngraph/random.hpp"

namespace nngraph {

std::int64_t DataSource::integer(const char* key, std::int64_t fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<std::int64_t>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

double DataSource::number(const char* key, double fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<double>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

std::string DataSource::text(const char* key, const std::string& fallback) const {
    if (!settings[key]) return fallback;
    return yaml_as<std::string>(settings[key], SourceLocation::of(file(), settings[key]), std::string("data ") + key);
}

const GraphTensor& DataSource::single_input(const char* format) const {
    if (graph.inputs().size() != 1) {
        throw InputError(file() + ": " + format + " data feeds one input, but the model has " +
                         std::to_string(graph.inputs().size()));
    }
    return graph.tensor(graph.inputs()[0]);
}

namespace {

// Rows `rows` of `t`, in that order.
Tensor take_rows(const Tensor& t, const std::vector<std::int64_t>& rows) {
    Shape shape = t.shape();
    shape[0] = static_cast<std::int64_t>(rows.size());
    Tensor out(t.dtype(), shape);
    const std::size_t row_bytes = t.nbytes() / static_cast<std::size_t>(t.dim(0));
    for (std::size_t r = 0; r < rows.size(); ++r) {
        std::memcpy(static_cast<std::byte*>(out.raw()) + r * row_bytes,
                    static_cast<const std::byte*>(t.raw()) + rows[r] * row_bytes, row_bytes);
    }
    return out;
}

}  // namespace

void keep_subset(Dataset& d, std::int64_t count, const char* which) {
    const std::int64_t n = d.size();
    if (count <= 0 || count >= n) return;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
    nng::Random rng(nng::derive_seed(0, which));
    for (std::int64_t i = 0; i < count; ++i)
        std::swap(rows[static_cast<std::size_t>(i)],
                  rows[static_cast<std::size_t>(i) + rng.below(static_cast<std::uint64_t>(n - i))]);
    rows.resize(static_cast<std::size_t>(count));
    for (Tensor& t : d.inputs) t = take_rows(t, rows);
    for (Tensor& t : d.targets) t = take_rows(t, rows);
}

}  // namespace nngraph
