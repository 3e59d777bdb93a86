// The CPU reference backend's layers, templated on the scalar: float for training, double for
// the finite-difference gradient checks. Plain loops (OpenMP across examples or GEMM tiles);
// convolutions and dense layers run im2col + a blocked GEMM; element-wise work runs the shared
// functors of ops/nn_*.h. Buffers are host memory: x (n, in.h, in.w, in.c), y (n, out.h, out.w, out.c).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/im2col.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::ops {
struct ConvPoolCell;  // ops/conv_pool.h
}

namespace genrelab::nn {

template <typename T>
class CpuLayer {
 public:
  explicit CpuLayer(const LayerDesc& desc);
  virtual ~CpuLayer() = default;
  const LayerDesc& desc() const { return desc_; }

  virtual void forward(const T* x, T* y, int64_t n, bool training, const StepKey& key) = 0;
  // Writes dx (skipped when null) and ADDS parameter gradients into grad(). Follows a training
  // forward of the same x (batch norm uses batch statistics, dropout the same key).
  virtual void backward(const T* x, const T* y, const T* dy, T* dx, int64_t n, const StepKey& key) = 0;
  // The fused classifier head: when on, a dense layer with softmax outputs logits in forward and
  // takes dL/dlogits in backward (the softmax lives in the loss). Off by default.
  virtual void set_logits_output(bool on) {}
  // Mixed precision (ops::kHalfBf16 | kHalfFp16; kHalfNone by default): conv2d and dense round
  // their operands (x, W, and dz in backward) to the 16-bit format and accumulate in T, emulating
  // the GPU's cuDNN/cuBLAS calls; conv2d also rounds its products (y, dx, dW) as cuDNN's 16-bit
  // outputs do. Other layers ignore it (they compute in T).
  void set_matmul_format(int format) { half_ = format; }
  // Data parallel with train.sync_batchnorm: a batch-norm layer takes its training statistics over
  // `comm`'s ranks (every rank then calls forward and backward in the same order, an empty shard
  // with n = 0); nullptr (the default) keeps them local. Other layers ignore it.
  virtual void set_communicator(dist::Communicator* comm) {}

  // Parameters in LayerDesc::params order, and gradients of the trainable ones (same order).
  std::vector<std::vector<T>>& params() { return params_; }
  std::vector<std::vector<T>>& grads() { return grads_; }
  void zero_grads();

 protected:
  LayerDesc desc_;
  std::vector<std::vector<T>> params_, grads_;
  int half_ = 0;  // ops::kHalf*
};

// conv2d's product apart from its bias + activation, for the network's fused epilogue
// (train.fuse_conv_epilogue, ops/conv_epilogue.h): the conv layer is also a CpuConvProduct<T>.
template <typename T>
class CpuConvProduct {
 public:
  virtual ~CpuConvProduct() = default;
  // z (n, oh, ow, k) = x ⋆ w, no bias or activation (under bf16/fp16 rounded to the 16-bit format,
  // as the GPU's cuDNN writes it).
  virtual void forward_product(const T* x, T* z, int64_t n) = 0;
  // The dz (n, oh, ow, k) buffer backward_product reads, for the epilogue's backward to fill.
  virtual T* dz_buffer(int64_t n) = 0;
  // Follows a training forward_product of the same x: adds the bias and kernel gradients of
  // dz_buffer()'s dz and writes dx (skipped when null).
  virtual void backward_product(const T* x, T* dx, int64_t n) = 0;
};

// One layer of the registry (see layer_types()).
template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_layer(const LayerDesc& desc);

// The fused leading conv2d + maxpool2d (train.fuse_conv_pool; ops/conv_pool.h) on the CPU, with
// cell.x the network input (n, h, w, c): y (n, qh, qw, f) = the pool layer's output, or the fused
// dropout's output when `dropout` is on, and argmax (n, qh, qw, f; null in inference) its argmax
// bytes; the backward adds the conv's kernel (f, kh, kw, c) and bias (f, or null) gradients of dy
// (n, qh, qw, f; the gradient of y, scaled by dropout_scale, 1 / (1 − rate) when the forward
// applied a dropout), given the argmax bytes of a forward of the same x and kernel, the chunk sums
// added in chunk order. With next.cols the forward also writes y into the next convolution's
// columns (im2col fused; y may then be null: not written).
void conv_pool_forward_cpu(const ops::ConvPoolCell& cell, float* y, uint8_t* argmax, int64_t n,
                           const ops::EpilogueDropout& dropout = ops::EpilogueDropout(),
                           const ops::ColumnsOut& next = ops::ColumnsOut());
void conv_pool_backward_cpu(const ops::ConvPoolCell& cell, const float* dy, const uint8_t* argmax, int64_t n,
                            float* grad_kernel, float* grad_bias, float dropout_scale = 1.0f);

// conv2d's epilogue fused with the maxpool2d and dropout after it (train.fuse_conv_epilogue;
// ops/conv_epilogue.h) on the CPU, for one run: the same calls as the GPU's.
class CpuConvEpilogue {
 public:
  explicit CpuConvEpilogue(const ConvEpilogueRun& run) : run_(run) {}
  const ConvEpilogueRun& run() const { return run_; }
  // pooled (n, oh, ow, c) = max pooling of act(z + bias); z (n, h, w, c), bias (c) or null.
  // Training records the argmax and writes the dropout's output `dropped` (when the run has one),
  // and `pooled` where the backward reads it (ops::EpilogueOutputs); inference writes the pooled
  // map to `dropped` instead when it is non-null.
  void forward(const float* z, const float* bias, float* pooled, float* dropped, int64_t n, bool training,
               const StepKey& key);
  // dz (n, h, w, c) from dy (n, oh, ow, c), the gradient of the run's last layer's output; follows
  // a training forward whose pooled map is `pooled` (not read where ConvEpilogueRun::sign_coded).
  void backward(const float* dy, const float* pooled, float* dz, int64_t n, const StepKey& key);

 private:
  ConvEpilogueRun run_;
  std::vector<uint8_t> argmax_;  // (n, oh, ow, c)
};

// C (M, N) = A (M, K) · B (K, N) [+ C when accumulate], row-major. ta: A is stored as its
// transpose (K, M); tb: B is stored as (N, K). Blocked, packed panels, OpenMP across tiles.
template <typename T>
void cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate);

}  // namespace genrelab::nn
