// What the pooling ops share: Keras's data_format, the (batch, steps, features) reading of a
// rank-3 input, the thread count of a call, and the ops' tables for the plugin entry point.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "nngraph/sdk.hpp"

namespace nngraph_pooling {

// Keras's data_format: null (Keras's default, the config's image_data_format) is channels_last.
inline constexpr nng_attr_spec kDataFormatAttr = nng::nullable(
    nng::string_attr("data_format", "channels_last", "channels_last|channels_first",
                     "channels_last: (batch, steps, features); channels_first: (batch, features, steps)"));

inline bool parse_channels_first(const nng::Attrs& attrs) {
    return !attrs.is_null("data_format") && attrs.get_string("data_format") == "channels_first";
}

// A rank-3 input read by its data format.
struct Layout {
    std::int64_t batch, steps, features;
    bool channels_first;

    Layout(std::int64_t d0, std::int64_t d1, std::int64_t d2, bool first)
        : batch(d0), steps(first ? d2 : d1), features(first ? d1 : d2), channels_first(first) {}
    static Layout of(const nng::TensorRef& t, bool first) { return {t.dim(0), t.dim(1), t.dim(2), first}; }
    static Layout of(const nng::Dims& d, bool first) { return {d[0], d[1], d[2], first}; }

    // The dims of a tensor with this batch and features and `steps` steps.
    nng::Dims dims(std::int64_t with_steps) const {
        return channels_first ? nng::Dims{batch, features, with_steps} : nng::Dims{batch, with_steps, features};
    }
};

// Checks a rank-3 float32 input; returns its layout.
inline Layout infer_input(const nng::InferContext& ctx, bool channels_first) {
    ctx.expect_rank(0, 3, 3, channels_first ? "rank 3: (batch, features, steps)" : "rank 3: (batch, steps, features)");
    ctx.expect_dtype(0, NNG_F32, "float32");
    return Layout::of(ctx.input_dims(0), channels_first);
}

// Elements below which a pooling loop runs on one thread (Exec::threads_for).
inline constexpr std::int64_t kParallelElements = 1 << 15;

// The gradients of a backward call (one input, one output). False when there is nothing to
// compute: no input gradient is wanted, or no output gradient arrives (the input gradient is then
// zeroed, since backward overwrites it).
inline bool gradients_to_compute(const nng::Exec& exec, nng::TensorRef& dx, nng::TensorRef& dy) {
    dx = exec.grad_input(0);
    dy = exec.grad_output(0);
    if (dx && !dy) std::memset(dx.raw(), 0, dx.nbytes());
    return dx && dy;
}

const nng_op_def* global_average_pooling_op();
const nng_op_def* global_max_pooling_op();
const nng_op_def* average_pooling_op();
const nng_op_def* max_pooling_op();

}  // namespace nngraph_pooling
