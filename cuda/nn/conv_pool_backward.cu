// The fused leading conv2d + maxpool2d's backward on the GPU (FusedConvPool::backward; the rest of
// the class is in conv_pool.cu, split off so that the two sides' kernel instances build side by
// side): one thread per (chunk of kSpan pooled positions, filter) sums the kernel and bias
// gradients of its chunk from the forward's argmax cells, cuBLAS adds the chunks up (gemv with
// ones, as the bias gradients do), and one small kernel adds the sums into the conv layer's
// gradients.
#include <algorithm>

#include "conv_pool.h"

#include "genrelab/cuda/launch.cuh"

namespace genrelab::cuda::nn {

void FusedConvPool::backward(const float* x, const float* dy, const float* kernel, const float* bias,
                             float* grad_kernel, float* grad_bias, int64_t n) {
  const int64_t in = int64_t(g_.h) * g_.w * g_.c, out = int64_t(g_.qh) * g_.qw * g_.f;
  const int32_t K = g_.k();
  const int64_t row = int64_t(g_.f) * (K + 1);
  cudaStream_t s = ctx_.stream();
  GENRELAB_CHECK(trained_n_ == n, "FusedConvPool: backward of ", n, " examples without a training forward of them");
  for (int64_t e0 = 0; e0 < n; e0 += per_launch_backward_) {
    const int64_t m = std::min(per_launch_backward_, n - e0), c = chunks(m);
    GENRELAB_CHECK(size_t(c * row) <= partial_.size(), "FusedConvPool: reserve(", n, ") was not called");
    const ops::ConvPoolCell fc = cell(x + e0 * in, kernel, bias);
    ops::with_conv_pool_shape(K, fc.half, [&](auto k, auto h) {
      using Partial = ops::ConvPoolGradPartial<k(), h()>;
      launch_2d(c, g_.f,
                Partial{fc, dy + e0 * out, argmax_.data() + e0 * out, m * g_.qh * g_.qw, kSpan, partial_.data(),
                        dropout_.backward_scale()},
                s);
    });
    add_bias_grad(ctx_, partial_.data(), sums_.data(), c, row, false);  // sums (row) = Σ over the chunks
    launch_1d(row, ops::ConvPoolGradFinish{sums_.data(), K, ctx_.half_format(), grad_kernel, grad_bias}, s);
  }
}

}  // namespace genrelab::cuda::nn
