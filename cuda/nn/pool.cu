// Pooling on the GPU with Keras semantics. maxpool2d: cuDNN; with "same" padding the input is
// copied into a buffer padded with −inf (Keras pads the odd element bottom/right, cuDNN only
// symmetrically, and −inf never wins a max) and the input gradient is cropped back. avgpool2d:
// cuDNN for "valid"; for "same" the shared gather functors, which divide by the number of valid
// elements as Keras does. global_avgpool: gather functors.
#include "gpu_layers.h"

#include <cmath>

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

class PoolLayer final : public GpuLayer {
 public:
  PoolLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx), g_(genrelab::nn::window_of(d)), max_(d.type == "maxpool2d") {
    padded_ = g_.pad_top || g_.pad_bottom || g_.pad_left || g_.pad_right;
    hp_ = d.in.h + g_.pad_top + g_.pad_bottom;
    wp_ = d.in.w + g_.pad_left + g_.pad_right;
    use_cudnn_ = max_ || !padded_;
    if (use_cudnn_) {
      const cudnnPoolingMode_t mode = !max_                 ? CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING
                                      : ctx.deterministic() ? CUDNN_POOLING_MAX_DETERMINISTIC
                                                            : CUDNN_POOLING_MAX;
      pool_ = PoolDesc(mode, int(g_.kh), int(g_.kw), 0, 0, int(g_.sh), int(g_.sw));
    }
  }

  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    if (!use_cudnn_) {
      launch_1d(n * desc_.out.size(), ops::AvgPoolForward<float>{x, y, geom()}, ctx_.stream());
      return;
    }
    setup(n);
    const float* xin = x;
    if (padded_) {
      const auto& in = desc_.in;
      const int64_t count = n * hp_ * wp_ * in.c;
      if (size_t(count) > xpad_.size()) xpad_.resize(size_t(count));
      launch_1d(count,
                ops::PadNhwc<float>{x, xpad_.data(), in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left, -INFINITY},
                ctx_.stream());
      xin = xpad_.data();
    }
    const float one = 1.0f, zero = 0.0f;
    // y (n, oh, ow, c) = pool(x (n, hp, wp, c))
    GENRELAB_CUDA_CHECK(cudnnPoolingForward(ctx_.cudnn(), pool_, &one, xd_, xin, &zero, yd_, y));
  }

  // Follows a training forward of the same x (the padded copy of x is reused).
  void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n, const StepKey&) override {
    if (!dx) return;
    if (!use_cudnn_) {
      launch_1d(n * desc_.in.size(), ops::AvgPoolBackward<float>{dy, dx, geom()}, ctx_.stream());
      return;
    }
    setup(n);
    const auto& in = desc_.in;
    const float* xin = padded_ ? xpad_.data() : x;
    float* dxin = padded_ ? ctx_.scratch(1, n * hp_ * wp_ * in.c) : dx;
    const float one = 1.0f, zero = 0.0f;
    GENRELAB_CUDA_CHECK(cudnnPoolingBackward(ctx_.cudnn(), pool_, &one, yd_, y, yd_, dy, xd_, xin, &zero, xd_, dxin));
    if (padded_)
      launch_1d(n * in.size(), ops::CropNhwc<float>{dxin, dx, in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left},
                ctx_.stream());
  }

 private:
  void setup(int64_t n) {
    if (n == n_) return;
    xd_.set(n, hp_, wp_, desc_.in.c);
    yd_.set(n, desc_.out.h, desc_.out.w, desc_.out.c);
    n_ = n;
  }
  ops::PoolGeom geom() const {
    return {desc_.in.h, desc_.in.w, desc_.in.c, desc_.out.h, desc_.out.w, g_.kh,
            g_.kw,      g_.sh,      g_.sw,      g_.pad_top,  g_.pad_left};
  }

  genrelab::nn::Window2d g_;
  bool max_;
  bool padded_ = false, use_cudnn_ = true;
  int64_t hp_ = 0, wp_ = 0;
  PoolDesc pool_;
  TensorDesc xd_, yd_;
  int64_t n_ = 0;
  DeviceBuffer<float> xpad_;  // (n, hp, wp, c) padded with −inf, max pooling with "same" only
};

class GlobalAvgPoolLayer final : public GpuLayer {
 public:
  using GpuLayer::GpuLayer;
  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    // y (n, c) = mean over (h, w) of x (n, h, w, c)
    launch_1d(n * desc_.in.c, ops::GlobalAvgPoolForward<float>{x, y, desc_.in.h * desc_.in.w, desc_.in.c},
              ctx_.stream());
  }
  void backward(const float*, const float*, const float* dy, float* dx, int64_t n, const StepKey&) override {
    if (dx)
      launch_1d(n * desc_.in.size(), ops::GlobalAvgPoolBackward<float>{dy, dx, desc_.in.h * desc_.in.w, desc_.in.c},
                ctx_.stream());
  }
};

}  // namespace

std::unique_ptr<GpuLayer> make_pool_layer(const LayerDesc& desc, GpuContext& ctx) {
  if (desc.type == "global_avgpool") return std::make_unique<GlobalAvgPoolLayer>(desc, ctx);
  return std::make_unique<PoolLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
