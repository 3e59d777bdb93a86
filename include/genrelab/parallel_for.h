// The CPU side of the gather-form functor pattern (STYLE §5): a hand-written kernel's work is a
// functor `f(i)` (1-D) or `f(row, col)` (2-D) computing one output element; the GPU launches it
// from cuda/launch.cuh, the CPU backend loops over the same index space here with OpenMP.
#pragma once

#include <algorithm>
#include <cstdint>

#include "genrelab/common.h"

namespace genrelab {

template <typename F>
void cpu_for_1d(int64_t n, const F& f) {
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// rows × cols index space; f(row, col). Rows are spread over threads.
template <typename F>
void cpu_for_2d(int64_t rows, int64_t cols, const F& f) {
#pragma omp parallel for schedule(static) if (rows * cols > 4096)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) f(r, c);
}

// cpu_for_2d spreads rows over threads, so a batch of one row (one clip) would run on one thread;
// these loops split the flattened (row, col) space instead, into spans of consecutive elements that
// the threads take as they come free (one slowed by other processes on the machine does not hold
// the rest at the barrier). span(row, begin, end) covers cols [begin, end) of one row.
template <typename G>
void cpu_for_row_spans(int64_t rows, int64_t cols, const G& span) {
  if (rows <= 0 || cols <= 0) return;
  constexpr int64_t kSpan = 16384;
  const int64_t total = rows * cols, spans = ceil_div(total, kSpan);
#pragma omp parallel for schedule(dynamic, 1) if (spans > 1)
  for (int64_t c = 0; c < spans; ++c) {
    const int64_t end = std::min(total, (c + 1) * kSpan);
    for (int64_t i = c * kSpan; i < end;) {
      const int64_t row = i / cols, col = i - row * cols, n = std::min(cols - col, end - i);
      span(row, col, col + n);
      i += n;
    }
  }
}

// f(row, col) over rows × cols, the column advancing with the loop (no division per element).
template <typename F>
void cpu_for_rows(int64_t rows, int64_t cols, const F& f) {
  cpu_for_row_spans(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
    for (int64_t col = begin; col < end; ++col) f(row, col);
  });
}

}  // namespace genrelab
