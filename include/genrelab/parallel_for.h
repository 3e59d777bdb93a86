// The CPU side of the gather-form functor pattern (STYLE §5): a hand-written kernel's work is a
// functor `f(i)` (1-D) or `f(row, col)` (2-D) computing one output element; the GPU launches it
// from cuda/launch.cuh, the CPU backend loops over the same index space here with OpenMP.
#pragma once

#include <cstdint>

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

}  // namespace genrelab
