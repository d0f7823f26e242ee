// Finite-difference gradient checks of every long-context variant and option: blockwise, sliding
// window (global tokens, causal), block-sparse and adaptive span (its span weight included), on
// Attention and MultiHeadAttention, with masks, causal masking and dropout.
#include <doctest/doctest.h>

#include "gradcheck_table.hpp"

using nngraph::testing::check_gradient_table;
using nngraph::testing::GradCase;
using nngraph::testing::sequence_input;

TEST_CASE("blockwise attention backward matches finite differences") {
    check_gradient_table({
        {"Attention", "Attention", "{implementation: blockwise}", {sequence_input(2, 5, 3), sequence_input(2, 6, 3)}},
        {"Attention, three inputs, 70 steps",
         "Attention",
         "{implementation: blockwise}",
         {sequence_input(1, 70, 3), sequence_input(1, 70, 4), sequence_input(1, 70, 3)}},
        {"Attention, masks, causal",
         "Attention",
         "{implementation: blockwise, use_causal_mask: true}",
         {sequence_input(3, 6, 3, true), sequence_input(3, 6, 3, true)}},
        {"Attention, use_scale, scale",
         "Attention",
         "{implementation: blockwise, use_scale: true, scale: 0.5}",
         {sequence_input(2, 4, 3), sequence_input(2, 5, 3)}},
        {"Attention, dropout",
         "Attention",
         "{implementation: blockwise, dropout: 0.3, seed: 7}",
         {sequence_input(2, 5, 3, true), sequence_input(2, 9, 3, true)}},
        {"MultiHeadAttention, masks",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, implementation: blockwise}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 5, 3, true), sequence_input(2, 5, 2, true)}},
        {"MultiHeadAttention, causal, dropout",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, implementation: blockwise, use_causal_mask: true, dropout: 0.2, seed: 3}",
         {sequence_input(2, 6, 3, true)}},
    });
}

TEST_CASE("sliding-window attention backward matches finite differences") {
    check_gradient_table({
        {"Attention, window 1", "Attention", "{window: 1}", {sequence_input(2, 7, 3), sequence_input(2, 7, 3)}},
        {"Attention, window 2, global 1, masks",
         "Attention",
         "{window: 2, global_tokens: 1}",
         {sequence_input(2, 8, 3, true), sequence_input(2, 8, 3, true)}},
        {"Attention, causal window 2, dropout",
         "Attention",
         "{window: 2, use_causal_mask: true, dropout: 0.25, seed: 1}",
         {sequence_input(2, 8, 3), sequence_input(2, 8, 3)}},
        {"Attention, window 3 over 70 steps",
         "Attention",
         "{window: 3}",
         {sequence_input(1, 70, 2), sequence_input(1, 70, 2)}},
        {"MultiHeadAttention, window 1, mask",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, window: 1, global_tokens: 1}",
         {sequence_input(2, 6, 3, true)}},
    });
}

TEST_CASE("block-sparse attention backward matches finite differences") {
    check_gradient_table({
        {"Attention, blocks of 2, stride 2",
         "Attention",
         "{sparsity: {block_size: 2, stride: 2}}",
         {sequence_input(2, 9, 3), sequence_input(2, 9, 3)}},
        {"Attention, causal, 2 local blocks, masks",
         "Attention",
         "{use_causal_mask: true, sparsity: {block_size: 2, local_blocks: 2, stride: 3}}",
         {sequence_input(2, 9, 3, true), sequence_input(2, 9, 3, true)}},
        {"MultiHeadAttention, blocks of 3",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, sparsity: {block_size: 3, stride: 2}}",
         {sequence_input(2, 8, 3)}},
    });
}

TEST_CASE("adaptive-span attention backward matches finite differences, the span included") {
    check_gradient_table({
        {"Attention",
         "Attention",
         "{adaptive_span: {max_span: 6, ramp: 2, init: 1.5}}",
         {sequence_input(2, 7, 3), sequence_input(2, 7, 3)}},
        {"Attention, causal, masks",
         "Attention",
         "{use_causal_mask: true, adaptive_span: {max_span: 6, ramp: 3, init: 2.25}}",
         {sequence_input(2, 8, 3, true), sequence_input(2, 8, 3, true)}},
        {"MultiHeadAttention, two heads",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, adaptive_span: {max_span: 5, ramp: 2, init: 1.5}}",
         {sequence_input(2, 7, 3)}},
    });
}

TEST_CASE("Linformer (MultiHeadAttention linformer.k) backward matches finite differences, E and F included") {
    check_gradient_table({
        {"self-attention",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, linformer: {k: 3}}",
         {sequence_input(2, 6, 3)}},
        {"masks, dropout",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 2, linformer: {k: 4}, dropout: 0.2, seed: 1}",
         {sequence_input(2, 6, 3, true)}},
        {"cross, [query, value, key], masks",
         "MultiHeadAttention",
         "{num_heads: 1, key_dim: 3, value_dim: 2, linformer: {k: 2}}",
         {sequence_input(2, 4, 3, true), sequence_input(2, 7, 2, true), sequence_input(2, 7, 4, true)}},
    });
}
