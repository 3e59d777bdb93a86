// CPU conv2d: im2col over a chunk of examples + GEMM against the (filters, kh·kw·c) kernel, the
// shared bias+activation functor; backward by GEMMs and a gather-form col2im. Under bf16/fp16 the
// operands and the products are rounded where the GPU's 16-bit cuDNN tensors round them.
#include <algorithm>
#include <vector>

#include "cpu_layers_impl.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class Conv2d final : public CpuLayer<T> {
 public:
  explicit Conv2d(const LayerDesc& d) : CpuLayer<T>(d), g_(window_of(d)) {
    F_ = d.out.c;
    C_ = d.in.c;
    K_ = g_.kh * g_.kw * C_;
    P_ = d.out.h * d.out.w;
    bias_ = d.spec["use_bias"].get<bool>();
    act_ = int(activation_of(d));
    alpha_ = T(activation_alpha(d));
    direct_ = g_.kh == 1 && g_.kw == 1 && g_.sh == 1 && g_.sw == 1;  // cols are x itself
  }

  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    const T* w = kernel();  // (F, K)
    for (int64_t e0 = 0; e0 < n; e0 += chunk(n)) {
      const int64_t m = std::min(chunk(n), n - e0);
      const T* cols = columns(x + e0 * in_size(), m);
      cpu_gemm<T>(false, true, m * P_, F_, K_, cols, w, y + e0 * P_ * F_, false);  // y: (m·P, F)
    }
    round(y, y, n * P_ * F_);  // cuDNN's 16-bit y
    cpu_for_1d(n * P_ * F_, ops::BiasActivation<T>{y, bias_ ? this->params_[1].data() : nullptr, F_, act_, alpha_});
  }

  void backward(const T* x, const T* y, const T* dy, T* dx, int64_t n, const StepKey&) override {
    const T* w = kernel();
    T* dw = this->grads_[0].data();
    if (this->half_) {  // dW of this call in T, rounded once complete, then added
      dwh_.assign(this->grads_[0].size(), T(0));
      dw = dwh_.data();
    }
    dz_.resize(size_t(n * P_ * F_));  // dz: (n·P, F)
    cpu_for_1d(n * P_ * F_, ops::ActivationBackward<T>{y, dy, dz_.data(), act_, alpha_});
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

  // cols (m·P, K): row (e, oh, ow), column (a, b, c) = x[e, oh·sh − pt + a·dh, ow·sw − pl + b·dw, c].
  // Under bf16/fp16 the columns are rounded (a rounded copy of x when direct).
  const T* columns(const T* x, int64_t m) {
    if (direct_ && !this->half_) return x;
    cols_.resize(size_t(m * P_ * K_));
    if (direct_) {
      round(x, cols_.data(), m * P_ * K_);
      return cols_.data();
    }
    const Shape3 in = this->desc_.in;
    const int64_t OW = this->desc_.out.w, P = P_, K = K_, C = C_;
    const Window2d g = g_;
    T* cols = cols_.data();
    cpu_for_1d(m * P, [=](int64_t row) {
      const int64_t e = row / P, p = row % P, oh = p / OW, ow = p % OW;
      T* dst = cols + row * K;
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t ih = oh * g.sh - g.pad_top + a * g.dh;
        for (int64_t b = 0; b < g.kw; ++b) {
          const int64_t iw = ow * g.sw - g.pad_left + b * g.dw;
          T* d = dst + (a * g.kw + b) * C;
          if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w) {
            std::fill(d, d + C, T(0));
          } else {
            const T* s = x + ((e * in.h + ih) * in.w + iw) * C;
            std::copy(s, s + C, d);
          }
        }
      }
    });
    round(cols, cols, m * P * K);
    return cols;
  }

  // dx[e, ih, iw, c] = Σ over (a, b) with oh·sh − pt + a·dh = ih (and likewise w) of dcols.
  void col2im(const T* dcols, T* dx, int64_t m) const {
    const Shape3 in = this->desc_.in, out = this->desc_.out;
    const int64_t P = P_, K = K_, C = C_;
    const Window2d g = g_;
    cpu_for_1d(m * in.h * in.w, [=](int64_t pix) {
      const int64_t e = pix / (in.h * in.w), ih = (pix / in.w) % in.h, iw = pix % in.w;
      T* d = dx + pix * C;
      std::fill(d, d + C, T(0));
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t th = ih + g.pad_top - a * g.dh;
        if (th < 0 || th % g.sh) continue;
        const int64_t oh = th / g.sh;
        if (oh >= out.h) continue;
        for (int64_t b = 0; b < g.kw; ++b) {
          const int64_t tw = iw + g.pad_left - b * g.dw;
          if (tw < 0 || tw % g.sw) continue;
          const int64_t ow = tw / g.sw;
          if (ow >= out.w) continue;
          const T* s = dcols + (e * P + oh * out.w + ow) * K + (a * g.kw + b) * C;
          for (int64_t c = 0; c < C; ++c) d[c] += s[c];
        }
      }
    });
  }

  Window2d g_;
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
