// The oneDNN path: lstm_forward (training with a workspace, or inference) and lstm_backward on the
// time-major input, with Keras's weights used in place. Keras's kernel (F, 4U) is oneDNN's
// weights_layer (1, 1, F, 4, U) in ldigo, the recurrent kernel (U, 4U) its weights_iter, and the
// bias (4U) its ldgo bias, all in the gate order i, f, c, o. The primitives pick their weight
// layouts (format_tag::any); the weights are reordered to them when they differ, and the weight
// gradients written back.
//
// The initial state src_iter, src_iter_c is zeros, passed explicitly: without it oneDNN 2.6.3's
// backward pairs each step's gates with that step's own h instead of the previous one in
// diff_weights_iter (its merged GEMM over dst_layer assumes a user src_iter). dst_iter and
// dst_iter_c (oneDNN takes both or neither) are declared only with return_state, as outputs 1 and
// 2; without it the last output is the last row of dst_layer.
//
// Under mixed_bfloat16 (Settings::bfloat16) the primitives take the input, the weights, the hidden
// states and dst_layer in bf16 and keep the cell state, the bias and every diff_* in f32, the only
// bf16 configuration oneDNN 2.6 builds a backward for. The weights become bf16 in the same reorder
// that gives them the primitive's layout; the outputs are converted back to f32.
//
// A large batch runs as parts of consecutive sequences side by side (BatchSplit in lstm.hpp), each
// part one problem through the same code with its own primitives, workspace slice and, in
// backward, its own copy of the weight gradients, added into the first part's at the end.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

#include "lstm.hpp"

namespace nngraph_lstm {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

constexpr onednn::Tag kForwardTag{"lstm.forward"};
constexpr onednn::Tag kBackwardTag{"lstm.backward"};

// The descriptors of one problem, in the layouts nngraph's tensors have. `data` is the type of the
// input, weights, hidden states and dst_layer (f32, or bf16 under mixed_bfloat16); the cell state,
// the bias and the diff_* descriptors (the f32 twins) are always f32.
struct Descs {
    memory::desc src_layer, weights_layer_user, weights_iter_user, bias, dst_layer;
    memory::desc hidden;    // (1, 1, N, U) ldnc: src_iter (and dst_iter)
    memory::desc cell;      // the same in f32: src_iter_c (and dst_iter_c), and every state gradient
    memory::desc dst_iter;  // hidden with return_state, else none
    memory::desc dst_iter_c;
    memory::desc weights_layer_any, weights_iter_any;
    memory::desc diff_src_layer, diff_dst_layer, diff_weights_layer_any, diff_weights_iter_any;

    Descs(const Sizes& s, const Settings& settings)
        : Descs(s, settings.return_state, settings.bfloat16 ? memory::data_type::bf16 : memory::data_type::f32) {}
    Descs(const Sizes& s, bool return_state, memory::data_type data)
        : src_layer({s.steps, s.batch, s.features}, data, tag::tnc),
          weights_layer_user({1, 1, s.features, 4, s.units}, memory::data_type::f32, tag::ldigo),
          weights_iter_user({1, 1, s.units, 4, s.units}, memory::data_type::f32, tag::ldigo),
          bias({1, 1, 4, s.units}, memory::data_type::f32, tag::ldgo),
          dst_layer({s.steps, s.batch, s.units}, data, tag::tnc),
          hidden({1, 1, s.batch, s.units}, data, tag::ldnc),
          cell({1, 1, s.batch, s.units}, memory::data_type::f32, tag::ldnc),
          weights_layer_any({1, 1, s.features, 4, s.units}, data, tag::any),
          weights_iter_any({1, 1, s.units, 4, s.units}, data, tag::any),
          diff_src_layer({s.steps, s.batch, s.features}, memory::data_type::f32, tag::tnc),
          diff_dst_layer({s.steps, s.batch, s.units}, memory::data_type::f32, tag::tnc),
          diff_weights_layer_any({1, 1, s.features, 4, s.units}, memory::data_type::f32, tag::any),
          diff_weights_iter_any({1, 1, s.units, 4, s.units}, memory::data_type::f32, tag::any) {
        if (return_state) {
            dst_iter = hidden;
            dst_iter_c = cell;
        }
    }
};

dnnl::lstm_forward::primitive_desc forward_pd(const Sizes& s, const Settings& settings, dnnl::prop_kind kind) {
    const Descs d(s, settings);
    const dnnl::lstm_forward::desc desc(kind, dnnl::rnn_direction::unidirectional_left2right, d.src_layer, d.hidden,
                                        d.cell, d.weights_layer_any, d.weights_iter_any, d.bias, d.dst_layer,
                                        d.dst_iter, d.dst_iter_c);
    return {desc, onednn::attributes(), onednn::engine()};
}

onednn::Key problem_key(onednn::Tag tag, const Sizes& s, const Settings& settings) {
    onednn::Key key(tag);
    key.add(s.steps, s.batch, s.features, s.units, settings.return_state, settings.bfloat16);
    return key;
}

const onednn::Cached& forward_primitive(const Sizes& s, const Settings& settings, bool training) {
    const dnnl::prop_kind kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    return onednn::cached<dnnl::lstm_forward>(problem_key(kForwardTag, s, settings).add(kind),
                                              [&] { return forward_pd(s, settings, kind); });
}

dnnl::lstm_backward::primitive_desc backward_pd(const Sizes& s, const Settings& settings) {
    const Descs d(s, settings);
    const memory::desc& diff_dst_iter = settings.return_state ? d.cell : memory::desc();
    const dnnl::lstm_backward::desc desc(dnnl::prop_kind::backward, dnnl::rnn_direction::unidirectional_left2right,
                                         d.src_layer, d.hidden, d.cell, d.weights_layer_any, d.weights_iter_any, d.bias,
                                         d.dst_layer, d.dst_iter, d.dst_iter_c, d.diff_src_layer, d.cell, d.cell,
                                         d.diff_weights_layer_any, d.diff_weights_iter_any, d.bias, d.diff_dst_layer,
                                         diff_dst_iter, diff_dst_iter);
    return dnnl::lstm_backward::primitive_desc(desc, onednn::attributes(), onednn::engine(),
                                               forward_pd(s, settings, dnnl::prop_kind::forward_training));
}

const onednn::Cached& backward_primitive(const Sizes& s, const Settings& settings) {
    return onednn::cached<dnnl::lstm_backward>(problem_key(kBackwardTag, s, settings),
                                               [&] { return backward_pd(s, settings); });
}

// Bytes of one element of the primitives' data (input, hidden states, dst_layer).
std::int64_t data_bytes(const Settings& settings) { return settings.bfloat16 ? 2 : 4; }

std::int64_t floats_of(const memory::desc& desc) {
    return static_cast<std::int64_t>(nng::ceil_div(desc.get_size(), sizeof(float)));
}

memory wrap(const memory::desc& desc, const void* data) { return onednn::memory_of(desc, const_cast<void*>(data)); }

// The weights in the layouts primitive `c` picked: the user's memory when it already is, else a
// copy in the part's scratch.
struct Weights {
    memory layer, iter, bias;
};

void check_workspace_bytes(std::size_t wanted, std::size_t bytes) {
    if (bytes < wanted) {
        throw std::runtime_error("LSTM: the saved workspace has " + std::to_string(bytes) +
                                 " bytes where oneDNN needs " + std::to_string(wanted) +
                                 " (was the op planned for another batch?)");
    }
}
void check_workspace(const onednn::Cached& c, std::size_t bytes) {
    check_workspace_bytes(c.pd.workspace_desc().get_size(), bytes);
}

// A gradient oneDNN accumulates into: the user's tensor when the primitive wants its layout, else
// `scratch`; zeroed either way. `user` may be null (a gradient nobody wants).
struct Accumulated {
    memory produced, user;

    Accumulated(const memory::desc& wanted, const memory::desc& user_desc, float* user_data, float* scratch) {
        if (user_data) user = wrap(user_desc, user_data);
        produced = user_data ? onednn::output_in(user, wanted, scratch) : onednn::memory_of(wanted, scratch);
        std::memset(produced.get_data_handle(), 0, wanted.get_size());
    }
    void finish() const {
        if (user) onednn::write_back(produced, user);
    }
};

// A part's scratch, carved: zeros for a missing bias, the initial state and missing state
// gradients (read only, so one block serves them all); room for gradients nobody wants (the
// bias's without use_bias, the initial state's); the weights in the primitive's layouts; and in
// backward the time-major gradients and the weight gradients in the primitive's layouts.
struct Carved {
    float* zero_bias = nullptr;
    float* zero_state = nullptr;
    float* unwanted_dbias = nullptr;
    float* unwanted_dh = nullptr;
    float* unwanted_dc = nullptr;
    float* weights_layer = nullptr;
    float* weights_iter = nullptr;
    float* final_hidden = nullptr;  // under mixed_bfloat16 with return_state: dst_iter in bf16
    float* dyt = nullptr;
    float* dxt = nullptr;
    float* diff_weights_layer = nullptr;
    float* diff_weights_iter = nullptr;
};

// The floats forward (`backward` false) or backward carves for sizes `s` and primitive
// descriptor `pd`; carves them from `scratch` into `c` unless scratch is null.
template <class Pd>
std::int64_t carve_part(const Settings& settings, const Sizes& s, const Pd& pd, bool backward,
                        bool input_gradient_given, float* scratch, std::int64_t floats, Carved& c) {
    const std::int64_t state = s.batch * s.units, gates = 4 * s.units;
    const std::int64_t layer = floats_of(pd.weights_desc(0)), iter = floats_of(pd.weights_desc(1));
    const std::int64_t final_hidden = settings.bfloat16 && settings.return_state ? state : 0;
    // Forward carves the first seven arrays; backward's own four are empty there.
    const std::int64_t dyt = backward ? s.steps * state : 0;
    const std::int64_t dxt = backward && !input_gradient_given ? s.rows() * s.features : 0;
    const std::int64_t dlayer = backward ? floats_of(pd.diff_weights_desc(0)) : 0;
    const std::int64_t diter = backward ? floats_of(pd.diff_weights_desc(1)) : 0;
    if (scratch) {
        carve(scratch, floats,
              {{&c.zero_bias, gates},
               {&c.zero_state, state},
               {&c.unwanted_dbias, gates},
               {&c.unwanted_dh, state},
               {&c.unwanted_dc, state},
               {&c.weights_layer, layer},
               {&c.weights_iter, iter},
               {&c.final_hidden, final_hidden},
               {&c.dyt, dyt},
               {&c.dxt, dxt},
               {&c.diff_weights_layer, dlayer},
               {&c.diff_weights_iter, diter}});
    }
    return carved_floats({gates, state, gates, state, state, layer, iter, final_hidden, dyt, dxt, dlayer, diter});
}

void fill_zeros(const Sizes& s, const Carved& c) {
    std::memset(c.zero_bias, 0, static_cast<std::size_t>(4 * s.units) * sizeof(float));
    std::memset(c.zero_state, 0, static_cast<std::size_t>(s.batch * s.units) * sizeof(float));
}

Weights weights_for(const onednn::Cached& c, const Descs& d, const Operands& in, const Carved& carved) {
    const memory::desc layer = c.pd.weights_desc(0), iter = c.pd.weights_desc(1);
    return {onednn::reorder_if_needed(wrap(d.weights_layer_user, in.kernel), layer, carved.weights_layer),
            onednn::reorder_if_needed(wrap(d.weights_iter_user, in.recurrent_kernel), iter, carved.weights_iter),
            wrap(d.bias, in.bias ? in.bias : carved.zero_bias)};
}

// The arguments forward and backward share: the data forward reads and writes, with the weights
// in the layouts primitive `c` picked. Final states (return_state: h in the data type, c in f32)
// and the workspace when given. The zero initial state serves f32 and bf16 alike (zero bits).
std::unordered_map<int, memory> data_args(const onednn::Cached& c, const Descs& d, const Operands& in,
                                          const Carved& small, const void* yt, const void* final_h,
                                          const float* final_c, const void* workspace) {
    const Weights w = weights_for(c, d, in, small);
    const void* xt = d.src_layer.data_type() == memory::data_type::bf16 ? static_cast<const void*>(in.xt_bfloat16)
                                                                        : static_cast<const void*>(in.xt);
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC_LAYER, wrap(d.src_layer, xt)},
        {DNNL_ARG_SRC_ITER, wrap(d.hidden, small.zero_state)},
        {DNNL_ARG_SRC_ITER_C, wrap(d.cell, small.zero_state)},
        {DNNL_ARG_WEIGHTS_LAYER, w.layer},
        {DNNL_ARG_WEIGHTS_ITER, w.iter},
        {DNNL_ARG_BIAS, w.bias},
        {DNNL_ARG_DST_LAYER, wrap(d.dst_layer, yt)},
    };
    if (final_h) {
        args.emplace(DNNL_ARG_DST_ITER, wrap(d.dst_iter, final_h));
        args.emplace(DNNL_ARG_DST_ITER_C, wrap(d.dst_iter_c, final_c));
    }
    if (workspace) args.emplace(DNNL_ARG_WORKSPACE, wrap(c.pd.workspace_desc(), workspace));
    return args;
}

// One problem (a whole call, or one part of a split one) on the calling thread's threads.
void forward_one(const Settings& settings, const Sizes& s, const Operands& in, void* yt, void* workspace,
                 std::size_t workspace_bytes, float* scratch, std::int64_t scratch_floats, const Results& out) {
    Stopwatch watch;
    const bool training = workspace != nullptr;
    const onednn::Cached& c = forward_primitive(s, settings, training);
    const Descs d(s, settings);
    if (training) check_workspace(c, workspace_bytes);
    Carved small;
    carve_part(settings, s, c.pd, false, true, scratch, scratch_floats, small);
    fill_zeros(s, small);
    void* final_h = settings.bfloat16 && out.h ? static_cast<void*>(small.final_hidden) : out.h;
    std::unordered_map<int, memory> args = data_args(c, d, in, small, yt, final_h, out.c, workspace);
    watch.lap(Phase::forward_weights);
    onednn::execute(c, std::move(args));
    watch.lap(Phase::forward_compute);

    // The sequence is in processing order: Keras's, go_backwards included.
    const std::int64_t state = s.batch * s.units;
    if (settings.bfloat16) {
        const onednn::View sequence = onednn::view(yt, onednn::DataType::bf16, {s.steps, s.batch, s.units});
        if (settings.return_sequences) {
            onednn::reorder(sequence.permuted({1, 0, 2}),
                            onednn::view(out.out, onednn::DataType::f32, {s.batch, s.steps, s.units}));
        } else {
            onednn::reorder(onednn::view(static_cast<std::uint16_t*>(yt) + (s.steps - 1) * state,
                                         onednn::DataType::bf16, {s.batch, s.units}),
                            onednn::view(out.out, onednn::DataType::f32, {s.batch, s.units}));
        }
        if (out.h) {
            onednn::reorder(onednn::view(final_h, onednn::DataType::bf16, {s.batch, s.units}),
                            onednn::view(out.h, onednn::DataType::f32, {s.batch, s.units}));
        }
    } else if (settings.return_sequences) {
        to_batch_major(static_cast<const float*>(yt), out.out, s.batch, s.steps, s.units, false, nullptr);
    } else {
        std::memcpy(out.out, static_cast<const float*>(yt) + (s.steps - 1) * state,
                    static_cast<std::size_t>(state) * sizeof(float));
    }
    watch.lap(Phase::forward_output);
}

void backward_one(const Settings& settings, const Sizes& s, const Operands& in, const void* yt, const void* workspace,
                  std::size_t workspace_bytes, float* scratch, std::int64_t scratch_floats, const float* final_h,
                  const float* final_c, const OutputGrads& dy, const ParamGrads& grads) {
    Stopwatch watch;
    const std::int64_t state = s.batch * s.units;
    const onednn::Cached& c = backward_primitive(s, settings);
    Carved small;
    carve_part(settings, s, c.pd, true, grads.xt != nullptr, scratch, scratch_floats, small);
    fill_zeros(s, small);
    // The gradient of dst_layer, time-major: the sequence's, or the last output's in the last row.
    // The final states' gradients go to diff_dst_iter and diff_dst_iter_c.
    float* dyt = small.dyt;
    float* last = dyt + (s.steps - 1) * state;
    if (settings.return_sequences && dy.out) {
        to_time_major(dy.out, dyt, s.batch, s.steps, s.units, false, nullptr);
    } else {
        fill_zero(dyt, s.steps * state);
        if (dy.out) std::memcpy(last, dy.out, static_cast<std::size_t>(state) * sizeof(float));
    }
    // oneDNN writes the input gradient whether or not it is wanted.
    float* dxt = grads.xt ? grads.xt : small.dxt;
    watch.lap(Phase::backward_input);

    check_workspace(c, workspace_bytes);
    const Descs d(s, settings);
    // The final h again in bf16: exact, since forward rounded it from these very values.
    const void* hidden = final_h;
    if (settings.bfloat16 && final_h) {
        hidden =
            onednn::to_bfloat16(onednn::view(const_cast<float*>(final_h), onednn::DataType::f32, {s.batch, s.units}),
                                small.final_hidden)
                .data;
    }
    std::unordered_map<int, memory> args = data_args(c, d, in, small, yt, hidden, final_c, workspace);
    const Accumulated dlayer(c.pd.diff_weights_desc(0), d.weights_layer_user, grads.kernel, small.diff_weights_layer);
    const Accumulated diter(c.pd.diff_weights_desc(1), d.weights_iter_user, grads.recurrent_kernel,
                            small.diff_weights_iter);
    // The bias gradient is ldgo, the user's layout: straight into it, or into scratch when no
    // gradient is wanted (use_bias false: oneDNN's CPU LSTM always has a bias, here zeros).
    float* dbias = grads.bias ? grads.bias : small.unwanted_dbias;
    std::memset(dbias, 0, static_cast<std::size_t>(4 * s.units) * sizeof(float));
    watch.lap(Phase::backward_weights);

    args.insert({
        {DNNL_ARG_DIFF_SRC_LAYER, wrap(d.diff_src_layer, dxt)},
        {DNNL_ARG_DIFF_SRC_ITER, wrap(d.cell, small.unwanted_dh)},
        {DNNL_ARG_DIFF_SRC_ITER_C, wrap(d.cell, small.unwanted_dc)},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dlayer.produced},
        {DNNL_ARG_DIFF_WEIGHTS_ITER, diter.produced},
        {DNNL_ARG_DIFF_BIAS, wrap(d.bias, dbias)},
        {DNNL_ARG_DIFF_DST_LAYER, wrap(d.diff_dst_layer, dyt)},
    });
    if (settings.return_state) {
        args.emplace(DNNL_ARG_DIFF_DST_ITER, wrap(d.cell, dy.h ? dy.h : small.zero_state));
        args.emplace(DNNL_ARG_DIFF_DST_ITER_C, wrap(d.cell, dy.c ? dy.c : small.zero_state));
    }
    onednn::execute(c, std::move(args));
    watch.lap(Phase::backward_compute);

    dlayer.finish();
    diter.finish();
    watch.lap(Phase::backward_output);
}

// ---- Split calls ---------------------------------------------------------------------------------

// Where each part's workspace starts in the saved buffer, 64-byte aligned; bytes_for(n) is the
// workspace of a part of n sequences.
struct WorkspaceSlices {
    std::array<std::size_t, kMaxParts + 1> start{};

    WorkspaceSlices() = default;  // no workspace: inference
    template <class BytesFor>
    WorkspaceSlices(const BatchSplit& split, BytesFor&& bytes_for) {
        for (std::int64_t p = 0; p < split.parts; ++p) {
            start[p + 1] = start[p] + nng::round_up(bytes_for(split.count(p)), 64);
        }
    }
};

WorkspaceSlices slices_of(const Sizes& s, const Settings& settings, const BatchSplit& split) {
    return WorkspaceSlices(split, [&](std::int64_t n) {
        return forward_primitive({s.steps, n, s.features, s.units}, settings, true).pd.workspace_desc().get_size();
    });
}

template <class T>
T* offset(T* data, std::int64_t elements) {
    return data ? data + elements : nullptr;
}

// Part p's sizes and operands: its sequences' rows of every batch-major or part-major tensor.
Sizes part_sizes(const Sizes& s, const BatchSplit& split, std::int64_t p) {
    return {s.steps, split.count(p), s.features, s.units};
}
Operands part_operands(const Operands& in, const Sizes& s, std::int64_t n0) {
    Operands part = in;
    part.xt = in.xt + s.steps * n0 * s.features;
    part.xt_bfloat16 = offset(in.xt_bfloat16, s.steps * n0 * s.features);
    if (in.mask) part.mask = in.mask + n0 * s.steps;
    return part;
}
// Rows per sequence of the first output: the whole sequence or the last step.
std::int64_t output_rows(const Settings& settings, const Sizes& s) { return settings.return_sequences ? s.steps : 1; }

}  // namespace

BatchSplit batch_split(std::int64_t batch, int threads) {
    return {batch, std::clamp<std::int64_t>(std::min<std::int64_t>(threads, batch / kLeastPartBatch), 1, kMaxParts)};
}

std::size_t fused_workspace_bytes(const Settings& settings, const Sizes& s, const BatchSplit& split) {
    const WorkspaceSlices slices(split, [&](std::int64_t n) {
        return forward_pd({s.steps, n, s.features, s.units}, settings, dnnl::prop_kind::forward_training)
            .workspace_desc()
            .get_size();
    });
    return slices.start[split.parts];
}

std::int64_t fused_part_floats(const Settings& settings, const Sizes& s, bool training, const BatchSplit& split) {
    std::int64_t most = 0;
    Carved counted;
    const dnnl::prop_kind kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    for (std::int64_t p = 0; p < split.parts; ++p) {
        const Sizes part = part_sizes(s, split, p);
        most = std::max(most,
                        carve_part(settings, part, forward_pd(part, settings, kind), false, true, nullptr, 0, counted));
        if (training) {
            most = std::max(most,
                            carve_part(settings, part, backward_pd(part, settings), true, false, nullptr, 0, counted));
        }
    }
    return carved_floats({most});
}

void fused_forward(const Settings& settings, const Sizes& s, const BatchSplit& split, const Operands& in, void* yt,
                   void* workspace, std::size_t workspace_bytes, const PartScratch& scratch, const Results& out) {
    if (split.parts == 1) {
        forward_one(settings, s, in, yt, workspace, workspace_bytes, scratch.part(0), scratch.floats_per_part, out);
        return;
    }
    const bool training = workspace != nullptr;
    const WorkspaceSlices slices = training ? slices_of(s, settings, split) : WorkspaceSlices();
    if (training) check_workspace_bytes(slices.start[split.parts], workspace_bytes);
    onednn::run_in_parts(split.parts, [&](std::int64_t p) {
        const std::int64_t n0 = split.first(p);
        const Results part_out{out.out + n0 * output_rows(settings, s) * s.units, offset(out.h, n0 * s.units),
                               offset(out.c, n0 * s.units)};
        forward_one(settings, part_sizes(s, split, p), part_operands(in, s, n0),
                    offset(static_cast<std::byte*>(yt), s.steps * n0 * s.units * data_bytes(settings)),
                    offset(static_cast<std::byte*>(workspace), static_cast<std::int64_t>(slices.start[p])),
                    slices.start[p + 1] - slices.start[p], scratch.part(p), scratch.floats_per_part, part_out);
    });
}

void fused_backward(const Settings& settings, const Sizes& s, const BatchSplit& split, const Operands& in,
                    const void* yt, const void* workspace, std::size_t workspace_bytes, const PartScratch& scratch,
                    float* gradient_copies, const float* final_h, const float* final_c, const OutputGrads& dy,
                    const ParamGrads& grads) {
    if (split.parts == 1) {
        backward_one(settings, s, in, yt, workspace, workspace_bytes, scratch.part(0), scratch.floats_per_part, final_h,
                     final_c, dy, grads);
        return;
    }
    const WorkspaceSlices slices = slices_of(s, settings, split);
    check_workspace_bytes(slices.start[split.parts], workspace_bytes);
    // Part 0 writes the weight gradients; every other part writes its own copy, added after.
    const GradientCopies copies(s, static_cast<int>(split.parts), grads, gradient_copies);
    const auto part_grads = [&](std::int64_t p) {
        ParamGrads part = copies.of(static_cast<int>(p));
        part.xt = offset(grads.xt, s.steps * split.first(p) * s.features);
        return part;
    };
    onednn::run_in_parts(split.parts, [&](std::int64_t p) {
        const std::int64_t n0 = split.first(p);
        const OutputGrads part_dy{offset(dy.out, n0 * output_rows(settings, s) * s.units), offset(dy.h, n0 * s.units),
                                  offset(dy.c, n0 * s.units)};
        backward_one(settings, part_sizes(s, split, p), part_operands(in, s, n0),
                     offset(static_cast<const std::byte*>(yt), s.steps * n0 * s.units * data_bytes(settings)),
                     offset(static_cast<const std::byte*>(workspace), static_cast<std::int64_t>(slices.start[p])),
                     slices.start[p + 1] - slices.start[p], scratch.part(p), scratch.floats_per_part,
                     offset(final_h, n0 * s.units), offset(final_c, n0 * s.units), part_dy, part_grads(p));
    });
    copies.add_copies();
}

}  // namespace nngraph_lstm
