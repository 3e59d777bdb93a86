// Private to the CPU backend: one factory per layer family (host/nn/cpu_<family>.cpp), gathered
// by make_cpu_layer in cpu_layers.cpp.
#pragma once

#include <memory>

#include "genrelab/nn/cpu_layers.h"

namespace genrelab::nn {

template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_conv2d(const LayerDesc& desc);
template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_pool(const LayerDesc& desc);  // maxpool2d, avgpool2d, global_avgpool
template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_dense(const LayerDesc& desc);
template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_batchnorm(const LayerDesc& desc);
template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_elementwise(const LayerDesc& desc);  // relu, elu, leaky_relu, dropout, flatten
template <typename T> std::unique_ptr<CpuLayer<T>> make_cpu_rnn(const LayerDesc& desc);  // gru, lstm

}  // namespace genrelab::nn
