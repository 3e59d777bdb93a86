// The matrix products of conv2d's GEMM engine (train.conv_engine, cuda/nn/conv_gemm.cu) as the
// column-major BLAS calls cuBLAS runs, C (m × n) = op(A) · op(B) + beta · C, so that the CPU tests
// can run the very same calls through a plain column-major GEMM (tests/test_im2col.cpp).
// A row-major matrix passes as its transpose: cols (rows, K) is column-major (K, rows) with
// leading dimension K, the kernel (f, K) is (K, f), y and dz (rows, f) are (f, rows).
#pragma once

#include <cstdint>

namespace genrelab::nn {

struct GemmCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t a_offset = 0, b_offset = 0;  // elements into A and B where the call starts
  float beta = 0;
};

// y (rows, f) = cols (rows, K) · kernelᵀ: A = kernel, B = cols, C = y.
inline GemmCall conv_forward_gemm(int64_t rows, int64_t K, int64_t F) {
  return GemmCall{true, false, F, rows, K, K, K, F, 0, 0, 0.0f};
}

// dw (f, K) (+)= dz[first, first + count)ᵀ · cols[first, first + count): A = cols, B = dz, C = dw
// (beta 1 when accumulate).
inline GemmCall conv_filter_gemm(int64_t first, int64_t count, int64_t K, int64_t F, bool accumulate) {
  return GemmCall{false, true, K, F, count, K, F, K, first * K, first * F, accumulate ? 1.0f : 0.0f};
}

// dcols (rows, K) = dz (rows, f) · kernel: A = kernel, B = dz, C = dcols.
inline GemmCall conv_data_gemm(int64_t rows, int64_t K, int64_t F) {
  return GemmCall{false, false, K, rows, F, K, F, K, 0, 0, 0.0f};
}

// The kernel gradient over row ranges: `splits` ranges of `span` rows, then the `tail` rows left
// over as one more range; each range's product goes to its own (f, K) partial, and the partials
// are added into dw.
struct RowRanges {
  int64_t splits = 1, span = 0, tail = 0;
  int64_t parts() const { return splits + (tail > 0 ? 1 : 0); }
};
inline RowRanges conv_filter_ranges(int64_t rows, int64_t splits) {
  RowRanges r;
  r.splits = splits < 1 ? 1 : splits > rows ? (rows > 0 ? rows : 1) : splits;
  r.span = rows / r.splits;
  r.tail = rows - r.splits * r.span;
  return r;
}

}  // namespace genrelab::nn
