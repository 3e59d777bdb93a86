// The probe rules of cuDNN's algorithm search (nn/conv_search.h), against hand-worked cases built
// from the baseline's measured fp32 times on an H100 (docs/network-gpu.md). The search itself
// runs cuDNN: its [gpu] tests are in test_nn_gpu.cpp.
#include <catch2/catch.hpp>

#include <vector>

#include "genrelab/nn/conv_search.h"

using genrelab::nn::probe_batch;
using genrelab::nn::probe_keeps;

TEST_CASE("a probe runs on an eighth of the batch, at least one example, and never on the whole batch",
          "[conv_search]") {
  CHECK(probe_batch(32) == 4);
  CHECK(probe_batch(29) == 3);  // GTZAN's partial last batch: 29 / 8 rounded down
  CHECK(probe_batch(8) == 1);
  CHECK(probe_batch(7) == 1);
  CHECK(probe_batch(2) == 1);
  CHECK(probe_batch(1) == 0);  // one example: the probe would be the whole batch
  CHECK(probe_batch(0) == 0);
}

TEST_CASE("the probe keeps the candidates within 4x of the fastest and those it could not run", "[conv_search]") {
  // Backward-data of the second conv at batch 32 on an H100: algo_1 4.1 ms, algo_0 167.6 ms; on an
  // eighth of the batch about an eighth of each.
  CHECK(probe_keeps({0.52f, 20.9f}) == std::vector<bool>{true, false});
  // Forward of the same conv: implicit_precomp_gemm 2.76 ms, implicit_gemm 7.87 ms (2.9x): both timed.
  CHECK(probe_keeps({0.35f, 0.98f}) == std::vector<bool>{true, true});
  // The order does not matter; 4x plus 0.02 ms is kept, just above is not.
  CHECK(probe_keeps({4.0f, 1.0f, 4.0199f, 4.0201f}) == std::vector<bool>{true, true, true, false});
  // A refused probe (negative) keeps its candidate for the whole batch to decide; so does a probe
  // where none ran.
  CHECK(probe_keeps({-1.0f, 0.5f, 9.0f}) == std::vector<bool>{true, true, false});
  CHECK(probe_keeps({-1.0f, -1.0f}) == std::vector<bool>{true, true});
  CHECK(probe_keeps({}).empty());
  // Microsecond probes: the absolute margin decides (0.02 ms), not the ratio to a time near 0.
  CHECK(probe_keeps({0.0f, 0.001f, 0.019f, 0.021f}) == std::vector<bool>{true, true, true, false});
  CHECK(probe_keeps({0.002f, 0.027f, 0.029f}) == std::vector<bool>{true, true, false});
}
