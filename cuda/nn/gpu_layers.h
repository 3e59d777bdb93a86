// The GPU network's layers: one LayerImpl per registered layer type, buffers in device memory,
// all work queued on the owning GpuContext's stream (no host synchronisation).
// x: (n, in.h, in.w, in.c), y: (n, out.h, out.w, out.c), NHWC.
#pragma once

#include <memory>
#include <vector>

#include "cudnn_setup.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/im2col.h"

namespace genrelab::cuda::nn {

using genrelab::nn::LayerDesc;
using genrelab::nn::LayerImpl;
using genrelab::nn::StepKey;

// Parameter and gradient storage shared by every GPU layer.
class GpuLayer : public LayerImpl {
 public:
  GpuLayer(const LayerDesc& desc, GpuContext& ctx);
  const LayerDesc& desc() const { return desc_; }
  std::vector<float*> params() override;  // LayerDesc::params order
  std::vector<float*> grads() override;   // trainable params only, same order
  // The fused classifier head (see CpuLayer::set_logits_output): a softmax dense layer outputs
  // logits in forward and takes dL/dlogits in backward. Only dense layers honour it.
  virtual void set_logits_output(bool on) {}
  // train.sync_batchnorm (see CpuLayer::set_communicator): batch norm takes its training statistics
  // over `comm`'s ranks. Its collectives go on `comm_stream` (the network's communication stream,
  // so that every collective of the communicator runs on one stream in the order it was issued;
  // events order them against the context's stream), or on the context's stream when null.
  // Other layers ignore it.
  virtual void set_communicator(dist::Communicator* comm, cudaStream_t comm_stream) {}
  // Zeroes the gradients (queued on the stream).
  void zero_grads();

 protected:
  float* param(size_t i) { return params_[i].data(); }
  float* grad(size_t i) { return grads_[i].data(); }  // i indexes LayerDesc::params
  LayerDesc desc_;
  GpuContext& ctx_;
  std::vector<DeviceBuffer<float>> params_, grads_;  // grads_[i] empty for non-trainable params
};

// conv2d's product apart from its bias + activation, for the network's fused epilogue
// (train.fuse_conv_epilogue, conv_epilogue.h): the conv layer is also a ConvProduct.
class ConvProduct {
 public:
  virtual ~ConvProduct() = default;
  // z (n, oh, ow, k) = x ⋆ w, no bias or activation. Under bf16/fp16 the product's 16-bit z is
  // returned (its buffer, valid until the backward) and z is left alone; else null. cols_written:
  // the layer below wrote x into columns_from_below(n, ...) instead (x is not read).
  virtual const uint16_t* forward_product(const float* x, float* z, int64_t n, bool cols_written) = 0;
  // Where the layer below may write x for batch n (im2col fused into its pass) instead of x itself:
  // the GEMM engine's columns, when no pass of this step reads x (fp32/tf32, the forward and, when
  // training, the kernel gradient decided on the engine and no timing left to run, a stride-1
  // unpadded window). Else cols null: write x.
  virtual ops::ColumnsOut columns_from_below(int64_t n, bool training) = 0;
  // Under bf16/fp16, the 16-bit dz (n, oh, ow, k) buffer that backward_product reads besides dz
  // (the epilogue's backward fills both); else null.
  virtual uint16_t* dz16(int64_t n) = 0;
  // Follows a training forward_product of the same x: the kernel gradient (added) and dx (null: not
  // wanted) from dz (n, oh, ow, k), or under bf16/fp16 from dz16() (dz may then be null); the bias
  // gradient (added) from bias_dz (bias_rows, k), rows that hold every non-zero value of dz (the
  // fused epilogue's gradient at each pooling window's maximum). z: the forward's float z buffer (a
  // stand-in input when the GEMM engine is timed; its contents do not matter). With dx_columns
  // (the layer below sums them itself: a fused epilogue's backward), an input gradient the GEMM
  // engine computes is left as its columns there and dx is not written; else dx_columns->dcols
  // is null.
  virtual void backward_product(const float* x, const float* z, const float* dz, const float* bias_dz,
                                int64_t bias_rows, float* dx, int64_t n, ops::ColumnsGrad* dx_columns) = 0;
};

// One layer of the registry.
std::unique_ptr<GpuLayer> make_gpu_layer(const LayerDesc& desc, GpuContext& ctx);

// One family each (conv.cu, pool.cu, dense.cu, batchnorm.cu, rnn.cu).
std::unique_ptr<GpuLayer> make_conv_layer(const LayerDesc& desc, GpuContext& ctx);
std::unique_ptr<GpuLayer> make_pool_layer(const LayerDesc& desc, GpuContext& ctx);  // max, avg, global avg
std::unique_ptr<GpuLayer> make_dense_layer(const LayerDesc& desc, GpuContext& ctx);
std::unique_ptr<GpuLayer> make_batchnorm_layer(const LayerDesc& desc, GpuContext& ctx);
std::unique_ptr<GpuLayer> make_rnn_layer(const LayerDesc& desc, GpuContext& ctx);  // gru, lstm (rnn.cu)

// Launchers shared by several layers (gpu_layers.cu).
// y (count) = act(y + bias[i % channels]) in place; bias may be null.
void bias_activation(float* y, const float* bias, int64_t count, int64_t channels, int act, float alpha,
                     cudaStream_t stream);
// dz (count) = dy · act'(y); dz may alias dy.
void activation_backward(const float* y, const float* dy, float* dz, int64_t count, int act, float alpha,
                         cudaStream_t stream);
// db (channels) += column sums of dz (rows, channels) row-major, on cuBLAS (gemv with ones); with
// accumulate false db = the sums (beta 0: its old contents are not read).
void add_bias_grad(GpuContext& ctx, const float* dz, float* db, int64_t rows, int64_t channels,
                   bool accumulate = true);

}  // namespace genrelab::cuda::nn
