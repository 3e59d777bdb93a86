// conv2d as explicit matrix products on cuBLAS (train.conv_engine): im2col of the whole batch
// (ops/im2col.h) and one GEMM a pass. fp32 and tf32 multiply floats (cublasSgemm, the handle's
// math mode); bf16 and fp16 multiply the layer's 16-bit copies (cublasGemmEx, float accumulation)
// and round where cuDNN's 16-bit tensors round: y in the 16-bit type, dW once complete (then
// added to the float gradient), dx after the column sums. cuDNN's kernels for the baseline's
// 2×2 convolutions run at a third of the GPU's fp32 peak; a large GEMM runs at two thirds or
// more, and the column matrix costs one pass over memory. The conv layer (conv.cu) times this
// engine against cuDNN's fastest algorithm for each pass and takes the faster. The float products
// run on the algorithm that timed fastest for their shape (gemm_tuner.h).
// Shapes (row-major): x (n, h, w, c), cols (n·oh·ow, K = kh·kw·c), kernel (f, K), y and dz
// (n·oh·ow, f). A 1×1 convolution with stride 1 and no padding is its own column matrix.
#pragma once

#include <cstdint>

#include "cudnn_setup.h"
#include "gemm_tuner.h"
#include "genrelab/nn/conv_gemm_plan.h"
#include "genrelab/ops/im2col.h"

namespace genrelab::cuda::nn {

class GemmConv {
 public:
  // The operands x, kernel, y and dz below are float under fp32/tf32 and the 16-bit type under
  // bf16/fp16 (the context's precision); dw and dx are always float.
  GemmConv(const ops::ConvColsGeom& g, int64_t filters, GpuContext& ctx);

  // Bytes the engine keeps for batch n: the column matrix (none for a 1×1 convolution), and
  // under bf16/fp16 also the float dcols of backward_data.
  size_t cols_bytes(int64_t n) const;
  // Whether the engine runs batch n: the columns (kept from the forward to the backward) within
  // min(4 GiB, a quarter of the free memory), and every index within 32 bits.
  bool fits(int64_t n) const;

  // y (n·oh·ow, f) = cols(x) · kernelᵀ, without bias and activation; the columns stay for
  // backward_filter. cols_written: the layer below wrote them (written_columns; x is not read).
  void forward(const void* x, const void* kernel, void* y, int64_t n, bool cols_written = false);
  // The float column matrix of batch n for the layer below to write (ops::ColumnsOut), grown as
  // needed; fp32/tf32 only.
  float* written_columns(int64_t n);
  const ops::ConvColsGeom& geom() const { return g_; }
  // dw (f, K) += dzᵀ · cols, the columns from the forward of the same x when cols_ready, else
  // built from x first. With splits > 1 the product runs as that many batched partial products
  // over row ranges (one GEMM gives a 128 × 256 result few thread blocks to spread a reduction over
  // a million rows) that one matrix-vector product adds up.
  void backward_filter(const void* x, const void* dz, float* dw, int64_t n, bool cols_ready, int64_t splits);
  // dx (n, h, w, c) = col2im(dz · kernel). Under fp32/tf32 this overwrites the forward's columns.
  void backward_data(const void* dz, const void* kernel, float* dx, int64_t n);
  // backward_data without the col2im: dcols = dz · kernel, for the layer below to sum where it
  // reads dx (ops::ColumnsGrad); not for a direct 1×1 layer, whose dcols are dx.
  ops::ColumnsGrad backward_data_columns(const void* dz, const void* kernel, int64_t n);
  bool direct() const { return direct_; }
  // Whether backward_data leaves the forward's columns alone (bf16/fp16, and direct 1×1 layers).
  bool backward_data_keeps_columns() const { return direct_ || half_ != ops::kHalfNone; }

  // Frees the column matrix and partial products (the next pass that needs them allocates again).
  void release();

  // The split count that gives cuBLAS about two thread blocks per SM (at least 1).
  int64_t suggested_filter_splits(int64_t n) const;

  // Passes (forward, kernel or input gradient) queued on any engine of this process so far,
  // train.conv_engine=auto's timing runs included: for tests that must know the engine ran.
  static int64_t passes_queued();

 private:
  const void* columns(const void* x, int64_t n);  // cols of x (x itself for a direct 1×1)
  template <typename T>
  const T* columns_of(const T* x, DeviceBuffer<T>& cols, int64_t n);
  // out = the call's product on cuBLAS (alpha 1), `batches` products `strides` apart when > 1;
  // out in the operands' type (float, or the 16-bit type when out_half) or float.
  void gemm(const genrelab::nn::GemmCall& c, const void* a, const void* b, void* out, bool out_half,
            int64_t batches = 1, GemmStrides strides = GemmStrides());
  int64_t rows(int64_t n) const { return n * g_.positions(); }
  // Counts a pass of batch n (passes_queued; `training`: a backward pass, which only training
  // runs) and says whether its float products may be timed (tune_): not at a batch smaller than
  // the largest the layer has trained (an epoch's partial last batch, an evaluation's remainder:
  // one product an epoch, where timing would cost far more than the faster kernel could give
  // back). Training batches decide, not evaluations: a data-parallel rank trains its share of
  // the global batch but evaluates whole global batches, and a resumed run may evaluate first
  // (until the layer has trained, every batch may be timed).
  void note_batch(int64_t n, bool training);
  // dcols (n·oh·ow, K) = dz · kernel into the columns' buffer, or dx itself for a direct layer.
  float* input_grad_columns(const void* dz, const void* kernel, float* dx, int64_t n);

  ops::ConvColsGeom g_;
  int64_t f_, k_;
  bool direct_;  // 1×1, stride 1, no padding: cols = x, dx = dcols
  int half_;     // ops::kHalf*: 16-bit operands under bf16/fp16
  GpuContext& ctx_;
  int sm_count_ = 1;
  DeviceBuffer<float> cols_;       // (n·oh·ow, K): fp32/tf32 the forward's columns, then backward_data's dcols;
                                   // bf16/fp16 backward_data's dcols only
  DeviceBuffer<uint16_t> cols16_;  // (n·oh·ow, K): bf16/fp16 the forward's columns
  DeviceBuffer<float> partial_;    // (splits + 1, f·K) backward_filter's partial products and their sum
  DeviceBuffer<uint8_t> lt_workspace_;  // the tuned float products' cuBLASLt workspace (gemm_tuner.h)
  int64_t largest_trained_n_ = 0;
  bool tune_ = true;
};

}  // namespace genrelab::cuda::nn
