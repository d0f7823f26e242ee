// Runs a table of gradient-check rows as doctest checks: each row reports its label, the elements
// checked and every failing one.
#pragma once

#include <doctest/doctest.h>

#include <vector>

#include "gradcheck.hpp"

namespace nngraph::testing {

inline void check_gradient_table(const std::vector<GradCase>& cases, const OpRegistry& registry = built_plugins()) {
    for (const GradCase& c : cases) {
        CAPTURE(c.label);
        const GradResult result = check_gradients(c, registry);
        INFO(result.report);
        CHECK(result.checked > 0);
        CHECK(result.ok);
    }
}

}  // namespace nngraph::testing
