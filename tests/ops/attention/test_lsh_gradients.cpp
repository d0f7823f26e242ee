// Finite-difference gradient rows for LSH attention through the shared checker. Hashing is
// piecewise constant in the queries, so rows with several buckets take a small step (a bucket
// that changes between the two evaluations would break the difference). Attention's masks and
// causality are not combined with several buckets: a window whose every key is masked leaves
// scores of score - 1e9, whose float32 forward no longer depends on the score.
#include <doctest/doctest.h>

#include "gradcheck_table.hpp"

using nngraph::testing::check_gradient_table;
using nngraph::testing::sequence_input;

TEST_CASE("LSH attention backward matches finite differences") {
    check_gradient_table({
        {"Attention, one bucket",
         "Attention",
         "{lsh: {num_hashes: 1, bucket_size: 8}}",
         {sequence_input(2, 6, 3), sequence_input(2, 6, 4)}},
        {"Attention, one bucket, masks, causal",
         "Attention",
         "{lsh: {num_hashes: 1, bucket_size: 8}, use_causal_mask: true}",
         {sequence_input(2, 7, 3, true), sequence_input(2, 7, 4, true)}},
        {"Attention, 4 buckets, 2 rounds, causal",
         "Attention",
         "{lsh: {num_hashes: 2, bucket_size: 4}, use_causal_mask: true}",
         {sequence_input(2, 16, 4), sequence_input(2, 16, 3)},
         1e-3},
        {"Attention, 4 buckets, masks, use_scale",
         "Attention",
         "{lsh: {num_hashes: 2, bucket_size: 4}, use_scale: true}",
         {sequence_input(1, 16, 4, true), sequence_input(1, 16, 3, true)},
         1e-3},
        {"MultiHeadAttention, one bucket, masks, 2 rounds",
         "MultiHeadAttention",
         "{num_heads: 2, key_dim: 3, lsh: {num_hashes: 2, bucket_size: 12}}",
         {sequence_input(2, 10, 5, true)}},
        {"MultiHeadAttention, [query, value], causal, 4 buckets",
         "MultiHeadAttention",
         "{num_heads: 1, key_dim: 4, lsh: {num_hashes: 3, bucket_size: 4}, use_causal_mask: true}",
         {sequence_input(2, 12, 5), sequence_input(2, 12, 3)},
         1e-3},
    });
}
