// The split of a sequence over ranks: every global step held exactly once, in the layout's order.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "nngraph/sequence_shard.hpp"

using namespace nngraph;

namespace {

std::vector<std::int64_t> positions_of(const SequenceShard& shard) {
    std::vector<std::int64_t> out;
    for (std::int64_t local = 0; local < shard.local_steps(); ++local) out.push_back(shard.global_position(local));
    return out;
}

}  // namespace

TEST_CASE("a contiguous shard holds one piece; a zigzag shard holds piece r and its mirror 2N-1-r") {
    CHECK(positions_of(SequenceShard(NNG_SHARD_CONTIGUOUS, 3, 1, 12)) == std::vector<std::int64_t>{4, 5, 6, 7});
    CHECK(positions_of(SequenceShard(NNG_SHARD_ZIGZAG, 2, 0, 8)) == std::vector<std::int64_t>{0, 1, 6, 7});
    CHECK(positions_of(SequenceShard(NNG_SHARD_ZIGZAG, 2, 1, 8)) == std::vector<std::int64_t>{2, 3, 4, 5});
    CHECK(positions_of(SequenceShard()) == std::vector<std::int64_t>{});
}

TEST_CASE("over all ranks every global step is held exactly once") {
    for (const auto layout : {NNG_SHARD_CONTIGUOUS, NNG_SHARD_ZIGZAG}) {
        for (int parts = 1; parts <= 4; ++parts) {
            const std::int64_t steps = 24;
            std::vector<int> held(static_cast<std::size_t>(steps), 0);
            for (int part = 0; part < parts; ++part) {
                const SequenceShard shard(layout, parts, part, steps);
                const nng_sequence_shard c = shard.to_c();
                CHECK(SequenceShard(c).global_position(shard.local_steps() - 1) ==
                      shard.global_position(shard.local_steps() - 1));
                for (std::int64_t p : positions_of(shard)) ++held[static_cast<std::size_t>(p)];
            }
            CHECK(std::all_of(held.begin(), held.end(), [](int n) { return n == 1; }));
        }
    }
}

TEST_CASE("a sequence that does not split into equal pieces is refused with the counts") {
    CHECK_THROWS_WITH(SequenceShard(NNG_SHARD_ZIGZAG, 3, 0, 20),
                      doctest::Contains("20 steps do not split into 6 equal pieces"));
    CHECK_THROWS_WITH(SequenceShard(NNG_SHARD_CONTIGUOUS, 2, 2, 20), doctest::Contains("part 2 of 2 parts"));
}
