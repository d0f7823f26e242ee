// Which global steps a rank of a sequence-parallel job holds (nng_sequence_shard), computed in one
// place for the host that splits the inputs and for the ops (ring attention, position embeddings,
// pooling) that need global positions.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "nngraph/plugin.h"

namespace nngraph {

class SequenceShard {
public:
    SequenceShard() = default;  // whole sequences: one part holding every step
    SequenceShard(nng_shard_layout layout, int parts, int part, std::int64_t global_steps)
        : layout_(layout), parts_(parts), part_(part), global_steps_(global_steps) {
        if (parts < 1 || part < 0 || part >= parts) {
            throw std::invalid_argument("sequence shard: part " + std::to_string(part) + " of " +
                                        std::to_string(parts) + " parts");
        }
        if (global_steps % pieces() != 0) {
            throw std::invalid_argument("sequence shard: " + std::to_string(global_steps) +
                                        " steps do not split into " + std::to_string(pieces()) + " equal pieces (" +
                                        (layout == NNG_SHARD_ZIGZAG ? "zigzag, 2 per rank" : "one per rank") +
                                        " over " + std::to_string(parts) + " ranks)");
        }
    }
    explicit SequenceShard(const nng_sequence_shard& c)
        : SequenceShard(static_cast<nng_shard_layout>(c.layout), c.parts, c.part, c.global_steps) {}

    nng_sequence_shard to_c() const {
        return {sizeof(nng_sequence_shard), static_cast<std::int32_t>(layout_), parts_, part_, global_steps_};
    }

    nng_shard_layout layout() const { return layout_; }
    int parts() const { return parts_; }
    int part() const { return part_; }
    std::int64_t global_steps() const { return global_steps_; }
    // Equal pieces the sequence is cut into: one per rank, or two for the zigzag layout.
    int pieces() const { return layout_ == NNG_SHARD_ZIGZAG ? 2 * parts_ : parts_; }
    std::int64_t piece_steps() const { return global_steps_ / pieces(); }
    std::int64_t local_steps() const { return global_steps_ / parts_; }

    // The global position of local step `local` of rank `of_part` (this rank's by default).
    std::int64_t global_position(std::int64_t local) const { return global_position(part_, local); }
    std::int64_t global_position(int of_part, std::int64_t local) const {
        const std::int64_t piece = piece_steps();
        if (layout_ == NNG_SHARD_CONTIGUOUS) return std::int64_t{of_part} * piece + local;
        const std::int64_t which = local / piece;  // 0: the early piece, 1: its mirror
        const std::int64_t index = which == 0 ? of_part : 2 * std::int64_t{parts_} - 1 - of_part;
        return index * piece + local % piece;
    }

private:
    nng_shard_layout layout_ = NNG_SHARD_CONTIGUOUS;
    int parts_ = 1;
    int part_ = 0;
    std::int64_t global_steps_ = 0;
};

}  // namespace nngraph
