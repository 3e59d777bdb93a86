// GPU layer storage, the layer factory, and the element-wise layers (activation, dropout,
// flatten) with the shared launchers for fused bias + activation and bias gradients.
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::cuda::nn {

GpuLayer::GpuLayer(const LayerDesc& desc, GpuContext& ctx) : desc_(desc), ctx_(ctx) {
  for (const auto& p : desc_.params) {
    params_.emplace_back(size_t(p.size()));
    grads_.emplace_back(p.trainable ? size_t(p.size()) : size_t(0));
  }
  zero_grads();
}

std::vector<float*> GpuLayer::params() {
  std::vector<float*> out;
  for (auto& p : params_) out.push_back(p.data());
  return out;
}

std::vector<float*> GpuLayer::grads() {
  std::vector<float*> out;
  for (size_t i = 0; i < grads_.size(); ++i)
    if (desc_.params[i].trainable) out.push_back(grads_[i].data());
  return out;
}

void GpuLayer::zero_grads() {
  for (auto& g : grads_) g.zero(ctx_.stream());
}

// ---- shared launchers -----------------------------------------------------------------------

// Grid: one thread per element of y.
void bias_activation(float* y, const float* bias, int64_t count, int64_t channels, int act, float alpha,
                     cudaStream_t stream) {
  if (!bias && act == ops::kActNone) return;
  GENRELAB_CHECK(act != ops::kActSoftmax, "bias_activation: softmax is row-wise (dense layer)");
  launch_1d(count, ops::BiasActivation<float>{y, bias, channels, act, alpha}, stream);
}

// Grid: one thread per element of dz.
void activation_backward(const float* y, const float* dy, float* dz, int64_t count, int act, float alpha,
                         cudaStream_t stream) {
  GENRELAB_CHECK(act != ops::kActSoftmax, "activation_backward: softmax is row-wise (dense layer)");
  launch_1d(count, ops::ActivationBackward<float>{y, dy, dz, act, alpha}, stream);
}

void add_bias_grad(GpuContext& ctx, const float* dz, float* db, int64_t rows, int64_t channels, bool accumulate) {
  // dz row-major (rows, channels) is column-major (channels, rows): db (+)= dz_cm · ones(rows).
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  GENRELAB_CHECK(rows < (int64_t(1) << 31) && channels < (int64_t(1) << 31), "bias gradient too large");
  GENRELAB_CUDA_CHECK(cublasSgemv(ctx.cublas(), CUBLAS_OP_N, int(channels), int(rows), &one, dz, int(channels),
                                  ctx.ones(rows), 1, &beta, db, 1));
}

namespace {

// relu / elu / leaky_relu as layers: the shared activation functors.
class ActivationLayer final : public GpuLayer {
 public:
  ActivationLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx), act_(int(genrelab::nn::activation_of(d))), alpha_(float(genrelab::nn::activation_alpha(d))) {}
  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    const int64_t count = n * desc_.out.size();
    if (y != x)
      GENRELAB_CUDA_CHECK(
          cudaMemcpyAsync(y, x, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, ctx_.stream()));
    bias_activation(y, nullptr, count, desc_.out.c, act_, alpha_, ctx_.stream());
  }
  void backward(const float*, const float* y, const float* dy, float* dx, int64_t n, const StepKey&) override {
    if (dx) activation_backward(y, dy, dx, n * desc_.out.size(), act_, alpha_, ctx_.stream());
  }

 private:
  int act_;
  float alpha_;
};

// Inverted dropout with the shared Philox mask, so masks equal the CPU backend's bit for bit.
class DropoutLayer final : public GpuLayer {
 public:
  DropoutLayer(const LayerDesc& d, GpuContext& ctx) : GpuLayer(d, ctx), rate_(float(d.spec["rate"].get<double>())) {}
  void forward(const float* x, float* y, int64_t n, bool training, const StepKey& key) override {
    const int64_t count = n * desc_.out.size();
    if (!training || rate_ == 0.0f) {
      if (y != x)
        GENRELAB_CUDA_CHECK(
            cudaMemcpyAsync(y, x, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, ctx_.stream()));
      return;
    }
    launch_1d(ops::DropoutApply<float>::groups(count), ops::DropoutApply<float>{mask(key), x, y, count}, ctx_.stream());
  }
  void backward(const float*, const float*, const float* dy, float* dx, int64_t n, const StepKey& key) override {
    if (!dx) return;
    const int64_t count = n * desc_.out.size();
    if (rate_ == 0.0f) {
      if (dx != dy)
        GENRELAB_CUDA_CHECK(
            cudaMemcpyAsync(dx, dy, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, ctx_.stream()));
      return;
    }
    launch_1d(ops::DropoutApply<float>::groups(count), ops::DropoutApply<float>{mask(key), dy, dx, count}, ctx_.stream());
  }

 private:
  // The step and first example come from the context's per-step device block (see
  // GpuContext::dropout_step), so a captured graph draws each replayed step's own mask.
  ops::DropoutMask mask(const StepKey& key) const {
    return ops::DropoutMask{key.seed, desc_.index, rate_, desc_.out.size(), ctx_.dropout_step(key)};
  }
  float rate_;
};

// Flatten: NHWC (n, h, w, c) is already (n, h·w·c) in memory; the network passes the same
// buffer through, and a copy happens only when a caller hands distinct buffers.
class FlattenLayer final : public GpuLayer {
 public:
  using GpuLayer::GpuLayer;
  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    if (y != x)
      GENRELAB_CUDA_CHECK(
          cudaMemcpyAsync(y, x, size_t(n * desc_.out.size()) * sizeof(float), cudaMemcpyDeviceToDevice, ctx_.stream()));
  }
  void backward(const float*, const float*, const float* dy, float* dx, int64_t n, const StepKey&) override {
    if (dx && dx != dy)
      GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dx, dy, size_t(n * desc_.in.size()) * sizeof(float), cudaMemcpyDeviceToDevice,
                                          ctx_.stream()));
  }
};

}  // namespace

std::unique_ptr<GpuLayer> make_gpu_layer(const LayerDesc& d, GpuContext& ctx) {
  if (d.type == "conv2d") return make_conv_layer(d, ctx);
  if (d.type == "maxpool2d" || d.type == "avgpool2d" || d.type == "global_avgpool") return make_pool_layer(d, ctx);
  if (d.type == "dense") return make_dense_layer(d, ctx);
  if (d.type == "batchnorm") return make_batchnorm_layer(d, ctx);
  if (d.type == "relu" || d.type == "elu" || d.type == "leaky_relu") return std::make_unique<ActivationLayer>(d, ctx);
  if (d.type == "dropout") return std::make_unique<DropoutLayer>(d, ctx);
  if (d.type == "flatten") return std::make_unique<FlattenLayer>(d, ctx);
  if (d.type == "gru" || d.type == "lstm") return make_rnn_layer(d, ctx);
  throw ConfigError("model.layers[" + std::to_string(d.index) + "]: layer type '" + d.type +
                    "' has no cuda implementation");
}

}  // namespace genrelab::cuda::nn
