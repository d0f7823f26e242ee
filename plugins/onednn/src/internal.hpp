// What the module's source files share and plugins need not see.
#pragma once

#include <initializer_list>
#include <string_view>
#include <utility>

#include "nngraph/onednn.hpp"

namespace nng::onednn::detail {

// A view in a building block's error message: "A f32 (64, 200, 32)".
struct Named {
    const char* name;
    const View* view;
};

// Throws std::runtime_error("<op>: A f32 (2, 3), B f32 (4, 5): <reason>").
[[noreturn]] void fail(std::string_view op, std::initializer_list<Named> views, std::string_view reason);

// Runs body(); a failure inside (oneDNN's or the cache's) is rethrown with the op and its views.
template <class Body>
void with_context(std::string_view op, std::initializer_list<Named> views, Body&& body) {
    try {
        std::forward<Body>(body)();
    } catch (const std::exception& e) {
        fail(op, views, e.what());
    }
}

}  // namespace nng::onednn::detail
