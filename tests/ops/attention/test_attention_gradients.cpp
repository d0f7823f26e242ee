// Finite-difference gradient checks of Attention and MultiHeadAttention: every input and weight,
// one row per attribute set, mask combination and shape.
#include <doctest/doctest.h>

#include "gradcheck_table.hpp"

using nngraph::DType;
using nngraph::testing::check_gradient_table;
using nngraph::testing::GradCase;
using nngraph::testing::sequence_input;

TEST_CASE("Attention backward matches finite differences") {
    check_gradient_table({
        {"two inputs", "Attention", "{}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"three inputs",
         "Attention",
         "{}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 4), sequence_input(2, 5, 3)}},
        {"Tq != Tv, dv != dim",
         "Attention",
         "{}",
         {sequence_input(2, 3, 4), sequence_input(2, 6, 2), sequence_input(2, 6, 4)}},
        {"score_mode concat", "Attention", "{score_mode: concat}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"concat, use_scale, three inputs",
         "Attention",
         "{score_mode: concat, use_scale: true}",
         {sequence_input(2, 3, 3), sequence_input(2, 4, 2), sequence_input(2, 4, 3)}},
        {"use_scale", "Attention", "{use_scale: true}", {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"use_scale, three inputs",
         "Attention",
         "{use_scale: true, scale: 0.5}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"constant scale",
         "Attention",
         "{scale: 0.57735}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"use_causal_mask", "Attention", "{use_causal_mask: true}", {sequence_input(2, 5, 3), sequence_input(2, 5, 3)}},
        {"value mask",
         "Attention",
         "{}",
         {sequence_input(2, 4, 3), sequence_input(2, 6, 3, true), sequence_input(2, 6, 3)}},
        {"query mask", "Attention", "{}", {sequence_input(2, 5, 3, true), sequence_input(2, 4, 3)}},
        {"both masks, causal",
         "Attention",
         "{use_causal_mask: true}",
         {sequence_input(3, 5, 3, true), sequence_input(3, 5, 3, true)}},
        {"dropout, fixed seed",
         "Attention",
         "{dropout: 0.4, seed: 7}",
         {sequence_input(2, 5, 3), sequence_input(2, 6, 3)}},
        {"dropout with masks and use_scale",
         "Attention",
         "{dropout: 0.3, use_scale: true}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 9, 3, true)}},
    });
}

TEST_CASE("MultiHeadAttention backward matches finite differences") {
    check_gradient_table({
        {"self-attention", "MultiHeadAttention", "{num_heads: 2, key_dim: 3}", {sequence_input(2, 4, 5)}},
        {"cross, [query, value]",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 3}",
         {sequence_input(2, 4, 5), sequence_input(2, 6, 3)}},
        {"cross, [query, value, key]",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2}",
         {sequence_input(2, 3, 4), sequence_input(2, 5, 3), sequence_input(2, 5, 2)}},
        {"value_dim != key_dim",
         "MultiHeadAttention",
         "{num_heads: 3, key_dim: 2, value_dim: 4}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"output_shape",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, output_shape: [2, 3]}",
         {sequence_input(2, 3, 4), sequence_input(2, 4, 4)}},
        {"without bias",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 3, use_bias: false}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3), sequence_input(2, 5, 4)}},
        {"masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 5, 3, true), sequence_input(2, 5, 2, true)}},
        {"self-attention, mask, causal",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, use_causal_mask: true}",
         {sequence_input(2, 5, 3, true)}},
        {"causal, cross",
         "MultiHeadAttention",
         "{num_heads: 1, key_dim: 3, use_causal_mask: true}",
         {sequence_input(2, 4, 3), sequence_input(2, 6, 3)}},
        {"dropout, masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, dropout: 0.3, seed: 5}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 5, 3)}},
    });
}
