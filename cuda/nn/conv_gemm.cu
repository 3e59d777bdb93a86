// conv2d's GEMM engine: im2col / col2im functors (ops/im2col.h) and cuBLAS SGEMM on the
// context's stream, each product the column-major call nn/conv_gemm_plan.h describes (and the CPU
// tests run through a plain GEMM).
#include "conv_gemm.h"

#include <algorithm>

#include "genrelab/cuda/launch.cuh"
#include "gpu_layers.h"

namespace genrelab::cuda::nn {

namespace {

int as_int(int64_t v, const char* what) {
  GENRELAB_CHECK(v >= 0 && v < (int64_t(1) << 31), "conv2d GEMM engine: ", what, " ", v, " does not fit cuBLAS");
  return int(v);
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// f(first, count) over [0, rows) in ranges one 2-D launch of `groups` columns takes.
template <typename F>
void in_row_ranges(int64_t rows, int64_t groups, F&& f) {
  const int64_t most = launch_2d_max_rows(groups);
  for (int64_t first = 0; first < rows; first += most) f(first, std::min(most, rows - first));
}

}  // namespace

GemmConv::GemmConv(const ops::ConvColsGeom& g, int64_t filters, GpuContext& ctx)
    : g_(g), f_(filters), k_(g.k()), ctx_(ctx) {
  direct_ = g.identity();
  int device = 0;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&device));
  GENRELAB_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));
}

void GemmConv::sgemm(const genrelab::nn::GemmCall& c, const float* a, const float* b, float* out) {
  const float one = 1.0f;
  GENRELAB_CUDA_CHECK(cublasSgemm(ctx_.cublas(), op(c.trans_a), op(c.trans_b), as_int(c.m, "m"), as_int(c.n, "n"),
                                  as_int(c.k, "k"), &one, a + c.a_offset, as_int(c.lda, "lda"), b + c.b_offset,
                                  as_int(c.ldb, "ldb"), &c.beta, out, as_int(c.ldc, "ldc")));
}

size_t GemmConv::cols_bytes(int64_t n) const { return direct_ ? 0 : size_t(rows(n) * k_) * sizeof(float); }

bool GemmConv::fits(int64_t n) const {
  if (ctx_.precision() != Precision::fp32 && ctx_.precision() != Precision::tf32) return false;
  if (!ops::cols_fit_indices(g_, n) || k_ * f_ >= (int64_t(1) << 31)) return false;
  size_t free_b = 0, total_b = 0;
  GENRELAB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t have = cols_.bytes();  // already ours
  return cols_bytes(n) <= std::max(have, std::min<size_t>(size_t(4) << 30, (free_b + have) / 4));
}

void GemmConv::release() {
  ctx_.release_tracked(cols_);
  ctx_.release_tracked(partial_);
}

int64_t GemmConv::suggested_filter_splits(int64_t n) const {
  const int64_t tiles = ceil_div<int64_t>(k_, 128) * ceil_div<int64_t>(f_, 128);  // of a 128 × 128 tiled SGEMM
  const int64_t want = ceil_div<int64_t>(2 * sm_count_, tiles);
  // Each range at least 512 rows, and the partial products within 256 MiB.
  const int64_t by_rows = std::max<int64_t>(1, rows(n) / 512);
  const int64_t by_memory = std::max<int64_t>(1, (int64_t(256) << 20) / int64_t(sizeof(float) * k_ * f_) - 1);
  return std::clamp<int64_t>(want, 1, std::min(by_rows, by_memory));
}

const float* GemmConv::columns(const float* x, int64_t n) {
  if (direct_) return x;
  const int64_t elements = rows(n) * k_;
  if (size_t(elements) > cols_.size()) ctx_.resize_tracked(cols_, size_t(elements));
  float* cols = cols_.data();
  // Thread (r, q) of a launch: columns [q·L, q·L + L) of row r of the range; consecutive threads
  // write consecutive 16 bytes of a row.
  ops::with_cols_lanes<float>(g_.c, [&](auto lanes) {
    using F = ops::Im2Col<float, lanes()>;
    in_row_ranges(rows(n), F::groups(g_), [&](int64_t first, int64_t count) {
      launch_2d(count, F::groups(g_), F{g_, x, cols, first}, ctx_.stream());
    });
  }, x, static_cast<const float*>(cols));
  return cols;
}

void GemmConv::forward(const float* x, const float* kernel, float* y, int64_t n) {
  const float* cols = columns(x, n);
  sgemm(genrelab::nn::conv_forward_gemm(rows(n), k_, f_), kernel, cols, y);
}

void GemmConv::backward_filter(const float* x, const float* dz, float* dw, int64_t n, bool cols_ready,
                               int64_t splits) {
  const float* cols = cols_ready && !direct_ ? cols_.data() : columns(x, n);
  const genrelab::nn::RowRanges ranges = genrelab::nn::conv_filter_ranges(rows(n), splits);
  if (ranges.parts() == 1) {
    sgemm(genrelab::nn::conv_filter_gemm(0, rows(n), k_, f_, true), cols, dz, dw);
    return;
  }
  // partial[s] (f, K) = the product over range s (one strided-batched call for the equal ranges,
  // one call for the tail); then dw += Σ_s partial[s].
  const int64_t block = k_ * f_;
  if (size_t(ranges.parts() * block) > partial_.size())
    ctx_.resize_tracked(partial_, size_t(ranges.parts() * block));
  const genrelab::nn::GemmCall c = genrelab::nn::conv_filter_gemm(0, ranges.span, k_, f_, false);
  const float one = 1.0f;
  GENRELAB_CUDA_CHECK(cublasSgemmStridedBatched(
      ctx_.cublas(), op(c.trans_a), op(c.trans_b), as_int(c.m, "m"), as_int(c.n, "n"), as_int(c.k, "rows"), &one,
      cols, as_int(c.lda, "lda"), ranges.span * k_, dz, as_int(c.ldb, "ldb"), ranges.span * f_, &c.beta,
      partial_.data(), as_int(c.ldc, "ldc"), block, as_int(ranges.splits, "splits")));
  if (ranges.tail > 0)
    sgemm(genrelab::nn::conv_filter_gemm(ranges.splits * ranges.span, ranges.tail, k_, f_, false), cols, dz,
          partial_.data() + ranges.splits * block);
  add_bias_grad(ctx_, partial_.data(), dw, ranges.parts(), block, true);
}

void GemmConv::backward_data(const float* dz, const float* kernel, float* dx, int64_t n) {
  const int64_t r = rows(n);
  float* dcols = dx;  // a direct 1×1 convolution's dcols are dx
  if (!direct_) {
    if (size_t(r * k_) > cols_.size()) ctx_.resize_tracked(cols_, size_t(r * k_));
    dcols = cols_.data();
  }
  sgemm(genrelab::nn::conv_data_gemm(r, k_, f_), kernel, dz, dcols);
  if (direct_) return;
  // Thread (r, q): channels [q·L, q·L + L) of pixel r of the range, the sum of the columns that copied it.
  ops::with_cols_lanes<float>(g_.c, [&](auto lanes) {
    using F = ops::Col2Im<float, lanes()>;
    in_row_ranges(n * g_.h * g_.w, F::groups(g_), [&](int64_t first, int64_t count) {
      launch_2d(count, F::groups(g_), F{g_, dcols, dx, first}, ctx_.stream());
    });
  }, static_cast<const float*>(dcols), dx);
}

}  // namespace genrelab::cuda::nn
