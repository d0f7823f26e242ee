// nngraph plugin SDK: the one header an operator plugin includes.
//
// It is header-only C++ over the C ABI of plugin.h. An op is a class:
//
//   struct Swish {
//       static constexpr const char* kName = "Swish";
//       static constexpr const char* kDoc = "x * sigmoid(beta * x)";
//       static constexpr int kMinInputs = 1, kMaxInputs = 1;
//       static constexpr nng_attr_spec kAttributes[] = {nng::float_attr("beta", "1.0", "slope")};
//       // optional: Keras's names of the inputs, one per input (nullptr: unnamed)
//       static constexpr std::array<const char*, 1> kInputNames{"inputs"};
//       explicit Swish(const nng::Attrs& attrs);    // parse once into typed members; throw nng::OpError
//       void infer(nng::InferContext& ctx) const;    // output shapes, weights, buffers
//       void forward(nng::Exec& exec);
//       void backward(nng::Exec& exec);              // optional: without it the op cannot be trained through
//   };
//   NNG_PLUGIN("swish", "1.0.0", nng::op<Swish>())
//
// Scratch and saved memory: infer declares each buffer by name, element type, count and lifetime
// and gets a typed handle; forward and backward fetch the memory by handle from the host's planned
// arena:
//
//   nng::Buffer<float> row_sums_;                                  // a member of the op
//   void infer(nng::InferContext& ctx) {                           // not const: it keeps handles
//       row_sums_ = ctx.buffer<float>("row sums", rows, nng::Lifetime::PerCall);
//   }
//   void forward(nng::Exec& exec) { float* sums = exec.buffer(row_sums_); ... }
//
// A handle is the buffer's place in the op's declarations, so infer declares the same buffers in
// the same order every time (0 elements where a plan needs one not): then a handle from any infer
// is right in every plan (training and inference, every batch size). The host checks the names.
//
// Exceptions thrown by op code never cross the boundary: the adapter turns them into a status and
// a message. Throw nng::OpError with an attribute name to have the host point at that attribute.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "nngraph/arithmetic.hpp"
#include "nngraph/parallel.hpp"
#include "nngraph/plugin.h"
#include "nngraph/random.hpp"
#include "nngraph/sequence_shard.hpp"

namespace nng {

inline constexpr std::int64_t kDynamic = -1;
using Dims = std::vector<std::int64_t>;

// An error in an op, optionally about one attribute.
class OpError : public std::runtime_error {
public:
    explicit OpError(const std::string& message, std::string attribute = {})
        : std::runtime_error(message), attribute_(std::move(attribute)) {}
    const std::string& attribute() const { return attribute_; }

private:
    std::string attribute_;
};

// Input values the op cannot take (an id outside [0, input_dim)): the host reports bad input data.
class BadInputError : public OpError {
public:
    using OpError::OpError;
};

// ---- Shapes --------------------------------------------------------------------------------------

inline nng_shape to_shape(const Dims& dims) {
    if (dims.size() > NNG_MAX_RANK) throw OpError("rank " + std::to_string(dims.size()) + " exceeds the maximum of 8");
    nng_shape s{};
    s.rank = static_cast<std::int32_t>(dims.size());
    for (std::size_t i = 0; i < dims.size(); ++i) s.dims[i] = dims[i];
    return s;
}
inline Dims to_dims(const nng_shape& s) { return Dims(s.dims, s.dims + s.rank); }

// Keras's spelling, for messages: (None, 200, 32).
inline std::string dims_string(const Dims& dims) {
    std::string out = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i) out += ", ";
        out += dims[i] < 0 ? std::string("None") : std::to_string(dims[i]);
    }
    if (dims.size() == 1) out += ",";
    return out + ")";
}
inline std::string dims_string(const nng_shape& s) { return dims_string(to_dims(s)); }

// The SDK is header-only and plugins do not link the engine, so it has its own checked multiply
// (the engine's is checked_byte_count): a wrapped count would size a buffer smaller than its use.
inline bool multiply_overflows(std::int64_t a, std::int64_t b, std::int64_t& result) {
    return __builtin_mul_overflow(a, b, &result);
}

// The element count of dims[begin, end); throws OpError naming the dims when it overflows.
inline std::int64_t product(const Dims& dims, std::size_t begin = 0, std::size_t end = SIZE_MAX) {
    std::int64_t n = 1;
    for (std::size_t i = begin; i < dims.size() && i < end; ++i) {
        if (multiply_overflows(n, dims[i], n))
            throw OpError("the element count of shape " + dims_string(dims) + " overflows 64 bits");
    }
    return n;
}

// ---- Attribute schema (constexpr builders) -------------------------------------------------------

constexpr nng_attr_spec make_attr(const char* name, nng_attr_type type, const char* default_value, const char* doc,
                                  std::uint32_t flags = 0, const char* choices = nullptr) {
    return nng_attr_spec{sizeof(nng_attr_spec), name, type, flags, default_value, choices, doc};
}
constexpr nng_attr_spec int_attr(const char* name, const char* default_value, const char* doc) {
    return make_attr(name, NNG_ATTR_INT, default_value, doc);
}
constexpr nng_attr_spec float_attr(const char* name, const char* default_value, const char* doc) {
    return make_attr(name, NNG_ATTR_FLOAT, default_value, doc);
}
constexpr nng_attr_spec bool_attr(const char* name, const char* default_value, const char* doc) {
    return make_attr(name, NNG_ATTR_BOOL, default_value, doc);
}
constexpr nng_attr_spec string_attr(const char* name, const char* default_value, const char* choices, const char* doc) {
    return make_attr(name, NNG_ATTR_STRING, default_value, doc, 0, choices);
}
constexpr nng_attr_spec ints_attr(const char* name, const char* default_value, const char* doc) {
    return make_attr(name, NNG_ATTR_INTS, default_value, doc);
}
constexpr nng_attr_spec floats_attr(const char* name, const char* default_value, const char* doc) {
    return make_attr(name, NNG_ATTR_FLOATS, default_value, doc);
}
constexpr nng_attr_spec required(nng_attr_spec spec) {
    spec.flags |= NNG_ATTR_REQUIRED;
    spec.default_value = nullptr;
    return spec;
}
constexpr nng_attr_spec nullable(nng_attr_spec spec) {
    spec.flags |= NNG_ATTR_NULLABLE;
    return spec;
}

// ---- Attribute values (read once, in the op's constructor) --------------------------------------

class Attrs {
public:
    explicit Attrs(const nng_attrs* attrs) : attrs_(attrs) {}

    bool is_null(std::string_view name) const { return find(name).is_null != 0; }
    std::int64_t get_int(std::string_view name) const { return typed(name, NNG_ATTR_INT).int_value; }
    double get_float(std::string_view name) const { return typed(name, NNG_ATTR_FLOAT).float_value; }
    bool get_bool(std::string_view name) const { return typed(name, NNG_ATTR_BOOL).int_value != 0; }
    std::string get_string(std::string_view name) const { return typed(name, NNG_ATTR_STRING).string; }
    std::vector<std::int64_t> get_ints(std::string_view name) const {
        const nng_attr_value& v = typed(name, NNG_ATTR_INTS);
        return {v.ints, v.ints + v.count};
    }
    std::vector<double> get_floats(std::string_view name) const {
        const nng_attr_value& v = typed(name, NNG_ATTR_FLOATS);
        return {v.floats, v.floats + v.count};
    }

private:
    const nng_attr_value& find(std::string_view name) const {
        for (std::int32_t i = 0; i < attrs_->count; ++i) {
            if (name == attrs_->specs[i].name) return attrs_->values[i];
        }
        throw OpError("the op reads attribute '" + std::string(name) + "', which its schema does not declare");
    }
    const nng_attr_value& typed(std::string_view name, nng_attr_type type) const {
        const nng_attr_value& v = find(name);
        if (v.is_null) throw OpError("attribute '" + std::string(name) + "' is null here", std::string(name));
        if (v.type != type)
            throw OpError("attribute '" + std::string(name) + "' read with the wrong type", std::string(name));
        return v;
    }
    const nng_attrs* attrs_;
};

// Validation helpers for constructors: each throws an OpError naming the attribute.
inline void check_attr(bool ok, const char* attribute, const std::string& expected) {
    if (!ok) throw OpError("attribute '" + std::string(attribute) + "': expected " + expected, attribute);
}

// ---- Keras initializers by name ------------------------------------------------------------------

struct Initializer {
    nng_initializer kind = NNG_INIT_ZEROS;
    double p0 = 0.0, p1 = 0.0;
};

// The names an *_initializer attribute accepts, for nng_attr_spec.choices.
inline constexpr const char* kInitializerChoices =
    "glorot_uniform|he_uniform|orthogonal|zeros|ones|random_uniform|random_normal|truncated_normal";

// Keras's initializer by name with Keras's default arguments (random_uniform is U(-0.05, 0.05),
// random_normal and truncated_normal have stddev 0.05).
inline Initializer keras_initializer(std::string_view name, const char* attribute) {
    if (name == "glorot_uniform") return {NNG_INIT_GLOROT_UNIFORM};
    if (name == "he_uniform") return {NNG_INIT_HE_UNIFORM};
    if (name == "orthogonal") return {NNG_INIT_ORTHOGONAL, 1.0};
    if (name == "zeros") return {NNG_INIT_ZEROS};
    if (name == "ones") return {NNG_INIT_ONES};
    if (name == "random_uniform") return {NNG_INIT_UNIFORM, -0.05, 0.05};
    if (name == "random_normal") return {NNG_INIT_NORMAL, 0.0, 0.05};
    if (name == "truncated_normal") return {NNG_INIT_TRUNCATED_NORMAL, 0.0, 0.05};
    throw OpError("unknown initializer '" + std::string(name) + "'", attribute);
}

// ---- Declared buffers ----------------------------------------------------------------------------

enum class Lifetime {
    PerCall = NNG_BUFFER_PER_CALL,      // scratch for one forward or backward call
    Saved = NNG_BUFFER_SAVED,           // written by a training forward, read by backward
    PerThread = NNG_BUFFER_PER_THREAD,  // scratch for one call, one slice per thread
    Backward = NNG_BUFFER_BACKWARD,     // scratch for the backward call only
    Session = NNG_BUFFER_SESSION        // kept across a decoding session's calls, batch-major
};

// The handle of a buffer an op declared, of elements T.
template <class T>
struct Buffer {
    int index = -1;
};

// ---- Work counts and precision -------------------------------------------------------------------

// The work of one call: floating-point operations (a multiply-add is 2) and bytes moved to and
// from memory. Counts of the parts of an op add up.
struct Work {
    std::int64_t flops = 0;
    std::int64_t bytes = 0;

    Work& operator+=(const Work& other) {
        flops += other.flops;
        bytes += other.bytes;
        return *this;
    }
    friend Work operator+(Work a, const Work& b) { return a += b; }
    friend Work operator*(std::int64_t times, Work w) { return {times * w.flops, times * w.bytes}; }
};

// `batch` f32 products (m, k) by (k, n): A and B read, C written once.
inline Work matmul_work(std::int64_t batch, std::int64_t m, std::int64_t k, std::int64_t n) {
    return {2 * batch * m * k * n, 4 * batch * (m * k + k * n + m * n)};
}
// An elementwise pass over `count` f32 values: `flops_each` operations on each, `arrays` arrays of
// `count` values read or written.
inline Work elementwise_work(std::int64_t count, std::int64_t flops_each, std::int64_t arrays) {
    return {count * flops_each, 4 * count * arrays};
}

// Keras's dtype policy of the node (nng_precision).
enum class Precision { Float32 = NNG_PRECISION_FLOAT32, MixedBfloat16 = NNG_PRECISION_MIXED_BFLOAT16 };

// ---- Shape inference -----------------------------------------------------------------------------

class InferContext {
public:
    explicit InferContext(nng_infer_io* io) : io_(io) {
        io_->num_outputs = 0;
        io_->num_weights = 0;
        io_->backward_needs = NNG_NEEDS_ALL;
        io_->num_buffers = 0;
    }

    bool training() const { return io_->training != 0; }
    int num_inputs() const { return io_->num_inputs; }
    nng_dtype input_dtype(int i) const { return input_info(i).dtype; }
    Dims input_dims(int i) const { return to_dims(input_info(i).shape); }
    bool input_has_mask(int i) const { return io_->input_has_mask && io_->input_has_mask[check_input(i)] != 0; }
    // The batch dimension of input 0: kDynamic at load time, concrete when planning.
    std::int64_t batch() const {
        const nng_shape& shape = input_info(0).shape;
        return shape.rank == 0 ? 1 : shape.dims[0];
    }
    // The threads each call of the plan runs with: the slices of a Lifetime::PerThread buffer.
    int num_threads() const { return std::max(1, io_->num_threads); }
    // Incremental decoding: the most positions a session reaches, 0 outside a decoding session.
    std::int64_t session_positions() const { return knows_session() ? io_->session_positions : 0; }
    // In a decoding session: whether input i brings new positions at every call (else it is the
    // same at every call of the session).
    bool input_advances(int i) const {
        return knows_session() && io_->input_advances && io_->input_advances[check_input(i)] != 0;
    }

    // Whether inputs i and j are one tensor of the graph (a node given [x, x]): the host then sums
    // their gradients, and the op may split the total between them as it likes. False for i != j
    // when the host does not say.
    bool same_input(int i, int j) const {
        check_input(i), check_input(j);
        if (i == j || !knows(offsetof(nng_infer_io, input_sources) + sizeof(io_->input_sources)) || !io_->input_sources)
            return i == j;
        return io_->input_sources[i] == io_->input_sources[j];
    }

    // Adds an output; returns its index.
    int add_output(nng_dtype dtype, const Dims& dims) {
        if (io_->num_outputs >= NNG_MAX_OUTPUTS) throw OpError("too many outputs (at most 4)");
        nng_output_info& out = io_->outputs[io_->num_outputs];
        out = nng_output_info{};
        out.tensor = {dtype, to_shape(dims)};
        out.role = NNG_OUTPUT_VISIBLE;
        out.mask_rule = NNG_MASK_NONE;
        return io_->num_outputs++;
    }
    // Adds the hidden pre-activation twin of a sigmoid or softmax output (see nng_output_role).
    int add_logits_output(int of_output, nng_output_role role) {
        const int index =
            add_output(io_->outputs[of_output].tensor.dtype, to_dims(io_->outputs[of_output].tensor.shape));
        io_->outputs[index].role = role;
        io_->outputs[index].logits_of = of_output;
        return index;
    }
    void pass_mask(int output, int from_input) {
        io_->outputs[output].mask_rule = NNG_MASK_FROM_INPUT;
        io_->outputs[output].mask_source = from_input;
    }
    void compute_mask(int output, const Dims& mask_dims) {
        io_->outputs[output].mask_rule = NNG_MASK_COMPUTED;
        io_->outputs[output].mask_shape = to_shape(mask_dims);
    }
    int add_weight(const char* name, const Dims& dims, const Initializer& init, bool trainable = true) {
        return add_weight(name, dims, init.kind, init.p0, init.p1, trainable);
    }
    int add_weight(const char* name, const Dims& dims, nng_initializer init, double p0 = 0.0, double p1 = 0.0,
                   bool trainable = true) {
        if (io_->num_weights >= NNG_MAX_WEIGHTS) throw OpError("too many weights (at most 16)");
        nng_weight_spec& w = io_->weights[io_->num_weights];
        w = nng_weight_spec{};
        std::strncpy(w.name, name, NNG_NAME_CAPACITY - 1);
        w.shape = to_shape(dims);
        w.initializer = init;
        w.params[0] = p0;
        w.params[1] = p1;
        w.trainable = trainable ? 1 : 0;
        return io_->num_weights++;
    }
    // Declares `count` elements of T (per thread for Lifetime::PerThread) under `name`, unique
    // within the op. A negative count (from the dynamic batch at load time) declares none.
    template <class T>
    Buffer<T> buffer(const char* name, std::int64_t count, Lifetime lifetime) {
        if (io_->num_buffers >= NNG_MAX_BUFFERS) throw OpError("too many buffers (at most 16)");
        for (int i = 0; i < io_->num_buffers; ++i) {
            if (std::strncmp(io_->buffers[i].name, name, NNG_NAME_CAPACITY) == 0) {
                throw OpError("buffer '" + std::string(name) + "' declared twice");
            }
        }
        nng_buffer_spec& spec = io_->buffers[io_->num_buffers];
        spec = nng_buffer_spec{};
        std::strncpy(spec.name, name, NNG_NAME_CAPACITY - 1);
        spec.lifetime = static_cast<nng_buffer_lifetime>(lifetime);
        std::int64_t bytes = 0;
        if (multiply_overflows(std::max<std::int64_t>(count, 0), static_cast<std::int64_t>(sizeof(T)), bytes)) {
            throw OpError("buffer '" + std::string(name) + "' of " + std::to_string(count) + " elements of " +
                          std::to_string(sizeof(T)) + " bytes overflows 64 bits");
        }
        spec.bytes = static_cast<std::uint64_t>(bytes);
        return Buffer<T>{io_->num_buffers++};
    }
    void set_backward_needs(std::uint32_t bits) { io_->backward_needs = bits; }

    // The node's precision policy; Float32 from a host that predates the field.
    Precision precision() const {
        return knows(offsetof(nng_infer_io, precision) + sizeof(io_->precision)) &&
                       io_->precision == NNG_PRECISION_MIXED_BFLOAT16
                   ? Precision::MixedBfloat16
                   : Precision::Float32;
    }
    // The work of one forward and one backward call at the shapes being inferred; nothing is
    // counted at load time, where the batch is not known.
    // Whether this inference counts work: compute the counts under `if (ctx.counting_work())`, as at
    // load time the sizes are not yet checked and their products may overflow.
    bool counting_work() const {
        const bool batch_unknown =
            io_->num_inputs > 0 && io_->inputs[0].shape.rank > 0 && io_->inputs[0].shape.dims[0] < 0;
        return !batch_unknown && knows(offsetof(nng_infer_io, backward_bytes) + sizeof(io_->backward_bytes));
    }
    void count_work(const Work& forward, const Work& backward = {}) {
        if (!counting_work()) return;
        io_->forward_flops = std::max<std::int64_t>(forward.flops, 0);
        io_->forward_bytes = std::max<std::int64_t>(forward.bytes, 0);
        io_->backward_flops = std::max<std::int64_t>(backward.flops, 0);
        io_->backward_bytes = std::max<std::int64_t>(backward.bytes, 0);
    }
    // Output 0 is input `input`, unchanged, when not training: inference then shares the input's
    // buffer and skips forward.
    void identity_in_inference(int input) { io_->inference_identity = input; }
    // How the op runs on one rank's share of the steps (nng_sequence_role); ops that do not say
    // are refused by a sequence-parallel model. `layout` is the split a SPREADS op needs.
    void set_sequence_role(nng_sequence_role role, nng_shard_layout layout = NNG_SHARD_CONTIGUOUS) {
        if (!knows(offsetof(nng_infer_io, sequence_layout) + sizeof(io_->sequence_layout))) return;
        io_->sequence_role = role;
        io_->sequence_layout = layout;
    }

    // What running an inference batch in slices does to the op (nng_batch_slicing); ops that do
    // not say keep the whole batch together.
    void set_batch_slicing(nng_batch_slicing slicing) {
        if (!knows(offsetof(nng_infer_io, batch_slicing) + sizeof(io_->batch_slicing))) return;
        io_->batch_slicing = slicing;
    }
    // The op's backward writes the whole gradient of a tensor given as several inputs (same_input)
    // into the first such input's slot when the host passes the others absent
    // (nng_infer_io.sums_repeated_gradients); the host then skips its own sum and the slots' memory.
    void sum_repeated_gradients() {
        if (!knows(offsetof(nng_infer_io, sums_repeated_gradients) + sizeof(io_->sums_repeated_gradients))) return;
        io_->sums_repeated_gradients = 1;
    }
    // For an op whose products against its weights take `rows_per_sample` rows from each sample:
    // a slice of a few samples still brings its products enough rows, and reads the weights
    // once for many rows, when a sample brings dozens.
    void set_batch_slicing_for_rows(std::int64_t rows_per_sample) {
        constexpr std::int64_t kRowsForFullSpeed = 64;
        set_batch_slicing(rows_per_sample >= kRowsForFullSpeed ? NNG_SLICING_FREE : NNG_SLICING_SLOWER);
    }

    // Throws "<what>: <shape a> and <shape b>": the message shape inference errors share.
    [[noreturn]] static void shape_mismatch(const std::string& what, const Dims& a, const Dims& b) {
        throw OpError(what + ": " + dims_string(a) + " and " + dims_string(b));
    }
    void expect_rank(int input, std::size_t min_rank, std::size_t max_rank, const char* what) const {
        const Dims d = input_dims(input);
        if (d.size() < min_rank || d.size() > max_rank) {
            throw OpError("input " + std::to_string(input) + " has shape " + dims_string(d) + "; expected " + what);
        }
    }
    void expect_dtype(int input, nng_dtype dtype, const char* what) const {
        if (input_dtype(input) != dtype) throw OpError("input " + std::to_string(input) + ": expected " + what);
    }

private:
    bool knows(std::size_t end_of_field) const { return io_->struct_size >= end_of_field; }
    int check_input(int i) const {
        if (i < 0 || i >= io_->num_inputs) throw OpError("input index " + std::to_string(i) + " out of range");
        return i;
    }
    const nng_tensor_info& input_info(int i) const { return io_->inputs[check_input(i)]; }
    bool knows_session() const {
        return io_->struct_size >= offsetof(nng_infer_io, input_advances) + sizeof(io_->input_advances);
    }
    nng_infer_io* io_;
};

// ---- Execution -----------------------------------------------------------------------------------

// A non-owning view of one tensor of a call.
class TensorRef {
public:
    TensorRef() = default;
    explicit TensorRef(const nng_tensor* t) : t_(t) {}

    bool present() const { return t_ && t_->data; }
    explicit operator bool() const { return present(); }
    nng_dtype dtype() const { return t_->dtype; }
    int rank() const { return t_->shape.rank; }
    std::int64_t dim(int axis) const { return t_->shape.dims[axis < 0 ? axis + rank() : axis]; }
    Dims dims() const { return to_dims(t_->shape); }
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank(); ++i) n *= t_->shape.dims[i];
        return n;
    }
    std::size_t nbytes() const {
        return static_cast<std::size_t>(numel()) * (dtype() == NNG_I64 ? 8 : dtype() == NNG_U8 ? 1 : 4);
    }
    void* raw() const { return t_->data; }

    template <class T>
    T* data() const {
        if (dtype() != dtype_code<T>()) throw OpError("tensor read with the wrong element type");
        return static_cast<T*>(t_->data);
    }
    float* f32() const { return data<float>(); }
    std::uint8_t* u8() const { return data<std::uint8_t>(); }

private:
    template <class T>
    static constexpr nng_dtype dtype_code() {
        if constexpr (std::is_same_v<std::remove_const_t<T>, float>)
            return NNG_F32;
        else if constexpr (std::is_same_v<std::remove_const_t<T>, std::int32_t>)
            return NNG_I32;
        else if constexpr (std::is_same_v<std::remove_const_t<T>, std::int64_t>)
            return NNG_I64;
        else {
            static_assert(std::is_same_v<std::remove_const_t<T>, std::uint8_t>, "unsupported element type");
            return NNG_U8;
        }
    }
    const nng_tensor* t_ = nullptr;
};

// A transfer in flight (Comm::isend, Comm::irecv). Its buffer stays untouched until wait() or a
// test() that returns true; a request dropped unfinished is waited for, so the host never writes a
// buffer that is gone.
class CommRequest {
public:
    CommRequest() = default;
    CommRequest(const nng_comm* comm, nng_comm_request* request) : comm_(comm), request_(request) {}
    CommRequest(CommRequest&& other) noexcept : comm_(other.comm_), request_(std::exchange(other.request_, nullptr)) {}
    CommRequest& operator=(CommRequest&& other) noexcept {
        if (this != &other) {
            finish_quietly();
            comm_ = other.comm_;
            request_ = std::exchange(other.request_, nullptr);
        }
        return *this;
    }
    ~CommRequest() { finish_quietly(); }

    bool pending() const { return request_ != nullptr; }
    void wait() {
        if (!request_) return;
        nng_error error{sizeof(nng_error), {}, {}};
        const nng_status status = comm_->wait(comm_->self, std::exchange(request_, nullptr), &error);
        if (status != NNG_OK) throw OpError(error.message);
    }
    // Whether it is done, without blocking (a done request ends here).
    bool test() {
        if (!request_) return true;
        nng_error error{sizeof(nng_error), {}, {}};
        std::int32_t done = 0;
        if (comm_->test(comm_->self, request_, &done, &error) != NNG_OK) throw OpError(error.message);
        if (done) request_ = nullptr;
        return done != 0;
    }

private:
    void finish_quietly() noexcept {
        if (!request_) return;
        nng_error error{sizeof(nng_error), {}, {}};
        comm_->wait(comm_->self, std::exchange(request_, nullptr), &error);
    }
    const nng_comm* comm_ = nullptr;
    nng_comm_request* request_ = nullptr;
};

// The job's processes (nng_comm): ranks 0..size()-1 under mpirun, one otherwise. Call it from the
// thread running forward or backward, never inside a parallel region; every rank makes the same
// allreduce calls in the same order. Failures throw OpError. Elements are sent as raw bytes.
class Comm {
public:
    explicit Comm(const nng_comm* table) : table_(table) {}

    // False with a host older than nng_context.comm: then the job is this process alone and only
    // rank(), size() and allreduce_sum work.
    bool available() const { return table_ != nullptr; }
    int rank() const { return table_ ? table_->rank(table_->self) : 0; }
    int size() const { return table_ ? table_->size(table_->self) : 1; }

    // Any contiguous range of trivially copyable elements: a std::vector, a std::span, an array.
    template <std::ranges::contiguous_range R>
    [[nodiscard]] CommRequest isend(R&& data, int peer, int tag) const {
        nng_comm_request* request = nullptr;
        call([&](nng_error* e) {
            return table()->isend(table_->self, std::ranges::data(data), bytes_of(data), peer, tag, &request, e);
        });
        return CommRequest(table_, request);
    }
    template <std::ranges::contiguous_range R>
    [[nodiscard]] CommRequest irecv(R&& data, int peer, int tag) const {
        nng_comm_request* request = nullptr;
        call([&](nng_error* e) {
            return table()->irecv(table_->self, std::ranges::data(data), bytes_of(data), peer, tag, &request, e);
        });
        return CommRequest(table_, request);
    }
    // Sends `out` to `to` while receiving `in` from `from`: one step of a ring.
    template <std::ranges::contiguous_range Out, std::ranges::contiguous_range In>
    void sendrecv(const Out& out, int to, In&& in, int from, int tag) const {
        call([&](nng_error* e) {
            return table()->sendrecv(table_->self, std::ranges::data(out), bytes_of(out), to, std::ranges::data(in),
                                     bytes_of(in), from, tag, e);
        });
    }
    // In place: every rank ends with the element-wise sum over all ranks.
    void allreduce_sum(std::span<float> values) const {
        if (!table_) return;
        call([&](nng_error* e) { return table_->allreduce_sum_f32(table_->self, values.data(), values.size(), e); });
    }

private:
    template <class R>
    static std::uint64_t bytes_of(const R& data) {
        using T = std::ranges::range_value_t<R>;
        static_assert(std::is_trivially_copyable_v<T>, "only trivially copyable elements travel as bytes");
        return static_cast<std::uint64_t>(std::ranges::size(data)) * sizeof(T);
    }
    const nng_comm* table() const {
        if (!table_) throw OpError("this host offers no communicator (its nng_context has no comm)");
        return table_;
    }
    template <class F>
    static void call(F&& body) {
        nng_error error{sizeof(nng_error), {}, {}};
        if (body(&error) != NNG_OK) throw OpError(error.message);
    }
    const nng_comm* table_;
};

class Exec {
public:
    Exec(const nng_context* ctx, const nng_exec_args* args) : ctx_(ctx), args_(args) {}

    bool training() const { return ctx_->training != 0; }
    // Whether random ops (dropout) draw: a training step that is not asked to be deterministic.
    bool random_active() const {
        const bool knows_field =
            ctx_->struct_size >= offsetof(nng_context, deterministic) + sizeof(ctx_->deterministic);
        return training() && !(knows_field && ctx_->deterministic);
    }
    std::uint64_t seed() const { return ctx_->seed; }
    // The first batch row's position in the global batch (data-parallel training); 0 otherwise.
    std::int64_t batch_offset() const {
        const bool knows_field = ctx_->struct_size >= offsetof(nng_context, batch_offset) + sizeof(ctx_->batch_offset);
        return knows_field ? ctx_->batch_offset : 0;
    }
    int num_threads() const { return ctx_->num_threads; }
    // The global position of the call's first step (a decoding session's later calls); else 0.
    std::int64_t position_offset() const {
        const bool knows_field =
            ctx_->struct_size >= offsetof(nng_context, position_offset) + sizeof(ctx_->position_offset);
        return knows_field ? ctx_->position_offset : 0;
    }
    // The job's processes, for ops that exchange data across ranks.
    Comm comm() const {
        const bool knows_field = ctx_->struct_size >= offsetof(nng_context, comm) + sizeof(ctx_->comm);
        return Comm(knows_field ? ctx_->comm : nullptr);
    }
    // This call's share of a sequence-parallel job's steps; nullopt when it holds whole sequences.
    std::optional<nngraph::SequenceShard> sequence_shard() const {
        const bool knows_field =
            ctx_->struct_size >= offsetof(nng_context, sequence_shard) + sizeof(ctx_->sequence_shard);
        if (!knows_field || !ctx_->sequence_shard) return std::nullopt;
        return nngraph::SequenceShard(*ctx_->sequence_shard);
    }
    // Threads worth using for `work` units (elements, ids, multiply-adds): one below
    // `serial_below`, where waking the others costs more than they save; else num_threads().
    int threads_for(std::int64_t work, std::int64_t serial_below) const {
        return work < serial_below ? 1 : std::max(1, num_threads());
    }

    int num_inputs() const { return args_->num_inputs; }
    int num_outputs() const { return args_->num_outputs; }
    TensorRef input(int i) const { return TensorRef(&args_->inputs[i]); }
    TensorRef input_mask(int i) const { return args_->input_masks ? TensorRef(&args_->input_masks[i]) : TensorRef(); }
    TensorRef output(int j) const { return TensorRef(&args_->outputs[j]); }
    TensorRef output_mask(int j) const {
        return args_->output_masks ? TensorRef(&args_->output_masks[j]) : TensorRef();
    }
    TensorRef weight(int k) const { return TensorRef(&args_->weights[k]); }
    TensorRef grad_output(int j) const {
        return args_->grad_outputs ? TensorRef(&args_->grad_outputs[j]) : TensorRef();
    }
    TensorRef grad_input(int i) const { return args_->grad_inputs ? TensorRef(&args_->grad_inputs[i]) : TensorRef(); }
    TensorRef grad_weight(int k) const {
        return args_->grad_weights ? TensorRef(&args_->grad_weights[k]) : TensorRef();
    }

    // A declared buffer (slice 0 of a per-thread one); null when declared with no elements.
    template <class T>
    T* buffer(Buffer<T> b) const {
        return static_cast<T*>(slot(b.index).data);
    }
    // Slice `thread` of a Lifetime::PerThread buffer, 0 <= thread < num_threads().
    template <class T>
    T* buffer(Buffer<T> b, int thread) const {
        const nng_buffer& s = slot(b.index);
        if (thread < 0 || thread >= s.slices) {
            throw OpError("thread " + std::to_string(thread) + " asks for a slice of a buffer that has " +
                          std::to_string(s.slices));
        }
        return s.data ? reinterpret_cast<T*>(static_cast<std::byte*>(s.data) +
                                             s.slice_stride * static_cast<std::size_t>(thread))
                      : nullptr;
    }
    // Elements of T in the buffer (in one slice of a per-thread one).
    template <class T>
    std::int64_t count(Buffer<T> b) const {
        return static_cast<std::int64_t>(slot(b.index).bytes / sizeof(T));
    }

private:
    const nng_buffer& slot(int index) const {
        if (index < 0 || index >= args_->num_buffers) {
            throw OpError("buffer handle " + std::to_string(index) + " is not one of the " +
                          std::to_string(args_->num_buffers) + " buffers declared in infer");
        }
        return args_->buffers[index];
    }
    const nng_context* ctx_;
    const nng_exec_args* args_;
};

// Where each input's gradient goes in the backward of an op that sums a tensor's gradients over
// the inputs it is given as (InferContext::sum_repeated_gradients): the input's own slot, or, when
// the host leaves a repeated input's slot absent, the slot of the first input that is that tensor.
class GradientSlots {
public:
    GradientSlots() = default;
    // Which inputs repeat which, as infer is told (InferContext::same_input).
    explicit GradientSlots(const InferContext& ctx) {
        for (int i = 0; i < ctx.num_inputs(); ++i) {
            int first = 0;
            while (!ctx.same_input(first, i)) ++first;
            first_same_.push_back(first);
        }
    }
    // The slot input i's gradient goes to in this call; -1 when none is wanted.
    int of(const Exec& exec, int i) const {
        if (exec.grad_input(i)) return i;
        const int first = i < static_cast<int>(first_same_.size()) ? first_same_[static_cast<std::size_t>(i)] : i;
        return first != i && exec.grad_input(first) ? first : -1;
    }
    // That slot's tensor (absent when none is wanted).
    TensorRef tensor(const Exec& exec, int i) const {
        const int slot = of(exec, i);
        return slot < 0 ? TensorRef() : exec.grad_input(slot);
    }

private:
    std::vector<int> first_same_;
};

// ---- Adapter from an op class to the C table ---------------------------------------------------

namespace detail {

inline void write_error(nng_error* error, const char* message, const std::string& attribute) {
    if (!error) return;
    std::strncpy(error->message, message, NNG_MESSAGE_CAPACITY - 1);
    error->message[NNG_MESSAGE_CAPACITY - 1] = '\0';
    std::strncpy(error->attribute, attribute.c_str(), NNG_NAME_CAPACITY - 1);
    error->attribute[NNG_NAME_CAPACITY - 1] = '\0';
}

template <class F>
nng_status guarded(nng_error* error, F&& body) noexcept {
    try {
        body();
        return NNG_OK;
    } catch (const BadInputError& e) {
        write_error(error, e.what(), e.attribute());
        return NNG_BAD_INPUT;
    } catch (const OpError& e) {
        write_error(error, e.what(), e.attribute());
    } catch (const std::exception& e) {
        write_error(error, e.what(), {});
    } catch (...) {
        write_error(error, "unknown exception", {});
    }
    return NNG_FAILED;
}

template <class Op>
concept HasBackward = requires(Op& op, Exec& exec) {
    op.backward(exec);
};

// An op names its inputs with `static constexpr std::array<const char*, kMaxInputs> kInputNames`.
template <class Op>
concept HasInputNames = requires {
    std::data(Op::kInputNames);
};

template <class Op>
constexpr const char* const* input_names() {
    if constexpr (HasInputNames<Op>) {
        static_assert(std::size(Op::kInputNames) == static_cast<std::size_t>(Op::kMaxInputs),
                      "kInputNames has one entry per input, kMaxInputs of them");
        return std::data(Op::kInputNames);
    } else {
        return nullptr;
    }
}

}  // namespace detail

template <class Op>
struct OpAdapter {
    static nng_status create(const nng_attrs* attrs, void** instance, nng_error* error) {
        return detail::guarded(error, [&] { *instance = new Op(Attrs(attrs)); });
    }
    static void destroy(void* instance) { delete static_cast<Op*>(instance); }
    static nng_status infer(void* instance, nng_infer_io* io, nng_error* error) {
        return detail::guarded(error, [&] {
            InferContext ctx(io);
            static_cast<Op*>(instance)->infer(ctx);
        });
    }
    static nng_status forward(void* instance, const nng_context* ctx, const nng_exec_args* args, nng_error* error) {
        return detail::guarded(error, [&] {
            Exec exec(ctx, args);
            static_cast<Op*>(instance)->forward(exec);
        });
    }
    static nng_status backward(void* instance, const nng_context* ctx, const nng_exec_args* args, nng_error* error) {
        if constexpr (detail::HasBackward<Op>) {
            return detail::guarded(error, [&] {
                Exec exec(ctx, args);
                static_cast<Op*>(instance)->backward(exec);
            });
        } else {
            detail::write_error(error, "this op has no backward", {});
            return NNG_FAILED;
        }
    }
};

// The C table of one op class.
template <class Op>
const nng_op_def* op() {
    static const nng_op_def def = {
        sizeof(nng_op_def),
        Op::kName,
        Op::kDoc,
        Op::kMinInputs,
        Op::kMaxInputs,
        static_cast<std::int32_t>(std::size(Op::kAttributes)),
        std::data(Op::kAttributes),
        &OpAdapter<Op>::create,
        &OpAdapter<Op>::destroy,
        &OpAdapter<Op>::infer,
        &OpAdapter<Op>::forward,
        detail::HasBackward<Op> ? &OpAdapter<Op>::backward : nullptr,
        detail::input_names<Op>(),
    };
    return &def;
}

// An op with no attributes declares `static constexpr std::array<nng_attr_spec, 0> kAttributes{};`
// or uses this.
inline constexpr std::array<nng_attr_spec, 0> kNoAttributes{};

}  // namespace nng

// Defines the plugin's one exported entry point. The optional counters function is set with
// NNG_PLUGIN_WITH_COUNTERS.
#define NNG_PLUGIN_WITH_COUNTERS(plugin_name, plugin_version, counters_fn, ...)           \
    extern "C" NNG_EXPORT const nng_plugin* nng_plugin_entry(uint32_t host_abi_version) { \
        (void)host_abi_version;                                                           \
        static const nng_op_def* const ops[] = {__VA_ARGS__};                             \
        static const nng_plugin plugin = {sizeof(nng_plugin),                             \
                                          NNG_ABI_VERSION,                                \
                                          plugin_name,                                    \
                                          plugin_version,                                 \
                                          static_cast<int32_t>(std::size(ops)),           \
                                          ops,                                            \
                                          counters_fn};                                   \
        return &plugin;                                                                   \
    }

#define NNG_PLUGIN(plugin_name, plugin_version, ...) \
    NNG_PLUGIN_WITH_COUNTERS(plugin_name, plugin_version, nullptr, __VA_ARGS__)
