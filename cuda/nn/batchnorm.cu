// batchnorm on cuDNN (spatial mode: one gamma/beta/statistic per channel over n·h·w values, NHWC)
// with Keras moving statistics: moving = momentum·moving + (1 − momentum)·batch, the batch variance
// biased (divide by m). cuDNN's running variance is unbiased (m/(m − 1)) and uses the opposite
// factor convention, so cuDNN writes this batch's statistics alone (averaging factor 1) into
// scratch vectors and the BatchNormMoving functor applies the Keras update.
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

class BatchNormLayer final : public GpuLayer {
 public:
  BatchNormLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx),
        momentum_(d.spec["momentum"].get<double>()),
        eps_(d.spec["epsilon"].get<double>()),
        stats_(size_t(4 * d.in.c)) {
    GENRELAB_CHECK(eps_ >= CUDNN_BN_MIN_EPSILON, "batchnorm epsilon ", eps_, " below cuDNN's minimum");
  }

  void forward(const float* x, float* y, int64_t n, bool training, const StepKey&) override {
    setup(n);
    const float one = 1.0f, zero = 0.0f;
    const int64_t C = desc_.in.c;
    if (!training) {
      // y = gamma · (x − moving_mean) / √(moving_var + ε) + beta
      GENRELAB_CUDA_CHECK(cudnnBatchNormalizationForwardInference(ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero,
                                                                  xd_, x, xd_, y, bn_, param(0), param(1), param(2),
                                                                  param(3), eps_));
      return;
    }
    float* batch_mean = stats_.data();     // (C)
    float* batch_var = stats_.data() + C;  // (C), unbiased
    float* save_mean = stats_.data() + 2 * C;
    float* save_inv = stats_.data() + 3 * C;  // 1 / √(biased var + ε), reused by backward
    GENRELAB_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd_,
                                                               x, xd_, y, bn_, param(0), param(1), 1.0, batch_mean,
                                                               batch_var, eps_, save_mean, save_inv));
    const int64_t m = n * desc_.in.h * desc_.in.w;
    launch_1d(C,
              ops::BatchNormMoving<float>{param(2), param(3), batch_mean, m > 1 ? batch_var : nullptr, float(momentum_),
                                          float(double(m - 1) / double(m))},
              ctx_.stream());
  }

  // Follows a training forward of the same x (uses the saved batch mean and inverse deviation).
  void backward(const float* x, const float*, const float* dy, float* dx, int64_t n, const StepKey&) override {
    setup(n);
    const int64_t C = desc_.in.c;
    const float one = 1.0f, zero = 0.0f;
    float* dxo = dx ? dx : ctx_.scratch(1, n * desc_.in.size());  // cuDNN always writes dx
    // dx = γ/(σ·m)·(m·dy − Σdy − x̂·Σ dy·x̂); dgamma += Σ dy·x̂, dbeta += Σ dy (param beta = 1)
    GENRELAB_CUDA_CHECK(cudnnBatchNormalizationBackward(ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &one,
                                                        xd_, x, xd_, dy, xd_, dxo, bn_, param(0), grad(0), grad(1),
                                                        eps_, stats_.data() + 2 * C, stats_.data() + 3 * C));
  }

 private:
  void setup(int64_t n) {
    if (n == n_) return;
    xd_.set(n, desc_.in.h, desc_.in.w, desc_.in.c);
    // (1, C, 1, 1) descriptor of gamma, beta and the statistics, as cuDNN derives it from x.
    GENRELAB_CUDA_CHECK(cudnnDeriveBNTensorDescriptor(bn_, xd_, CUDNN_BATCHNORM_SPATIAL));
    n_ = n;
  }

  double momentum_, eps_;
  TensorDesc xd_, bn_;
  int64_t n_ = 0;
  DeviceBuffer<float> stats_;  // batch mean, unbiased batch var, saved mean, saved 1/σ: (4, C)
};

}  // namespace

std::unique_ptr<GpuLayer> make_batchnorm_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<BatchNormLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
