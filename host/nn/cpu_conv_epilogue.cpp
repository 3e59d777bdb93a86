// conv2d's epilogue fused with the maxpool2d and dropout after it, on the CPU
// (train.fuse_conv_epilogue): the ops/conv_epilogue.h functors looped over the calls the GPU
// launches (cuda/nn/conv_epilogue.cu).
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/ops/conv_epilogue.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

void CpuConvEpilogue::forward(const float* z, const float* bias, float* pooled, float* dropped, int64_t n,
                              bool training, const StepKey& key) {
  if (training) argmax_.resize(size_t(n * run_.pooled_size()));
  const ops::EpilogueOutputs out =
      ops::EpilogueOutputs::of(training, pooled, dropped, argmax_.data(), run_.sign_coded());
  const ops::DropoutStep step{key.step, key.first_example};  // the per-step key, for the loops below
  const ops::EpilogueDropout drop = run_.dropout_of(key.seed, run_.drops(training) ? &step : nullptr);
  ops::with_epilogue_lanes(ops::conv_epilogue_lanes(run_.c, {z, out.pooled, out.dropped}, {}, out.argmax), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      cpu_for_1d(g.calls(m, L), ops::ConvEpilogueForward<L, float>{z, ops::kHalfNone, bias, run_.act, run_.alpha,
                                                                    out.pooled, out.argmax, drop, out.dropped, g, n0});
    });
  });
}

void CpuConvEpilogue::backward(const float* dy, const float* pooled, float* dz, int64_t n, const StepKey& key) {
  GENRELAB_CHECK(argmax_.size() >= size_t(n * run_.pooled_size()),
                 "fused conv epilogue: backward without a training forward of the batch");
  const ops::DropoutStep step{key.step, key.first_example};
  const ops::EpilogueDropout drop = run_.dropout_of(key.seed, run_.drops(true) ? &step : nullptr);
  ops::with_epilogue_lanes(ops::conv_epilogue_lanes(run_.c, {dy, pooled, dz}, {}, argmax_.data()), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      cpu_for_1d(g.calls(m, L), ops::ConvEpilogueBackward<L>{dy, pooled, argmax_.data(), drop, run_.act, run_.alpha, dz,
                                                             nullptr, ops::kHalfNone, nullptr, g, n0});
    });
  });
}

}  // namespace genrelab::nn
