// Keras's Embedding: output[..., :] = embeddings[id, :] for every integer id of the input; backward
// sums the output gradient's rows into the rows of their ids in the embeddings' gradient. Pure
// data movement, so plain loops rather than oneDNN, which has no gather.
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "nngraph/cpu.hpp"
#include "nngraph/sdk.hpp"

namespace {

using nng::BadInputError;
using nng::Dims;
using nng::OpError;

// Below this many ids a forward or backward runs on one thread (thread start-up would dominate).
constexpr std::int64_t kParallelIds = 2048;

// The initializer names the attribute accepts: the SDK's plus Keras's aliases "uniform" and
// "normal" (RandomUniform and RandomNormal; "uniform" is the default).
constexpr std::string_view kAliases = "uniform|normal|";
constexpr auto kInitializerChoices = [] {
    constexpr std::string_view base = nng::kInitializerChoices;
    std::array<char, kAliases.size() + base.size() + 1> out{};
    std::copy(kAliases.begin(), kAliases.end(), out.begin());
    std::copy(base.begin(), base.end(), out.begin() + kAliases.size());
    return out;
}();

nng::Initializer embeddings_initializer(const std::string& name) {
    if (name == "uniform") return {NNG_INIT_UNIFORM, -0.05, 0.05};
    if (name == "normal") return {NNG_INIT_NORMAL, 0.0, 0.05};
    return nng::keras_initializer(name, "embeddings_initializer");
}

// The multi-index of flat position `flat` in `dims`, Keras's way: (3, 17).
std::string position_string(std::int64_t flat, const Dims& dims) {
    Dims index(dims.size());
    for (std::size_t k = dims.size(); k-- > 0;) {
        index[k] = flat % dims[k];
        flat /= dims[k];
    }
    return nng::dims_string(index);
}

// An id as Keras takes it: integers as they are; floats cast to int32, which truncates toward
// zero. Returns -1 for a float that no int32 in [0, input_dim) comes from (NaN included).
template <class T>
std::int64_t to_id(T value, std::int64_t input_dim) {
    if constexpr (std::is_floating_point_v<T>) {
        if (!(value > T(-1) && value < static_cast<T>(input_dim))) return -1;
        return static_cast<std::int64_t>(value);
    } else {
        return static_cast<std::int64_t>(value);
    }
}

// Rows [first, last) of dw (`width` floats each) = the sum of the rows i of dy whose row_ids[i] is
// theirs, added in increasing i (0 for a row no position has). dy is read in order. Cloned for AVX2
// and AVX-512.
NNG_LOOP_CLONES void sum_rows_of_ids(const std::int32_t* row_ids, const float* dy, std::int64_t n, std::int64_t width,
                                     float* dw, std::int64_t first, std::int64_t last) {
    std::memset(dw + first * width, 0, static_cast<std::size_t>((last - first) * width) * sizeof(float));
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t id = row_ids[i];
        if (id < first || id >= last) continue;
        float* row = dw + id * width;
        const float* g = dy + i * width;
#pragma omp simd
        for (std::int64_t k = 0; k < width; ++k) row[k] += g[k];
    }
}

struct Embedding {
    static constexpr const char* kName = "Embedding";
    static constexpr const char* kDoc = "Looks up a row of `embeddings` for every integer id";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::int_attr("input_dim", nullptr, "vocabulary size: ids are in [0, input_dim)")),
        nng::required(nng::int_attr("output_dim", nullptr, "width of each embedding row")),
        nng::string_attr("embeddings_initializer", "uniform", kInitializerChoices.data(), "initial embeddings"),
        nng::bool_attr("mask_zero", "false", "id 0 is padding: the output carries the mask ids != 0"),
    };

    explicit Embedding(const nng::Attrs& attrs)
        : input_dim_(attrs.get_int("input_dim")),
          output_dim_(attrs.get_int("output_dim")),
          init_(embeddings_initializer(attrs.get_string("embeddings_initializer"))),
          mask_zero_(attrs.get_bool("mask_zero")) {
        nng::check_attr(input_dim_ > 0, "input_dim", "a positive integer, got " + std::to_string(input_dim_));
        nng::check_attr(output_dim_ > 0, "output_dim", "a positive integer, got " + std::to_string(output_dim_));
        // Ids travel as int64 and positions index rows of int64 offsets: keep products in range.
        nng::check_attr(input_dim_ <= std::numeric_limits<std::int32_t>::max(), "input_dim", "at most 2^31 - 1");
    }

    void infer(nng::InferContext& ctx) {
        ctx.expect_rank(0, 1, NNG_MAX_RANK - 1, "ids of rank 1 to 7: (batch, ...)");
        const nng_dtype t = ctx.input_dtype(0);
        if (t != NNG_I32 && t != NNG_I64 && t != NNG_F32) {
            throw OpError("input 0: expected ids of type int32, int64 or float32 (cast to int32 as Keras does)");
        }
        const Dims ids = ctx.input_dims(0);
        Dims out = ids;
        out.push_back(output_dim_);
        const int y = ctx.add_output(NNG_F32, out);
        if (mask_zero_) ctx.compute_mask(y, ids);
        ctx.add_weight("embeddings", {input_dim_, output_dim_}, init_);
        ctx.set_backward_needs(NNG_NEEDS_INPUT(0));
        ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        const bool training = ctx.training();
        row_ids_ =
            ctx.buffer<std::int32_t>("row of each position", training ? nng::product(ids) : 0, nng::Lifetime::Backward);
        positions_before_ = ctx.buffer<std::int32_t>("positions of the ids below each id",
                                                     training ? input_dim_ + 1 : 0, nng::Lifetime::Backward);
        if (ctx.counting_work()) {
            // Forward gathers rows (ids read, rows read and written); backward zeroes the table's
            // gradient and adds every dy row into its row (the ids turned into rows, which every thread reads).
            const std::int64_t positions = nng::product(ids), values = nng::product(out);
            ctx.count_work({0, 4 * positions + 8 * values}, nng::elementwise_work(input_dim_ * output_dim_, 0, 1) +
                                                                nng::elementwise_work(values, 1, 3) +
                                                                nng::Work{0, 12 * positions + 4 * input_dim_});
        }
    }

    void forward(nng::Exec& exec) {
        const nng::TensorRef ids = exec.input(0);
        switch (ids.dtype()) {
            case NNG_I32:
                gather(exec, ids.data<std::int32_t>());
                break;
            case NNG_I64:
                gather(exec, ids.data<std::int64_t>());
                break;
            case NNG_F32:
                gather(exec, ids.data<float>());
                break;
            default:
                throw OpError("Embedding: ids of an unsupported type");
        }
    }

    void backward(nng::Exec& exec) {
        const nng::TensorRef ids = exec.input(0);
        // Ids have no gradient (Keras casts them); a float id input that asks for one gets zeros.
        if (const nng::TensorRef dids = exec.grad_input(0)) std::memset(dids.raw(), 0, dids.nbytes());
        const nng::TensorRef dw = exec.grad_weight(0);
        if (!dw) return;
        const nng::TensorRef dy = exec.grad_output(0);
        if (!dy) {
            std::memset(dw.raw(), 0, dw.nbytes());
            return;
        }
        switch (ids.dtype()) {
            case NNG_I32:
                table_gradient(exec, ids.data<std::int32_t>(), dy.f32(), dw.f32());
                break;
            case NNG_I64:
                table_gradient(exec, ids.data<std::int64_t>(), dy.f32(), dw.f32());
                break;
            case NNG_F32:
                table_gradient(exec, ids.data<float>(), dy.f32(), dw.f32());
                break;
            default:
                throw OpError("Embedding: ids of an unsupported type");
        }
    }

    template <class T>
    void gather(const nng::Exec& exec, const T* ids) const {
        const std::int64_t n = exec.input(0).numel();
        const std::int64_t width = output_dim_, vocabulary = input_dim_;
        const float* table = exec.weight(0).f32();
        float* y = exec.output(0).f32();
        std::atomic<std::int64_t> first_bad{n};  // the lowest position of an id out of range
        const int threads = exec.threads_for(n, kParallelIds);
        nng::parallel_for(n, threads, [&](std::int64_t i) {
            const std::int64_t id = to_id(ids[i], vocabulary);
            if (static_cast<std::uint64_t>(id) >= static_cast<std::uint64_t>(vocabulary)) {
                std::int64_t seen = first_bad.load();
                while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
                }
                return;
            }
            std::memcpy(y + i * width, table + id * width, static_cast<std::size_t>(width) * sizeof(float));
        });
        if (first_bad < n) {
            const T bad = ids[first_bad];
            throw BadInputError(
                "Embedding: id " +
                (std::is_floating_point_v<T> ? std::to_string(static_cast<double>(bad)) : std::to_string(bad)) +
                " at position " + position_string(first_bad, exec.input(0).dims()) + " of the ids " +
                nng::dims_string(exec.input(0).dims()) + " is outside [0, input_dim = " + std::to_string(vocabulary) +
                ")");
        }
        if (const nng::TensorRef mask = exec.output_mask(0)) {
            // Keras's compute_mask: the ids as given (before any cast) != 0.
            std::uint8_t* m = mask.u8();
            nng::parallel_for(n, threads, [&](std::int64_t i) { m[i] = ids[i] != T(0); });
        }
    }

    // dW[id] = the sum of dy[i] over the positions i of id, added in increasing i (0 for an id
    // that does not occur). Each thread takes a run of rows, zeroes them and adds their positions'
    // dy rows, reading dy in order; the runs are cut so that each holds about as many positions
    // and rows as the others (padding and other frequent ids make rows by id modulo the threads
    // lopsided).
    template <class T>
    void table_gradient(const nng::Exec& exec, const T* ids, const float* dy, float* dw) const {
        const std::int64_t n = exec.input(0).numel();
        const std::int64_t width = output_dim_, vocabulary = input_dim_;
        if (n > std::numeric_limits<std::int32_t>::max())
            throw OpError("Embedding: " + std::to_string(n) + " ids in one call; at most 2^31 - 1");
        std::int32_t* row_ids = exec.buffer(row_ids_);
        std::int32_t* before = exec.buffer(positions_before_);  // positions of the ids below each id
        std::fill_n(before, vocabulary + 1, 0);
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int64_t id = to_id(ids[i], vocabulary);
            const bool valid = static_cast<std::uint64_t>(id) < static_cast<std::uint64_t>(vocabulary);
            row_ids[i] = valid ? static_cast<std::int32_t>(id) : -1;  // forward refused the others
            if (valid) ++before[id + 1];
        }
        for (std::int64_t id = 0; id < vocabulary; ++id) before[id + 1] += before[id];
        const std::int64_t work = before[vocabulary] + vocabulary;
        // The first id at or past share `share` of the positions plus rows (they ascend with the id),
        // by bisection: std::ranges::partition_point over an iota view does not compile with clang
        // 14 and libstdc++ 12, the fuzz build's pair.
        const auto first_row = [&](std::int64_t share, std::int64_t shares) {
            const std::int64_t goal = nng::split_point(work, shares, share);
            std::int64_t low = 0, high = vocabulary;
            while (low < high) {
                const std::int64_t mid = (low + high) / 2;
                if (before[mid] + mid < goal)
                    low = mid + 1;
                else
                    high = mid;
            }
            return low;
        };
        // Threads by the floats read and written: every row of the table is written.
#pragma omp parallel num_threads(exec.threads_for((n + vocabulary) * width, kParallelIds * width))
        {
            const std::int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
            sum_rows_of_ids(row_ids, dy, n, width, dw, first_row(t, count), first_row(t + 1, count));
        }
    }

    std::int64_t input_dim_, output_dim_;
    nng::Initializer init_;
    bool mask_zero_;
    nng::Buffer<std::int32_t> row_ids_, positions_before_;
};

}  // namespace

NNG_PLUGIN("embedding", "0.1.0", nng::op<Embedding>())
