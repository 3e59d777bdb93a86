// conv2d's GEMM engine: im2col / col2im functors (ops/im2col.h) and cuBLAS products on the
// context's stream, each product the column-major call nn/conv_gemm_plan.h describes (and the CPU
// tests run through a plain GEMM): for float operands cublasSgemm or the cuBLASLt algorithm that
// timed faster for the shape (gemm_tuner.h), cublasGemmEx (float accumulation) for the 16-bit ones
// of bf16/fp16.
#include "conv_gemm.h"

#include <algorithm>
#include <atomic>

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/low_precision.h"
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

// p advanced by `elements` of `bytes` each.
const void* advanced(const void* p, int64_t elements, size_t bytes) {
  return static_cast<const char*>(p) + elements * int64_t(bytes);
}

std::atomic<int64_t> g_passes_queued{0};

}  // namespace

int64_t GemmConv::passes_queued() { return g_passes_queued.load(); }

GemmConv::GemmConv(const ops::ConvColsGeom& g, int64_t filters, GpuContext& ctx)
    : g_(g), f_(filters), k_(g.k()), half_(ctx.half_format()), ctx_(ctx) {
  direct_ = g.identity();
  int device = 0;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&device));
  GENRELAB_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));
}

void GemmConv::gemm(const genrelab::nn::GemmCall& c, const void* a, const void* b, void* out, bool out_half,
                    int64_t batches, GemmStrides s) {
  const float one = 1.0f;
  const int m = as_int(c.m, "m"), n = as_int(c.n, "n"), k = as_int(c.k, "k");
  const int lda = as_int(c.lda, "lda"), ldb = as_int(c.ldb, "ldb"), ldc = as_int(c.ldc, "ldc");
  if (half_ == ops::kHalfNone) {
    as_int(batches, "batches");
    tuned_sgemm(ctx_, c, static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(out), batches,
                s, lt_workspace_, tune_);
    return;
  }
  const cudaDataType_t t = half_ == ops::kHalfFp16 ? CUDA_R_16F : CUDA_R_16BF;
  const cudaDataType_t ct = out_half ? t : CUDA_R_32F;
  const void* ha = advanced(a, c.a_offset, sizeof(uint16_t));
  const void* hb = advanced(b, c.b_offset, sizeof(uint16_t));
  if (batches == 1)
    GENRELAB_CUDA_CHECK(cublasGemmEx(ctx_.cublas(), op(c.trans_a), op(c.trans_b), m, n, k, &one, ha, t, lda, hb, t,
                                     ldb, &c.beta, out, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  else
    GENRELAB_CUDA_CHECK(cublasGemmStridedBatchedEx(ctx_.cublas(), op(c.trans_a), op(c.trans_b), m, n, k, &one, ha, t,
                                                   lda, s.a, hb, t, ldb, s.b, &c.beta, out, ct, ldc, s.c,
                                                   as_int(batches, "batches"), CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT));
}

size_t GemmConv::cols_bytes(int64_t n) const {
  const size_t elements = size_t(rows(n) * k_);
  if (half_ == ops::kHalfNone) return direct_ ? 0 : elements * sizeof(float);
  return direct_ ? 0 : elements * (sizeof(uint16_t) + sizeof(float));
}

bool GemmConv::fits(int64_t n) const {
  if (!ops::cols_fit_indices(g_, n) || k_ * f_ >= (int64_t(1) << 31)) return false;
  size_t free_b = 0, total_b = 0;
  GENRELAB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t have = cols_.bytes() + cols16_.bytes();  // already ours
  return cols_bytes(n) <= std::max(have, std::min<size_t>(size_t(4) << 30, (free_b + have) / 4));
}

void GemmConv::release() {
  ctx_.release_tracked(cols_);
  ctx_.release_tracked(cols16_);
  ctx_.release_tracked(partial_);
  ctx_.release_tracked(lt_workspace_);
}

int64_t GemmConv::suggested_filter_splits(int64_t n) const {
  const int64_t tiles = ceil_div<int64_t>(k_, 128) * ceil_div<int64_t>(f_, 128);  // of a 128 × 128 tiled GEMM
  const int64_t want = ceil_div<int64_t>(2 * sm_count_, tiles);
  // Each range at least 512 rows, and the partial products within 256 MiB (with the tail's slot,
  // and under bf16/fp16 the sum's).
  const int64_t by_rows = std::max<int64_t>(1, rows(n) / 512);
  const int64_t extra_slots = half_ != ops::kHalfNone ? 2 : 1;
  const int64_t by_memory =
      std::max<int64_t>(1, (int64_t(256) << 20) / int64_t(sizeof(float) * k_ * f_) - extra_slots);
  return std::clamp<int64_t>(want, 1, std::min(by_rows, by_memory));
}

template <typename T>
const T* GemmConv::columns_of(const T* x, DeviceBuffer<T>& buf, int64_t n) {
  const int64_t elements = rows(n) * k_;
  if (size_t(elements) > buf.size()) ctx_.resize_tracked(buf, size_t(elements));
  T* cols = buf.data();
  // Thread (r, q) of a launch: columns [q·L, q·L + L) of row r of the range; consecutive threads
  // write consecutive 16 (float) or 8 (16-bit) bytes of a row.
  ops::with_cols_lanes<T>(g_.c, [&](auto lanes) {
    using F = ops::Im2Col<T, lanes()>;
    in_row_ranges(rows(n), F::groups(g_), [&](int64_t first, int64_t count) {
      launch_2d(count, F::groups(g_), F{g_, x, cols, first}, ctx_.stream());
    });
  }, x, static_cast<const T*>(cols));
  return cols;
}

const void* GemmConv::columns(const void* x, int64_t n) {
  if (direct_) return x;
  if (half_ != ops::kHalfNone) return columns_of(static_cast<const uint16_t*>(x), cols16_, n);
  return columns_of(static_cast<const float*>(x), cols_, n);
}

void GemmConv::note_batch(int64_t n, bool training) {
  ++g_passes_queued;
  if (training) largest_trained_n_ = std::max(largest_trained_n_, n);
  tune_ = n >= largest_trained_n_;
}

void GemmConv::forward(const void* x, const void* kernel, void* y, int64_t n, bool cols_written) {
  note_batch(n, false);
  const void* cols = cols_written ? static_cast<const void*>(cols_.data()) : columns(x, n);
  gemm(genrelab::nn::conv_forward_gemm(rows(n), k_, f_), kernel, cols, y, half_ != ops::kHalfNone);
}

float* GemmConv::written_columns(int64_t n) {
  GENRELAB_CHECK(half_ == ops::kHalfNone && !direct_, "conv2d GEMM engine: no float columns to write");
  const int64_t elements = rows(n) * k_;
  if (size_t(elements) > cols_.size()) ctx_.resize_tracked(cols_, size_t(elements));
  return cols_.data();
}

void GemmConv::backward_filter(const void* x, const void* dz, float* dw, int64_t n, bool cols_ready,
                               int64_t splits) {
  note_batch(n, true);
  const void* kept = half_ != ops::kHalfNone ? static_cast<const void*>(cols16_.data()) : cols_.data();
  const void* cols = cols_ready && !direct_ ? kept : columns(x, n);
  const genrelab::nn::RowRanges ranges = genrelab::nn::conv_filter_ranges(rows(n), splits);
  const int64_t block = k_ * f_;
  if (ranges.parts() == 1 && half_ == ops::kHalfNone) {
    gemm(genrelab::nn::conv_filter_gemm(0, rows(n), k_, f_, true), cols, dz, dw, false);
    return;
  }
  // partial[s] (f, K) = the product over range s (one strided-batched call for the equal ranges,
  // one call for the tail); then dw += Σ_s partial[s]. bf16/fp16: this call's dW (the one product,
  // or the sum of the partials in the slot after them) is rounded once complete, then added.
  const bool sum_apart = half_ != ops::kHalfNone && ranges.parts() > 1;
  const int64_t slots = ranges.parts() + (sum_apart ? 1 : 0);
  if (size_t(slots * block) > partial_.size()) ctx_.resize_tracked(partial_, size_t(slots * block));
  float* partial = partial_.data();
  if (ranges.parts() == 1) {
    gemm(genrelab::nn::conv_filter_gemm(0, rows(n), k_, f_, false), cols, dz, partial, false);
  } else {
    gemm(genrelab::nn::conv_filter_gemm(0, ranges.span, k_, f_, false), cols, dz, partial, false, ranges.splits,
         {ranges.span * k_, ranges.span * f_, block});
    if (ranges.tail > 0)
      gemm(genrelab::nn::conv_filter_gemm(ranges.splits * ranges.span, ranges.tail, k_, f_, false), cols, dz,
           partial + ranges.splits * block, false);
  }
  if (half_ == ops::kHalfNone) {
    add_bias_grad(ctx_, partial, dw, ranges.parts(), block, true);
    return;
  }
  const float* product = partial;
  if (sum_apart) {
    float* sum = partial + ranges.parts() * block;
    add_bias_grad(ctx_, partial, sum, ranges.parts(), block, false);
    product = sum;
  }
  launch_1d(block, ops::AddRoundedToHalf{product, dw, half_}, ctx_.stream());
}

float* GemmConv::input_grad_columns(const void* dz, const void* kernel, float* dx, int64_t n) {
  note_batch(n, true);
  const int64_t r = rows(n);
  float* dcols = dx;  // a direct 1×1 convolution's dcols are dx
  if (!direct_) {
    if (size_t(r * k_) > cols_.size()) ctx_.resize_tracked(cols_, size_t(r * k_));
    dcols = cols_.data();
  }
  gemm(genrelab::nn::conv_data_gemm(r, k_, f_), kernel, dz, dcols, false);
  return dcols;
}

ops::ColumnsGrad GemmConv::backward_data_columns(const void* dz, const void* kernel, int64_t n) {
  GENRELAB_CHECK(!direct_, "conv2d GEMM engine: a 1×1 layer's input gradient is its columns");
  return {input_grad_columns(dz, kernel, nullptr, n), g_, half_};
}

void GemmConv::backward_data(const void* dz, const void* kernel, float* dx, int64_t n) {
  const float* dcols = input_grad_columns(dz, kernel, dx, n);
  if (!direct_) {
    // Thread (r, q): channels [q·L, q·L + L) of pixel r of the range, the sum of the columns that copied it.
    ops::with_cols_lanes<float>(g_.c, [&](auto lanes) {
      using F = ops::Col2Im<float, lanes()>;
      in_row_ranges(n * g_.h * g_.w, F::groups(g_), [&](int64_t first, int64_t count) {
        launch_2d(count, F::groups(g_), F{g_, dcols, dx, first}, ctx_.stream());
      });
    }, static_cast<const float*>(dcols), dx);
  }
  // bf16/fp16: dx as cuDNN's 16-bit tensor holds it.
  if (half_ != ops::kHalfNone)
    launch_1d(n * g_.in_size(), ops::RoundToHalf<float>{dx, dx, half_}, ctx_.stream());
}

}  // namespace genrelab::cuda::nn
