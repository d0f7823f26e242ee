// Keras's LSTM on oneDNN: what the op class (lstm.cpp), the oneDNN path (fused.cpp), the plain path
// for masks and other activations (stepwise.cpp) and the sequence helpers (sequence.cpp) share.
//
// Both paths run on the input in time-major processing order, XT (steps, batch, features): step k
// reads input time k, or T-1-k with go_backwards, with the input dropout mask applied. The
// sequence they produce is then in processing order already, which is Keras's order for a returned
// sequence (go_backwards returns it reversed), so outputs need a plain transpose only.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "nngraph/arithmetic.hpp"
#include "nngraph/carver.hpp"
#include "nngraph/cpu.hpp"
#include "nngraph/onednn.hpp"

namespace nngraph_lstm {

namespace onednn = nng::onednn;

// ---- Activations ---------------------------------------------------------------------------------

// The Keras activations the LSTM accepts: each one's derivative follows from its output.
enum class Act { linear, tanh, sigmoid, hard_sigmoid, relu, relu6, softsign };

inline constexpr const char* kActivationChoices = "linear|tanh|sigmoid|hard_sigmoid|relu|relu6|softsign";
// Keras's name (null is linear); throws nng::OpError naming `attribute` for the others.
Act parse_activation(const std::string& name, const char* attribute);

// x = f(x), n elements.
void activate(Act f, float* x, std::int64_t n);
// d = d * f'(z), from y = f(z), n elements.
void times_derivative(Act f, const float* y, float* d, std::int64_t n);

// ---- The problem --------------------------------------------------------------------------------

// Attributes, parsed once.
struct Settings {
    std::int64_t units = 0;
    Act activation = Act::tanh;
    Act recurrent_activation = Act::sigmoid;
    bool use_bias = true;
    float dropout = 0.0f;  // clamped to [0, 1] as Keras does; applied when 0 < rate < 1
    bool has_seed = false;
    std::int64_t seed = 0;
    bool return_sequences = false;
    bool return_state = false;
    bool go_backwards = false;
    // mixed_bfloat16 (the node's policy, set at planning): the products in bf16 with f32 sums. On
    // oneDNN's path the input, weights and hidden states in bf16, its cell state, bias and every
    // gradient in f32; on the stepwise path bf16 copies of the products' operands only.
    bool bfloat16 = false;

    // oneDNN's vanilla LSTM computes exactly Keras's default cell.
    bool onednn_cell() const { return activation == Act::tanh && recurrent_activation == Act::sigmoid; }
};

// The sizes of one call: T steps, N sequences, F features, U units.
struct Sizes {
    std::int64_t steps, batch, features, units;

    std::int64_t rows() const { return steps * batch; }  // T * N, the rows of time-major matrices
};

// Under mixed_bfloat16 the stepwise path's products read bf16 copies and sum in f32; all null in
// float32 and on oneDNN's path.
struct StepsInBfloat16 {
    // Every step's row [x_k, h_k] for every sequence, (T, N, F + U): the left operand of the step's
    // product, then what the weight gradients read.
    std::uint16_t* rows = nullptr;
    // Room for the weights: forward [W; U] (F + U, 4U), packed for the step's product (plain where
    // every step's input is projected at once); backward Uᵀ (4U, U) packed, then W (F, 4U).
    std::uint16_t* weights = nullptr;

    bool present() const { return rows != nullptr; }
    static std::int64_t row_width(const Sizes& s) { return s.features + s.units; }
    // The bf16 values of both (bfloat16_weight_values for the weights), the weights 64-byte aligned
    // after the rows.
    static std::int64_t count(const Sizes& s, std::int64_t weight_values) {
        return nng::round_up(s.rows() * row_width(s), std::int64_t{32}) + weight_values;
    }
    static StepsInBfloat16 carve(std::uint16_t* memory, const Sizes& s) {
        if (!memory) return {};
        return {memory, memory + nng::round_up(s.rows() * row_width(s), std::int64_t{32})};
    }
};

// What a path needs besides the sizes: the time-major input XT (filled before the path runs, the
// dropout mask already applied), the weights, and the input mask ((N, T), 1 = keep; null when none).
struct Operands {
    float* xt = nullptr;
    // Instead of XT, the input itself (N, T, F), which stepwise inference projects a step at a time
    // where it is: inference applies no dropout, so a time-major copy would only move it.
    const float* x = nullptr;
    std::uint16_t* xt_bfloat16 = nullptr;     // under mixed_bfloat16: XT in bf16, what oneDNN's path reads
    const float* kernel = nullptr;            // (F, 4U)
    const float* recurrent_kernel = nullptr;  // (U, 4U)
    const float* bias = nullptr;              // (4U) or null without use_bias
    const std::uint8_t* mask = nullptr;
    StepsInBfloat16 bf16_steps;
};

// Where a call's outputs go: out0 is the sequence (N, T, U) or the last output (N, U); h and c the
// final states (return_state) or null.
struct Results {
    float* out = nullptr;
    float* h = nullptr;
    float* c = nullptr;
};

// Gradients arriving for the outputs (null: zero), and those to produce (null: not wanted).
struct OutputGrads {
    const float* out = nullptr;
    const float* h = nullptr;
    const float* c = nullptr;
    bool any() const { return out || h || c; }
};
struct ParamGrads {
    float* xt = nullptr;  // (T, N, F) time-major input gradient, or null when the input needs none
    float* kernel = nullptr;
    float* recurrent_kernel = nullptr;
    float* bias = nullptr;
};

// ---- Batch split ----------------------------------------------------------------------------------

// An LSTM on several threads synchronises them at every step, around products of a few thousand
// multiply-adds per thread. The sequences of a batch are independent, so a large batch is cut
// instead into parts of consecutive sequences, each taken through every step by one thread with
// single-threaded products. oneDNN's path makes each part its own problem, and its time-major
// buffers (XT, dst_layer and their gradients) are then part-major: part p's (T, count(p), width)
// block starts at row T * first(p). One part is the plain (T, N, width) layout, which the stepwise
// path keeps: its parts are rows of each step's block.
struct BatchSplit {
    std::int64_t batch = 0;
    std::int64_t parts = 1;

    std::int64_t first(std::int64_t p) const { return nng::split_point(batch, parts, p); }
    std::int64_t count(std::int64_t p) const { return first(p + 1) - first(p); }
};
// At most kMaxParts parts of at least kLeastPartBatch sequences, one per thread.
inline constexpr std::int64_t kMaxParts = 8;
inline constexpr std::int64_t kLeastPartBatch = 16;
BatchSplit batch_split(std::int64_t batch, int threads);

// ---- Sequence helpers (sequence.cpp) ------------------------------------------------------------

// dst (T, N, F) in processing order from src (N, T, F): dst[k][n] = src[n][t(k)] * scale[n], where
// t(k) = T-1-k when `reverse`, and scale (N, F) is optional.
void to_time_major(const float* src, float* dst, std::int64_t batch, std::int64_t steps, std::int64_t width,
                   bool reverse, const float* scale);
// The inverse: dst (N, T, F) from src (T, N, F), dst[n][t(k)] = src[k][n] * scale[n].
void to_batch_major(const float* src, float* dst, std::int64_t batch, std::int64_t steps, std::int64_t width,
                    bool reverse, const float* scale);
// The same for the part-major layout of a split batch, part by part.
void to_time_major(const float* src, float* dst, const BatchSplit& split, std::int64_t steps, std::int64_t width,
                   bool reverse, const float* scale);
void to_batch_major(const float* src, float* dst, const BatchSplit& split, std::int64_t steps, std::int64_t width,
                    bool reverse, const float* scale);
// Keras's input dropout mask for one call: (N, F) of 0 and 1/(1-rate), the same for every step,
// drawn from `seed`.
void dropout_mask(float* mask, std::int64_t batch, std::int64_t features, float rate, std::uint64_t seed);
// x = 0, n elements, in parallel when large.
void fill_zero(float* x, std::int64_t n);
// a += b, n elements.
void add_to(float* a, const float* b, std::int64_t n);

// Carves `floats` floats of a declared buffer into 64-byte aligned arrays (nng::Carver): each
// part is where to store an array's pointer and how many elements it holds, of float or of any
// other trivially copyable type. Throws when they do not fit.
class Part {
public:
    template <class T>
    Part(T** where, std::int64_t count)
        : where_(where), count_(count), take_([](void* where, nng::Carver& carver, std::int64_t count) {
              *static_cast<T**>(where) = carver.take<T>(count);
          }) {}
    void take(nng::Carver& carver) const { take_(where_, carver, count_); }

private:
    void* where_;
    std::int64_t count_;
    void (*take_)(void* where, nng::Carver& carver, std::int64_t count);
};
void carve(float* memory, std::int64_t floats, std::initializer_list<Part> parts);
// The floats carve needs for arrays of these counts of floats; floats_for<T> gives an array of
// another type's count in floats.
std::int64_t carved_floats(std::initializer_list<std::int64_t> counts);
template <class T>
std::int64_t floats_for(std::int64_t count) {
    return nng::ceil_div(count * static_cast<std::int64_t>(sizeof(T)), static_cast<std::int64_t>(sizeof(float)));
}

// Copies of the weight gradients for work that `workers` threads share, each summing into its
// own: worker 0 sums into the gradients themselves, every other worker into its copy, and
// add_copies() then adds the copies in. Gradients absent from `grads` are neither copied nor added.
class GradientCopies {
public:
    // The floats of the copies, carved from the memory the constructor takes.
    static std::int64_t floats(const Sizes& s, int workers);
    GradientCopies(const Sizes& s, int workers, const ParamGrads& grads, float* memory);
    // What worker `w` sums into: grads, or its copy (the input gradient xt is left as in grads).
    ParamGrads of(int w) const;
    void add_copies() const;

private:
    std::int64_t kernel_, recurrent_, bias_;  // floats of each gradient
    int workers_;
    ParamGrads grads_;
    float* memory_;
};

// Scratch of the oneDNN path, one slice per part of the batch: zeros, weights and weight
// gradients in the layouts the primitives pick, and the time-major gradients of a part.
struct PartScratch {
    float* base = nullptr;
    std::int64_t floats_per_part = 0;

    float* part(std::int64_t p) const { return base + p * floats_per_part; }
};

// ---- Paths --------------------------------------------------------------------------------------

// oneDNN's lstm_forward / lstm_backward (fused.cpp). Forward with a workspace is forward_training
// and fills it (and yt, dst_layer (T, N, U), bf16 under mixed_bfloat16) for backward; without,
// forward_inference. A backward consumes the workspace: each one needs its own forward, with the
// same split. XT, yt and the input gradient are in the split's part-major layout.
//
// The workspace the op saves for `split`. Each part's slice is 64-byte aligned.
std::size_t fused_workspace_bytes(const Settings& settings, const Sizes& s, const BatchSplit& split);
// The floats of one part's scratch (PartScratch::floats_per_part): the most any part of `split`
// needs, in forward and, when training, backward. Asks oneDNN for the layouts it picks.
std::int64_t fused_part_floats(const Settings& settings, const Sizes& s, bool training, const BatchSplit& split);
void fused_forward(const Settings& settings, const Sizes& s, const BatchSplit& split, const Operands& in, void* yt,
                   void* workspace, std::size_t workspace_bytes, const PartScratch& scratch, const Results& out);
void fused_backward(const Settings& settings, const Sizes& s, const BatchSplit& split, const Operands& in,
                    const void* yt, const void* workspace, std::size_t workspace_bytes, const PartScratch& scratch,
                    float* gradient_copies, const float* final_h, const float* final_c, const OutputGrads& dy,
                    const ParamGrads& grads);

// Plain loops over the steps with oneDNN's products (stepwise.cpp): float32 training and
// inference, masks and other activations. Each state is kept for every step (training: backward
// reads them) or in the slots one step needs, which the steps reuse:
//   - hidden: (T+1, N, U), step 0 the zero initial state; else two (N, U), before and after a step;
//   - cell: the same, with every_step;
//   - activated cell: (T, N, U) with every_step, else one (N, U);
//   - gates: (T, N, 4U) with gates_every_step, else one step's (N, 4U).
// Training under mixed_bfloat16 saves every step's gates in bf16 (gates_bfloat16), stored past
// the caches, for backward; the step's product and cell work in one step's f32 gates, which stay
// in cache. Its h takes two slots unless the sequence is the output: backward reads the bf16 rows.
// A batch that projects step by step also needs the joint product's operands (joint_floats): the
// rows [x_k, h_k, 1] of a step for every sequence, and the stacked weights [W; U; b].
struct StepState {
    float* gates = nullptr;
    std::uint16_t* gates_bfloat16 = nullptr;  // (T, N, 4U) or null
    float* hidden = nullptr;
    float* cell = nullptr;
    float* cell_activation = nullptr;
    float* joint = nullptr;
    bool every_step = true;
    bool gates_every_step = true;
    bool hidden_every_step = true;
};
// A batch below kLeastPartBatch has every step's input projected at once: one product over every
// step costs less than T products of a few rows. A larger batch projects step by step, in one
// product with the recurrent one, z = [x_k, h_k, 1] [W; U; b], while the rows sit in cache.
inline bool projects_at_once(const Sizes& s) { return s.batch < kLeastPartBatch; }
// Inference keeps every step's gates when it projects them at once.
inline bool inference_gates_every_step(const Sizes& s) { return projects_at_once(s); }
// Whether a stepwise call reads its input in place (Operands::x) rather than from XT.
inline bool projects_from_input(const Sizes& s, bool training) { return !training && !projects_at_once(s); }
// Floats of StepState::joint (none for a batch that projects at once, or under mixed_bfloat16,
// whose rows and weights are StepsInBfloat16's).
std::int64_t joint_floats(const Sizes& s, bool bfloat16);
// The bf16 values StepsInBfloat16::weights takes for a call whose steps are split into `parts`.
std::int64_t bfloat16_weight_values(const Sizes& s, const BatchSplit& parts);
// `parts` splits the rows of every step among threads; the buffers keep the plain layout.
void stepwise_forward(const Settings& settings, const Sizes& s, const BatchSplit& parts, const Operands& in,
                      const StepState& state, const Results& out);
// Floats of the scratch stepwise_backward carves its gradients of the states and gates from, the
// sums of each of `threads` threads and, under mixed_bfloat16, every step's dz in bf16 and the
// weight gradients stacked.
std::int64_t stepwise_backward_floats(const Sizes& s, int threads, bool bfloat16);
void stepwise_backward(const Settings& settings, const Sizes& s, const BatchSplit& parts, int threads,
                       const Operands& in, const StepState& state, float* scratch, const OutputGrads& dy,
                       const ParamGrads& grads);

// ---- Timings (reported as plugin counters, nanoseconds summed over calls) -----------------------

enum class Phase {
    forward_input,     // dropout mask and the time-major input
    forward_weights,   // weight reorders to the primitive's layouts
    forward_compute,   // the LSTM primitive, or the stepwise loop
    forward_output,    // outputs from the time-major sequence
    backward_input,    // the time-major output gradient
    backward_weights,  // weight reorders and zeroing the gradients oneDNN accumulates into
    backward_compute,  // the LSTM backward primitive, or the stepwise loop and its matmuls
    backward_output,   // gradient write-back and the batch-major input gradient
    count
};
void record(Phase phase, std::chrono::steady_clock::duration elapsed);

// Times consecutive phases: lap(p) charges the time since the previous lap to p.
class Stopwatch {
public:
    void lap(Phase phase) {
        const auto now = std::chrono::steady_clock::now();
        record(phase, now - last_);
        last_ = now;
    }

private:
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// The oneDNN helper's counters followed by "lstm.<phase>_ns" and "lstm.forward_calls",
// "lstm.backward_calls", "lstm.stepwise_calls".
std::int32_t counters(nng_counter* out, std::int32_t capacity);
void count_call(bool backward, bool stepwise);

const nng_op_def* lstm_op();

}  // namespace nngraph_lstm
