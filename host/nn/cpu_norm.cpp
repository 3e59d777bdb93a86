// CPU batch normalisation over channels (the last axis), Keras semantics: training normalises
// with the batch mean and the biased batch variance and updates the moving statistics as
// m = momentum·m + (1 − momentum)·batch (variance: the same biased estimate, like Keras 3);
// inference uses the moving statistics. Backward recomputes the batch statistics from x.
#include <cmath>
#include <vector>

#include "cpu_layers_impl.h"
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

  void forward(const T* x, T* y, int64_t n, bool training, const StepKey&) override {
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
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_batchnorm(const LayerDesc& desc) {
  return std::make_unique<BatchNorm<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_batchnorm<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_batchnorm<double>(const LayerDesc&);

}  // namespace genrelab::nn
