// The GPU side of the gather-form functor pattern: launch a functor over a 1-D or 2-D index
// space on an explicit stream. Each thread computes one element; kernels keep a bounds guard.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "genrelab/common.h"
#include "genrelab/cuda/check.h"

namespace genrelab::cuda {

template <typename F>
__global__ void for_1d_kernel(int64_t n, F f) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f(i);
}

template <typename F>
__global__ void for_2d_kernel(int64_t rows, int64_t cols, F f) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t r = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if (r < rows && c < cols) f(r, c);
}

// Grid: one thread per element, 256 threads a block.
template <typename F>
void launch_1d(int64_t n, const F& f, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int kBlock = 256;
  const int64_t blocks = ceil_div<int64_t>(n, kBlock);
  GENRELAB_CHECK(blocks < (int64_t(1) << 31), "1-D launch too large: ", n, " elements");
  for_1d_kernel<<<unsigned(blocks), kBlock, 0, stream>>>(n, f);
  GENRELAB_CUDA_CHECK(cudaGetLastError());
}

// Grid: x runs along columns (contiguous, coalesced), y along rows; 256 threads a block, 32 × 8
// when there are 32 columns or more. Fewer columns take a narrower block (the next power of two,
// with more rows), so that a warp holds several full rows instead of idling the lanes past the
// last column: 16 columns in a 32-wide block left half of every warp idle (the fused conv + pool
// backward's 16 filter groups).
inline unsigned launch_2d_width(int64_t cols) {
  unsigned width = 1;
  while (width < 32 && int64_t(width) < cols) width *= 2;
  return width;
}
// The most rows one launch_2d of `cols` columns takes (the grid's y limit).
inline int64_t launch_2d_max_rows(int64_t cols) { return int64_t(65535) * (256 / launch_2d_width(cols)); }

template <typename F>
void launch_2d(int64_t rows, int64_t cols, const F& f, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const unsigned width = launch_2d_width(cols);
  const dim3 block(width, 256 / width);
  const int64_t gx = ceil_div<int64_t>(cols, block.x), gy = ceil_div<int64_t>(rows, block.y);
  GENRELAB_CHECK(gx < (int64_t(1) << 31) && gy < 65536, "2-D launch too large: ", rows, "x", cols);
  for_2d_kernel<<<dim3(unsigned(gx), unsigned(gy)), block, 0, stream>>>(rows, cols, f);
  GENRELAB_CUDA_CHECK(cudaGetLastError());
}

}  // namespace genrelab::cuda
