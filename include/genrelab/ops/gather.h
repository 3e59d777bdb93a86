// Batch assembly shared by both backends: the rows a training step reads, picked out of the
// example table by index (the epoch's permutation) into the step's input buffer. Gather form:
// one call = one output element; the GPU launches it on the network's stream (no host copy, no
// synchronisation), the CPU backend loops over it.
#pragma once

#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

// dst[r, c] = src[rows[r], c]. src: (table rows, row) ; rows: (n) ; dst: (n, row)
template <typename T>
struct GatherRows {
  const T* src;
  const int64_t* rows;
  int64_t row;  // elements per row
  T* dst;
  GENRELAB_HD void operator()(int64_t r, int64_t c) const { dst[r * row + c] = src[rows[r] * row + c]; }
};

}  // namespace genrelab::ops
