// batchnorm on cuDNN (spatial mode: one gamma/beta/statistic per channel over n·h·w values, NHWC)
// with Keras moving statistics: moving = momentum·moving + (1 − momentum)·batch, the batch variance
// biased (divide by m). cuDNN's running variance is unbiased (m/(m − 1)) and uses the opposite
// factor convention, so cuDNN writes this batch's statistics alone (averaging factor 1) into
// scratch vectors and the BatchNormMoving functor applies the Keras update.
// Synchronised (train.sync_batchnorm, a communicator set): cuDNN's local mean and variance become
// per-channel sums, one all-reduce combines the ranks, the functors of ops/batchnorm.h normalise;
// backward sums Σ dy and Σ dy·x̂ locally (cuBLAS column sums), all-reduces them and gathers dx.
// The all-reduces run on the network's communication stream, ordered by events: no host
// synchronisation.
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/batchnorm.h"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

class BatchNormLayer final : public GpuLayer {
 public:
  BatchNormLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx),
        momentum_(d.spec["momentum"].get<double>()),
        eps_(d.spec["epsilon"].get<double>()),
        stats_(size_t(4 * d.in.c)),
        sums_(size_t(1 + 2 * d.in.c)),
        global_(size_t(1 + 2 * d.in.c)),
        grad_sums_(size_t(2 * d.in.c)),
        scale_shift_(size_t(2 * d.in.c)),
        local_grad_(size_t(2 * d.in.c)) {
    GENRELAB_CHECK(eps_ >= CUDNN_BN_MIN_EPSILON, "batchnorm epsilon ", eps_, " below cuDNN's minimum");
  }

  void set_communicator(dist::Communicator* comm, cudaStream_t comm_stream) override {
    comm_ = comm;
    comm_stream_ = comm_stream;
  }

  void forward(const float* x, float* y, int64_t n, bool training, const StepKey&) override {
    if (training && comm_) return forward_sync(x, y, n);
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
    if (comm_) return backward_sync(x, dy, dx, n);
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
  // Training forward over the global batch; n may be 0 (an empty shard still joins the all-reduce).
  void forward_sync(const float* x, float* y, int64_t n) {
    const int64_t C = desc_.in.c, m = n * desc_.in.h * desc_.in.w;
    cudaStream_t s = ctx_.stream();
    float* batch_mean = stats_.data();     // (C)
    float* batch_var = stats_.data() + C;  // (C), unbiased
    if (n > 0) {
      // This shard's mean and unbiased variance (y is overwritten below with the global statistics).
      setup(n);
      const float one = 1.0f, zero = 0.0f;
      GENRELAB_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
          ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd_, x, xd_, y, bn_, param(0), param(1), 1.0, batch_mean,
          batch_var, eps_, stats_.data() + 2 * C, stats_.data() + 3 * C));
    }
    // sums (1 + 2C): [m, Σ x (C), Σ x² (C)] of this shard, then of the global batch.
    launch_1d(1 + 2 * C, ops::BatchNormLocalSums<double>{batch_mean, batch_var, m, C, sums_.data()}, s);
    all_reduce(sums_.data(), 1 + 2 * C);
    float* scale = scale_shift_.data();      // (C)
    float* shift = scale_shift_.data() + C;  // (C)
    launch_1d(C,
              ops::BatchNormGlobalStats<float, double>{sums_.data(), param(0), param(1), param(2), param(3),
                                                       global_.data(), scale, shift, C, momentum_, eps_},
              s);
    launch_1d(m * C, ops::BatchNormApply<float>{x, scale, shift, y, C}, s);
  }

  // Backward over the global batch (follows forward_sync of the same x): this shard's Σ dy and
  // Σ dy·x̂ (x̂ with the global statistics) go into dβ and dγ, whose sum over the ranks the network's
  // gradient all-reduce takes; their all-reduced copies give dx.
  void backward_sync(const float* x, const float* dy, float* dx, int64_t n) {
    const int64_t C = desc_.in.c, m = n * desc_.in.h * desc_.in.w;
    cudaStream_t s = ctx_.stream();
    const float* local = nullptr;  // (2C): [Σ dy (C), Σ dy·x̂ (C)] of this shard
    if (m > 0) {
      float* terms = ctx_.scratch(0, m * C);  // (m, C): dy·x̂
      launch_1d(m * C, ops::BatchNormDyXhat<float, double>{x, dy, global_.data(), terms, C}, s);
      local_grad_.zero(s);
      add_bias_grad(ctx_, dy, local_grad_.data(), m, C);
      add_bias_grad(ctx_, terms, local_grad_.data() + C, m, C);
      local = local_grad_.data();
    }
    launch_1d(2 * C, ops::BatchNormLocalGradSums<double>{local, grad(0), grad(1), grad_sums_.data(), C}, s);
    all_reduce(grad_sums_.data(), 2 * C);
    if (dx)
      launch_1d(m * C,
                ops::BatchNormBackwardDx<float, double>{x, dy, param(0), global_.data(), grad_sums_.data(), dx, C},
                s);
  }

  // In-place sum over the ranks of `count` doubles written on the context's stream, which waits
  // for it; on the communication stream when there is one (events order the two streams).
  void all_reduce(double* data, int64_t count) {
    cudaStream_t s = ctx_.stream();
    if (!comm_stream_) {
      comm_->all_reduce_sum(data, count, dist::DType::f64, s);
      return;
    }
    ready_.record(s);
    ready_.wait_on(comm_stream_);
    comm_->all_reduce_sum(data, count, dist::DType::f64, comm_stream_);
    reduced_.record(comm_stream_);
    reduced_.wait_on(s);
  }

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
  // Synchronised batch norm (comm_ set).
  dist::Communicator* comm_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
  Event ready_, reduced_;             // context stream → communication stream → context stream
  DeviceBuffer<double> sums_;         // (1 + 2C) [m, Σ x, Σ x²], this shard's then all ranks'
  DeviceBuffer<double> global_;       // (1 + 2C) [m, mean, 1/σ] of the global batch
  DeviceBuffer<double> grad_sums_;    // (2C) [Σ dy, Σ dy·x̂] over all ranks
  DeviceBuffer<float> scale_shift_;   // (2C) γ/σ, β − μ·γ/σ
  DeviceBuffer<float> local_grad_;    // (2C) [Σ dy, Σ dy·x̂] of this shard
};

}  // namespace

std::unique_ptr<GpuLayer> make_batchnorm_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<BatchNormLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
