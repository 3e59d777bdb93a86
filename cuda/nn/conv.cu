// conv2d on cuDNN: NHWC activations, KRSC kernel (the canonical layout), cross-correlation like
// Keras, then the fused bias + activation functor. Keras "same" padding with an odd total pads one
// more row/column at the bottom/right; cuDNN pads symmetrically, so such layers copy the input
// into an explicitly padded buffer (zeros) and run cuDNN unpadded; the input gradient comes back
// through that buffer and is cropped.
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

class ConvLayer final : public GpuLayer {
 public:
  ConvLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx),
        g_(genrelab::nn::window_of(d)),
        act_(int(genrelab::nn::activation_of(d))),
        alpha_(float(genrelab::nn::activation_alpha(d))),
        has_bias_(d.params.size() > 1) {
    asym_ = g_.pad_top != g_.pad_bottom || g_.pad_left != g_.pad_right;
    hp_ = d.in.h + (asym_ ? g_.pad_top + g_.pad_bottom : 0);
    wp_ = d.in.w + (asym_ ? g_.pad_left + g_.pad_right : 0);
    const int ph = asym_ ? 0 : int(g_.pad_top), pw = asym_ ? 0 : int(g_.pad_left);
    conv_ = ConvDesc(ph, pw, int(g_.sh), int(g_.sw), int(g_.dh), int(g_.dw));
    w_ = FilterDesc(d.out.c, g_.kh, g_.kw, d.in.c);
    GENRELAB_CHECK(act_ != ops::kActSoftmax, "conv2d layer ", d.index, ": softmax is only for the last dense layer");
  }

  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    const float* xin = pad_input(x, n);
    setup(n, xin);
    const float one = 1.0f, zero = 0.0f;
    void* ws = ctx_.workspace(algos_->fwd_bytes);
    GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->fwd_math));
    // y (n, oh, ow, k) = x (n, hp, wp, c) ⋆ w (k, kh, kw, c)
    GENRELAB_CUDA_CHECK(cudnnConvolutionForward(ctx_.cudnn(), &one, xd_, xin, w_, param(0), conv_, algos_->fwd, ws,
                                                algos_->fwd_bytes, &zero, yd_, y));
    bias_activation(y, has_bias_ ? param(1) : nullptr, n * desc_.out.size(), desc_.out.c, act_, alpha_, ctx_.stream());
  }

  // Follows a training forward of the same x (the padded copy of x is reused).
  void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n, const StepKey&) override {
    const float* xin = asym_ ? xpad_.data() : x;
    setup(n, xin);
    const int64_t ycount = n * desc_.out.size();
    // dz (n, oh, ow, k): gradient before the activation.
    const float* dz = dy;
    if (act_ != ops::kActNone) {
      float* s = ctx_.scratch(0, ycount);
      activation_backward(y, dy, s, ycount, act_, alpha_, ctx_.stream());
      dz = s;
    }
    if (has_bias_) add_bias_grad(ctx_, dz, grad(1), n * desc_.out.h * desc_.out.w, desc_.out.c);
    const float one = 1.0f, zero = 0.0f;
    {
      void* ws = ctx_.workspace(algos_->bwd_filter_bytes);
      GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->bwd_filter_math));
      // dw (k, kh, kw, c) += x ⋆ dz  (beta = 1: gradients accumulate)
      GENRELAB_CUDA_CHECK(cudnnConvolutionBackwardFilter(ctx_.cudnn(), &one, xd_, xin, yd_, dz, conv_,
                                                         algos_->bwd_filter, ws, algos_->bwd_filter_bytes, &one, w_,
                                                         grad(0)));
    }
    if (!dx) return;
    float* dxin = asym_ ? ctx_.scratch(1, n * hp_ * wp_ * desc_.in.c) : dx;
    void* ws = ctx_.workspace(algos_->bwd_data_bytes);
    GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->bwd_data_math));
    // dx (n, hp, wp, c) = dz ⋆ᵀ w
    GENRELAB_CUDA_CHECK(cudnnConvolutionBackwardData(ctx_.cudnn(), &one, w_, param(0), yd_, dz, conv_, algos_->bwd_data,
                                                     ws, algos_->bwd_data_bytes, &zero, xd_, dxin));
    if (asym_) {
      const Shape3 in = desc_.in;
      launch_1d(n * in.size(), ops::CropNhwc<float>{dxin, dx, in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left},
                ctx_.stream());
    }
  }

 private:
  using Shape3 = genrelab::nn::Shape3;

  // Descriptors and algorithms for batch n (cached by shape in the context; a new shape is
  // benchmarked on the input xin and the current kernel).
  void setup(int64_t n, const float* xin) {
    if (n == n_) return;
    xd_.set(n, hp_, wp_, desc_.in.c);
    yd_.set(n, desc_.out.h, desc_.out.w, desc_.out.c);
    ConvShape shape{n,
                    hp_,
                    wp_,
                    desc_.in.c,
                    desc_.out.c,
                    g_.kh,
                    g_.kw,
                    asym_ ? 0 : int(g_.pad_top),
                    asym_ ? 0 : int(g_.pad_left),
                    int(g_.sh),
                    int(g_.sw),
                    int(g_.dh),
                    int(g_.dw)};
    algos_ = &ctx_.conv_algos(shape, xd_, w_, conv_, yd_, xin, param(0));
    n_ = n;
  }

  // x itself, or x copied into the zero-padded buffer (n, hp, wp, c) for asymmetric padding.
  const float* pad_input(const float* x, int64_t n) {
    if (!asym_) return x;
    const Shape3 in = desc_.in;
    const int64_t count = n * hp_ * wp_ * in.c;
    if (size_t(count) > xpad_.size()) ctx_.resize_tracked(xpad_, size_t(count));
    launch_1d(count, ops::PadNhwc<float>{x, xpad_.data(), in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left, 0.0f},
              ctx_.stream());
    return xpad_.data();
  }

  genrelab::nn::Window2d g_;
  int act_;
  float alpha_;
  bool has_bias_;
  bool asym_ = false;
  int64_t hp_ = 0, wp_ = 0;
  ConvDesc conv_;
  FilterDesc w_;
  TensorDesc xd_, yd_;
  int64_t n_ = 0;
  const ConvAlgos* algos_ = nullptr;
  DeviceBuffer<float> xpad_;  // (n, hp, wp, c), only for asymmetric padding
};

}  // namespace

std::unique_ptr<GpuLayer> make_conv_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<ConvLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
