// CPU batch normalisation over channels (the last axis), Keras semantics: training normalises
// with the batch mean and the biased batch variance and updates the moving statistics as
// m = momentum·m + (1 − momentum)·batch (variance: the same biased estimate, like Keras 3);
// inference uses the moving statistics. Backward recomputes the batch statistics from x.
// With a communicator (train.sync_batchnorm) the statistics and the backward sums are taken over
// every rank's shard through the shared functors of ops/batchnorm.h (the GPU backend's arithmetic).
#include <cmath>
#include <vector>

#include "cpu_layers_impl.h"
#include "genrelab/common.h"
#include "genrelab/ops/batchnorm.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class BatchNorm final : public CpuLayer<T> {
 public:
  explicit BatchNorm(const LayerDesc& d) : CpuLayer<T>(d) {
    momentum_ = d.spec["momentum"].get<double>();
    eps_ = d.spec["epsilon"].get<double>();
  }

  void set_communicator(dist::Communicator* comm) override { comm_ = comm; }

  void forward(const T* x, T* y, int64_t n, bool training, const StepKey&) override {
    if (training && comm_) return forward_sync(x, y, n);
    const int64_t C = this->desc_.in.c;
    auto& p = this->params_;  // gamma, beta, moving_mean, moving_var
    std::vector<T> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    if (training) {
      batch_stats(x, n);
      for (int64_t c = 0; c < C; ++c) {
        const double inv = 1.0 / std::sqrt(var_[size_t(c)] + eps_);
        scale[size_t(c)] = T(double(p[0][size_t(c)]) * inv);
        shift[size_t(c)] = T(double(p[1][size_t(c)]) - mean_[size_t(c)] * double(p[0][size_t(c)]) * inv);
        p[2][size_t(c)] = T(momentum_ * double(p[2][size_t(c)]) + (1.0 - momentum_) * mean_[size_t(c)]);
        p[3][size_t(c)] = T(momentum_ * double(p[3][size_t(c)]) + (1.0 - momentum_) * var_[size_t(c)]);
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        const double inv = 1.0 / std::sqrt(double(p[3][size_t(c)]) + eps_);
        scale[size_t(c)] = T(double(p[0][size_t(c)]) * inv);
        shift[size_t(c)] = T(double(p[1][size_t(c)]) - double(p[2][size_t(c)]) * double(p[0][size_t(c)]) * inv);
      }
    }
    const T* s = scale.data();
    const T* b = shift.data();
    cpu_for_1d(n * this->desc_.in.size(), [=](int64_t i) { y[i] = x[i] * s[i % C] + b[i % C]; });
  }

  // With x̂ = (x − μ)/σ over the M = n·h·w values of a channel:
  // dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/(σ·M) · (M·dy − dβ − x̂·dγ).
  void backward(const T* x, const T*, const T* dy, T* dx, int64_t n, const StepKey&) override {
    if (comm_) return backward_sync(x, dy, dx, n);
    const int64_t C = this->desc_.in.c, rows = n * this->desc_.in.h * this->desc_.in.w;
    batch_stats(x, n);
    std::vector<double> dbeta(size_t(C), 0.0), dgamma(size_t(C), 0.0), inv(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) inv[size_t(c)] = 1.0 / std::sqrt(var_[size_t(c)] + eps_);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const double g = double(dy[r * C + c]);
        dbeta[size_t(c)] += g;
        dgamma[size_t(c)] += g * (double(x[r * C + c]) - mean_[size_t(c)]) * inv[size_t(c)];
      }
    for (int64_t c = 0; c < C; ++c) {
      this->grads_[0][size_t(c)] += T(dgamma[size_t(c)]);
      this->grads_[1][size_t(c)] += T(dbeta[size_t(c)]);
    }
    if (!dx) return;
    const T* gamma = this->params_[0].data();
    const double M = double(rows);
    const double* mean = mean_.data();
    const double* iv = inv.data();
    const double* db = dbeta.data();
    const double* dg = dgamma.data();
    cpu_for_1d(rows * C, [=](int64_t i) {
      const int64_t c = i % C;
      const double xhat = (double(x[i]) - mean[c]) * iv[c];
      dx[i] = T(double(gamma[c]) * iv[c] / M * (M * double(dy[i]) - db[c] - xhat * dg[c]));
    });
  }

 private:
  // Training forward over the global batch: this shard's sums (1 + 2C) in double, summed over the
  // ranks, then the global statistics, the moving statistics and y. n may be 0 (an empty shard).
  void forward_sync(const T* x, T* y, int64_t n) {
    const int64_t C = this->desc_.in.c, rows = n * this->desc_.in.h * this->desc_.in.w;
    auto& p = this->params_;  // gamma, beta, moving_mean, moving_var
    std::vector<double> sums(size_t(1 + 2 * C), 0.0);  // [m, Σ x (C), Σ x² (C)]
    sums[0] = double(rows);
    if (rows > 0) {
      batch_stats(x, n);
      for (int64_t c = 0; c < C; ++c) {
        const double m = mean_[size_t(c)];
        sums[size_t(1 + c)] = double(rows) * m;
        sums[size_t(1 + C + c)] = double(rows) * (var_[size_t(c)] + m * m);
      }
    }
    comm_->all_reduce_sum(sums.data(), 1 + 2 * C, dist::DType::f64);
    GENRELAB_CHECK(sums[0] > 0, "synchronised batch norm: the global batch is empty");
    global_.assign(size_t(1 + 2 * C), 0.0);
    scale_.resize(size_t(C));
    shift_.resize(size_t(C));
    cpu_for_1d(C, ops::BatchNormGlobalStats<T, double>{sums.data(), p[0].data(), p[1].data(), p[2].data(), p[3].data(),
                                                       global_.data(), scale_.data(), shift_.data(), C, momentum_,
                                                       eps_});
    cpu_for_1d(rows * C, ops::BatchNormApply<T>{x, scale_.data(), shift_.data(), y, C});
  }

  // Backward over the global batch (follows forward_sync of the same x): this shard's Σ dy and
  // Σ dy·x̂ go into the parameter gradients (summed over the ranks with the others), their sums
  // over the ranks into dx.
  void backward_sync(const T* x, const T* dy, T* dx, int64_t n) {
    const int64_t C = this->desc_.in.c, rows = n * this->desc_.in.h * this->desc_.in.w;
    GENRELAB_CHECK(int64_t(global_.size()) == 1 + 2 * C,
                   "synchronised batch norm: backward needs the training forward of the same batch first");
    std::vector<double> sums(size_t(2 * C), 0.0);  // [Σ dy (C), Σ dy·x̂ (C)]
    const double* mean = global_.data() + 1;
    const double* inv = global_.data() + 1 + C;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const double g = double(dy[r * C + c]);
        sums[size_t(c)] += g;
        sums[size_t(C + c)] += g * (double(x[r * C + c]) - mean[c]) * inv[c];
      }
    for (int64_t c = 0; c < C; ++c) {
      this->grads_[0][size_t(c)] += T(sums[size_t(C + c)]);
      this->grads_[1][size_t(c)] += T(sums[size_t(c)]);
    }
    comm_->all_reduce_sum(sums.data(), 2 * C, dist::DType::f64);
    if (!dx || rows == 0) return;
    cpu_for_1d(rows * C, ops::BatchNormBackwardDx<T, double>{x, dy, this->params_[0].data(), global_.data(),
                                                             sums.data(), dx, C});
  }

  // Per-channel mean and biased variance in double (two passes).
  void batch_stats(const T* x, int64_t n) {
    const int64_t C = this->desc_.in.c, rows = n * this->desc_.in.h * this->desc_.in.w;
    mean_.assign(size_t(C), 0.0);
    var_.assign(size_t(C), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) mean_[size_t(c)] += double(x[r * C + c]);
    for (auto& m : mean_) m /= double(rows);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const double d = double(x[r * C + c]) - mean_[size_t(c)];
        var_[size_t(c)] += d * d;
      }
    for (auto& v : var_) v /= double(rows);
  }

  double momentum_ = 0.99, eps_ = 1e-3;
  std::vector<double> mean_, var_;
  dist::Communicator* comm_ = nullptr;  // set: statistics over the ranks (train.sync_batchnorm)
  std::vector<double> global_;          // (1 + 2C) [m, mean (C), 1/σ (C)] of the last synchronised forward
  std::vector<T> scale_, shift_;        // (C) of the last synchronised forward
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_batchnorm(const LayerDesc& desc) {
  return std::make_unique<BatchNorm<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_batchnorm<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_batchnorm<double>(const LayerDesc&);

}  // namespace genrelab::nn
