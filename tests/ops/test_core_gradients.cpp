// Finite-difference gradient checks of the foundation's ops: Dense, Activation, Add, Multiply,
// Concatenate, Flatten, Reshape. Each row is one op, one attribute set, one set of shapes.
#include <doctest/doctest.h>

#include "gradcheck_table.hpp"

using nngraph::DType;
using nngraph::testing::check_gradient_table;
using nngraph::testing::GradCase;

TEST_CASE("Dense backward matches finite differences for every activation and shape") {
    std::vector<GradCase> cases;
    for (const char* activation : {"linear", "relu", "sigmoid", "tanh", "softmax", "gelu"}) {
        const std::string a = activation;
        const double step = a == "relu" ? 1e-3 : 1e-2;
        cases.push_back(
            {"Dense " + a + " (4, 5) -> 3", "Dense", "{units: 3, activation: " + a + "}", {{{4, 5}}}, step});
        cases.push_back(
            {"Dense " + a + " (2, 3, 4) -> 5", "Dense", "{units: 5, activation: " + a + "}", {{{2, 3, 4}}}, step});
    }
    cases.push_back({"Dense without bias", "Dense", "{units: 4, use_bias: false}", {{{3, 6}}}});
    cases.push_back(
        {"Dense sigmoid without bias, wide", "Dense", "{units: 8, activation: sigmoid, use_bias: false}", {{{7, 16}}}});
    check_gradient_table(cases);
}

TEST_CASE("Activation backward matches finite differences") {
    std::vector<GradCase> cases;
    for (const char* activation :
         {"linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "softplus", "swish"}) {
        const std::string a = activation;
        const double step = a == "relu" || a == "elu" ? 1e-3 : 1e-2;
        cases.push_back({"Activation " + a + " (4, 6)",
                         "Activation",
                         "{activation: " + a + "}",
                         {{{4, 6}, DType::F32, -2, 2}},
                         step});
        cases.push_back({"Activation " + a + " (2, 3, 5)",
                         "Activation",
                         "{activation: " + a + "}",
                         {{{2, 3, 5}, DType::F32, -2, 2}},
                         step});
    }
    check_gradient_table(cases);
}

TEST_CASE("glue ops' backward matches finite differences") {
    check_gradient_table({
        {"Add of two", "Add", "{}", {{{3, 4}}, {{3, 4}}}},
        {"Add of three, rank 3", "Add", "{}", {{{2, 3, 4}}, {{2, 3, 4}}, {{2, 3, 4}}}},
        {"Multiply of two", "Multiply", "{}", {{{3, 4}}, {{3, 4}}}},
        {"Multiply of three", "Multiply", "{}", {{{2, 5}}, {{2, 5}}, {{2, 5}}}},
        {"Concatenate last axis", "Concatenate", "{}", {{{2, 3, 4}}, {{2, 3, 2}}}},
        {"Concatenate axis 1", "Concatenate", "{axis: 1}", {{{2, 3, 4}}, {{2, 1, 4}}, {{2, 2, 4}}}},
        {"Flatten", "Flatten", "{}", {{{2, 3, 4}}}},
        {"Reshape to (3, 4)", "Reshape", "{target_shape: [3, 4]}", {{{2, 12}}}},
        {"Reshape with -1", "Reshape", "{target_shape: [-1, 2]}", {{{2, 3, 4}}}},
    });
}
