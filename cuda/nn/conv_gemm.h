// conv2d as explicit matrix products on cuBLAS (train.conv_engine): im2col of the whole batch
// (ops/im2col.h) and one SGEMM a pass, for fp32 and tf32 (the handle's math mode). cuDNN's
// float kernels for the baseline's 2×2 convolutions run at a third of the GPU's fp32 peak; a large
// SGEMM runs at two thirds or more, and the column matrix costs one pass over memory. The conv
// layer (conv.cu) times this engine against cuDNN's fastest algorithm for each pass and takes the
// faster.
// Shapes (row-major): x (n, h, w, c), cols (n·oh·ow, K = kh·kw·c), kernel (f, K), y and dz
// (n·oh·ow, f). A 1×1 convolution with stride 1 and no padding is its own column matrix.
#pragma once

#include <cstdint>

#include "cudnn_setup.h"
#include "genrelab/nn/conv_gemm_plan.h"
#include "genrelab/ops/im2col.h"

namespace genrelab::cuda::nn {

class GemmConv {
 public:
  GemmConv(const ops::ConvColsGeom& g, int64_t filters, GpuContext& ctx);

  // Bytes of the column matrix of a batch of n (0 for a 1×1 convolution).
  size_t cols_bytes(int64_t n) const;
  // Whether the engine runs batch n: fp32 or tf32, and the columns (kept from the forward to the
  // backward) within min(4 GiB, a quarter of the free memory).
  bool fits(int64_t n) const;

  // y (n·oh·ow, f) = cols(x) · kernelᵀ, without bias and activation; the columns stay for
  // backward_filter.
  void forward(const float* x, const float* kernel, float* y, int64_t n);
  // dw (f, K) += dzᵀ · cols, the columns from the forward of the same x when cols_ready, else
  // built from x first. With splits > 1 the product runs as that many batched partial products
  // over row ranges (one SGEMM gives a 128 × 256 result few thread blocks to spread a reduction over
  // a million rows) that one matrix-vector product adds up.
  void backward_filter(const float* x, const float* dz, float* dw, int64_t n, bool cols_ready, int64_t splits);
  // dx (n, h, w, c) = col2im(dz · kernel). Overwrites the forward's columns.
  void backward_data(const float* dz, const float* kernel, float* dx, int64_t n);

  // Frees the column matrix and partial products (the next pass that needs them allocates again).
  void release();

  // The split count that gives cuBLAS about two thread blocks per SM (at least 1).
  int64_t suggested_filter_splits(int64_t n) const;

 private:
  const float* columns(const float* x, int64_t n);  // cols of x (x itself for a direct 1×1)
  // out = the call's product on cuBLAS (alpha 1).
  void sgemm(const genrelab::nn::GemmCall& c, const float* a, const float* b, float* out);
  int64_t rows(int64_t n) const { return n * g_.positions(); }

  ops::ConvColsGeom g_;
  int64_t f_, k_;
  bool direct_;  // 1×1, stride 1, no padding: cols = x, dx = dz · kernel
  GpuContext& ctx_;
  int sm_count_ = 1;
  DeviceBuffer<float> cols_;     // (n·oh·ow, K): the forward's columns, then backward_data's dcols
  DeviceBuffer<float> partial_;  // (splits + 1, f·K) backward_filter's partial products
};

}  // namespace genrelab::cuda::nn
