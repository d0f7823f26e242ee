// The SDK's header-only helpers: sizing and carving buffers, splitting loops, routing gradients.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "nngraph/arithmetic.hpp"
#include "nngraph/carver.hpp"
#include "nngraph/parallel.hpp"
#include "nngraph/sdk.hpp"

namespace {

// The arrays a plugin might carve, in one function for counting and carving alike.
struct Pieces {
    float* rows;
    double* sums;
    std::uint16_t* halves;
    std::int32_t* ids;

    explicit Pieces(nng::Carver& c)
        : rows(c.take<float>(17)),
          sums(c.take<double>(3)),
          halves(c.take<std::uint16_t>(65)),
          ids(c.take<std::int32_t>(0)) {}
};

}  // namespace

TEST_CASE("ceil_div and round_up round up, across integer types") {
    CHECK(nng::ceil_div(0, 8) == 0);
    CHECK(nng::ceil_div(1, 8) == 1);
    CHECK(nng::ceil_div(8, 8) == 1);
    CHECK(nng::ceil_div(9, 8) == 2);
    CHECK(nng::ceil_div(std::int64_t{200}, 64) == 4);
    CHECK(nng::ceil_div(std::size_t{4097}, sizeof(float)) == 1025u);
    CHECK(nng::round_up(0, 16) == 0);
    CHECK(nng::round_up(1, 16) == 16);
    CHECK(nng::round_up(std::int64_t{200}, std::int64_t{64}) == 256);
    CHECK(nng::round_up(std::size_t{64}, 64) == 64u);
    static_assert(nng::round_up(33, 32) == 64);
}

TEST_CASE("split_point cuts n into parts that differ by one at most, fair in every run of parts") {
    CHECK(nng::split_point(64, 22, 0) == 0);
    CHECK(nng::split_point(64, 22, 22) == 64);
    CHECK(nng::split_point(64, 22, 11) == 32);  // two threads of 11 parts each: 32 samples each
    for (const std::int64_t n : {0, 1, 5, 16, 64, 1000}) {
        for (const std::int64_t parts : {1, 2, 3, 6, 22}) {
            std::int64_t smallest = n, largest = 0;
            for (std::int64_t i = 0; i < parts; ++i) {
                const std::int64_t size = nng::split_point(n, parts, i + 1) - nng::split_point(n, parts, i);
                smallest = std::min(smallest, size);
                largest = std::max(largest, size);
            }
            CHECK(largest - smallest <= 1);
            CHECK(largest == nng::ceil_div(n, parts));
        }
    }
    static_assert(nng::split_point(std::size_t{10}, 4, 3) == 7u);
}

TEST_CASE("a counting carver sizes exactly what a carving one hands out, each array on 64 bytes") {
    nng::Carver counter;
    const Pieces counted(counter);
    CHECK(counted.rows == nullptr);
    CHECK(counted.sums == nullptr);
    // 17 floats, 3 doubles and 65 halves each round up to 128, 64 and 192 bytes; the empty array takes none.
    CHECK(counter.bytes() == 128 + 64 + 192);
    CHECK(counter.floats() == (128 + 64 + 192) / 4);

    void* block = std::aligned_alloc(64, counter.bytes());
    REQUIRE(block != nullptr);
    nng::Carver carver(block, counter.bytes());
    const Pieces pieces(carver);
    const auto at = [&](const void* p) { return static_cast<const std::byte*>(p) - static_cast<std::byte*>(block); };
    CHECK(at(pieces.rows) == 0);
    CHECK(at(pieces.sums) == 128);
    CHECK(at(pieces.halves) == 192);
    CHECK(at(pieces.ids) == 384);  // where the next array would start
    CHECK(carver.bytes() == counter.bytes());
    std::free(block);
}

TEST_CASE("a carver refuses arrays beyond its block and negative counts") {
    alignas(64) float block[32];
    nng::Carver carver(block, sizeof block);
    CHECK(carver.take<float>(16) == block);
    CHECK_THROWS_AS(carver.take<float>(17), std::length_error);
    nng::Carver other(block, sizeof block);
    CHECK_THROWS_AS(other.take<double>(-1), std::invalid_argument);
    nng::Carver none(nullptr, 0);
    CHECK(none.take<float>(0) == nullptr);
    CHECK_THROWS_AS(none.take<float>(1), std::length_error);
}

TEST_CASE("parallel_ranges gives each thread one run of near-equal size, the runs covering the count in order") {
    for (const std::int64_t count : {0, 1, 2, 7, 1000}) {
        for (const int threads : {1, 2, 3}) {
            CAPTURE(count);
            CAPTURE(threads);
            std::vector<std::int64_t> begins(4, -1), ends(4, -1);
            std::vector<int> teams(4, 0);
            nng::parallel_ranges(count, threads, [&](std::int64_t begin, std::int64_t end) {
                const int thread = omp_get_thread_num();
                begins[static_cast<std::size_t>(thread)] = begin;
                ends[static_cast<std::size_t>(thread)] = end;
                teams[static_cast<std::size_t>(thread)] = omp_get_num_threads();
            });
            // One thread (or too little to split) runs the whole count on the caller.
            const int team = threads > 1 && count > 1 ? teams[0] : 1;
            REQUIRE(team >= 1);
            std::int64_t next = 0;
            for (int t = 0; t < team; ++t) {
                CHECK(begins[static_cast<std::size_t>(t)] == next);
                CHECK(ends[static_cast<std::size_t>(t)] == nng::split_point(count, team, t + 1));
                next = ends[static_cast<std::size_t>(t)];
            }
            CHECK(next == count);
        }
    }
}

TEST_CASE("GradientSlots sends a repeated input's gradient to its first input's slot when the host leaves it absent") {
    // Inputs [x, x, y]: input 1 repeats input 0.
    nng_tensor_info infos[3] = {};
    const std::int32_t sources[3] = {0, 0, 2};
    nng_infer_io io{};
    io.struct_size = sizeof io;
    io.num_inputs = 3;
    io.inputs = infos;
    io.input_sources = sources;
    nng::InferContext ctx(&io);
    const nng::GradientSlots slots(ctx);

    float memory[3] = {};
    const auto tensor = [](float* data) {
        nng_tensor t{};
        t.struct_size = sizeof t;
        t.dtype = NNG_F32;
        t.data = data;
        return t;
    };
    const auto slots_of = [&](bool x0, bool x1, bool y) {
        const nng_tensor grads[3] = {tensor(x0 ? &memory[0] : nullptr), tensor(x1 ? &memory[1] : nullptr),
                                     tensor(y ? &memory[2] : nullptr)};
        nng_context context{};
        context.struct_size = sizeof context;
        nng_exec_args args{};
        args.struct_size = sizeof args;
        args.num_inputs = 3;
        args.grad_inputs = grads;
        const nng::Exec exec(&context, &args);
        std::vector<int> of;
        for (int i = 0; i < 3; ++i) {
            of.push_back(slots.of(exec, i));
            const nng::TensorRef t = slots.tensor(exec, i);
            CHECK(t.present() == (of.back() >= 0));
            if (t.present()) CHECK(t.raw() == &memory[of.back()]);
        }
        return of;
    };
    CHECK(slots_of(true, true, true) == std::vector<int>{0, 1, 2});      // every slot given
    CHECK(slots_of(true, false, true) == std::vector<int>{0, 0, 2});     // the repeat left to the op
    CHECK(slots_of(false, false, true) == std::vector<int>{-1, -1, 2});  // x's gradient not wanted
    CHECK(slots_of(true, true, false) == std::vector<int>{0, 1, -1});    // y is no repeat: none
}

TEST_CASE("sum_repeated_gradients writes its field only for a host that knows it") {
    nng_tensor_info info{};
    nng_infer_io io{};
    io.num_inputs = 1;
    io.inputs = &info;
    io.sums_repeated_gradients = 7;  // past an older host's struct: not the op's to write
    io.struct_size = offsetof(nng_infer_io, sums_repeated_gradients);
    nng::InferContext(&io).sum_repeated_gradients();
    CHECK(io.sums_repeated_gradients == 7);
    io.struct_size = sizeof io;
    nng::InferContext(&io).sum_repeated_gradients();
    CHECK(io.sums_repeated_gradients == 1);
}
