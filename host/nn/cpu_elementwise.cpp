// CPU element-wise layers: relu / elu / leaky_relu, dropout (Philox masks keyed by step, layer
// and global example, see ops/nn_activation.h) and flatten (NHWC order is already Keras's
// channels-last flatten order, so it is a copy).
#include <algorithm>

#include "cpu_layers_impl.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class Activation final : public CpuLayer<T> {
 public:
  explicit Activation(const LayerDesc& d) : CpuLayer<T>(d), act_(int(activation_of(d))), alpha_(T(activation_alpha(d))) {}
  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    const int64_t total = n * this->desc_.in.size();
    std::copy(x, x + total, y);
    cpu_for_1d(total, ops::BiasActivation<T>{y, nullptr, 1, act_, alpha_});
  }
  void backward(const T*, const T* y, const T* dy, T* dx, int64_t n, const StepKey&) override {
    if (dx) cpu_for_1d(n * this->desc_.in.size(), ops::ActivationBackward<T>{y, dy, dx, act_, alpha_});
  }

 private:
  int act_;
  T alpha_;
};

template <typename T>
class Dropout final : public CpuLayer<T> {
 public:
  explicit Dropout(const LayerDesc& d) : CpuLayer<T>(d), rate_(float(d.spec["rate"].get<double>())) {}
  void forward(const T* x, T* y, int64_t n, bool training, const StepKey& key) override {
    const int64_t total = n * this->desc_.in.size();
    if (!training || rate_ == 0.0f) {
      std::copy(x, x + total, y);
      return;
    }
    const ops::DropoutStep step{key.step, key.first_example};
    cpu_for_1d(ops::DropoutApply<T>::groups(total), ops::DropoutApply<T>{mask(key, &step), x, y, total});
  }
  void backward(const T*, const T*, const T* dy, T* dx, int64_t n, const StepKey& key) override {
    if (!dx) return;
    const int64_t total = n * this->desc_.in.size();
    if (rate_ == 0.0f) {
      std::copy(dy, dy + total, dx);
      return;
    }
    const ops::DropoutStep step{key.step, key.first_example};
    cpu_for_1d(ops::DropoutApply<T>::groups(total), ops::DropoutApply<T>{mask(key, &step), dy, dx, total});
  }

 private:
  // `step` (the per-step part of the key, host memory) must outlive the loop that uses the mask.
  ops::DropoutMask mask(const StepKey& key, const ops::DropoutStep* step) const {
    return ops::DropoutMask{key.seed, this->desc_.index, rate_, this->desc_.in.size(), step};
  }
  float rate_;
};

template <typename T>
class Flatten final : public CpuLayer<T> {
 public:
  using CpuLayer<T>::CpuLayer;
  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override { std::copy(x, x + n * this->desc_.in.size(), y); }
  void backward(const T*, const T*, const T* dy, T* dx, int64_t n, const StepKey&) override {
    if (dx) std::copy(dy, dy + n * this->desc_.in.size(), dx);
  }
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_elementwise(const LayerDesc& desc) {
  if (desc.type == "dropout") return std::make_unique<Dropout<T>>(desc);
  if (desc.type == "flatten") return std::make_unique<Flatten<T>>(desc);
  return std::make_unique<Activation<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_elementwise<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_elementwise<double>(const LayerDesc&);

}  // namespace genrelab::nn
