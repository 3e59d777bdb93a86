// conv2d's epilogue fused with the maxpool2d and dropout after it, on the GPU
// (train.fuse_conv_epilogue; the functors and their semantics are in ops/conv_epilogue.h). The conv
// layer runs only its product (ConvProduct); this turns the product's z into the pooling layer's
// output (and the dropout's), and the gradient of the run's last layer into the conv's dz.
#pragma once

#include <cstdint>

#include "gpu_layers.h"
#include "genrelab/ops/conv_epilogue.h"

namespace genrelab::cuda::nn {

class FusedConvEpilogue {
 public:
  FusedConvEpilogue(const genrelab::nn::ConvEpilogueRun& run, GpuContext& ctx) : run_(run), ctx_(ctx) {}
  const genrelab::nn::ConvEpilogueRun& run() const { return run_; }
  // The argmax and dpool buffers for batches up to n (call before a step that may be captured).
  void reserve(int64_t n);
  // pooled (n, oh, ow, c) = max pooling of act(z + bias) over the windows; z (n, h, w, c) is the
  // product's float z, or its 16-bit z16 when that is non-null (bf16/fp16); bias (c) or null.
  // Training records the argmax and writes the dropout's output `dropped` (null when the run has
  // no dropout), and `pooled` only where the backward reads it; inference writes only the run's
  // last output (ops::EpilogueOutputs).
  // With next.cols the run's output goes into the next convolution's columns instead.
  void forward(const float* z, const uint16_t* z16, const float* bias, float* pooled, float* dropped, int64_t n,
               bool training, const genrelab::nn::StepKey& key, const ops::ColumnsOut& next = ops::ColumnsOut());
  // dz (n, h, w, c) (unless null: bf16/fp16, where the product reads only dz16) and dz16 (when
  // non-null) from dy (n, oh, ow, c), the gradient of the run's last layer's output; and dpool(),
  // the gradient at each window's maximum. dy is read, or where dy_cols.dcols is set summed from
  // the next convolution's input-gradient columns (ConvProduct::backward_product). Follows a
  // training forward whose pooled map is `pooled` (read only where the argmax bytes do not carry
  // its sign: ConvEpilogueRun::sign_coded).
  void backward(const float* dy, const ops::ColumnsGrad& dy_cols, const float* pooled, float* dz, uint16_t* dz16,
                int64_t n, const genrelab::nn::StepKey& key);
  // (n, oh, ow, c) after backward: dz's only non-zero values, what the bias gradient sums.
  const float* dpool() const { return dpool_.data(); }

 private:
  genrelab::nn::ConvEpilogueRun run_;
  GpuContext& ctx_;
  DeviceBuffer<uint8_t> argmax_;  // (n, oh, ow, c) offsets of the first maxima
  DeviceBuffer<float> dpool_;     // (n, oh, ow, c) the gradient at each maximum
  int64_t trained_n_ = 0;         // the batch of the last forward when it was a training one, else 0
};

}  // namespace genrelab::cuda::nn
