// Pooling on the GPU with Keras semantics, as the functors of ops/nn_gpu_extra.h (the CPU tests run
// the same arithmetic). maxpool2d: the forward records each window's argmax (1 byte); the backward
// routes dy through it, one call per window when windows do not overlap, else a gather per input
// cell. With channels in multiples of 4 (the baseline's 64 … 512) the forward and the per-window
// backward take four channels per call. Either reads dy and the argmax once and writes dx once,
// where cuDNN's backward re-reads x and y.
// Padding ("same") is handled in the windows' bounds: a padded cell never wins a max or counts in
// an average. avgpool2d divides by the number of in-bounds cells, as Keras does.
#include "gpu_layers.h"

#include <cmath>

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

// F<4> over count / 4 calls when four channels per call fit (ops::pool_lanes), else F<1>.
template <template <int> class F, typename... Args>
void launch_lanes(int lanes, int64_t count, cudaStream_t stream, Args... args) {
  if (lanes == 4) launch_1d(count / 4, F<4>{args...}, stream);
  else launch_1d(count, F<1>{args...}, stream);
}

class PoolLayer final : public GpuLayer {
 public:
  PoolLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx), g_(genrelab::nn::window_of(d)), max_(d.type == "maxpool2d") {
    GENRELAB_CHECK(!max_ || g_.kh * g_.kw <= 256, "layer ", d.name, ": max pooling windows of more than 256 cells (",
                   g_.kh, "x", g_.kw, ") are not supported on the GPU");
  }

  void forward(const float* x, float* y, int64_t n, bool training, const StepKey&) override {
    const int64_t count = n * desc_.out.size();
    if (max_) {
      // y, argmax: (n, oh, ow, c)
      if (training) ctx_.resize_tracked(argmax_, size_t(count));
      uint8_t* argmax = training ? argmax_.data() : nullptr;
      launch_lanes<ops::MaxPoolForward>(ops::pool_lanes(desc_.in.c, x, y, argmax), count, ctx_.stream(), x, y,
                                        argmax, geom());
    } else {
      launch_1d(count, ops::AvgPoolForward<float>{x, y, geom()}, ctx_.stream());
    }
  }

  // Follows a training forward of the same x (max pooling reads the argmax it recorded).
  void backward(const float*, const float*, const float* dy, float* dx, int64_t n, const StepKey&) override {
    if (!dx) return;
    const int64_t count = n * desc_.in.size();
    if (max_) {
      GENRELAB_CHECK(argmax_.size() >= size_t(n * desc_.out.size()), "layer ", desc_.name,
                     ": max-pooling backward without a training forward of the batch");
      const ops::PoolGeom g = geom();
      if (ops::MaxPoolBackwardDisjoint<1>::applies(g)) {
        if (!ops::MaxPoolBackwardDisjoint<1>::covers_input(g))
          GENRELAB_CUDA_CHECK(cudaMemsetAsync(dx, 0, size_t(count) * sizeof(float), ctx_.stream()));
        launch_lanes<ops::MaxPoolBackwardDisjoint>(ops::pool_lanes(g.c, dy, dx, argmax_.data()), n * desc_.out.size(),
                                                   ctx_.stream(), dy, argmax_.data(), dx, g);
      } else {
        launch_1d(count, ops::MaxPoolBackward<float>{dy, argmax_.data(), dx, g}, ctx_.stream());
      }
    } else {
      launch_1d(count, ops::AvgPoolBackward<float>{dy, dx, geom()}, ctx_.stream());
    }
  }

 private:
  ops::PoolGeom geom() const {
    return {desc_.in.h, desc_.in.w, desc_.in.c, desc_.out.h, desc_.out.w, g_.kh,
            g_.kw,      g_.sh,      g_.sw,      g_.pad_top,  g_.pad_left};
  }

  genrelab::nn::Window2d g_;
  bool max_;
  DeviceBuffer<uint8_t> argmax_;  // (n, oh, ow, c) offsets of the first maximum, max pooling only
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
