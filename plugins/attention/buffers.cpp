// Buffers on the host's declared buffers: saved buffers carved from one saved block, call scratch
// from one scratch block, per-thread scratch in per-thread buffers, each the same in every plan.
#include "buffers.hpp"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace nngraph_attention {
namespace {

constexpr std::uint64_t kAlign = 64;
std::uint64_t element_bytes(nng_dtype dtype) { return dtype == NNG_U8 ? 1 : dtype == NNG_I64 ? 8 : 4; }

std::uint64_t aligned_bytes(const BufferSpec& spec) {
    const std::uint64_t bytes =
        static_cast<std::uint64_t>(std::max<std::int64_t>(spec.count(), 0)) * element_bytes(spec.dtype);
    return nng::round_up(bytes, kAlign);
}

// The scratch bytes of the lists' buffers of lifetime `lifetime`.
std::uint64_t bytes_of(Lifetime lifetime, std::initializer_list<const BufferList*> lists) {
    std::uint64_t used = 0;
    for (const BufferList* list : lists) {
        for (int i = 0; i < list->size(); ++i) {
            if ((*list)[i].lifetime == lifetime) used += aligned_bytes((*list)[i]);
        }
    }
    return used;
}

}  // namespace

BufferId BufferList::add(const char* name, Lifetime lifetime, nng_dtype dtype, std::int64_t rows, std::int64_t columns,
                         int rank) {
    if (size_ >= kCapacity) throw std::logic_error(std::string("attention: too many buffers, at ") + name);
    specs_[static_cast<std::size_t>(size_)] = {name, lifetime, dtype, {rows, columns}, rank};
    return BufferId{size_++};
}

void* Buffers::thread(BufferId id) const { return thread(id, omp_get_thread_num()); }

void* Buffers::thread(BufferId id, int thread) const {
    if (id.index < 0) return nullptr;
    return exec_->buffer(thread_buffer_[static_cast<std::size_t>(id.index)], thread);
}

nng::Carver Buffers::thread_carver(BufferId id) const {
    if (id.index < 0) return nng::Carver(nullptr, 0);
    return nng::Carver(thread(id),
                       static_cast<std::size_t>(exec_->count(thread_buffer_[static_cast<std::size_t>(id.index)])));
}

namespace {

// The host buffers of declare_buffers, in declaration order: their handles are these indices.
constexpr nng::Buffer<std::byte> kSavedBlock{0}, kScratchBlock{1};
constexpr nng::Buffer<std::byte> thread_buffer(int k) { return nng::Buffer<std::byte>{2 + k}; }
constexpr const char* kThreadBufferNames[kThreadBuffers] = {"per-thread scratch 1", "per-thread scratch 2",
                                                            "per-thread scratch 3"};

// The saved block's bytes: every saved buffer of the lists, for `batch` samples.
std::uint64_t saved_bytes(std::int64_t batch, std::initializer_list<const BufferList*> lists) {
    std::uint64_t used = 0;
    for (const BufferList* list : lists) {
        for (int i = 0; i < list->size(); ++i) {
            const BufferSpec& spec = (*list)[i];
            if (spec.lifetime != Lifetime::kSaved) continue;
            BufferSpec all = spec;
            all.rank = 1;
            all.dims[0] = std::max<std::int64_t>(batch, 0) * spec.count();
            used += aligned_bytes(all);
        }
    }
    return used;
}

}  // namespace

void declare_buffers(nng::InferContext& ctx, std::int64_t batch, std::initializer_list<const BufferList*> lists) {
    ctx.buffer<std::byte>("attention saved", static_cast<std::int64_t>(saved_bytes(batch, lists)),
                          nng::Lifetime::Saved);
    ctx.buffer<std::byte>(
        "attention scratch",
        static_cast<std::int64_t>(bytes_of(Lifetime::kCall, lists) +
                                  std::max(bytes_of(Lifetime::kForward, lists), bytes_of(Lifetime::kBackward, lists))),
        nng::Lifetime::PerCall);
    std::int64_t thread_bytes[kThreadBuffers] = {};
    int k = 0;
    for (const BufferList* list : lists) {
        for (int i = 0; i < list->size(); ++i) {
            const BufferSpec& spec = (*list)[i];
            if (spec.lifetime != Lifetime::kThread) continue;
            if (k == kThreadBuffers)
                throw std::logic_error(std::string("attention: too many per-thread buffers, at ") + spec.name);
            thread_bytes[k++] = static_cast<std::int64_t>(aligned_bytes(spec));
        }
    }
    for (int t = 0; t < kThreadBuffers; ++t)
        ctx.buffer<std::byte>(kThreadBufferNames[t], thread_bytes[t], nng::Lifetime::PerThread);
}

void bind_buffers(const nng::Exec& exec, Lifetime direction, std::initializer_list<const BufferList*> lists,
                  std::initializer_list<Buffers*> buffers) {
    if (lists.size() != buffers.size()) throw std::logic_error("attention: bind_buffers needs one Buffers per list");
    const std::uint64_t call_bytes = bytes_of(Lifetime::kCall, lists), needed = call_bytes + bytes_of(direction, lists);
    const auto scratch_bytes = static_cast<std::uint64_t>(exec.count(kScratchBlock));
    if (needed > scratch_bytes) {
        throw std::runtime_error("attention: the scratch of " + std::to_string(scratch_bytes) +
                                 " bytes is too small (" + std::to_string(needed) + " needed)");
    }
    const bool training = has_saved_buffers(exec);
    const std::int64_t batch = exec.input(0).dim(0);
    if (training && saved_bytes(batch, lists) > static_cast<std::uint64_t>(exec.count(kSavedBlock))) {
        throw std::runtime_error("attention: the saved buffers need more than the " +
                                 std::to_string(exec.count(kSavedBlock)) + " bytes declared");
    }
    std::byte* saved = exec.buffer(kSavedBlock);
    std::byte* scratch = exec.buffer(kScratchBlock);
    std::uint64_t used = 0, call_used = 0, saved_used = 0;
    int thread = 0;
    const BufferList* const* list = lists.begin();
    for (Buffers* out : buffers) {
        *out = Buffers{};
        out->training_ = training;
        out->exec_ = &exec;
        for (int i = 0; i < (*list)->size(); ++i) {
            const BufferSpec& spec = (**list)[i];
            const auto at = static_cast<std::size_t>(i);
            if (spec.lifetime == Lifetime::kSaved) {
                BufferSpec all = spec;
                all.rank = 1;
                all.dims[0] = batch * spec.count();
                out->where_[at] = training ? saved + saved_used : nullptr;
                saved_used += aligned_bytes(all);
            } else if (spec.lifetime == Lifetime::kCall) {
                out->where_[at] = scratch + call_used;
                call_used += aligned_bytes(spec);
            } else if (spec.lifetime == direction) {
                out->where_[at] = scratch + call_bytes + used;
                used += aligned_bytes(spec);
            } else if (spec.lifetime == Lifetime::kThread) {
                const nng::Buffer<std::byte> handle = thread_buffer(thread++);
                if (static_cast<std::uint64_t>(exec.count(handle)) < aligned_bytes(spec)) {
                    throw std::runtime_error(std::string("attention: per-thread buffer ") + spec.name + " needs " +
                                             std::to_string(aligned_bytes(spec)) + " bytes, " +
                                             std::to_string(exec.count(handle)) +
                                             " were planned (another thread count?)");
                }
                out->thread_buffer_[at] = handle;
            }
        }
        ++list;
    }
}

}  // namespace nngraph_attention
