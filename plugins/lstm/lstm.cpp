// Keras 3's keras.layers.LSTM: attributes, shape inference, weights, and the choice of path.
//
// Input (batch, timesteps, features) float32, optionally masked. Outputs: the last output
// (batch, units) or the sequence (batch, timesteps, units) with return_sequences; with
// return_state also the final h and c: [output, state_h, state_c] as Keras returns them. The
// input mask passes to a returned sequence only (Keras's RNN.compute_mask).
//
// Paths: the stepwise loop (stepwise.cpp) for float32, masks and every activation; oneDNN's fused
// LSTM (fused.cpp) for Keras's default cell without a mask under mixed_bfloat16 or use_cudnn: true.
// Both start from the time-major input in processing order, the input dropout mask applied
// (lstm.hpp).
#include <algorithm>
#include <cstring>

#include "lstm.hpp"

namespace nngraph_lstm {
namespace {

using nng::Dims;

constexpr const char* kStatefulReason =
    "stateful: true carries the final states of one batch into the next, which nngraph's executor "
    "does not keep between steps; only false is supported";
constexpr const char* kUnrollReason =
    "unroll: true asks Keras to build one graph node per step; nngraph runs the steps in a loop "
    "inside the op, so only false is supported";
constexpr const char* kFusedCellReason =
    "use_cudnn: true asks for the fused LSTM (oneDNN's here), which runs Keras's default cell only: "
    "activation tanh and recurrent_activation sigmoid";
constexpr const char* kFusedMaskReason =
    "use_cudnn: true asks for the fused LSTM (oneDNN's here), which cannot skip masked steps; this "
    "input has a mask";
constexpr const char* kRecurrentDropoutReason =
    "recurrent_dropout > 0 is not supported (Keras then switches the cell to four per-gate dropout "
    "masks on the inputs and the state); use dropout, which drops input features as Keras does, or "
    "a Dropout layer before the LSTM";

// unit_forget_bias: Keras adds the forget-gate ones to bias_initializer's draw for the other
// gates. nngraph's initializers express it for zeros (NNG_INIT_LSTM_BIAS) and ones.
nng::Initializer bias_initializer(const std::string& name, bool unit_forget_bias, std::int64_t units) {
    const nng::Initializer base = nng::keras_initializer(name, "bias_initializer");
    if (!unit_forget_bias || name == "ones") return base;
    if (name == "zeros") return {NNG_INIT_LSTM_BIAS, static_cast<double>(units)};
    throw nng::OpError("unit_forget_bias: true with bias_initializer '" + name +
                           "' is not supported (it is for zeros and ones); set unit_forget_bias: false to use '" +
                           name + "' for the whole bias",
                       "unit_forget_bias");
}

std::string optional_string(const nng::Attrs& attrs, const char* name, const char* if_null) {
    return attrs.is_null(name) ? if_null : attrs.get_string(name);
}

struct Lstm {
    static constexpr const char* kName = "LSTM";
    static constexpr const char* kDoc = "Long Short-Term Memory layer (Keras 3), gates i, f, c, o";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::int_attr("units", nullptr, "dimensionality of the output space")),
        nng::nullable(nng::string_attr("activation", "tanh", kActivationChoices, "cell activation (null: linear)")),
        nng::nullable(
            nng::string_attr("recurrent_activation", "sigmoid", kActivationChoices, "gate activation (null: linear)")),
        nng::bool_attr("use_bias", "true", "add a learned bias to the gates"),
        nng::string_attr("kernel_initializer", "glorot_uniform", nng::kInitializerChoices, "initial kernel"),
        nng::string_attr("recurrent_initializer", "orthogonal", nng::kInitializerChoices, "initial recurrent_kernel"),
        nng::string_attr("bias_initializer", "zeros", nng::kInitializerChoices, "initial bias"),
        nng::bool_attr("unit_forget_bias", "true", "start the forget-gate bias at 1"),
        nng::float_attr("dropout", "0.0", "fraction of input features dropped in training, one mask per sequence"),
        nng::float_attr("recurrent_dropout", "0.0", "not supported beyond 0"),
        nng::nullable(nng::int_attr("seed", "null", "seed of the dropout mask, mixed with the step's")),
        nng::bool_attr("return_sequences", "false", "return the whole sequence instead of the last output"),
        nng::bool_attr("return_state", "false", "also return the final h and c"),
        nng::bool_attr("go_backwards", "false", "process the sequence backwards and return it reversed"),
        nng::bool_attr("stateful", "false", "only false"),
        nng::bool_attr("unroll", "false", "only false"),
        nng::string_attr("use_cudnn", "auto", "auto|true|false",
                         "the vendor's fused LSTM (here oneDNN's): auto where it is the faster, true always "
                         "(refused where it cannot run), false never"),
    };

    explicit Lstm(const nng::Attrs& attrs)
        : kernel_init_(nng::keras_initializer(attrs.get_string("kernel_initializer"), "kernel_initializer")),
          recurrent_init_(nng::keras_initializer(attrs.get_string("recurrent_initializer"), "recurrent_initializer")) {
        s_.units = attrs.get_int("units");
        nng::check_attr(s_.units > 0, "units", "a positive integer, got " + std::to_string(s_.units));
        s_.activation = parse_activation(optional_string(attrs, "activation", "linear"), "activation");
        s_.recurrent_activation =
            parse_activation(optional_string(attrs, "recurrent_activation", "linear"), "recurrent_activation");
        s_.use_bias = attrs.get_bool("use_bias");
        bias_init_ =
            bias_initializer(attrs.get_string("bias_initializer"), attrs.get_bool("unit_forget_bias"), s_.units);
        s_.dropout = static_cast<float>(std::clamp(attrs.get_float("dropout"), 0.0, 1.0));
        if (std::clamp(attrs.get_float("recurrent_dropout"), 0.0, 1.0) != 0.0) {
            throw nng::OpError(kRecurrentDropoutReason, "recurrent_dropout");
        }
        s_.has_seed = !attrs.is_null("seed");
        if (s_.has_seed) s_.seed = attrs.get_int("seed");
        s_.return_sequences = attrs.get_bool("return_sequences");
        s_.return_state = attrs.get_bool("return_state");
        s_.go_backwards = attrs.get_bool("go_backwards");
        if (attrs.get_bool("stateful")) throw nng::OpError(kStatefulReason, "stateful");
        if (attrs.get_bool("unroll")) throw nng::OpError(kUnrollReason, "unroll");
        const std::string fused = attrs.get_string("use_cudnn");
        fused_ = fused == "true" ? Fused::kAlways : fused == "false" ? Fused::kNever : Fused::kAuto;
        if (fused_ == Fused::kAlways && !s_.onednn_cell()) throw nng::OpError(kFusedCellReason, "use_cudnn");
    }

    // Keras's use_cudnn, with oneDNN's fused LSTM in cuDNN's place. It runs Keras's default cell
    // without a mask only. auto takes the stepwise loop, in f32 and under mixed_bfloat16 alike:
    // the loop's parts of the batch run every step without meeting, and it outpaces oneDNN's
    // primitive in training and inference.
    enum class Fused { kAuto, kAlways, kNever };
    bool stepwise(bool masked) const {
        if (masked || !s_.onednn_cell()) return true;
        return fused_ != Fused::kAlways;
    }

    // The op's largest arrays are the kernels (F or U by 4·U) and the steps' gates (T·N by 4·U).
    // Refused unless each, times room for the per-thread copies, sums and byte counts the buffer
    // sizes form from them, fits in 64 bits: a hostile units or shape must not wrap those sizes.
    static void refuse_unaddressable(const Dims& in, std::int64_t units) {
        constexpr std::int64_t kRoom = std::int64_t{1} << 16;
        const std::int64_t batch = std::max<std::int64_t>(in[0], 1);
        for (const Dims& array : {Dims{in[2], 4, units}, Dims{units, 4, units}, Dims{in[1], batch, 4, units}}) {
            std::int64_t n = kRoom;
            for (const std::int64_t d : array) {
                if (nng::multiply_overflows(n, d, n)) {
                    throw nng::OpError("units " + std::to_string(units) + " with input " + nng::dims_string(in) +
                                           " makes arrays too large to address; expected sizes whose weights and "
                                           "per-step gates fit in memory",
                                       "units");
                }
            }
        }
    }

    void infer(nng::InferContext& ctx) {
        ctx.expect_rank(0, 3, 3, "rank 3: (batch, timesteps, features)");
        ctx.expect_dtype(0, NNG_F32, "float32");
        const Dims in = ctx.input_dims(0);
        const std::int64_t N = in[0], T = in[1], F = in[2], U = s_.units;
        if (T <= 0 || F <= 0) {
            throw nng::OpError("input 0 has shape " + nng::dims_string(in) +
                               "; expected (batch, timesteps, features) with at least one step and one feature");
        }
        refuse_unaddressable(in, U);
        ctx.set_batch_slicing(NNG_SLICING_SLOWER);  // every step's product takes the batch as rows
        const int y = ctx.add_output(NNG_F32, s_.return_sequences ? Dims{N, T, U} : Dims{N, U});
        if (s_.return_sequences) ctx.pass_mask(y, 0);
        if (s_.return_state) {
            ctx.add_output(NNG_F32, {N, U});
            ctx.add_output(NNG_F32, {N, U});
        }
        ctx.add_weight("kernel", {F, 4 * U}, kernel_init_);
        ctx.add_weight("recurrent_kernel", {U, 4 * U}, recurrent_init_);
        if (s_.use_bias) ctx.add_weight("bias", {4 * U}, bias_init_);

        mixed_bfloat16_ = ctx.precision() == nng::Precision::MixedBfloat16;
        if (fused_ == Fused::kAlways && ctx.input_has_mask(0)) throw nng::OpError(kFusedMaskReason, "use_cudnn");
        const bool steps_by_hand = stepwise(ctx.input_has_mask(0));
        s_.bfloat16 = mixed_bfloat16_;
        // Backward reads saved buffers only, and the final states oneDNN's backward takes back.
        ctx.set_backward_needs(!steps_by_hand && s_.return_state ? NNG_NEEDS_OUTPUT(1) | NNG_NEEDS_OUTPUT(2) : 0u);
        declare_buffers(ctx, Sizes{T, std::max<std::int64_t>(N, 0), F, U}, steps_by_hand);
        if (ctx.counting_work()) {
            // Per step: x and h times the four gates' kernels, then the cell (bias, four gate
            // activations, c = f·c + i·g, h = o·tanh(c): 13 a unit; gates, c and h written). Backward
            // makes two products per forward one (weights' and inputs' gradients), twice the cell's work.
            const nng::Work products = nng::matmul_work(T, N, F, 4 * U) + nng::matmul_work(T, N, U, 4 * U);
            const nng::Work cell = nng::elementwise_work(T * N * U, 13, 6);
            ctx.count_work(products + cell, 2 * products + 2 * cell);
        }
    }

    // Every buffer, in one order for every plan; those a plan does not use have no elements.
    void declare_buffers(nng::InferContext& ctx, const Sizes& s, bool by_steps) {
        using nng::Lifetime;
        const bool training = ctx.training() && s.batch > 0;
        const bool fused = !by_steps && s.batch > 0;
        const std::int64_t state = s.batch * s.units;
        const auto when = [](bool needed, std::int64_t count) { return needed ? count : 0; };
        const bool bf16 = s_.bfloat16 && fused;
        const bool steps_bf16 = s_.bfloat16 && by_steps && s.batch > 0;
        const BatchSplit split =
            fused ? batch_split(s.batch, op_threads(s.batch, ctx.num_threads())) : BatchSplit{s.batch, 1};
        // Under mixed_bfloat16 the f32 time-major input lives for the call only: backward reads its
        // bf16 copy and the bf16 sequence (oneDNN's path), or the bf16 rows of the steps (stepwise).
        b_.input = ctx.buffer<float>("input", when(training && !bf16, s.rows() * s.features),
                                     s_.bfloat16 && by_steps ? Lifetime::PerCall : Lifetime::Saved);
        b_.gates = ctx.buffer<float>("gates", when(training && by_steps, saved_gate_floats(s)), Lifetime::Saved);
        b_.hidden = ctx.buffer<float>("hidden", when(training && by_steps, saved_hidden_floats(s)), Lifetime::Saved);
        b_.cell = ctx.buffer<float>("cell", when(training && by_steps, (s.steps + 1) * state), Lifetime::Saved);
        b_.cell_activation =
            ctx.buffer<float>("activated cell", when(training && by_steps, s.steps * state), Lifetime::Saved);
        // oneDNN's dst_layer, in the policy's type.
        const std::int64_t sequence_bytes = s.steps * state * (bf16 ? 2 : 4);
        b_.sequence = ctx.buffer<std::byte>("sequence", when(training && fused, sequence_bytes), Lifetime::Saved);
        const bool keeps_workspace = training && fused;
        b_.workspace = ctx.buffer<std::byte>(
            "workspace", keeps_workspace ? static_cast<std::int64_t>(fused_workspace_bytes(s_, s, split)) : 0,
            Lifetime::Saved);
        const bool time_major_input = !(by_steps && projects_from_input(s, training)) && (!training || bf16);
        b_.inference_input = ctx.buffer<float>(
            "inference input", when(time_major_input, call_input_floats(s, bf16 && !training)), Lifetime::PerCall);
        b_.inference_sequence =
            ctx.buffer<std::byte>("inference sequence", when(!training && fused, sequence_bytes), Lifetime::PerCall);
        b_.input_bf16 =
            ctx.buffer<std::uint16_t>("bfloat16 input", when(training && bf16, s.rows() * s.features), Lifetime::Saved);

        // Every step's bf16 rows and the bf16 weights: saved in training, in the step scratch otherwise.
        b_.steps_bf16 = ctx.buffer<std::uint16_t>(
            "bfloat16 steps", steps_bf16 && training ? bfloat16_steps_values(s, ctx.num_threads()) : 0,
            Lifetime::Saved);
        // The path's own scratch for a call: the states and the joint operands of the stepwise
        // loop, or the weights and time-major gradients of each part on oneDNN's path.
        const std::int64_t call_scratch = by_steps ? step_scratch_floats(s, training, ctx.num_threads())
                                          : fused  ? split.parts * fused_part_floats(s_, s, training, split)
                                                   : 0;
        b_.call_scratch = ctx.buffer<float>(by_steps ? "step scratch" : "part scratch", when(s.batch > 0, call_scratch),
                                            Lifetime::PerCall);
        b_.dropout_mask = ctx.buffer<float>(
            "dropout mask", when(training && s_.dropout > 0.0f && s_.dropout < 1.0f, s.batch * s.features),
            Lifetime::PerCall);
        b_.input_gradient =
            ctx.buffer<float>("input gradient", when(training, s.rows() * s.features), Lifetime::Backward);
        b_.gradient_copies = ctx.buffer<float>(
            "weight gradient copies", when(training && fused, GradientCopies::floats(s, static_cast<int>(split.parts))),
            Lifetime::Backward);
        b_.step_gradients =
            ctx.buffer<float>("step gradients",
                              when(training && by_steps,
                                   stepwise_backward_floats(s, op_threads(s.batch, ctx.num_threads()), s_.bfloat16)),
                              Lifetime::Backward);
    }

    // The per-call input buffer: the f32 time-major input, followed by its bf16 copy when `with_copy`
    // (inference under mixed_bfloat16; training saves the copy apart, for backward).
    static std::int64_t call_input_floats(const Sizes& s, bool with_copy) {
        const std::int64_t n = s.rows() * s.features;
        return with_copy ? carved_floats({n, floats_for<std::uint16_t>(n)}) : n;
    }
    struct CallInput {
        float* xt = nullptr;
        std::uint16_t* xt_bfloat16 = nullptr;
    };
    CallInput call_input(const nng::Exec& exec, const Sizes& s, bool with_copy) const {
        CallInput in;
        if (!with_copy) {
            in.xt = exec.buffer(b_.inference_input);
            return in;
        }
        const std::int64_t n = s.rows() * s.features;
        carve(exec.buffer(b_.inference_input), exec.count(b_.inference_input), {{&in.xt, n}, {&in.xt_bfloat16, n}});
        return in;
    }

    // The threads a call of `batch` sequences runs on.
    static int op_threads(std::int64_t batch, int threads) { return batch < kSerialBatch ? 1 : std::max(1, threads); }

    PartScratch part_scratch(const nng::Exec& exec, const BatchSplit& split) const {
        return {exec.buffer(b_.call_scratch), exec.count(b_.call_scratch) / split.parts};
    }

    // One thread below kSerialBatch sequences: each step's products are then a few hundred
    // multiply-adds per gate row, and a second thread costs more in synchronisation at every one of
    // the steps than it takes over.
    static constexpr std::int64_t kSerialBatch = 8;

    void forward(nng::Exec& exec) {
        Stopwatch watch;
        const Sizes s = sizes(exec);
        const int threads = op_threads(s.batch, exec.num_threads());
        onednn::set_num_threads(threads);
        const bool masked = exec.input_mask(0).present();
        const bool by_steps = stepwise(masked);
        const BatchSplit split = by_steps ? BatchSplit{s.batch, 1} : batch_split(s.batch, threads);
        const bool training = exec.training();
        count_call(false, by_steps);
        if (training) check_saved(exec, s, by_steps);

        Operands in = operands(exec, s);
        const float* mask = dropout_mask(exec, s);
        const bool bf16 = s_.bfloat16 && !by_steps;
        if (by_steps && projects_from_input(s, training)) {
            in.x = exec.input(0).f32();
        } else if (training && !bf16) {
            in.xt = exec.buffer(b_.input);
        } else {
            const CallInput call = call_input(exec, s, bf16 && !training);
            in.xt = call.xt;
            in.xt_bfloat16 = training ? exec.buffer(b_.input_bf16) : call.xt_bfloat16;
        }
        if (in.xt) to_time_major(exec.input(0).f32(), in.xt, split, s.steps, s.features, s_.go_backwards, mask);
        if (bf16) {
            onednn::to_bfloat16(onednn::view(in.xt, onednn::DataType::f32, {s.rows() * s.features}), in.xt_bfloat16);
        }
        watch.lap(Phase::forward_input);

        const Results out{exec.output(0).f32(), s_.return_state ? exec.output(1).f32() : nullptr,
                          s_.return_state ? exec.output(2).f32() : nullptr};
        if (by_steps) {
            const StepState st = step_state(exec, s, training, s_.bfloat16 ? &in.bf16_steps : nullptr);
            stepwise_forward(s_, s, batch_split(s.batch, threads), in, st, out);
        } else if (training) {
            fused_forward(s_, s, split, in, sequence(exec, true), exec.buffer(b_.workspace),
                          static_cast<std::size_t>(exec.count(b_.workspace)), part_scratch(exec, split), out);
        } else {
            fused_forward(s_, s, split, in, sequence(exec, false), nullptr, 0, part_scratch(exec, split), out);
        }
    }

    void backward(nng::Exec& exec) {
        const Sizes s = sizes(exec);
        const int threads = op_threads(s.batch, exec.num_threads());
        onednn::set_num_threads(threads);
        const bool by_steps = stepwise(exec.input_mask(0).present());
        // The forward's split: the same batch and threads give the same parts.
        const BatchSplit split = by_steps ? BatchSplit{s.batch, 1} : batch_split(s.batch, threads);
        count_call(true, by_steps);
        check_saved(exec, s, by_steps);

        const OutputGrads dy{exec.grad_output(0) ? exec.grad_output(0).f32() : nullptr,
                             s_.return_state && exec.grad_output(1) ? exec.grad_output(1).f32() : nullptr,
                             s_.return_state && exec.grad_output(2) ? exec.grad_output(2).f32() : nullptr};
        const nng::TensorRef dx = exec.grad_input(0);
        const nng::TensorRef dkernel = exec.grad_weight(0), drecurrent = exec.grad_weight(1);
        const nng::TensorRef dbias = s_.use_bias ? exec.grad_weight(2) : nng::TensorRef();
        if (!dy.any()) {  // no gradient arrives: every gradient is zero
            for (const nng::TensorRef& g : {dx, dkernel, drecurrent, dbias}) {
                if (g) std::memset(g.raw(), 0, g.nbytes());
            }
            return;
        }
        Operands in = operands(exec, s);
        in.xt = exec.buffer(b_.input);
        in.xt_bfloat16 = exec.buffer(b_.input_bf16);
        ParamGrads grads{nullptr, dkernel ? dkernel.f32() : nullptr, drecurrent ? drecurrent.f32() : nullptr,
                         dbias ? dbias.f32() : nullptr};
        if (dx) grads.xt = exec.buffer(b_.input_gradient);
        if (by_steps) {
            const StepState st = step_state(exec, s, true, s_.bfloat16 ? &in.bf16_steps : nullptr);
            stepwise_backward(s_, s, batch_split(s.batch, threads), threads, in, st, exec.buffer(b_.step_gradients), dy,
                              grads);
        } else {
            fused_backward(s_, s, split, in, sequence(exec, true), exec.buffer(b_.workspace),
                           static_cast<std::size_t>(exec.count(b_.workspace)), part_scratch(exec, split),
                           exec.buffer(b_.gradient_copies), s_.return_state ? exec.output(1).f32() : nullptr,
                           s_.return_state ? exec.output(2).f32() : nullptr, dy, grads);
        }
        Stopwatch watch;
        if (dx) {
            // The mask drawn in forward, again: the same seed gives the same mask.
            const float* mask = dropout_mask(exec, s);
            to_batch_major(grads.xt, dx.f32(), split, s.steps, s.features, s_.go_backwards, mask);
        }
        watch.lap(Phase::backward_output);
    }

    // The oneDNN path's dst_layer: saved in training, per call otherwise; bf16 under mixed_bfloat16.
    void* sequence(const nng::Exec& exec, bool training) const {
        return training ? exec.buffer(b_.sequence) : exec.buffer(b_.inference_sequence);
    }

    Sizes sizes(const nng::Exec& exec) const {
        const nng::TensorRef x = exec.input(0);
        return {x.dim(1), x.dim(0), x.dim(2), s_.units};
    }

    Operands operands(const nng::Exec& exec, const Sizes& s) const {
        Operands in;
        in.kernel = exec.weight(0).f32();
        in.recurrent_kernel = exec.weight(1).f32();
        in.bias = s_.use_bias ? exec.weight(2).f32() : nullptr;
        const nng::TensorRef mask = exec.input_mask(0);
        if (mask) {
            if (mask.numel() != s.batch * s.steps) {
                throw nng::OpError("the input mask has shape " + nng::dims_string(mask.dims()) + "; expected (" +
                                   std::to_string(s.batch) + ", " + std::to_string(s.steps) + ")");
            }
            in.mask = mask.u8();
        }
        return in;
    }

    // Keras's input dropout mask (N, F) when it applies (training, 0 < rate < 1), else null.
    const float* dropout_mask(const nng::Exec& exec, const Sizes& s) const {
        if (!exec.random_active() || s_.dropout <= 0.0f || s_.dropout >= 1.0f) return nullptr;
        float* mask = exec.buffer(b_.dropout_mask);
        std::uint64_t seed = nng::derive_seed(exec.seed(), "lstm.dropout");
        if (s_.has_seed) seed = nng::derive_seed(seed, static_cast<std::uint64_t>(s_.seed));
        nngraph_lstm::dropout_mask(mask, s.batch, s.features, s_.dropout, seed);
        return mask;
    }

    // What training on the stepwise path saves of the gates and h (StepState): every step's, or
    // under mixed_bfloat16 one step's f32 gates followed by every step's in bf16 (a batch that
    // projects every step's input at once makes them all in f32 first) and, unless the sequence
    // is the output, h in two slots.
    static std::int64_t step_gate_floats(const Sizes& s) { return 4 * s.batch * s.units; }  // (N, 4U)
    bool keeps_gates_in_bfloat16(const Sizes& s) const { return s_.bfloat16 && !projects_at_once(s); }
    bool keeps_every_hidden() const { return !s_.bfloat16 || s_.return_sequences; }
    std::int64_t saved_gate_floats(const Sizes& s) const {
        const std::int64_t step = step_gate_floats(s);
        if (!keeps_gates_in_bfloat16(s)) return step * s.steps;
        return carved_floats({step, floats_for<std::uint16_t>(step * s.steps)});
    }
    std::int64_t saved_hidden_floats(const Sizes& s) const {
        return s.batch * s.units * (keeps_every_hidden() ? s.steps + 1 : 2);
    }

    // What an inference call of the stepwise path keeps: the gates of every step or of one, and h of
    // every step when the sequence is the output, else h before and after a step.
    static std::int64_t inference_gate_floats(const Sizes& s) {
        return step_gate_floats(s) * (inference_gates_every_step(s) ? s.steps : 1);
    }
    std::int64_t inference_hidden_floats(const Sizes& s) const {
        return s.batch * s.units * (s_.return_sequences ? s.steps + 1 : 2);
    }
    // The stepwise path's per-call scratch: the joint product's operands, and in inference the states
    // and, under mixed_bfloat16, the bf16 operands.
    std::int64_t step_scratch_floats(const Sizes& s, bool training, int threads) const {
        const std::int64_t state = s.batch * s.units;
        if (training) return joint_floats(s, s_.bfloat16);
        return carved_floats({inference_gate_floats(s), inference_hidden_floats(s), 2 * state, state,
                              joint_floats(s, s_.bfloat16), inference_bfloat16_floats(s, threads)});
    }
    std::int64_t inference_bfloat16_floats(const Sizes& s, int threads) const {
        return s_.bfloat16 ? floats_for<std::uint16_t>(bfloat16_steps_values(s, threads)) : 0;
    }
    // StepsInBfloat16's values for a call on `threads` threads (asks oneDNN for its packed layouts).
    static std::int64_t bfloat16_steps_values(const Sizes& s, int threads) {
        if (s.batch <= 0) return 0;
        return StepsInBfloat16::count(s, bfloat16_weight_values(s, batch_split(s.batch, op_threads(s.batch, threads))));
    }
    // The stepwise path's states: saved buffers in training, else carved from the step scratch, as
    // are, under mixed_bfloat16, the bf16 operands (`bfloat16`, when given).
    StepState step_state(const nng::Exec& exec, const Sizes& s, bool training,
                         StepsInBfloat16* bfloat16 = nullptr) const {
        StepState st;
        float* scratch = exec.buffer(b_.call_scratch);
        const std::int64_t scratch_floats = exec.count(b_.call_scratch);
        if (training) {
            if (keeps_gates_in_bfloat16(s)) {
                carve(exec.buffer(b_.gates), exec.count(b_.gates),
                      {{&st.gates, step_gate_floats(s)}, {&st.gates_bfloat16, step_gate_floats(s) * s.steps}});
                st.gates_every_step = false;
            } else {
                st.gates = exec.buffer(b_.gates);
            }
            st.hidden = exec.buffer(b_.hidden);
            st.hidden_every_step = keeps_every_hidden();
            st.cell = exec.buffer(b_.cell);
            st.cell_activation = exec.buffer(b_.cell_activation);
            carve(scratch, scratch_floats, {{&st.joint, joint_floats(s, s_.bfloat16)}});
            if (bfloat16) *bfloat16 = StepsInBfloat16::carve(exec.buffer(b_.steps_bf16), s);
            return st;
        }
        st.every_step = false;
        st.gates_every_step = inference_gates_every_step(s);
        st.hidden_every_step = s_.return_sequences;  // the sequence is the output
        const std::int64_t state = s.batch * s.units;
        float* room = nullptr;
        carve(scratch, scratch_floats,
              {{&st.gates, inference_gate_floats(s)},
               {&st.hidden, inference_hidden_floats(s)},
               {&st.cell, 2 * state},
               {&st.cell_activation, state},
               {&st.joint, joint_floats(s, s_.bfloat16)},
               {&room, inference_bfloat16_floats(s, exec.num_threads())}});
        if (bfloat16) *bfloat16 = StepsInBfloat16::carve(reinterpret_cast<std::uint16_t*>(room), s);
        return st;
    }

    // The buffers were declared by infer() for one path; a call on the other (a mask present at
    // planning but not now, or the reverse) would misread them. The path's own saved state tells:
    // gates (T, N, 4U) for the stepwise path, dst_layer (T, N, U) for oneDNN's.
    void check_saved(const nng::Exec& exec, const Sizes& s, bool by_steps) const {
        const std::int64_t planned = by_steps ? exec.count(b_.gates) : exec.count(b_.sequence);
        const std::int64_t expected =
            by_steps ? saved_gate_floats(s) : s.steps * s.batch * s.units * (s_.bfloat16 ? 2 : 4);
        if (planned != expected) {
            throw nng::OpError(std::string("LSTM: this call takes the ") + (by_steps ? "stepwise (masked)" : "oneDNN") +
                               " path, but its saved buffers were planned for the other one or another shape "
                               "(a mask present at planning and not now, or the reverse)");
        }
    }

    Settings s_;
    bool mixed_bfloat16_ = false;  // the node's policy, whichever path a call takes
    Fused fused_ = Fused::kAuto;
    nng::Initializer kernel_init_, recurrent_init_, bias_init_;
    struct Buffers {
        nng::Buffer<float> input, gates, hidden, cell, cell_activation;
        nng::Buffer<std::byte> sequence, workspace;
        nng::Buffer<float> inference_input, call_scratch, dropout_mask;
        nng::Buffer<std::byte> inference_sequence;
        nng::Buffer<float> input_gradient, gradient_copies, step_gradients;
        nng::Buffer<std::uint16_t> input_bf16, steps_bf16;
    } b_;
};

}  // namespace

const nng_op_def* lstm_op() { return nng::op<Lstm>(); }

}  // namespace nngraph_lstm
