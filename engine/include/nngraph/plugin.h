/*
 * nngraph operator plugin ABI (C).
 *
 * A plugin is a shared library that exports one function, `nng_plugin_entry`, returning a table of
 * operators. Everything that crosses the boundary is a plain C struct; every struct passed by
 * pointer begins with `struct_size`, and new fields are only ever appended, so a reader checks
 * `struct_size >= offsetof(field) + sizeof(field)` before touching a field it knows of.
 * The host refuses a plugin whose `abi_version` differs from NNG_ABI_VERSION, naming both.
 *
 * Ownership: the host owns every tensor buffer; a plugin owns its op instances (created by
 * `create`, freed by `destroy`). Errors are reported as a status plus a message written into a
 * host-provided `nng_error`; nothing throws or aborts across the boundary.
 *
 * C++ plugin authors include "nngraph/sdk.hpp", which wraps this header.
 */
#ifndef NNGRAPH_PLUGIN_H
#define NNGRAPH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NNG_ABI_VERSION 2u
#define NNG_MAX_RANK 8
#define NNG_MAX_OUTPUTS 4
#define NNG_MAX_WEIGHTS 16
#define NNG_MAX_BUFFERS 16
#define NNG_NAME_CAPACITY 64
#define NNG_MESSAGE_CAPACITY 1024

#if defined(_WIN32)
#define NNG_EXPORT __declspec(dllexport)
#else
#define NNG_EXPORT __attribute__((visibility("default")))
#endif

/* NNG_BAD_INPUT: the op's input values are outside what it accepts (an id beyond the vocabulary),
 * so the data given is at fault, not the run; a host treats any status but NNG_OK as a failure. */
typedef enum nng_status { NNG_OK = 0, NNG_FAILED = 1, NNG_BAD_INPUT = 2 } nng_status;

/* Element types. Codes match nngraph::DType. */
typedef enum nng_dtype { NNG_F32 = 1, NNG_I32 = 2, NNG_I64 = 3, NNG_U8 = 4 } nng_dtype;

/* A shape; dims[0] is -1 while the batch size is not yet known (load-time shape inference). */
typedef struct nng_shape {
    int32_t rank;
    int64_t dims[NNG_MAX_RANK];
} nng_shape;

/* A view of a contiguous row-major buffer owned by the host. `data` is NULL where a tensor is
 * absent: a missing mask, a gradient nobody needs, an output gradient that is zero. */
typedef struct nng_tensor {
    uint32_t struct_size;
    nng_dtype dtype;
    nng_shape shape;
    void* data;
} nng_tensor;

/* Where an op reports a failure. `attribute` names the attribute at fault, when one is, so that
 * the host can point at its line in the model file. */
typedef struct nng_error {
    uint32_t struct_size;
    char message[NNG_MESSAGE_CAPACITY];
    char attribute[NNG_NAME_CAPACITY];
} nng_error;

/* ---- Attributes: declared by the op, parsed and type-checked by the host ---------------------- */

typedef enum nng_attr_type {
    NNG_ATTR_INT = 1,
    NNG_ATTR_FLOAT = 2,
    NNG_ATTR_BOOL = 3,
    NNG_ATTR_STRING = 4,
    NNG_ATTR_INTS = 5,  /* a list of ints; a single int is a list of one; null items (Keras's None) read -1 */
    NNG_ATTR_FLOATS = 6 /* a list of numbers */
} nng_attr_type;

enum nng_attr_flags {
    NNG_ATTR_REQUIRED = 1u << 0, /* no default: the model file must give it */
    NNG_ATTR_NULLABLE = 1u << 1  /* `null` (Keras's None) is a valid value */
};

typedef struct nng_attr_spec {
    uint32_t struct_size;
    const char* name; /* Keras's argument name; nested maps use dots: "adaptive_span.ramp" */
    nng_attr_type type;
    uint32_t flags;            /* nng_attr_flags */
    const char* default_value; /* YAML text of the default ("0.5", "[1, 2]", "null"); NULL if required */
    const char* choices;       /* strings only: the allowed values separated by '|', or NULL */
    const char* doc;           /* one line for `nngraph plugins` and error messages */
} nng_attr_spec;

typedef struct nng_attr_value {
    nng_attr_type type;
    int32_t is_null;
    int64_t int_value;    /* INT, BOOL */
    double float_value;   /* FLOAT */
    const char* string;   /* STRING, NUL-terminated */
    const int64_t* ints;  /* INTS */
    const double* floats; /* FLOATS */
    int64_t count;        /* INTS, FLOATS */
} nng_attr_value;

/* Every attribute of the op's schema, in schema order, defaults filled in. Valid only during `create`. */
typedef struct nng_attrs {
    uint32_t struct_size;
    int32_t count;
    const nng_attr_spec* specs;
    const nng_attr_value* values;
} nng_attrs;

/* ---- Shape inference ----------------------------------------------------------------------- */

typedef enum nng_initializer {
    NNG_INIT_ZEROS = 1,
    NNG_INIT_ONES = 2,
    NNG_INIT_CONSTANT = 3,       /* params[0] */
    NNG_INIT_UNIFORM = 4,        /* params[0] = minval, params[1] = maxval */
    NNG_INIT_NORMAL = 5,         /* params[0] = mean, params[1] = stddev */
    NNG_INIT_GLOROT_UNIFORM = 6, /* Keras's fans: (in, out) of the last two axes times the rest */
    NNG_INIT_ORTHOGONAL = 7,     /* params[0] = gain; rows = prod(shape[:-1]), cols = shape[-1] */
    NNG_INIT_LSTM_BIAS = 8,      /* zeros, with params[0] (the unit count) forget-gate entries set to 1 */
    NNG_INIT_HE_UNIFORM = 9,
    NNG_INIT_TRUNCATED_NORMAL = 10 /* params[0] = mean, params[1] = stddev; redrawn beyond 2 stddev */
} nng_initializer;

typedef struct nng_weight_spec {
    char name[NNG_NAME_CAPACITY]; /* Keras's weight name: "kernel", "query.kernel" */
    nng_shape shape;              /* never has a dynamic dimension */
    nng_initializer initializer;
    double params[2];
    int32_t trainable;
} nng_weight_spec;

/* What an output is. A LOGITS output holds the pre-activation of output `logits_of`, whose
 * activation is sigmoid or softmax: a loss that follows may work from the logits (as Keras does),
 * which is both exact and stable. Users never see such outputs. */
typedef enum nng_output_role {
    NNG_OUTPUT_VISIBLE = 0,
    NNG_OUTPUT_SIGMOID_LOGITS = 1,
    NNG_OUTPUT_SOFTMAX_LOGITS = 2
} nng_output_role;

/* How an output's mask arises (Keras's compute_mask). */
typedef enum nng_mask_rule {
    NNG_MASK_NONE = 0,       /* no mask */
    NNG_MASK_FROM_INPUT = 1, /* the mask of input `mask_source` passes through unchanged */
    NNG_MASK_COMPUTED = 2    /* the op writes it in forward (shape (batch, steps), U8, 1 = keep) */
} nng_mask_rule;

typedef struct nng_tensor_info {
    nng_dtype dtype;
    nng_shape shape;
} nng_tensor_info;

typedef struct nng_output_info {
    nng_tensor_info tensor;
    nng_output_role role;
    int32_t logits_of; /* for LOGITS roles: the visible output they belong to */
    nng_mask_rule mask_rule;
    int32_t mask_source;  /* for NNG_MASK_FROM_INPUT */
    nng_shape mask_shape; /* for NNG_MASK_COMPUTED */
} nng_output_info;

/* How long a buffer an op declares is kept. The host places every declared buffer in its planned
 * arena by these lifetimes, so buffers of different calls share memory when they can. */
typedef enum nng_buffer_lifetime {
    NNG_BUFFER_PER_CALL = 1,   /* scratch for one forward or one backward call */
    NNG_BUFFER_SAVED = 2,      /* written by a training forward, read by the same op's backward */
    NNG_BUFFER_PER_THREAD = 3, /* scratch for one call, one slice per thread of the call */
    NNG_BUFFER_BACKWARD = 4,   /* scratch for the backward call only */
    /* Kept across the calls of one incremental-decoding session (a key/value cache), untouched by
     * the host between them; 0 bytes in other plans. Batch-major (the rows of the batch one after
     * another), so that the host can reorder the rows (beam search keeps the best hypotheses). */
    NNG_BUFFER_SESSION = 5
} nng_buffer_lifetime;

/* A buffer an op needs, declared in `infer`. An op declares the same buffers, by name and in the
 * same order, in every infer (0 bytes when a plan needs one not), so that index i names the same
 * buffer in every plan; the host checks the names against the load-time inference. */
typedef struct nng_buffer_spec {
    char name[NNG_NAME_CAPACITY];
    nng_buffer_lifetime lifetime;
    uint64_t bytes; /* PER_THREAD: the bytes of one slice */
} nng_buffer_spec;

/* Keras's dtype policies, as far as an op sees them (nng_infer_io.precision). */
typedef enum nng_precision {
    NNG_PRECISION_FLOAT32 = 0,       /* everything in float32 */
    NNG_PRECISION_MIXED_BFLOAT16 = 1 /* matmuls in bfloat16 with float32 accumulation; statistics in float32 */
} nng_precision;

/* Bits of nng_infer_io.backward_needs: which forward tensors backward reads. The executor keeps
 * exactly these alive until the op's backward has run. */
#define NNG_NEEDS_INPUT(i) (1u << (i))         /* inputs 0..15 */
#define NNG_NEEDS_OUTPUT(j) (1u << (16 + (j))) /* outputs 0..NNG_MAX_OUTPUTS-1 */
#define NNG_NEEDS_ALL 0xFFFFFFFFu

/* What an op does with one rank's share of the steps (nng_infer_io.sequence_role). */
typedef enum nng_sequence_role {
    /* It needs whole sequences (a recurrence, a window across steps): the host refuses to shard. */
    NNG_SEQUENCE_REFUSED = 0,
    /* Step by step: it runs unchanged on a share, and its outputs are shares too. An op that needs
     * a step's global position reads nng_context.sequence_shard. */
    NNG_SEQUENCE_POSITIONWISE = 1,
    /* It reduces over the steps and combines the ranks' partial results (through nng_context.comm):
     * its outputs hold whole samples, the same on every rank. */
    NNG_SEQUENCE_COMBINES = 2,
    /* It spreads every sequence over the ranks itself (ring attention): its presence asks the host
     * to run the model sequence-parallel; its outputs are shares. */
    NNG_SEQUENCE_SPREADS = 3
} nng_sequence_role;

/* What slicing the batch of an inference plan does to an op (nng_infer_io.batch_slicing). */
typedef enum nng_batch_slicing {
    /* Its samples meet (statistics over the batch), or it does not say: the host runs the whole
     * batch at once. */
    NNG_SLICING_REFUSED = 0,
    /* Each sample's outputs depend on that sample alone, and a sample costs the same in a batch of
     * any size. */
    NNG_SLICING_FREE = 1,
    /* Each sample's outputs depend on that sample alone, but the op is faster a sample on a larger
     * batch (its products take the batch as their rows, as a recurrence's steps do). The host
     * slices only when such ops hold a negligible share of the work. */
    NNG_SLICING_SLOWER = 2
} nng_batch_slicing;

/* Filled by the host (inputs) and the op (everything else). Called at load with dims[0] = -1,
 * and again whenever the executor plans a concrete batch size. Must not depend on anything but
 * the op's attributes and the input infos. */
typedef struct nng_infer_io {
    uint32_t struct_size;
    int32_t training; /* 1 when planning a training step (saved buffers are needed) */
    int32_t num_inputs;
    const nng_tensor_info* inputs;
    const int32_t* input_has_mask; /* per input: 1 if a mask arrives with it */

    int32_t num_outputs;
    nng_output_info outputs[NNG_MAX_OUTPUTS];

    int32_t num_weights;
    nng_weight_spec weights[NNG_MAX_WEIGHTS];

    uint32_t backward_needs; /* NNG_NEEDS_* bits; default NNG_NEEDS_ALL */

    /* The input that output 0 is, unchanged, when not training (Dropout), or -1 (the host's
     * default). An inference plan then gives output 0 that input's buffer and skips the call. */
    int32_t inference_identity;

    /* The threads every call of the plan runs with (nng_context.num_threads): the slices of a
     * PER_THREAD buffer. Set by the host; 1 at load-time inference. */
    int32_t num_threads;
    /* Scratch and saved buffers the op declares (see nng_buffer_spec), found in forward and
     * backward at the same index of nng_exec_args.buffers. */
    int32_t num_buffers;
    nng_buffer_spec buffers[NNG_MAX_BUFFERS];

    /* Incremental decoding: in the plan of a decoding session, the most positions a session
     * reaches, and per input 1 when it brings the next positions at each call (the decoder's side)
     * or 0 when it is the same at every call of the session (the encoder's side); the op then keeps
     * what later calls need in NNG_BUFFER_SESSION buffers. 0 and NULL in other plans. Hosts before
     * these fields pass a smaller struct_size. */
    int64_t session_positions;
    const int32_t* input_advances;
    /* Appended (check struct_size). The node's compute precision, set by the host from the model
     * file's dtype_policy or the node's dtype: a plan-time attribute the op may honour in its
     * matmuls. Variables, gradients and every tensor between ops stay NNG_F32. */
    int32_t precision; /* nng_precision */
    /* The work of one call at these shapes, filled by the op (0 when it does not count): the
     * floating-point operations (a multiply-add is 2) and the bytes it reads and writes in memory,
     * of one forward call and of one backward call. Rooflines and benchmarks read them. */
    int64_t forward_flops;
    int64_t forward_bytes;
    int64_t backward_flops;
    int64_t backward_bytes;
    /* Appended (check struct_size). How the op behaves when its inputs hold one rank's share of
     * every sample's steps (sequence parallelism, nng_sequence_shard), filled by the op. The host
     * refuses to shard a model through an op that leaves it NNG_SEQUENCE_REFUSED (the default, and
     * what every op before this field says). */
    int32_t sequence_role;   /* nng_sequence_role */
    int32_t sequence_layout; /* nng_shard_layout the op needs, for NNG_SEQUENCE_SPREADS */
    /* Appended (check struct_size). Per input, the lowest index of an input that is the same tensor
     * of the graph, its own index when none is: a node given [x, x] reads {0, 0}. The host sums
     * the gradients of such inputs (unless the op does: sums_repeated_gradients), so an op may
     * split their total between them as it likes.
     * NULL when the host does not say. */
    const int32_t* input_sources;
    /* Appended (check struct_size). Whether an inference plan may run the batch in slices, one
     * after another, so that a slice's tensors stay in cache from op to op (nng_batch_slicing),
     * filled by the op. The host slices only when every op allows it. */
    int32_t batch_slicing;
    /* Appended (check struct_size). Filled by the op: 1 when its backward can write the whole
     * gradient of a tensor it reads as several inputs (input_sources) into the first such input's
     * slot. The host then passes the later inputs' gradients absent (NULL data) and adds nothing;
     * an op that finds such a slot absent beside its first input's adds that input's share there.
     * 0, the default: every input has its own slot and the host sums them. */
    int32_t sums_repeated_gradients;
} nng_infer_io;

/* ---- Execution ------------------------------------------------------------------------------ */

/* A point-to-point transfer in flight, owned by the host until `wait` (or a `test` that reports
 * it done) ends it; its buffer must stay untouched until then. */
typedef struct nng_comm_request nng_comm_request;

/* The processes of the job (ranks 0..size-1 under mpirun; one process otherwise), as the host's
 * communicator offers them to ops that exchange data across ranks. Call it only from the thread that
 * runs forward or backward, never from inside a parallel region. Every rank makes the same
 * collective calls (allreduce) in the same order. Failures return NNG_FAILED with a message. */
typedef struct nng_comm {
    uint32_t struct_size;
    void* self; /* passed back as the first argument of every function */
    int32_t (*rank)(void* self);
    int32_t (*size)(void* self);
    /* Non-blocking: start sending or receiving `bytes` bytes to or from rank `peer` with `tag`
     * (0 <= tag < 32768); a receive matches the send of the same peer and tag, in order. */
    nng_status (*isend)(void* self, const void* data, uint64_t bytes, int32_t peer, int32_t tag,
                        nng_comm_request** request, nng_error* error);
    nng_status (*irecv)(void* self, void* data, uint64_t bytes, int32_t peer, int32_t tag, nng_comm_request** request,
                        nng_error* error);
    /* Blocks until the transfer is done and ends the request. */
    nng_status (*wait)(void* self, nng_comm_request* request, nng_error* error);
    /* Sets *done; a done request is ended, as by wait. */
    nng_status (*test)(void* self, nng_comm_request* request, int32_t* done, nng_error* error);
    /* Blocking: sends to `to` and receives from `from` at once (a ring step), both with `tag`. */
    nng_status (*sendrecv)(void* self, const void* send_data, uint64_t send_bytes, int32_t to, void* receive_data,
                           uint64_t receive_bytes, int32_t from, int32_t tag, nng_error* error);
    /* In place: every rank ends with the element-wise sum over all ranks. */
    nng_status (*allreduce_sum_f32)(void* self, float* values, uint64_t count, nng_error* error);
} nng_comm;

/* How the ranks of a sequence-parallel job split a sequence. */
typedef enum nng_shard_layout {
    /* The sequence in `parts` equal pieces; rank r holds piece r. */
    NNG_SHARD_CONTIGUOUS = 0,
    /* The sequence in 2*parts equal pieces; rank r holds pieces r and 2*parts-1-r, in that order, so
     * that under a causal mask every rank has the same amount of work. */
    NNG_SHARD_ZIGZAG = 1
} nng_shard_layout;

/* One rank's share of the steps axis in a sequence-parallel job: the call's inputs hold the local
 * steps (global_steps / parts of them) in the order the layout gives. */
typedef struct nng_sequence_shard {
    uint32_t struct_size;
    int32_t layout;       /* nng_shard_layout */
    int32_t parts;        /* ranks sharing every sequence: the communicator's size */
    int32_t part;         /* this rank's share, 0 <= part < parts */
    int64_t global_steps; /* the whole sequence; a multiple of parts (of 2*parts for ZIGZAG) */
} nng_sequence_shard;

typedef struct nng_context {
    uint32_t struct_size;
    int32_t training; /* forward: training mode (dropout active, fill saved buffers) */
    uint64_t seed;    /* differs per node and per step; the same seed gives the same result */
    int32_t num_threads;
    /* 1 when a training forward must be deterministic (random ops such as dropout act as in
     * inference) while still saving what backward needs: `nngraph grad`, gradient checks. */
    int32_t deterministic;
    /* The call's first batch row counted in the global batch that data-parallel ranks split
     * (0 in a single process), or the slice's first row in an inference batch run in slices:
     * random ops key their draws by it, so that a split batch draws what the whole batch would.
     * Hosts before this field pass a smaller struct_size. */
    int64_t batch_offset;
    /* The global position, along the steps axis, of the call's first step: in a decoding session
     * the positions earlier calls brought (0 at its first call), and 0 elsewhere. Position-dependent
     * ops (position embeddings, caches) key on it. Hosts before this field pass a smaller struct_size. */
    int64_t position_offset;
    /* The job's processes, for ops that exchange data across ranks (see nng_comm). Hosts before
     * this field pass a smaller struct_size. */
    const nng_comm* comm;
    /* Sequence parallelism: the call holds one rank's share of every sample's steps (see
     * nng_sequence_shard); NULL when it holds whole sequences. Hosts before this field pass a smaller
     * struct_size. */
    const struct nng_sequence_shard* sequence_shard;
} nng_context;

/* A declared buffer in one call: 64-byte aligned; `data` is NULL when it was declared with 0 bytes
 * (and for SAVED buffers in a call that does not train). Slice t of a PER_THREAD buffer begins
 * at data + t * slice_stride, for t < slices; other buffers have one slice. */
typedef struct nng_buffer {
    void* data;
    uint64_t bytes; /* of one slice */
    uint64_t slice_stride;
    int32_t slices;
} nng_buffer;

/* The tensors of one call. Forward reads inputs, masks and weights and writes outputs, output
 * masks (NNG_MASK_COMPUTED only) and, in training, saved buffers. Backward reads the same plus
 * grad_outputs and overwrites grad_inputs and grad_weights; a NULL grad_inputs[i].data means that
 * input needs no gradient; a NULL grad_outputs[j].data means that output's gradient is zero. */
typedef struct nng_exec_args {
    uint32_t struct_size;
    int32_t num_inputs;
    const nng_tensor* inputs;
    const nng_tensor* input_masks;
    int32_t num_outputs;
    const nng_tensor* outputs;
    const nng_tensor* output_masks;
    int32_t num_weights;
    const nng_tensor* weights;
    const nng_tensor* grad_outputs; /* num_outputs entries; backward only */
    const nng_tensor* grad_inputs;  /* num_inputs entries; backward only */
    const nng_tensor* grad_weights; /* num_weights entries; backward only */
    int32_t num_buffers;            /* as declared in infer */
    const nng_buffer* buffers;
} nng_exec_args;

typedef struct nng_op_def {
    uint32_t struct_size;
    const char* name; /* the op name in model files: "Dense" */
    const char* doc;
    int32_t min_inputs;
    int32_t max_inputs;
    int32_t num_attrs;
    const nng_attr_spec* attrs;

    /* Parse and validate attributes into the op's own state. */
    nng_status (*create)(const nng_attrs* attrs, void** instance, nng_error* error);
    void (*destroy)(void* instance);
    nng_status (*infer)(void* instance, nng_infer_io* io, nng_error* error);
    nng_status (*forward)(void* instance, const nng_context* ctx, const nng_exec_args* args, nng_error* error);
    /* NULL when the op has no gradient: the host refuses to train through it. */
    nng_status (*backward)(void* instance, const nng_context* ctx, const nng_exec_args* args, nng_error* error);
    /* Appended (check struct_size). The inputs' names as Keras's call() names its arguments ("query",
     * "value", "key"), so that pictures and messages say which input is which: max_inputs entries,
     * NULL for an input without a name; or NULL when no input has one (Add's list of equals). */
    const char* const* input_names;
} nng_op_def;

/* A counter a plugin reports. One whose name ends in "_bytes" is memory the plugin holds outside
 * the host's arena (oneDNN's scratchpads): memory reports add it to the planned buffers. */
typedef struct nng_counter {
    const char* name;
    int64_t value;
} nng_counter;

typedef struct nng_plugin {
    uint32_t struct_size;
    uint32_t abi_version; /* NNG_ABI_VERSION the plugin was built against */
    const char* name;
    const char* version;
    int32_t num_ops;
    const nng_op_def* const* ops;
    /* Optional: fills up to `capacity` counters (e.g. oneDNN primitives created), returns how many. */
    int32_t (*counters)(nng_counter* out, int32_t capacity);
} nng_plugin;

#define NNG_PLUGIN_ENTRY_SYMBOL "nng_plugin_entry"
/* The one exported symbol. Returns NULL when the plugin cannot run with this host. */
typedef const nng_plugin* (*nng_plugin_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* NNGRAPH_PLUGIN_H */
