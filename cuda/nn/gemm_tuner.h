// The float products of conv2d's GEMM engine (fp32 and tf32) on the algorithm that runs them
// fastest: cuBLASLt's candidates for the product timed against cublasSgemm's own choice, once per
// shape and process. cublasSgemm's heuristic takes 64 × 64-tile kernels for some of the
// baseline's input-gradient products on an H100 (42 TFLOP/s of its 67 fp32 peak, where the
// kernel-gradient products run at 54), and a heuristic cannot be told otherwise; timing can
// (PyTorch's TunableOp does the same for its GEMMs). Deterministic runs keep cublasSgemm: a timed
// choice can differ run to run, and another kernel sums in another order. So do products of less
// than 8 GFLOP, where the timing would cost more than it could win.
#pragma once

#include <cstdint>

#include "cudnn_setup.h"
#include "genrelab/nn/conv_gemm_plan.h"

namespace genrelab::cuda::nn {

// Elements between the consecutive A, B and C of a strided-batched product.
struct GemmStrides {
  int64_t a = 0, b = 0, c = 0;
};

// C (m × n) = op(A) · op(B) + beta · C in float32 (column-major, the call's leading dimensions
// and offsets; `batches` products `strides` apart when > 1), on the context's stream and cuBLAS
// handle (whose math mode says fp32 or tf32). Outside graph capture, a shape met for the first
// time is timed first (untimed work on scratch outputs; the caller's C is written once, by the
// chosen algorithm). `workspace` is the caller's buffer for cuBLASLt's workspace: grown here
// outside capture; inside, an algorithm that needs more than it holds falls back to cublasSgemm.
// With `may_tune` false a shape not timed before is not timed now either: it runs cublasSgemm.
void tuned_sgemm(GpuContext& ctx, const genrelab::nn::GemmCall& c, const float* a, const float* b, float* out,
                 int64_t batches, GemmStrides strides, DeviceBuffer<uint8_t>& workspace, bool may_tune = true);

// Shapes chosen by tuned_sgemm in this process (timed, or taken from the tuning cache), and how
// many of them took a cuBLASLt algorithm: for tests and logs.
struct GemmTuning {
  int64_t shapes = 0, on_lt = 0;
};
GemmTuning gemm_tuning();

// Tests: keep cuBLASLt's fastest candidate whatever cublasSgemm's time (so that its path runs), and
// time products from min_flop (< 0: the default floor). Shapes timed before keep their choice.
void set_gemm_tuning_for_tests(bool force_lt, double min_flop);

}  // namespace genrelab::cuda::nn
