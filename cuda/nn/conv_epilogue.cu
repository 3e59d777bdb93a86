// conv2d's epilogue fused with the maxpool2d and dropout after it, on the GPU
// (train.fuse_conv_epilogue): the ops/conv_epilogue.h functors launched one call per window and
// four channels where the buffers allow it (one 16-byte access per cell), else one channel.
#include "conv_epilogue.h"

#include <string>
#include <type_traits>

#include "genrelab/cuda/launch.cuh"

namespace genrelab::cuda::nn {

using genrelab::nn::StepKey;

void FusedConvEpilogue::reserve(int64_t n) {
  const size_t count = size_t(n * run_.pooled_size());
  if (count > argmax_.size()) ctx_.resize_tracked(argmax_, count);
  if (count > dpool_.size()) ctx_.resize_tracked(dpool_, count);
}

void FusedConvEpilogue::forward(const float* z, const uint16_t* z16, const float* bias, float* pooled, float* dropped,
                                int64_t n, bool training, const StepKey& key, const ops::ColumnsOut& next) {
  if (training) reserve(n);
  trained_n_ = training ? n : 0;
  const ops::EpilogueOutputs out =
      ops::EpilogueOutputs::of(training, pooled, dropped, argmax_.data(), run_.sign_coded(), next.cols != nullptr);
  const ops::EpilogueDropout drop = run_.dropout_of(key.seed, run_.drops(training) ? ctx_.dropout_step(key) : nullptr);
  const int format = z16 ? ctx_.half_format() : ops::kHalfNone;
  const int lanes = ops::conv_epilogue_lanes(run_.c, {z16 ? nullptr : z, out.pooled, out.dropped}, {z16}, out.argmax);
  auto go = [&](auto lane_count, const auto* zp) {
    constexpr int L = decltype(lane_count)::value;
    using Z = std::remove_cv_t<std::remove_pointer_t<decltype(zp)>>;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      launch_1d(g.calls(m, L),
                ops::ConvEpilogueForward<L, Z>{zp, format, bias, run_.act, run_.alpha, out.pooled, out.argmax, drop,
                                               out.dropped, g, n0, next},
                ctx_.stream());
    });
  };
  ops::with_epilogue_lanes(lanes, [&](auto lane_count) { z16 ? go(lane_count, z16) : go(lane_count, z); });
}

void FusedConvEpilogue::backward(const float* dy, const ops::ColumnsGrad& dy_cols, const float* pooled, float* dz,
                                 uint16_t* dz16, int64_t n, const StepKey& key) {
  GENRELAB_CHECK(trained_n_ == n, "fused conv epilogue: backward of ", n, " examples follows ",
                 trained_n_ > 0 ? "a training forward of " + std::to_string(trained_n_) : "no training forward",
                 " (its argmax is that forward's)");
  const ops::EpilogueDropout drop = run_.dropout_of(key.seed, run_.drops(true) ? ctx_.dropout_step(key) : nullptr);
  const int format = ctx_.half_format();
  const uint8_t* argmax = argmax_.data();
  float* dpool = dpool_.data();
  const int lanes = ops::conv_epilogue_lanes(run_.c, {dy, dy_cols.dcols, pooled, dz, dpool}, {dz16}, argmax);
  ops::with_epilogue_lanes(lanes, [&](auto lane_count) {
    constexpr int L = decltype(lane_count)::value;
    const ops::ConvEpilogueGeom g = run_.geom(L);
    ops::for_each_conv_epilogue_launch(g, L, n, [&](int64_t n0, int64_t m) {
      launch_1d(g.calls(m, L),
                ops::ConvEpilogueBackward<L>{dy, pooled, argmax, drop, run_.act, run_.alpha, dz, dz16, format, dpool, g,
                                             n0, ops::columns_grad_sum<L>(dy_cols), dy_cols.round},
                ctx_.stream());
    });
  });
}

}  // namespace genrelab::cuda::nn
