// The fused leading conv2d + maxpool2d on the CPU (train.fuse_conv_pool): the ops/conv_pool.h
// functors looped over example chunks (32-bit index spaces), the backward's chunk sums added up in
// order. The GPU launches the same functors (cuda/nn/conv_pool.cu).
#include <algorithm>
#include <vector>

#include "genrelab/nn/cpu_layers.h"
#include "genrelab/ops/conv_pool.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {
constexpr int64_t kSpan = ops::kConvPoolSpan;  // pooled positions per backward chunk, as on the GPU
}

void conv_pool_forward_cpu(const ops::ConvPoolCell& cell, float* y, uint8_t* argmax, int64_t n,
                           const ops::EpilogueDropout& dropout, const ops::ColumnsOut& next) {
  const ops::ConvPoolGeom& g = cell.g;
  const int64_t in = int64_t(g.h) * g.w * g.c, out = int64_t(g.qh) * g.qw * g.f;
  const int64_t per = ops::conv_pool_examples_per_launch(g);
  for (int64_t e0 = 0; e0 < n; e0 += per) {
    ops::ConvPoolCell c = cell;
    c.x = cell.x + e0 * in;
    ops::with_conv_pool_shape(g.k(), c.half, [&](auto k, auto h) {
      using Forward = ops::ConvPoolForward<k(), h()>;
      const int64_t m = std::min(per, n - e0);
      cpu_for_1d(Forward::calls(g, m), Forward{c, y ? y + e0 * out : nullptr, argmax ? argmax + e0 * out : nullptr,
                                               dropout, e0 * out, Forward::positions_of(g, m), next.from_example(e0)});
    });
  }
}

void conv_pool_backward_cpu(const ops::ConvPoolCell& cell, const float* dy, const uint8_t* argmax, int64_t n,
                            float* grad_kernel, float* grad_bias, float dropout_scale) {
  const ops::ConvPoolGeom& g = cell.g;
  const int64_t in = int64_t(g.h) * g.w * g.c, out = int64_t(g.qh) * g.qw * g.f;
  const int32_t K = g.k();
  const int64_t row = int64_t(g.f) * (K + 1);
  const int64_t per = ops::conv_pool_examples_per_launch(g);
  std::vector<float> partial, sums(static_cast<size_t>(row));
  for (int64_t e0 = 0; e0 < n; e0 += per) {
    const int64_t m = std::min(per, n - e0), positions = m * g.qh * g.qw, chunks = ceil_div(positions, kSpan);
    ops::ConvPoolCell c = cell;
    c.x = cell.x + e0 * in;
    partial.assign(size_t(chunks * row), 0.0f);
    ops::with_conv_pool_shape(K, c.half, [&](auto k, auto h) {
      using Partial = ops::ConvPoolGradPartial<k(), h()>;
      cpu_for_2d(chunks, g.f,
                 Partial{c, dy + e0 * out, argmax + e0 * out, positions, kSpan, partial.data(), dropout_scale});
    });
    std::fill(sums.begin(), sums.end(), 0.0f);
    for (int64_t k = 0; k < chunks; ++k)
      for (int64_t j = 0; j < row; ++j) sums[size_t(j)] += partial[size_t(k * row + j)];
    cpu_for_1d(row, ops::ConvPoolGradFinish{sums.data(), K, cell.half, grad_kernel, grad_bias});
  }
}

}  // namespace genrelab::nn
