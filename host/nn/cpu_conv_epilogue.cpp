// conv2d's epilogue fused with the maxpool2d and dropout after it, on the CPU
// (train.fuse_conv_epilogue): the ops/conv_epilogue.h functors looped over the calls the GPU
// launches (cuda/nn/conv_epilogue.cu).
#include <type_traits>

#include "genrelab/nn/cpu_layers.h"
#include "genrelab/ops/conv_epilogue.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

// The dropout of `run` in a step; `step` (host memory, the per-step part of the key) must outlive its use.
ops::EpilogueDropout run_dropout(const ConvEpilogueRun& run, bool training, const StepKey& key,
                                 const ops::DropoutStep* step) {
  ops::EpilogueDropout d;
  d.on = training && run.rate > 0.0f;
  if (d.on) d.mask = ops::DropoutMask{key.seed, int(run.dropout), run.rate, run.dropout_size, step};
  return d;
}

// f(std::integral_constant<int, L>) with L = lanes (4 or 1).
template <typename F>
void with_lanes(int lanes, F&& f) {
  if (lanes == 4) f(std::integral_constant<int, 4>());
  else f(std::integral_constant<int, 1>());
}

}  // namespace

void CpuConvEpilogue::forward(const float* z, const float* bias, float* pooled, float* dropped, int64_t n,
                              bool training, const StepKey& key) {
  uint8_t* argmax = nullptr;
  if (training) {
    argmax_.resize(size_t(n * run_.pooled_size()));
    argmax = argmax_.data();
    if (run_.dropout < 0) dropped = nullptr;
  } else if (dropped) {
    pooled = dropped;  // the dropout is the identity: the pooled map is its output
    dropped = nullptr;
  }
  const ops::DropoutStep step{key.step, key.first_example};
  const ops::EpilogueDropout drop = run_dropout(run_, training, key, &step);
  with_lanes(ops::conv_epilogue_lanes(run_.c, {z, pooled, dropped}, {}, argmax), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      cpu_for_1d(g.calls(m, L), ops::ConvEpilogueForward<L, float>{z, ops::kHalfNone, bias, run_.act, run_.alpha, pooled,
                                                                    argmax, drop, dropped, g, n0});
    });
  });
}

void CpuConvEpilogue::backward(const float* dy, const float* pooled, float* dz, int64_t n, const StepKey& key) {
  GENRELAB_CHECK(argmax_.size() >= size_t(n * run_.pooled_size()),
                 "fused conv epilogue: backward without a training forward of the batch");
  const ops::DropoutStep step{key.step, key.first_example};
  const ops::EpilogueDropout drop = run_dropout(run_, true, key, &step);
  with_lanes(ops::conv_epilogue_lanes(run_.c, {dy, pooled, dz}, {}, argmax_.data()), [&](auto lanes) {
    constexpr int L = decltype(lanes)::value;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      cpu_for_1d(g.calls(m, L), ops::ConvEpilogueBackward<L>{dy, pooled, argmax_.data(), drop, run_.act, run_.alpha, dz,
                                                             nullptr, ops::kHalfNone, nullptr, g, n0});
    });
  });
}

}  // namespace genrelab::nn
