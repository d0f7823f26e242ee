// The attention ops' buffer lists are built once per shape (DeclaredBuffers): a repeated shape
// finds its entry without declaring again, a new one declares, and the oldest shape is dropped
// only when more shapes than the cache holds have been asked for since.
#include <doctest/doctest.h>

#include <cstdint>

#include "buffers.hpp"

namespace {

using nngraph_attention::BufferList;
using nngraph_attention::DeclaredBuffers;

struct Shape {
    std::int64_t batch = 0;
    bool training = false;
    bool operator==(const Shape&) const = default;
};

struct Ids {
    std::int64_t declared_for = -1;
};

struct Counted {
    DeclaredBuffers<Shape, Ids> cache;
    int declarations = 0;

    const DeclaredBuffers<Shape, Ids>::Entry& get(Shape shape) {
        return cache.get(shape, [&](BufferList&) {
            ++declarations;
            return Ids{shape.batch};
        });
    }
};

}  // namespace

TEST_CASE("attention buffer lists: declared once per shape, for that shape") {
    Counted c;
    const auto& first = c.get({64, true});
    CHECK(first.ids.declared_for == 64);
    CHECK(&c.get({64, true}) == &first);
    CHECK(c.declarations == 1);

    // Training and inference plans of one batch are different shapes.
    CHECK(c.get({64, false}).ids.declared_for == 64);
    CHECK(c.declarations == 2);
    CHECK(c.get({7, false}).ids.declared_for == 7);
    CHECK(c.declarations == 3);
    CHECK(&c.get({64, true}) == &first);
    CHECK(c.declarations == 3);
}

TEST_CASE("attention buffer lists: the oldest shape is declared again once others have taken its place") {
    Counted c;
    for (std::int64_t batch = 1; batch <= 8; ++batch) CHECK(c.get({batch, false}).ids.declared_for == batch);
    CHECK(c.declarations == 8);
    // The last shapes are still there, the first ones were dropped and come back declared afresh.
    CHECK(c.get({8, false}).ids.declared_for == 8);
    CHECK(c.declarations == 8);
    CHECK(c.get({1, false}).ids.declared_for == 1);
    CHECK(c.declarations == 9);
}
