// Engine, stream, threads, the per-thread scratchpad, the primitive cache and the counters.
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <oneapi/dnnl/dnnl_debug.h>

#include "nngraph/buffer.hpp"

#include "internal.hpp"

namespace nng::onednn {
namespace {

std::atomic<std::int64_t> g_primitives_created{0};
std::atomic<std::int64_t> g_cache_hits{0};
std::atomic<std::int64_t> g_buffer_allocations{0};
std::atomic<std::int64_t> g_scratchpad_bytes{0};

// A grow-only, aligned block. Growing discards the contents: callers use it as scratch.
class Arena {
public:
    explicit Arena(std::atomic<std::int64_t>& capacity_counter) : capacity_counter_(capacity_counter) {}
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    ~Arena() { capacity_counter_ -= static_cast<std::int64_t>(capacity_); }

    void* reserve(std::size_t bytes) {
        if (bytes <= capacity_) return data_.get();
        const std::size_t rounded = nng::buffer_capacity(bytes);
        data_.reset();  // free first: the old block is not needed and may be large
        data_.reset(nng::allocate_buffer(bytes));
        capacity_counter_ -= static_cast<std::int64_t>(capacity_);
        capacity_ = data_ ? rounded : 0;
        capacity_counter_ += static_cast<std::int64_t>(capacity_);
        if (!data_) throw std::runtime_error("oneDNN helper: cannot allocate " + std::to_string(rounded) + " bytes");
        ++g_buffer_allocations;
        return data_.get();
    }
    std::size_t capacity() const { return capacity_; }

private:
    std::unique_ptr<std::byte, nng::FreeBuffer> data_;
    std::size_t capacity_ = 0;
    std::atomic<std::int64_t>& capacity_counter_;
};

// What each calling thread owns: oneDNN streams are not meant to be shared between threads, and
// a scratchpad is only free while its primitive is not running elsewhere.
struct ThreadState {
    dnnl::stream stream{engine()};
    Arena scratchpad{g_scratchpad_bytes};
    // Memory objects of execute(views): one per (primitive, argument), repointed each call. Valid
    // for the cache generation they were made in (clear_cache destroys the primitives).
    std::map<std::pair<const void*, int>, dnnl::memory> bound;
    std::uint64_t bound_generation = 0;

    dnnl::memory& bind(const Cached& c, int which, const dnnl::memory::desc& desc, void* data);
};

ThreadState& thread_state() {
    thread_local ThreadState state;
    return state;
}

struct KeyHash {
    std::size_t operator()(const Key& key) const { return key.hash(); }
};

// Primitives by OpenMP thread count, then by key: some oneDNN kernels fix their work split when
// created, so a primitive is only reused with the thread count it was made for.
struct Cache {
    std::mutex mutex;
    std::map<int, std::unordered_map<Key, Cached, KeyHash>> by_threads;
    std::atomic<std::uint64_t> generation{0};  // counts clear_cache() calls
};

Cache& cache() {
    static Cache instance;
    return instance;
}

}  // namespace

// ---- Engine, stream, threads -------------------------------------------------------------------

const dnnl::engine& engine() {
    static const dnnl::engine instance(dnnl::engine::kind::cpu, 0);
    return instance;
}

const dnnl::stream& stream() { return thread_state().stream; }

void set_num_threads(int n) {
    if (n > 0 && n != omp_get_max_threads()) omp_set_num_threads(n);
}

namespace {

// Thread t's run of parts, [split_point(parts, threads, t), split_point(parts, threads, t + 1)),
// as (next, end) in one word: the owner takes parts from one end, a thread whose own run is done
// from the other, and neither can take a part the other took. A line each, so that owners taking
// their own parts do not contend.
class alignas(64) PartRun {
public:
    void reset(std::int64_t begin, std::int64_t end) { bounds_.store(pack(begin, end), std::memory_order_relaxed); }

    // The first or the last part left, or -1 when none is.
    std::int64_t take(PartOrder from) {
        const bool front = from == PartOrder::kFirstFirst;
        std::uint64_t b = bounds_.load(std::memory_order_relaxed);
        while (next_of(b) < end_of(b)) {
            const std::int64_t part = front ? next_of(b) : end_of(b) - 1;
            const std::uint64_t rest = front ? pack(part + 1, end_of(b)) : pack(next_of(b), part);
            if (bounds_.compare_exchange_weak(b, rest, std::memory_order_relaxed)) return part;
        }
        return -1;
    }

private:
    static std::uint64_t pack(std::int64_t next, std::int64_t end) {
        return static_cast<std::uint64_t>(next) << 32 | static_cast<std::uint64_t>(end);
    }
    static std::int64_t next_of(std::uint64_t b) { return static_cast<std::int64_t>(b >> 32); }
    static std::int64_t end_of(std::uint64_t b) { return static_cast<std::int64_t>(b & 0xffffffffu); }

    std::atomic<std::uint64_t> bounds_{0};
};

// Runs kept on the stack; more threads than this take theirs from the heap.
constexpr int kStackPartRuns = 64;

}  // namespace

void run_in_parts(std::int64_t parts, void (*run_part)(void*, std::int64_t), void* context, PartOrder order) {
    if (parts == 1) {  // on the calling thread, without the cost of entering an OpenMP region
        struct SingleThreaded {
            const int threads = omp_get_max_threads();
            SingleThreaded() { set_num_threads(1); }
            ~SingleThreaded() { set_num_threads(threads); }
        } single_threaded;
        run_part(context, 0);
        return;
    }
    if (parts <= 0) return;
    if (parts > std::numeric_limits<std::int32_t>::max())
        throw std::invalid_argument("oneDNN helper: run_in_parts takes at most 2^31 - 1 parts, not " +
                                    std::to_string(parts));
    // Each thread takes its own run of parts, as a static schedule would, so its parts keep their
    // neighbours' data in cache; one that finishes early takes from the far end of the others' runs,
    // so a thread on a slower core does not hold the rest waiting. With no more parts than threads
    // each part stays with its thread: callers keep per-thread sums in a fixed order.
    const int threads = static_cast<int>(std::min<std::int64_t>(parts, omp_get_max_threads()));
    std::array<PartRun, kStackPartRuns> stack_runs;
    std::unique_ptr<PartRun[]> heap_runs;
    if (threads > kStackPartRuns) heap_runs = std::make_unique<PartRun[]>(static_cast<std::size_t>(threads));
    PartRun* const runs = heap_runs ? heap_runs.get() : stack_runs.data();
    for (int t = 0; t < threads; ++t) runs[t].reset(split_point(parts, threads, t), split_point(parts, threads, t + 1));
    const bool share_tails = parts > threads;
    std::exception_ptr failure;
    const auto run = [&](std::int64_t p) {
        try {
            run_part(context, p);
        } catch (...) {
#pragma omp critical(nngraph_onednn_part_failure)
            if (!failure) failure = std::current_exception();
        }
    };
#pragma omp parallel num_threads(threads)
    {
        set_num_threads(1);  // the region already holds the other threads
        const int me = omp_get_thread_num(), team = omp_get_num_threads();
        // A team smaller than asked for (nested or limited regions) takes the missing threads' runs.
        for (int t = me; t < threads; t += team) {
            for (std::int64_t p = runs[t].take(order); p >= 0; p = runs[t].take(order)) run(p);
        }
        const PartOrder far_end = order == PartOrder::kFirstFirst ? PartOrder::kLastFirst : PartOrder::kFirstFirst;
        for (int other = 1; share_tails && other < threads; ++other) {
            PartRun& victim = runs[(me + other) % threads];
            for (std::int64_t p = victim.take(far_end); p >= 0; p = victim.take(far_end)) run(p);
        }
    }
    if (failure) std::rethrow_exception(failure);
}

// ---- Keys --------------------------------------------------------------------------------------

void Key::push(std::int64_t v) {
    if (size_ == kCapacity) {
        throw std::runtime_error("oneDNN helper: the key for " + std::string(tag_.name()) + " exceeds " +
                                 std::to_string(kCapacity) + " integers");
    }
    values_[size_++] = v;
}

void Key::add_one(const View& v) {
    push(static_cast<std::int64_t>(v.type));
    push(v.rank);
    for (int i = 0; i < v.rank; ++i) push(v.dims[i]);
    for (int i = 0; i < v.rank; ++i) push(v.strides[i]);
}

void Key::add_one(const dnnl::memory::desc& desc) {
    // Field by field (never the raw bytes, whose padding is unspecified), each array after its length.
    const dnnl_memory_desc_t& md = desc.data;
    const auto push_n = [this](const auto* values, int n) {
        push(n);
        for (int i = 0; i < n; ++i) push(static_cast<std::int64_t>(values[i]));
    };
    push_n(md.dims, md.ndims);
    push_n(md.padded_dims, md.ndims);
    push_n(md.padded_offsets, md.ndims);
    push(md.data_type);
    push(md.offset0);
    push(md.format_kind);
    if (md.format_kind == dnnl_blocked) {
        const dnnl_blocking_desc_t& b = md.format_desc.blocking;
        push_n(b.strides, md.ndims);
        push_n(b.inner_blks, b.inner_nblks);
        push_n(b.inner_idxs, b.inner_nblks);
    } else if (md.format_kind == dnnl_format_kind_rnn_packed) {
        const dnnl_rnn_packed_desc_t& p = md.format_desc.rnn_packed_desc;
        push(p.format);
        push(p.n);
        push(p.ldb);
        push_n(p.parts, p.n_parts);
        push_n(p.part_pack_size, p.n_parts);
        push_n(p.pack_part, p.n_parts);
        push(static_cast<std::int64_t>(p.offset_compensation));
        push(static_cast<std::int64_t>(p.size));
    } else if (md.format_kind != dnnl_format_kind_undef && md.format_kind != dnnl_format_kind_any) {
        throw std::runtime_error("oneDNN helper: a key cannot hold a memory format of kind " +
                                 std::to_string(md.format_kind));
    }
    push(static_cast<std::int64_t>(md.extra.flags));
    push(md.extra.compensation_mask);
    push(md.extra.asymm_compensation_mask);
    add_one(md.extra.scale_adjust);
}

std::size_t Key::hash() const {
    std::uint64_t h = tag_.hash();
    for (int i = 0; i < size_; ++i) {
        h ^= static_cast<std::uint64_t>(values_[i]);
        h *= 0x9E3779B97F4A7C15ull;  // a multiply-xorshift mix: cheap, spreads small integers
        h ^= h >> 29;
    }
    return static_cast<std::size_t>(h);
}

bool operator==(const Key& a, const Key& b) {
    return a.tag_ == b.tag_ && a.size_ == b.size_ &&
           std::equal(a.values_.begin(), a.values_.begin() + a.size_, b.values_.begin());
}

// ---- Cache -------------------------------------------------------------------------------------

dnnl::primitive_attr attributes() {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attr;
}

const Cached* detail::find(const Key& key) {
    Cache& c = cache();
    const int threads = omp_get_max_threads();
    const std::lock_guard lock(c.mutex);
    const auto by_key = c.by_threads.find(threads);
    if (by_key == c.by_threads.end()) return nullptr;
    const auto hit = by_key->second.find(key);
    if (hit == by_key->second.end()) return nullptr;
    ++g_cache_hits;
    return &hit->second;
}

const Cached& detail::insert(const Key& key, const dnnl::primitive_desc_base& pd, dnnl::primitive primitive) {
    if (pd.get_primitive_attr().get_scratchpad_mode() != dnnl::scratchpad_mode::user) {
        throw std::runtime_error("oneDNN helper: " + std::string(key.tag().name()) +
                                 " was built without nng::onednn::attributes() (scratchpad_mode::user)");
    }
    ++g_primitives_created;
    Cache& c = cache();
    const int threads = omp_get_max_threads();
    const std::lock_guard lock(c.mutex);
    // Another thread may have created the same primitive meanwhile; then its copy is kept.
    const auto [it, inserted] =
        c.by_threads[threads].try_emplace(key, Cached{std::move(primitive), pd, key.tag().name()});
    return it->second;
}

void detail::creation_failed(const Key& key, const dnnl::error& e) {
    throw std::runtime_error("oneDNN cannot create " + std::string(key.tag().name()) + ": " + e.what());
}

dnnl::memory& ThreadState::bind(const Cached& c, int which, const dnnl::memory::desc& desc, void* data) {
    if (const std::uint64_t now = cache().generation.load(std::memory_order_acquire); bound_generation != now) {
        bound.clear();
        bound_generation = now;
    }
    const auto [it, added] = bound.try_emplace({c.primitive.get(), which});
    // A key need not fix every argument's layout (an eltwise's key holds its source only), so a
    // call whose view differs gets a new object rather than a wrong descriptor.
    if (added || it->second.get_desc() != desc)
        it->second = dnnl::memory(desc, engine(), data);
    else
        it->second.set_data_handle(data);
    return it->second;
}

namespace {

constexpr int kMostArgs = 32;  // lstm_backward takes 21 with the scratchpad

// Arguments fit the stack array with room left for the scratchpad.
void check_arg_count(const Cached& c, std::size_t count) {
    if (count >= kMostArgs) {
        throw std::runtime_error("oneDNN helper: " + std::string(c.name) + " given " + std::to_string(count) +
                                 " arguments; at most " + std::to_string(kMostArgs - 1) + " fit");
    }
}

// Runs `c` with `args` (the scratchpad's slot left free at the end) on this thread's stream.
void run(const Cached& c, ThreadState& state, dnnl_exec_arg_t* args, int count) {
    const dnnl::memory::desc scratchpad = c.pd.scratchpad_desc();
    if (const std::size_t bytes = scratchpad.get_size(); bytes > 0) {
        args[count++] = {DNNL_ARG_SCRATCHPAD,
                         state.bind(c, DNNL_ARG_SCRATCHPAD, scratchpad, state.scratchpad.reserve(bytes)).get()};
    }
    dnnl_status_t status = dnnl_primitive_execute(c.primitive.get(), state.stream.get(), count, args);
    if (status == dnnl_success) status = dnnl_stream_wait(state.stream.get());
    if (status != dnnl_success) {
        throw std::runtime_error("oneDNN cannot run " + std::string(c.name) + ": status " + dnnl_status2str(status));
    }
}

}  // namespace

void execute(const Cached& c, std::unordered_map<int, dnnl::memory> args) {
    check_arg_count(c, args.size());
    dnnl_exec_arg_t list[kMostArgs];
    int count = 0;
    for (const auto& [which, memory] : args) list[count++] = {which, memory.get()};
    run(c, thread_state(), list, count);
}

void execute(const Cached& c, std::initializer_list<ViewArg> args) {
    check_arg_count(c, args.size());
    ThreadState& state = thread_state();
    dnnl_exec_arg_t list[kMostArgs];
    int count = 0;
    for (const ViewArg& a : args)
        list[count++] = {a.which, (a.desc ? state.bind(c, a.which, *a.desc, a.data)
                                          : state.bind(c, a.which, desc_of(*a.view), a.view->data))
                                      .get()};
    run(c, state, list, count);
}

void clear_cache() {
    Cache& c = cache();
    const std::lock_guard lock(c.mutex);
    c.by_threads.clear();
    c.generation.fetch_add(1, std::memory_order_release);
}

// ---- Counters ----------------------------------------------------------------------------------

Stats stats() {
    return Stats{g_primitives_created.load(), g_cache_hits.load(), g_buffer_allocations.load(),
                 g_scratchpad_bytes.load()};
}

std::int32_t counters(nng_counter* out, std::int32_t capacity) {
    const Stats s = stats();
    const nng_counter all[] = {
        {"onednn.primitives_created", s.primitives_created},
        {"onednn.cache_hits", s.cache_hits},
        {"onednn.buffer_allocations", s.buffer_allocations},
        {"onednn.scratchpad_bytes", s.scratchpad_bytes},
    };
    const std::int32_t n = std::clamp<std::int32_t>(capacity, 0, static_cast<std::int32_t>(std::size(all)));
    if (out) std::copy_n(all, n, out);
    return out ? n : 0;
}

// ---- Messages ----------------------------------------------------------------------------------

void detail::fail(std::string_view op, std::initializer_list<Named> views, std::string_view reason) {
    std::string message(op);
    const char* separator = " of ";
    for (const Named& named : views) {
        if (!named.view->present()) continue;
        message += separator;
        message += named.name;
        message += ' ';
        message += named.view->describe();
        separator = ", ";
    }
    message += ": ";
    message += reason;
    throw std::runtime_error(message);
}

}  // namespace nng::onednn
