// RingCore (see ring.hpp). A rank's local steps are `pieces` equal pieces (1, or 2 with the zigzag
// layout), each at its own global position (SequenceShard). A travelling block is one rank's keys
// and values, laid out as (G, steps, d) like the op's own, with its combined key mask. Every pair
// is one part of the queries (a few parts of whole tiles per piece, so that the transfers in
// flight are polled between them: Open MPI moves data only inside its calls) against one chunk of
// a key piece (at most kKeyChunk keys, which bounds the blockwise core's per-thread gradient sums
// and the ring's own whatever the share's length).
#include "ring.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>

#include "masks.hpp"

namespace nngraph_attention {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
constexpr std::int64_t kTile = 64;
constexpr std::int64_t kPartsPerPiece = 4;  // polls of the transfers per query piece and key chunk
constexpr int kMaxParts = 2 * kPartsPerPiece;
constexpr std::int64_t kKeyChunk = 4096;  // keys of one pair at most

// Message tags: a receive matches the sends of one peer and tag in order, so each kind has one.
enum Tag : int { kKeysTag = 15100, kValuesTag, kMasksTag, kKeyGradientsTag, kValueGradientsTag };

// How the local steps split, and where each piece sits in the whole sequence.
struct Split {
    int ranks = 1, rank = 0, pieces = 1;
    std::int64_t groups = 0, batch = 0, tq = 0, tv = 0, piece_q = 0, piece_k = 0, whole_tq = 0, whole_tv = 0;
    nngraph::SequenceShard shard;

    explicit Split(const Problem& p) : groups(p.groups()), batch(p.batch), tq(p.tq), tv(p.tv), shard(p.shard) {
        const nngraph::SequenceShard& s = p.shard;
        ranks = s.parts();
        rank = s.part();
        if (ranks > 1) {
            if (!p.comm.available() || p.comm.size() != ranks || p.comm.rank() != rank) {
                throw nng::OpError("attention ring core: the sequence is shared as part " + std::to_string(rank) +
                                   " of " + std::to_string(ranks) + ", but the job's communicator is rank " +
                                   std::to_string(p.comm.rank()) + " of " + std::to_string(p.comm.size()) +
                                   "; expected the same rank and size");
            }
            if (p.tq != s.local_steps() || p.tv != s.local_steps()) {
                throw nng::OpError("attention ring core: rank " + std::to_string(rank) + " holds " +
                                   std::to_string(p.tq) + " query and " + std::to_string(p.tv) +
                                   " key steps; expected its share of " + std::to_string(s.global_steps()) +
                                   " steps, " + std::to_string(s.local_steps()) + " of each");
            }
            pieces = s.pieces() / ranks;
        }
        piece_q = tq / pieces;
        piece_k = tv / pieces;
        whole_tq = ranks > 1 ? s.global_steps() : tq;
        whole_tv = ranks > 1 ? s.global_steps() : tv;
    }
    // Calls f(first, count) for every key chunk of a block: local key rows, piece by piece.
    template <class F>
    void for_each_key_chunk(F&& f) const {
        for (int b = 0; b < pieces; ++b)
            for (std::int64_t j = 0; j < piece_k; j += kKeyChunk) f(b * piece_k + j, std::min(kKeyChunk, piece_k - j));
    }
    int next() const { return (rank + 1) % ranks; }
    int previous() const { return (rank + ranks - 1) % ranks; }
    // The rank whose block this one holds at `step` of the turn.
    int origin(int step) const { return (rank - step + ranks) % ranks; }
    std::int64_t query_start(std::int64_t local) const { return ranks > 1 ? shard.global_position(local) : local; }
    std::int64_t key_start(int origin, std::int64_t local) const {
        return ranks > 1 ? shard.global_position(origin, local) : local;
    }
};

// Query rows [first, first + rows) of one piece: the unit of computation between polls.
struct Part {
    std::int64_t first, rows;
};
// Rows of the parts of a piece of `piece_q` steps: whole tiles, the last part shorter.
std::int64_t part_rows(std::int64_t piece_q) {
    return std::min(piece_q,
                    std::max(kTile, (piece_q + kPartsPerPiece * kTile - 1) / (kPartsPerPiece * kTile) * kTile));
}
int parts_of(const Split& s, Part* parts) {
    const std::int64_t step = std::max<std::int64_t>(1, part_rows(s.piece_q));
    int count = 0;
    for (int a = 0; a < s.pieces; ++a)
        for (std::int64_t r = 0; r < s.piece_q; r += step)
            parts[count++] = {a * s.piece_q + r, std::min(step, s.piece_q - r)};
    return count;
}

// One travelling block: keys (G, tv, dk), values (G, tv, dv) and the combined key mask, chunk by
// chunk: the (batch, count) mask of the chunk of local keys [first, first + count) at batch · first.
struct Slot {
    float *keys, *values;
    std::uint8_t* mask;
};
// The key and value gradients of one block, laid out as its keys and values.
struct GradientBlock {
    float *keys, *values;
};

// Starts one ring step's transfers of a block: `coming` receives what the previous rank holds, while
// `here` goes on to the next rank (its key mask only when the problem has one).
void pass_block_on(const Problem& p, const Split& s, const Slot& here, const Slot& coming, bool key_mask,
                   nng::CommRequest (&transfers)[6]) {
    const std::size_t keys = s.groups * p.tv * p.dk, values = s.groups * p.tv * p.dv;
    const std::size_t mask = key_mask ? s.batch * p.tv : 0;
    transfers[0] = p.comm.irecv(std::span(coming.keys, keys), s.previous(), kKeysTag);
    transfers[1] = p.comm.irecv(std::span(coming.values, values), s.previous(), kValuesTag);
    transfers[2] = p.comm.irecv(std::span(coming.mask, mask), s.previous(), kMasksTag);
    transfers[3] = p.comm.isend(std::span(here.keys, keys), s.next(), kKeysTag);
    transfers[4] = p.comm.isend(std::span(here.values, values), s.next(), kValuesTag);
    transfers[5] = p.comm.isend(std::span(here.mask, mask), s.next(), kMasksTag);
}

onednn::View packed_view(float* data, std::int64_t groups, std::int64_t rows, std::int64_t d) {
    onednn::View v;
    v.data = data;
    v.type = onednn::DataType::f32;
    v.rank = 3;
    v.dims[0] = groups, v.dims[1] = rows, v.dims[2] = d;
    v.strides[0] = rows * d, v.strides[1] = d, v.strides[2] = 1;
    return v;
}
// Rows [first, first + rows) of every group of a (G, T, d) view.
onednn::View rows_view(const onednn::View& v, std::int64_t first, std::int64_t rows) {
    if (!v.present()) return v;
    onednn::View out = v;
    out.data = static_cast<float*>(v.data) + first * v.strides[1];
    out.dims[1] = rows;
    return out;
}
float* row_at(const onednn::View& v, std::int64_t g, std::int64_t i) {
    return static_cast<float*>(v.data) + g * v.strides[0] + i * v.strides[1];
}

// This rank's keys, values and combined key mask into `slot`.
void pack_block(const Problem& p, const Split& s, const Slot& slot) {
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < s.groups; ++g) {
        for (std::int64_t j = 0; j < p.tv; ++j) {
            std::memcpy(slot.keys + (g * p.tv + j) * p.dk, row_at(p.k, g, j), sizeof(float) * p.dk);
            std::memcpy(slot.values + (g * p.tv + j) * p.dv, row_at(p.v, g, j), sizeof(float) * p.dv);
        }
    }
    const std::uint8_t* m0 = p.key_masks[0];
    const std::uint8_t* m1 = p.key_masks[1];
    if (!m0 && !m1) return;
    s.for_each_key_chunk([&](std::int64_t first, std::int64_t count) {
        for (std::int64_t n = 0; n < s.batch; ++n)
            for (std::int64_t j = 0; j < count; ++j) {
                const std::int64_t at = n * s.tv + first + j;
                slot.mask[s.batch * first + n * count + j] =
                    static_cast<std::uint8_t>((!m0 || m0[at]) && (!m1 || m1[at]));
            }
    });
}

// The query mask of every part as its own (batch, rows) array, at batch · part.first.
void pack_query_masks(const Problem& p, const Split& s, const Part* parts, int count, std::uint8_t* room) {
    if (!p.query_mask) return;
    for (int c = 0; c < count; ++c)
        for (std::int64_t n = 0; n < s.batch; ++n)
            std::memcpy(room + s.batch * parts[c].first + n * parts[c].rows, p.query_mask + n * s.tq + parts[c].first,
                        parts[c].rows);
}

// The blockwise problem of one part of the queries against the chunk of local keys [first, first +
// count) of `slot`, from `origin`.
Problem pair_problem(const Problem& p, const Split& s, const Part& part, const Slot& slot, int origin,
                     std::int64_t first, std::int64_t count, const std::uint8_t* query_masks) {
    Problem sub = p;
    sub.tq = part.rows;
    sub.tv = count;
    sub.q = rows_view(p.q, part.first, part.rows);
    sub.k = rows_view(packed_view(slot.keys, s.groups, p.tv, p.dk), first, count);
    sub.v = rows_view(packed_view(slot.values, s.groups, p.tv, p.dv), first, count);
    sub.query_mask = p.query_mask ? query_masks + s.batch * part.first : nullptr;
    const bool key_mask = p.key_masks[0] || p.key_masks[1];
    sub.key_masks[0] = key_mask ? slot.mask + s.batch * first : nullptr;
    sub.key_masks[1] = nullptr;
    sub.two_key_masks = false;
    // A row that sees no key of this pair is left out of the merge; rows that see none at all are
    // settled over the whole turn (MultiHeadAttention's uniform rows: the mean of every value).
    sub.zero_masked = true;
    sub.query_start = s.query_start(part.first);
    sub.key_start = s.key_start(origin, first);
    sub.whole_tq = s.whole_tq;
    sub.whole_tv = s.whole_tv;
    sub.shard = nngraph::SequenceShard();
    return sub;
}

// Whether a pair can be left out: causality or the window hide every key from every query. Not
// with Attention's key masks: a row whose every key is masked softmaxes over all keys, hidden or not.
bool hidden(const Problem& p, const Problem& sub, const Pattern& pattern) {
    if (p.style == MaskStyle::kSubtract && (p.key_masks[0] || p.key_masks[1])) return false;
    const Masks masks(sub, pattern, nullptr);
    return !masks.block_candidate(0, 0, sub.tq, 0, sub.tv);
}

// Polls the transfers in flight, so that they progress while this rank computes.
template <std::size_t N>
void poll(nng::CommRequest (&requests)[N]) {
    for (nng::CommRequest& r : requests) r.test();
}
std::atomic<std::int64_t> g_call_nanoseconds{0}, g_wait_nanoseconds{0};

// Adds the time from its making to its end to `total`.
class Stopwatch {
public:
    explicit Stopwatch(std::atomic<std::int64_t>& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
    ~Stopwatch() {
        total_ +=
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
    }
    Stopwatch(const Stopwatch&) = delete;
    Stopwatch& operator=(const Stopwatch&) = delete;

private:
    std::atomic<std::int64_t>& total_;
    std::chrono::steady_clock::time_point start_;
};

// Waits for transfers, counting the time as the ring's waiting.
template <std::size_t N>
void wait_all(nng::CommRequest (&requests)[N]) {
    const Stopwatch waiting(g_wait_nanoseconds);
    for (nng::CommRequest& r : requests) r.wait();
}

// Merges a part's output and row statistics (`partial`, (G, rows, dv); `part_stats`, m and 1/l)
// into the rank's output and running statistics (m, l), by their log-sum-exp. Rows that saw no
// key here (m = -inf) add nothing.
void merge(const Problem& p, const Split& s, const Part& part, const float* partial, const float* part_stats,
           float* stats) {
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < s.groups; ++g) {
        for (std::int64_t i = 0; i < part.rows; ++i) {
            const float m = part_stats[(g * part.rows + i) * 2];
            if (m == kMinusInfinity) continue;
            const float l = 1.0f / part_stats[(g * part.rows + i) * 2 + 1];
            float* running = stats + (g * s.tq + part.first + i) * 2;
            float* out = row_at(p.out, g, part.first + i);
            const float* in = partial + (g * part.rows + i) * p.dv;
            if (running[0] == kMinusInfinity) {
                running[0] = m, running[1] = l;
                std::copy(in, in + p.dv, out);
                continue;
            }
            const float top = std::max(running[0], m);
            const float old_weight = std::exp(running[0] - top) * running[1], new_weight = std::exp(m - top) * l;
            const float total = old_weight + new_weight, a = old_weight / total, c = new_weight / total;
            for (std::int64_t e = 0; e < p.dv; ++e) out[e] = out[e] * a + in[e] * c;
            running[0] = top, running[1] = total;
        }
    }
}

}  // namespace

struct RingCore::Ids {
    BufferId stats;                       // saved in training: (m, 1/l) per query row
    BufferId query_masks, blocks, masks;  // both directions: the two slots
    BufferId partial, running, value_sums;
    BufferId gradients, chunk_gradients, part_gradients, uniform_gradients;
};

RingCore::Ids RingCore::declare(const Problem& p, bool training, BufferList& list) const {
    // The blockwise core's buffers come first, sized for the largest pair (a part of a piece as
    // long as the whole share, one key chunk), so that it finds them at the indices it declares
    // them at.
    Problem pair = p;
    pair.tq = part_rows(p.tq);
    pair.tv = std::min(p.tv, kKeyChunk);
    pair.two_key_masks = false;
    pair.zero_masked = true;
    list = blocks_.buffers(pair, training);
    Ids ids;
    const std::int64_t g = p.groups(), kv = g * p.tv * (p.dk + p.dv);
    if (training) ids.stats = list.floats("ring.row_statistics", Lifetime::kSaved, p.heads * p.tq * 2);
    ids.query_masks = list.bytes("ring.query_masks", Lifetime::kCall, p.batch * p.tq);
    ids.blocks = list.floats("ring.key_value_blocks", Lifetime::kCall, 2 * kv);
    ids.masks = list.bytes("ring.key_mask_blocks", Lifetime::kCall, 2 * p.batch * p.tv);
    ids.partial = list.floats("ring.partial_output", Lifetime::kForward, g * pair.tq * p.dv);
    ids.running = list.floats("ring.running_statistics", Lifetime::kForward, g * p.tq * 2);
    ids.value_sums = list.floats("ring.value_sums", Lifetime::kForward, g * p.dv);
    // Backward passes two gradient blocks around (one gathering, one on its way to the next rank);
    // those the op lends are not declared.
    ids.gradients =
        list.floats("ring.gradient_blocks", Lifetime::kBackward, std::max(0, 2 - p.lent_gradient_blocks) * kv);
    ids.chunk_gradients = list.floats("ring.chunk_gradients", Lifetime::kBackward, g * pair.tv * (p.dk + p.dv));
    ids.part_gradients = list.floats("ring.part_gradients", Lifetime::kBackward, g * pair.tq * p.dk);
    ids.uniform_gradients = list.floats("ring.uniform_row_gradients", Lifetime::kBackward, g * p.dv);
    return ids;
}

CoreWork RingCore::work(const Problem& p, bool training) const {
    // A rank's share: its queries against the keys of every rank.
    Problem share = p;
    share.tv = p.tv * std::max(1, p.shard.parts());
    return blocks_.work(share, training);
}

const DeclaredBuffers<BufferShape, RingCore::Ids>::Entry& RingCore::declared(const Problem& p, bool training) const {
    return declared_.get(BufferShape(p, training), [&](BufferList& list) { return declare(p, training, list); });
}

const BufferList& RingCore::buffers(const Problem& p, bool training) const { return declared(p, training).list; }

RingTimes ring_times() { return {g_call_nanoseconds.load(), g_wait_nanoseconds.load()}; }

void RingCore::forward(const Problem& p, const Buffers& buffers) const {
    const Stopwatch call(g_call_nanoseconds);
    const Split s(p);
    const Ids ids = declared(p, buffers.training()).ids;
    Part parts[kMaxParts];
    const int part_count = parts_of(s, parts);
    const std::int64_t kv = s.groups * p.tv * (p.dk + p.dv);
    float* blocks = buffers.floats(ids.blocks);
    const Slot slots[2] = {
        {blocks, blocks + s.groups * p.tv * p.dk, buffers.bytes(ids.masks)},
        {blocks + kv, blocks + kv + s.groups * p.tv * p.dk, buffers.bytes(ids.masks) + s.batch * p.tv}};
    std::uint8_t* query_masks = buffers.bytes(ids.query_masks);
    float* stats = buffers.training() ? buffers.floats(ids.stats) : buffers.floats(ids.running);
    float* partial = buffers.floats(ids.partial);
    const bool uniform_rows = p.style == MaskStyle::kReplace && !p.zero_masked;
    float* value_sums = buffers.floats(ids.value_sums);

    for (std::int64_t r = 0; r < s.groups * p.tq; ++r) stats[2 * r] = kMinusInfinity, stats[2 * r + 1] = 0.0f;
    if (uniform_rows) std::fill(value_sums, value_sums + s.groups * p.dv, 0.0f);
    pack_query_masks(p, s, parts, part_count, query_masks);
    pack_block(p, s, slots[0]);
    const bool key_mask = p.key_masks[0] || p.key_masks[1];
    for (int step = 0; step < s.ranks; ++step) {
        const Slot& here = slots[step % 2];
        const Slot& coming = slots[(step + 1) % 2];
        nng::CommRequest transfers[6];
        if (step + 1 < s.ranks) pass_block_on(p, s, here, coming, key_mask, transfers);
        const int origin = s.origin(step);
        if (uniform_rows) {
            for (std::int64_t g = 0; g < s.groups; ++g)
                for (std::int64_t j = 0; j < p.tv; ++j) {
                    const float* v = here.values + (g * p.tv + j) * p.dv;
                    for (std::int64_t e = 0; e < p.dv; ++e) value_sums[g * p.dv + e] += v[e];
                }
        }
        s.for_each_key_chunk([&](std::int64_t first, std::int64_t count) {
            for (int c = 0; c < part_count; ++c) {
                Problem sub = pair_problem(p, s, parts[c], here, origin, first, count, query_masks);
                if (hidden(p, sub, pattern_)) continue;
                sub.out = packed_view(partial, s.groups, parts[c].rows, p.dv);
                blocks_.forward(sub, buffers);
                merge(p, s, parts[c], partial, blocks_.statistics(sub, buffers), stats);
                poll(transfers);
            }
        });
        wait_all(transfers);
    }
    // Rows no key reached: zero, or (MultiHeadAttention's fully masked rows) the mean of every value.
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < s.groups; ++g) {
        for (std::int64_t i = 0; i < p.tq; ++i) {
            float* st = stats + (g * p.tq + i) * 2;
            float* out = row_at(p.out, g, i);
            if (st[0] != kMinusInfinity) {
                st[1] = 1.0f / st[1];
                continue;
            }
            st[1] = 0.0f;
            for (std::int64_t e = 0; e < p.dv; ++e)
                out[e] = uniform_rows ? value_sums[g * p.dv + e] / static_cast<float>(s.whole_tv) : 0.0f;
        }
    }
}

namespace {

bool contiguous_groups(const onednn::View& v, std::int64_t groups, std::int64_t rows, std::int64_t d) {
    return v.present() && v.rank == 3 && v.dims[0] == groups && v.dims[1] == rows && v.dims[2] == d &&
           v.strides[0] == rows * d && v.strides[1] == d && v.strides[2] == 1;
}

// Starts the transfer of a block's gradients to the next rank, or from the previous one into it.
void send_gradients(const Problem& p, const Split& s, const GradientBlock& block, nng::CommRequest (&requests)[2]) {
    requests[0] = p.comm.isend(std::span(block.keys, s.groups * p.tv * p.dk), s.next(), kKeyGradientsTag);
    requests[1] = p.comm.isend(std::span(block.values, s.groups * p.tv * p.dv), s.next(), kValueGradientsTag);
}
void receive_gradients(const Problem& p, const Split& s, const GradientBlock& block, nng::CommRequest (&requests)[2]) {
    requests[0] = p.comm.irecv(std::span(block.keys, s.groups * p.tv * p.dk), s.previous(), kKeyGradientsTag);
    requests[1] = p.comm.irecv(std::span(block.values, s.groups * p.tv * p.dv), s.previous(), kValueGradientsTag);
}

// block rows [first, first + count) of every group += chunk, laid out (G, count, d).
void add_chunk(float* block, const float* chunk, std::int64_t groups, std::int64_t rows, std::int64_t first,
               std::int64_t count, std::int64_t d) {
#pragma omp parallel for schedule(static) if (groups * count * d > 65536)
    for (std::int64_t g = 0; g < groups; ++g) {
        float* to = block + (g * rows + first) * d;
        const float* from = chunk + g * count * d;
        for (std::int64_t e = 0; e < count * d; ++e) to[e] += from[e];
    }
}

}  // namespace

void RingCore::backward(const Problem& p, const Buffers& buffers, const onednn::View& dout,
                        const CoreGradients& grads) const {
    const Stopwatch call(g_call_nanoseconds);
    const Split s(p);
    const Ids ids = declared(p, buffers.training()).ids;
    const float* stats = buffers.floats(ids.stats);
    if (!stats) throw std::logic_error("attention ring core: backward without the forward's row statistics");
    const std::int64_t G = s.groups, keys = G * p.tv * p.dk, kv = keys + G * p.tv * p.dv;
    Part parts[kMaxParts];
    const int part_count = parts_of(s, parts);
    float* blocks = buffers.floats(ids.blocks);
    const Slot slots[2] = {{blocks, blocks + keys, buffers.bytes(ids.masks)},
                           {blocks + kv, blocks + kv + keys, buffers.bytes(ids.masks) + s.batch * p.tv}};
    // The gradient blocks: step i of the turn gathers into accumulators[i % 2 == ranks % 2], so
    // that the one coming home after the turn lands in accumulators[1]: the op's own dk and dv
    // when it lends them.
    GradientBlock accumulators[2] = {};
    if (float* own = buffers.floats(ids.gradients)) {  // the blocks the op does not lend
        for (int i = 0; i < 2 - p.lent_gradient_blocks; ++i) accumulators[i] = {own + i * kv, own + i * kv + keys};
    }
    const auto lent = [&](const onednn::View& dk, const onednn::View& dv) {
        if (!contiguous_groups(dk, G, p.tv, p.dk) || !contiguous_groups(dv, G, p.tv, p.dv) || dk.data == dv.data) {
            throw std::logic_error("attention ring core: the op lends " + dk.describe() + " and " + dv.describe() +
                                   " as gradient blocks; expected two distinct contiguous (groups, steps, d) arrays");
        }
        return GradientBlock{static_cast<float*>(dk.data), static_cast<float*>(dv.data)};
    };
    if (p.lent_gradient_blocks >= 1) {
        if (grads.dk_accumulates || grads.dv_accumulates)
            throw std::logic_error("attention ring core: lent key and value gradients must be written, not added to");
        accumulators[1] = lent(grads.dk, grads.dv);
    }
    if (p.lent_gradient_blocks >= 2) accumulators[0] = lent(grads.spare_dk, grads.spare_dv);
    const auto accumulator = [&](int step) -> const GradientBlock& {
        return accumulators[step % 2 == s.ranks % 2 ? 1 : 0];
    };
    std::uint8_t* query_masks = buffers.bytes(ids.query_masks);
    float* chunk_gradients = buffers.floats(ids.chunk_gradients);
    float* dq_part = buffers.floats(ids.part_gradients);
    if (grads.dq.present()) {
        for (std::int64_t g = 0; g < G; ++g)
            for (std::int64_t i = 0; i < p.tq; ++i)
                std::fill(row_at(grads.dq, g, i), row_at(grads.dq, g, i) + p.dk, 0.0f);
    }
    // MultiHeadAttention's uniform rows (no key seen anywhere) weight every value by 1 / steps: each
    // block passing by takes this rank's share of their dL/dout.
    float* uniform = buffers.floats(ids.uniform_gradients);
    const bool uniform_rows = p.style == MaskStyle::kReplace && !p.zero_masked && dout.present();
    if (uniform_rows) {
        std::fill(uniform, uniform + G * p.dv, 0.0f);
        for (std::int64_t g = 0; g < G; ++g)
            for (std::int64_t i = 0; i < p.tq; ++i) {
                if (stats[(g * p.tq + i) * 2] != kMinusInfinity) continue;
                const float* d = row_at(dout, g, i);
                for (std::int64_t e = 0; e < p.dv; ++e) uniform[g * p.dv + e] += d[e] / static_cast<float>(s.whole_tv);
            }
    }
    pack_query_masks(p, s, parts, part_count, query_masks);
    pack_block(p, s, slots[0]);
    const bool key_mask = p.key_masks[0] || p.key_masks[1];
    double d_alpha = 0.0;
    // By the parity of the step that started them: a gradient block's sends, and the receive into it.
    nng::CommRequest gradient_sends[2][2], gradient_receives[2];
    for (int step = 0; step < s.ranks; ++step) {
        const Slot& here = slots[step % 2];
        const Slot& coming = slots[(step + 1) % 2];
        nng::CommRequest transfers[6];
        if (step + 1 < s.ranks) pass_block_on(p, s, here, coming, key_mask, transfers);
        // This block's gradients so far arrive from the rank that computed on it last step, into
        // the gradient block whose sends (two steps ago) the next rank has long received; this
        // rank's pairs gather chunk by chunk and add in once it is here.
        const GradientBlock& gathering = accumulator(step);
        if (step == 0) {
            std::fill(gathering.keys, gathering.keys + keys, 0.0f);
            std::fill(gathering.values, gathering.values + (kv - keys), 0.0f);
        } else {
            wait_all(gradient_sends[step % 2]);
            receive_gradients(p, s, gathering, gradient_receives);
        }
        const int origin = s.origin(step);
        s.for_each_key_chunk([&](std::int64_t first, std::int64_t count) {
            float* chunk_dk = chunk_gradients;
            float* chunk_dv = chunk_gradients + G * count * p.dk;
            std::fill(chunk_dk, chunk_dk + G * count * p.dk, 0.0f);
            for (std::int64_t g = 0; g < G; ++g)
                for (std::int64_t j = 0; j < count; ++j) {
                    float* dv = chunk_dv + (g * count + j) * p.dv;
                    if (uniform_rows)
                        std::copy(uniform + g * p.dv, uniform + (g + 1) * p.dv, dv);
                    else
                        std::fill(dv, dv + p.dv, 0.0f);
                }
            // Without dL/dout the block's gradients are zero, but the turn goes on: the neighbours wait for it.
            for (int c = 0; c < part_count && dout.present(); ++c) {
                const Part& part = parts[c];
                Problem sub = pair_problem(p, s, part, here, origin, first, count, query_masks);
                if (hidden(p, sub, pattern_)) continue;
                sub.out = rows_view(p.out, part.first, part.rows);
                float* pair_stats = blocks_.statistics(sub, buffers);
                for (std::int64_t g = 0; g < G; ++g)
                    std::copy(stats + (g * p.tq + part.first) * 2, stats + (g * p.tq + part.first + part.rows) * 2,
                              pair_stats + g * part.rows * 2);
                CoreGradients pair_grads;
                if (grads.dq.present()) {
                    // The blockwise core leaves the query gradient of a tile without computed rows as it was.
                    std::fill(dq_part, dq_part + G * part.rows * p.dk, 0.0f);
                    pair_grads.dq = packed_view(dq_part, G, part.rows, p.dk);
                }
                // The chunk's key and value gradients sum over the pairs in place.
                pair_grads.dk = packed_view(chunk_dk, G, count, p.dk);
                pair_grads.dv = packed_view(chunk_dv, G, count, p.dv);
                pair_grads.dk_accumulates = pair_grads.dv_accumulates = true;
                double pair_alpha = 0.0;
                if (grads.d_alpha_product) pair_grads.d_alpha_product = &pair_alpha;
                blocks_.backward(sub, buffers, rows_view(dout, part.first, part.rows), pair_grads);
                d_alpha += pair_alpha;
                if (grads.dq.present()) {
#pragma omp parallel for schedule(static)
                    for (std::int64_t g = 0; g < G; ++g)
                        for (std::int64_t i = 0; i < part.rows; ++i) {
                            float* to = row_at(grads.dq, g, part.first + i);
                            const float* from = dq_part + (g * part.rows + i) * p.dk;
                            for (std::int64_t e = 0; e < p.dk; ++e) to[e] += from[e];
                        }
                }
                poll(transfers);
                poll(gradient_receives);
            }
            wait_all(gradient_receives);
            add_chunk(gathering.keys, chunk_dk, G, p.tv, first, count, p.dk);
            add_chunk(gathering.values, chunk_dv, G, p.tv, first, count, p.dv);
        });
        if (s.ranks > 1) send_gradients(p, s, gathering, gradient_sends[step % 2]);
        wait_all(transfers);
    }
    // After a full turn each block's gradients come home from the previous rank.
    const GradientBlock& home = accumulator(s.ranks > 1 ? s.ranks : 0);
    if (s.ranks > 1) {
        wait_all(gradient_sends[s.ranks % 2]);
        receive_gradients(p, s, home, gradient_receives);
        wait_all(gradient_receives);
        wait_all(gradient_sends[(s.ranks + 1) % 2]);
    }

    const auto unpack = [&](const onednn::View& dst, const float* src, std::int64_t d, bool accumulate) {
        if (!dst.present() || dst.data == src) return;
#pragma omp parallel for schedule(static)
        for (std::int64_t g = 0; g < G; ++g)
            for (std::int64_t j = 0; j < p.tv; ++j) {
                const float* from = src + (g * p.tv + j) * d;
                float* to = row_at(dst, g, j);
                for (std::int64_t e = 0; e < d; ++e) to[e] = (accumulate ? to[e] : 0.0f) + from[e];
            }
    };
    // dv first: with dk_accumulates, dk may add into the same memory.
    unpack(grads.dv, home.values, p.dv, false);
    unpack(grads.dk, home.keys, p.dk, grads.dk_accumulates);
    if (grads.d_alpha_product) *grads.d_alpha_product = d_alpha;
    if (grads.d_spans) std::fill(grads.d_spans, grads.d_spans + p.heads, 0.0f);
}

}  // namespace nngraph_attention
