// Buffers on the host's mechanisms: saved buffers as the op's saved tensors, call scratch carved
// from the op's one scratch block, per-thread scratch in onednn's per-thread slots.
#include "buffers.hpp"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace nngraph_attention {
namespace {

constexpr std::uint64_t kAlign = 64;
// onednn::buffer slots of the kThread buffers, in list order; the attention plugin calls no
// oneDNN primitive while it holds them.
constexpr int kFirstThreadSlot = 5, kThreadSlots = 3;

std::uint64_t element_bytes(nng_dtype dtype) { return dtype == NNG_U8 ? 1 : dtype == NNG_I64 ? 8 : 4; }

std::uint64_t aligned_bytes(const BufferSpec& spec) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(spec.count(), 0)) * element_bytes(spec.dtype);
    return (bytes + kAlign - 1) / kAlign * kAlign;
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

BufferId BufferList::add(const char* name, Lifetime lifetime, nng_dtype dtype, std::int64_t rows, std::int64_t columns, int rank) {
    if (size_ >= kCapacity) throw std::logic_error(std::string("attention: too many buffers, at ") + name);
    specs_[static_cast<std::size_t>(size_)] = {name, lifetime, dtype, {rows, columns}, rank};
    return BufferId{size_++};
}

void* Buffers::thread(BufferId id) const {
    if (id.index < 0) return nullptr;
    const auto i = static_cast<std::size_t>(id.index);
    return nng::onednn::buffer(thread_slot_[i], static_cast<std::size_t>(thread_bytes_[i]));
}

void declare_buffers(nng::InferContext& ctx, std::int64_t batch, std::initializer_list<const BufferList*> lists) {
    for (const BufferList* list : lists) {
        for (int i = 0; i < list->size(); ++i) {
            const BufferSpec& spec = (*list)[i];
            if (spec.lifetime != Lifetime::kSaved) continue;
            if (spec.rank == 1) ctx.add_saved(spec.dtype, {batch, spec.dims[0]});
            else ctx.add_saved(spec.dtype, {batch, spec.dims[0], spec.dims[1]});
        }
    }
    ctx.set_scratch_bytes(bytes_of(Lifetime::kCall, lists) + std::max(bytes_of(Lifetime::kForward, lists), bytes_of(Lifetime::kBackward, lists)));
}

void bind_buffers(const nng::Exec& exec, Lifetime direction, std::initializer_list<const BufferList*> lists,
                  std::initializer_list<Buffers*> buffers) {
    if (lists.size() != buffers.size()) throw std::logic_error("attention: bind_buffers needs one Buffers per list");
    const std::uint64_t call_bytes = bytes_of(Lifetime::kCall, lists), needed = call_bytes + bytes_of(direction, lists);
    if (needed > exec.scratch_bytes()) {
        throw std::runtime_error("attention: the scratch of " + std::to_string(exec.scratch_bytes()) + " bytes is too small (" +
                                 std::to_string(needed) + " needed)");
    }
    const bool training = has_saved_buffers(exec);
    auto* scratch = static_cast<std::byte*>(exec.scratch());
    std::uint64_t used = 0, call_used = 0;
    int saved = 0, thread_slot = kFirstThreadSlot;
    const BufferList* const* list = lists.begin();
    for (Buffers* out : buffers) {
        *out = Buffers{};
        out->training_ = training;
        for (int i = 0; i < (*list)->size(); ++i) {
            const BufferSpec& spec = (**list)[i];
            const auto at = static_cast<std::size_t>(i);
            if (spec.lifetime == Lifetime::kSaved) {
                out->where_[at] = training ? exec.saved(saved).raw() : nullptr;
                ++saved;
            } else if (spec.lifetime == Lifetime::kCall) {
                out->where_[at] = scratch + call_used;
                call_used += aligned_bytes(spec);
            } else if (spec.lifetime == direction) {
                out->where_[at] = scratch + call_bytes + used;
                used += aligned_bytes(spec);
            } else if (spec.lifetime == Lifetime::kThread) {
                if (thread_slot >= kFirstThreadSlot + kThreadSlots) {
                    throw std::logic_error(std::string("attention: too many per-thread buffers, at ") + spec.name);
                }
                out->thread_slot_[at] = thread_slot++;
                out->thread_bytes_[at] = static_cast<std::int64_t>(aligned_bytes(spec));
            }
        }
        ++list;
    }
}

}  // namespace nngraph_attention
