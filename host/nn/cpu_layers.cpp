// The CPU layer base (parameter and gradient storage) and the factory over the layer registry.
#include <algorithm>

#include "cpu_layers_impl.h"
#include "genrelab/common.h"

namespace genrelab::nn {

template <typename T>
CpuLayer<T>::CpuLayer(const LayerDesc& desc) : desc_(desc) {
  for (const auto& p : desc.params) {
    params_.emplace_back(size_t(p.size()), T(0));
    if (p.trainable) grads_.emplace_back(size_t(p.size()), T(0));
  }
}

template <typename T>
void CpuLayer<T>::zero_grads() {
  for (auto& g : grads_) std::fill(g.begin(), g.end(), T(0));
}

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_layer(const LayerDesc& desc) {
  const std::string& t = desc.type;
  if (t == "conv2d") return make_cpu_conv2d<T>(desc);
  if (t == "maxpool2d" || t == "avgpool2d" || t == "global_avgpool") return make_cpu_pool<T>(desc);
  if (t == "dense") return make_cpu_dense<T>(desc);
  if (t == "batchnorm") return make_cpu_batchnorm<T>(desc);
  if (t == "relu" || t == "elu" || t == "leaky_relu" || t == "dropout" || t == "flatten") return make_cpu_elementwise<T>(desc);
  if (t == "gru" || t == "lstm") return make_cpu_rnn<T>(desc);
  GENRELAB_CHECK(false, "the CPU backend has no layer of type '", t, "' (layer ", desc.index, ")");
  return nullptr;
}

template class CpuLayer<float>;
template class CpuLayer<double>;
template std::unique_ptr<CpuLayer<float>> make_cpu_layer<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_layer<double>(const LayerDesc&);

}  // namespace genrelab::nn
