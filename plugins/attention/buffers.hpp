// The memory an attention op and its core work in, asked for by name, lifetime and size.
//
// Each party (the op, its core) lists its buffers in a BufferList for given shapes, in a fixed
// order, and keeps the BufferId each `add` returns. The op declares the lists once in infer
// (declare_buffers) and binds them to the host's memory at every call (bind_buffers); the parties
// then fetch their buffers by id. Only this file and buffers.cpp know where the memory comes from.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>

#include "nngraph/carver.hpp"
#include "nngraph/onednn.hpp"

namespace nngraph_attention {

enum class Lifetime : std::uint8_t {
    kSaved,     // written by a training forward, read by its backward
    kForward,   // scratch of one forward call
    kBackward,  // scratch of one backward call
    kCall,      // scratch of one call, forward or backward
    kThread,    // scratch of one thread within one call
};

// A buffer of dims[0] (x dims[1]) elements: per batch element when saved, per thread when kThread.
struct BufferSpec {
    const char* name = "";
    Lifetime lifetime = Lifetime::kForward;
    nng_dtype dtype = NNG_F32;
    std::array<std::int64_t, 2> dims{};
    int rank = 1;

    std::int64_t count() const { return rank == 1 ? dims[0] : dims[0] * dims[1]; }
};

struct BufferId {
    int index = -1;
};

class BufferList {
public:
    static constexpr int kCapacity = 24;

    BufferId add(const char* name, Lifetime lifetime, nng_dtype dtype, std::int64_t rows, std::int64_t columns,
                 int rank);
    BufferId floats(const char* name, Lifetime lifetime, std::int64_t count) {
        return add(name, lifetime, NNG_F32, count, 1, 1);
    }
    BufferId floats(const char* name, Lifetime lifetime, std::int64_t rows, std::int64_t columns) {
        return add(name, lifetime, NNG_F32, rows, columns, 2);
    }
    BufferId bytes(const char* name, Lifetime lifetime, std::int64_t count) {
        return add(name, lifetime, NNG_U8, count, 1, 1);
    }
    BufferId bytes(const char* name, Lifetime lifetime, std::int64_t rows, std::int64_t columns) {
        return add(name, lifetime, NNG_U8, rows, columns, 2);
    }

    int size() const { return size_; }
    const BufferSpec& operator[](int i) const { return specs_[static_cast<std::size_t>(i)]; }

private:
    std::array<BufferSpec, kCapacity> specs_{};
    int size_ = 0;
};

// Lists built once per shape, so that a call finds its list, and the ids kept while building it,
// without building them again. Holds the lists of the last kShapes keys (a training and a
// validation plan, say); an entry stays valid until kShapes other keys are asked for, which no
// call does while it uses one, as calls of one op instance never overlap.
template <class Key, class Ids>
class DeclaredBuffers {
public:
    struct Entry {
        explicit Entry(const Key& k) : key(k) {}
        Key key;
        BufferList list;
        Ids ids{};
    };

    // The entry for `key`; when new, `declare(BufferList&) -> Ids` fills it.
    template <class Declare>
    const Entry& get(const Key& key, Declare&& declare) const {
        for (const std::shared_ptr<Entry>& entry : entries_) {
            if (entry && entry->key == key) return *entry;
        }
        auto entry = std::make_shared<Entry>(key);
        entry->ids = declare(entry->list);
        std::shared_ptr<Entry>& slot = entries_[next_];
        next_ = (next_ + 1) % kShapes;
        slot = std::move(entry);
        return *slot;
    }

private:
    static constexpr std::size_t kShapes = 4;
    // Shared pointers: their deleter is bound where an entry is made, so an owner may hold the
    // cache with Ids still incomplete.
    mutable std::array<std::shared_ptr<Entry>, kShapes> entries_;
    mutable std::size_t next_ = 0;
};

// Where one list's buffers are during one call. A saved buffer outside training, a buffer of the
// other direction's scratch and an empty one are null.
class Buffers {
public:
    void* get(BufferId id) const { return id.index < 0 ? nullptr : where_[static_cast<std::size_t>(id.index)]; }
    float* floats(BufferId id) const { return static_cast<float*>(get(id)); }
    std::uint8_t* bytes(BufferId id) const { return static_cast<std::uint8_t*>(get(id)); }
    // The calling thread's own copy of a kThread buffer; call it inside the parallel region.
    void* thread(BufferId id) const;
    // Thread `thread`'s copy, 0 <= thread < the call's thread count.
    void* thread(BufferId id, int thread) const;
    float* thread_floats(BufferId id) const { return static_cast<float*>(thread(id)); }
    // The calling thread's copy of a kThread buffer to carve arrays from.
    nng::Carver thread_carver(BufferId id) const;
    // Whether the call belongs to a training step (the saved buffers exist).
    bool training() const { return training_; }

private:
    friend void bind_buffers(const nng::Exec&, Lifetime, std::initializer_list<const BufferList*>,
                             std::initializer_list<Buffers*>);
    std::array<void*, BufferList::kCapacity> where_{};
    std::array<nng::Buffer<std::byte>, BufferList::kCapacity> thread_buffer_{};
    const nng::Exec* exec_ = nullptr;
    bool training_ = false;
};

// Declares the host buffers the lists are carved from, the same ones in every plan whatever the
// lists hold: one saved block (the saved buffers, batch-major, in list order), one scratch block
// (kCall pieces first, then forward's or backward's, so the larger direction sets its size) and
// one per-thread buffer for each of the first kThreadBuffers kThread buffers.
inline constexpr int kThreadBuffers = 3;
void declare_buffers(nng::InferContext& ctx, std::int64_t batch, std::initializer_list<const BufferList*> lists);

// Finds the buffers of `lists` for a call in direction `direction` (kForward or kBackward), into
// the matching `buffers`. The lists must be those declare_buffers saw, for the call's shapes.
void bind_buffers(const nng::Exec& exec, Lifetime direction, std::initializer_list<const BufferList*> lists,
                  std::initializer_list<Buffers*> buffers);

// Whether the call belongs to a training step: the plan keeps buffers for backward.
inline bool has_saved_buffers(const nng::Exec& exec) { return exec.training(); }

}  // namespace nngraph_attention
