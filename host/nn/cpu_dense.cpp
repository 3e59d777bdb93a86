// CPU dense layer: y (n, units) = act(x (n, in) · W (in, units) + b) by the blocked GEMM and the
// shared bias+activation functor. A softmax layer outputs probabilities, or logits when it is the
// fused classifier head (set_logits_output), whose backward then takes dL/dlogits. Under bf16/fp16
// the GEMM operands (x, W, dz) are rounded and the products stay float32, as cublasGemmEx's are.
#include <algorithm>
#include <vector>

#include "cpu_layers_impl.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class Dense final : public CpuLayer<T> {
 public:
  explicit Dense(const LayerDesc& d) : CpuLayer<T>(d) {
    I_ = d.in.size();
    U_ = d.out.c;
    bias_ = d.spec["use_bias"].get<bool>();
    act_ = int(activation_of(d));
    alpha_ = T(activation_alpha(d));
  }

  void set_logits_output(bool on) override { logits_ = on; }

  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    cpu_gemm<T>(false, false, n, U_, I_, rounded(x, n * I_, xh_), rounded(this->params_[0].data(), I_ * U_, wh_), y, false);
    const bool softmax = act_ == ops::kActSoftmax;
    cpu_for_1d(n * U_, ops::BiasActivation<T>{y, bias_ ? this->params_[1].data() : nullptr, U_, softmax ? ops::kActNone : act_, alpha_});
    if (softmax && !logits_) {
      tmp_.assign(y, y + n * U_);
      cpu_for_1d(n * U_, ops::SoftmaxRows<T>{tmp_.data(), y, U_});
    }
  }

  void backward(const T* x, const T* y, const T* dy, T* dx, int64_t n, const StepKey&) override {
    dz_.resize(size_t(n * U_));  // dz: (n, units)
    if (act_ == ops::kActSoftmax) {
      if (logits_) std::copy(dy, dy + n * U_, dz_.begin());
      else cpu_for_1d(n * U_, ops::SoftmaxRowsBackward<T>{y, dy, dz_.data(), U_});
    } else {
      cpu_for_1d(n * U_, ops::ActivationBackward<T>{y, dy, dz_.data(), act_, alpha_});
    }
    if (bias_) {  // from the float32 dz
      T* db = this->grads_[1].data();
      for (int64_t e = 0; e < n; ++e)
        for (int64_t u = 0; u < U_; ++u) db[u] += dz_[size_t(e * U_ + u)];
    }
    const T* dz = rounded(dz_.data(), n * U_, dzh_);
    cpu_gemm<T>(true, false, I_, U_, n, rounded(x, n * I_, xh_), dz, this->grads_[0].data(), true);  // dW += xᵀ · dz
    if (dx) cpu_gemm<T>(false, true, n, I_, U_, dz, rounded(this->params_[0].data(), I_ * U_, wh_), dx, false);  // dx = dz · Wᵀ
  }

 private:
  int64_t I_ = 0, U_ = 0;
  bool bias_ = true, logits_ = false;
  int act_ = 0;
  T alpha_ = 0;
  // p itself for float32 products, else p (count) rounded to the 16-bit format into store.
  const T* rounded(const T* p, int64_t count, std::vector<T>& store) const {
    if (!this->half_) return p;
    store.resize(size_t(count));
    cpu_for_1d(count, ops::RoundToHalf<T>{p, store.data(), this->half_});
    return store.data();
  }

  std::vector<T> dz_, tmp_;
  std::vector<T> xh_, wh_, dzh_;  // bf16/fp16: rounded x (n, in), W (in, units), dz (n, units)
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_dense(const LayerDesc& desc) {
  return std::make_unique<Dense<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_dense<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_dense<double>(const LayerDesc&);

}  // namespace genrelab::nn
