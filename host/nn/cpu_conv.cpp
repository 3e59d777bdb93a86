// CPU conv2d: im2col over a chunk of examples + GEMM against the (filters, kh·kw·c) kernel, the
// shared bias+activation functor; backward by GEMMs and col2im (ops/im2col.h, the functors the GPU's
// GEMM engine launches). Under bf16/fp16 the operands and the products are rounded where the GPU's
// 16-bit cuDNN tensors round them. The product and the epilogue are also callable apart
// (CpuConvProduct), for the network's fused epilogue.
#include <algorithm>
#include <vector>

#include "cpu_layers_impl.h"
#include "genrelab/ops/im2col.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class Conv2d final : public CpuLayer<T>, public CpuConvProduct<T> {
 public:
  explicit Conv2d(const LayerDesc& d) : CpuLayer<T>(d), g_(window_of(d)) {
    F_ = d.out.c;
    C_ = d.in.c;
    K_ = g_.kh * g_.kw * C_;
    P_ = d.out.h * d.out.w;
    bias_ = d.spec["use_bias"].get<bool>();
    act_ = int(activation_of(d));
    alpha_ = T(activation_alpha(d));
    geom_ = conv_cols_geom(d);
    direct_ = geom_.identity();  // cols are x itself
  }

  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    forward_product(x, y, n);
    cpu_for_1d(n * P_ * F_, ops::BiasActivation<T>{y, bias_ ? this->params_[1].data() : nullptr, F_, act_, alpha_});
  }

  void forward_product(const T* x, T* z, int64_t n) override {
    const T* w = kernel();  // (F, K)
    for (int64_t e0 = 0; e0 < n; e0 += chunk(n)) {
      const int64_t m = std::min(chunk(n), n - e0);
      const T* cols = columns(x + e0 * in_size(), m);
      cpu_gemm<T>(false, true, m * P_, F_, K_, cols, w, z + e0 * P_ * F_, false);  // z: (m·P, F)
    }
    round(z, z, n * P_ * F_);  // cuDNN's 16-bit y
  }

  void backward(const T* x, const T* y, const T* dy, T* dx, int64_t n, const StepKey&) override {
    cpu_for_1d(n * P_ * F_, ops::ActivationBackward<T>{y, dy, dz_buffer(n), act_, alpha_});
    backward_product(x, dx, n);
  }

  T* dz_buffer(int64_t n) override {
    dz_.resize(size_t(n * P_ * F_));  // dz: (n·P, F)
    return dz_.data();
  }

  void backward_product(const T* x, T* dx, int64_t n) override {
    const T* w = kernel();
    T* dw = this->grads_[0].data();
    if (this->half_) {  // dW of this call in T, rounded once complete, then added
      dwh_.assign(this->grads_[0].size(), T(0));
      dw = dwh_.data();
    }
    if (bias_) {
      T* db = this->grads_[1].data();
      std::vector<double> acc(size_t(F_), 0.0);
      for (int64_t r = 0; r < n * P_; ++r)
        for (int64_t f = 0; f < F_; ++f) acc[size_t(f)] += double(dz_[size_t(r * F_ + f)]);
      for (int64_t f = 0; f < F_; ++f) db[f] += T(acc[size_t(f)]);
    }
    round(dz_.data(), dz_.data(), n * P_ * F_);  // the 16-bit dz cuDNN reads (the bias gradient took float32)
    for (int64_t e0 = 0; e0 < n; e0 += chunk(n)) {
      const int64_t m = std::min(chunk(n), n - e0);
      const T* dzc = dz_.data() + e0 * P_ * F_;
      const T* cols = columns(x + e0 * in_size(), m);
      cpu_gemm<T>(true, false, F_, K_, m * P_, dzc, cols, dw, true);  // dW (F, K) += dzᵀ · cols
      if (!dx) continue;
      T* dxc = dx + e0 * in_size();
      if (direct_) {
        cpu_gemm<T>(false, false, m * P_, K_, F_, dzc, w, dxc, false);
      } else {
        dcols_.resize(size_t(m * P_ * K_));
        cpu_gemm<T>(false, false, m * P_, K_, F_, dzc, w, dcols_.data(), false);  // dcols (m·P, K)
        col2im(dcols_.data(), dxc, m);
      }
      round(dxc, dxc, m * in_size());  // cuDNN's 16-bit dx
    }
    if (this->half_) {
      round(dwh_.data(), dwh_.data(), int64_t(dwh_.size()));  // cuDNN's 16-bit dW, added to the float gradient
      T* g = this->grads_[0].data();
      for (size_t i = 0; i < dwh_.size(); ++i) g[i] += dwh_[i];
    }
  }

 private:
  int64_t in_size() const { return this->desc_.in.size(); }
  // Examples per im2col chunk: the column buffer stays under ~32 MB.
  int64_t chunk(int64_t n) const { return std::clamp<int64_t>((int64_t(8) << 20) / std::max<int64_t>(1, P_ * K_), 1, n); }

  // y (count) = x rounded to the 16-bit format; does nothing for float32 products (callers pass y = x then).
  void round(const T* x, T* y, int64_t count) const {
    if (this->half_) cpu_for_1d(count, ops::RoundToHalf<T>{x, y, this->half_});
  }

  // The kernel (F, K) the products read: the parameter itself, or its 16-bit rounding.
  const T* kernel() {
    const auto& w = this->params_[0];
    if (!this->half_) return w.data();
    wh_.resize(w.size());
    round(w.data(), wh_.data(), int64_t(w.size()));
    return wh_.data();
  }

  // cols (m·P, K) of x (m, in): ops::Im2Col; under bf16/fp16 rounded (a rounded copy of x when direct).
  const T* columns(const T* x, int64_t m) {
    if (direct_ && !this->half_) return x;
    cols_.resize(size_t(m * P_ * K_));
    T* cols = cols_.data();
    if (direct_) {
      round(x, cols, m * P_ * K_);
      return cols;
    }
    GENRELAB_CHECK(ops::cols_fit_indices(geom_, m), "conv2d layer ", this->desc_.index, ": too large for 32-bit indices");
    ops::with_cols_lanes<T>(geom_.c, [&](auto lanes) {
      using F = ops::Im2Col<T, lanes()>;
      cpu_for_2d(m * P_, F::groups(geom_), F{geom_, x, cols});
    }, x, static_cast<const T*>(cols));
    round(cols, cols, m * P_ * K_);
    return cols;
  }

  // dx (m, in) of dcols (m·P, K): ops::Col2Im.
  void col2im(const T* dcols, T* dx, int64_t m) const {
    GENRELAB_CHECK(ops::cols_fit_indices(geom_, m), "conv2d layer ", this->desc_.index, ": too large for 32-bit indices");
    ops::with_cols_lanes<T>(geom_.c, [&](auto lanes) {
      using F = ops::Col2Im<T, lanes()>;
      cpu_for_2d(m * int64_t(geom_.h) * geom_.w, F::groups(geom_), F{geom_, dcols, dx});
    }, dcols, static_cast<const T*>(dx));
  }

  Window2d g_;
  ops::ConvColsGeom geom_;
  int64_t F_ = 0, C_ = 0, K_ = 0, P_ = 0;
  bool bias_ = true, direct_ = false;
  int act_ = 0;
  T alpha_ = 0;
  std::vector<T> cols_, dcols_, dz_;
  std::vector<T> wh_, dwh_;  // bf16/fp16: the rounded kernel (F, K), this call's dW (F, K)
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_conv2d(const LayerDesc& desc) {
  return std::make_unique<Conv2d<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_conv2d<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_conv2d<double>(const LayerDesc&);

}  // namespace genrelab::nn
