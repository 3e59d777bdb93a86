// The fused leading conv2d + maxpool2d on the GPU (train.fuse_conv_pool): the ops/conv_pool.h
// functors (one instance per kernel volume, 16-bit format and activation path) launched on the
// context's stream. Forward (here): one thread per group of filters and few consecutive pooled
// positions, applying the dropout after the pool (when there is one) and keeping the argmax bytes
// when training. The backward is in conv_pool_backward.cu, a translation unit of its own: each
// side's 96 kernel instances take about half a minute to build per architecture, and two files
// build side by side. Nothing allocates after reserve(), so the step stays capturable in a CUDA
// graph.
#include "conv_pool.h"

#include <algorithm>

#include "genrelab/cuda/launch.cuh"

namespace genrelab::cuda::nn {

FusedConvPool::FusedConvPool(const genrelab::nn::ModelPlan& plan, GpuContext& ctx)
    : ctx_(ctx),
      g_(genrelab::nn::conv_pool_geom(plan)),
      act_(int(genrelab::nn::activation_of(plan.layers[0]))),
      alpha_(float(genrelab::nn::activation_alpha(plan.layers[0]))),
      dropout_(genrelab::nn::conv_pool_dropout(plan)),
      last_(genrelab::nn::conv_pool_last(plan)),
      per_launch_(ops::conv_pool_examples_per_launch(g_)) {
  // The backward's 2-D grid has (chunks / 8) rows of blocks, below 65 536 (cuda/launch.cuh).
  const int64_t positions = int64_t(g_.qh) * g_.qw;
  GENRELAB_CHECK(positions <= ops::kConvPoolMaxPositions, "fused conv+pool: ", positions,
                 " pooled positions per example (conv_pool_fusable refuses this plan)");
  per_launch_backward_ = std::clamp<int64_t>(ops::kConvPoolMaxPositions / std::max<int64_t>(positions, 1), 1, per_launch_);
}

int64_t FusedConvPool::chunks(int64_t m) const { return ceil_div<int64_t>(m * g_.qh * g_.qw, kSpan); }

void FusedConvPool::reserve(int64_t n) {
  const int64_t m = std::min(n, per_launch_backward_);
  ctx_.resize_tracked(partial_, size_t(chunks(m) * g_.f * (g_.k() + 1)));
  ctx_.resize_tracked(sums_, size_t(g_.f * (g_.k() + 1)));
  ctx_.resize_tracked(argmax_, size_t(n * g_.qh * g_.qw * g_.f));
  ctx_.ones(chunks(m));
}

ops::ConvPoolCell FusedConvPool::cell(const float* x, const float* kernel, const float* bias) const {
  return ops::ConvPoolCell{g_, x, kernel, bias, act_, alpha_, ctx_.half_format()};
}

void FusedConvPool::forward(const float* x, const float* kernel, const float* bias, float* y, int64_t n, bool training,
                            const genrelab::nn::StepKey& key, const ops::ColumnsOut& next) {
  const int64_t in = int64_t(g_.h) * g_.w * g_.c, out = int64_t(g_.qh) * g_.qw * g_.f;
  GENRELAB_CHECK(!training || size_t(n * out) <= argmax_.size(), "FusedConvPool: reserve(", n, ") was not called");
  trained_n_ = training ? n : 0;
  const ops::EpilogueDropout drop = dropout_.of(key.seed, dropout_.drops(training) ? ctx_.dropout_step(key) : nullptr);
  for (int64_t e0 = 0; e0 < n; e0 += per_launch_) {
    const int64_t m = std::min(per_launch_, n - e0);
    const ops::ConvPoolCell c = cell(x + e0 * in, kernel, bias);
    ops::with_conv_pool_shape(g_.k(), c.half, [&](auto k, auto h) {
      using Forward = ops::ConvPoolForward<k(), h()>;
      launch_1d(Forward::calls(g_, m),
                Forward{c, next.cols ? nullptr : y + e0 * out, training ? argmax_.data() + e0 * out : nullptr, drop,
                        e0 * out, Forward::positions_of(g_, m), next.from_example(e0)},
                ctx_.stream());
    });
  }
}

}  // namespace genrelab::cuda::nn
