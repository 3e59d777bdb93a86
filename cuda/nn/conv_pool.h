// The fused leading conv2d + maxpool2d of the GPU network, with the dropout after the pool when
// there is one (train.fuse_conv_pool; the functors and their semantics are in ops/conv_pool.h).
// The conv layer keeps its parameters and gradients; this computes the last fused layer's output
// (the dropout's, else the pool's) from the network input and the conv gradients from that
// output's gradient, so neither the conv output (the largest activation of the baseline) nor the
// pooled map is stored, and the dropout takes no pass of its own.
#pragma once

#include <cstdint>

#include "gpu_layers.h"
#include "genrelab/ops/conv_pool.h"

namespace genrelab::cuda::nn {

class FusedConvPool {
 public:
  // plan: genrelab::nn::conv_pool_fusable(plan) must hold.
  FusedConvPool(const genrelab::nn::ModelPlan& plan, GpuContext& ctx);
  // Scratch for batches up to n (call before a step that may be captured).
  void reserve(int64_t n);
  // The last fused layer: 1 (the pool), or 2 (the dropout after it).
  size_t last() const { return last_; }
  // y (n, qh, qw, f) = maxpool(act(conv(x) + bias)), through the dropout (key's step mask) when
  // training with one; x (n, h, w, c); kernel (f, kh, kw, c); bias (f) or null. Training also keeps
  // each output's argmax byte for the backward. With next.cols y goes into the next convolution's
  // columns instead (y is not written).
  void forward(const float* x, const float* kernel, const float* bias, float* y, int64_t n, bool training,
               const genrelab::nn::StepKey& key, const ops::ColumnsOut& next = ops::ColumnsOut());
  // Adds the kernel and bias gradients of dy (n, qh, qw, f), the gradient of the forward's y, into
  // grad_kernel (f, kh, kw, c) and grad_bias (f, or null); after a training forward of the same x,
  // kernel and n.
  void backward(const float* x, const float* dy, const float* kernel, const float* bias, float* grad_kernel,
                float* grad_bias, int64_t n);
  // (n, qh, qw, f) the last training forward's argmax bytes (ops/conv_pool.h), for tests.
  const uint8_t* argmax() const { return argmax_.data(); }

 private:
  static constexpr int64_t kSpan = ops::kConvPoolSpan;  // pooled positions per backward thread
  int64_t chunks(int64_t examples) const;
  ops::ConvPoolCell cell(const float* x, const float* kernel, const float* bias) const;
  GpuContext& ctx_;
  ops::ConvPoolGeom g_;
  int act_;
  float alpha_;
  genrelab::nn::FusedDropout dropout_;  // layer 2 when it is a dropout (applied here too)
  size_t last_;                         // genrelab::nn::conv_pool_last
  int64_t per_launch_;           // examples per forward launch (index spaces under 2^31)
  int64_t per_launch_backward_;  // examples per backward launch (also the grid's row limit)
  DeviceBuffer<float> partial_;  // (chunks, f, k + 1) the backward's per-chunk sums
  DeviceBuffer<float> sums_;     // (f, k + 1) their total
  DeviceBuffer<uint8_t> argmax_;  // (reserved n, qh, qw, f) the last training forward's argmax bytes
  int64_t trained_n_ = 0;         // that forward's batch (0: none since the last inference forward)
};

}  // namespace genrelab::cuda::nn
