// A small blocked GEMM for the CPU backend: packed A/B panels per (row, column) tile, a 4×16
// register micro-kernel, OpenMP across tiles; compiled twice (AVX2/FMA and baseline x86-64) and
// picked at run time, since the project builds without -march=native.
#include <algorithm>
#include <cstring>
#include <vector>

#include <omp.h>

#include "genrelab/common.h"
#include "genrelab/nn/cpu_layers.h"

namespace genrelab::nn {

namespace {

constexpr int64_t kMC = 64, kNC = 256, kKC = 256, kMR = 4, kNR = 16;

// C tile (mb, nb) at c (row stride ldc) += ap (mb, kb) · bp (kb, nb), both packed contiguously.
template <typename T>
__attribute__((always_inline)) inline void tile_kernel(int64_t mb, int64_t nb, int64_t kb, const T* __restrict ap,
                                                       const T* __restrict bp, T* __restrict c, int64_t ldc) {
  int64_t i = 0;
  for (; i + kMR <= mb; i += kMR) {
    int64_t j = 0;
    for (; j + kNR <= nb; j += kNR) {
      T acc[kMR][kNR] = {};
      for (int64_t k = 0; k < kb; ++k) {
        const T* b = bp + k * nb + j;
        for (int64_t r = 0; r < kMR; ++r) {
          const T a = ap[(i + r) * kb + k];
          for (int64_t jj = 0; jj < kNR; ++jj) acc[r][jj] += a * b[jj];
        }
      }
      for (int64_t r = 0; r < kMR; ++r)
        for (int64_t jj = 0; jj < kNR; ++jj) c[(i + r) * ldc + j + jj] += acc[r][jj];
    }
    for (; j < nb; ++j)
      for (int64_t r = 0; r < kMR; ++r) {
        T s = 0;
        for (int64_t k = 0; k < kb; ++k) s += ap[(i + r) * kb + k] * bp[k * nb + j];
        c[(i + r) * ldc + j] += s;
      }
  }
  for (; i < mb; ++i) {
    T* crow = c + i * ldc;
    for (int64_t k = 0; k < kb; ++k) {
      const T a = ap[i * kb + k];
      const T* b = bp + k * nb;
      for (int64_t j = 0; j < nb; ++j) crow[j] += a * b[j];
    }
  }
}

__attribute__((target_clones("arch=haswell", "default"))) void tile_f32(int64_t mb, int64_t nb, int64_t kb, const float* ap,
                                                                         const float* bp, float* c, int64_t ldc) {
  tile_kernel<float>(mb, nb, kb, ap, bp, c, ldc);
}
__attribute__((target_clones("arch=haswell", "default"))) void tile_f64(int64_t mb, int64_t nb, int64_t kb, const double* ap,
                                                                         const double* bp, double* c, int64_t ldc) {
  tile_kernel<double>(mb, nb, kb, ap, bp, c, ldc);
}
inline void tile(int64_t mb, int64_t nb, int64_t kb, const float* ap, const float* bp, float* c, int64_t ldc) {
  tile_f32(mb, nb, kb, ap, bp, c, ldc);
}
inline void tile(int64_t mb, int64_t nb, int64_t kb, const double* ap, const double* bp, double* c, int64_t ldc) {
  tile_f64(mb, nb, kb, ap, bp, c, ldc);
}

// A(i, k) = ta ? A[k·lda + i] : A[i·lda + k]; B(k, j) = tb ? B[j·ldb + k] : B[k·ldb + j].
template <typename T>
void gemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
               bool allow_split) {
  const int64_t mt = ceil_div(M, kMC), nt = ceil_div(N, kNC);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool big = double(M) * double(N) * double(K) > 2e5;
  if (allow_split && big && threads > 1 && mt * nt < threads && K >= 4 * kKC) {
    // Few output tiles but a long K (a convolution's weight gradient): split K across threads,
    // each into its own partial C, then add the partials in a fixed order (deterministic).
    std::vector<std::vector<T>> part(size_t(threads), std::vector<T>(size_t(M * N), T(0)));
    const int64_t chunk = ceil_div<int64_t>(K, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      const int64_t k0 = t * chunk, kb = std::min(chunk, K - k0);
      if (kb <= 0) continue;
      gemm_impl<T>(ta, tb, M, N, kb, ta ? A + k0 * lda : A + k0, lda, tb ? B + k0 : B + k0 * ldb, ldb, part[size_t(t)].data(),
                   false);
    }
    for (int t = 0; t < threads; ++t)
      for (int64_t i = 0; i < M * N; ++i) C[i] += part[size_t(t)][size_t(i)];
    return;
  }
  const bool parallel = big && mt * nt > 1 && threads > 1;
#pragma omp parallel if (parallel)
  {
    std::vector<T> ap(kMC * kKC), bp(kKC * kNC);
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bi = 0; bi < mt; ++bi)
      for (int64_t bj = 0; bj < nt; ++bj) {
        const int64_t i0 = bi * kMC, mb = std::min(kMC, M - i0);
        const int64_t j0 = bj * kNC, nb = std::min(kNC, N - j0);
        for (int64_t k0 = 0; k0 < K; k0 += kKC) {
          const int64_t kb = std::min(kKC, K - k0);
          // ap: (mb, kb) rows of A; bp: (kb, nb) rows of B.
          if (ta) {
            for (int64_t k = 0; k < kb; ++k)
              for (int64_t i = 0; i < mb; ++i) ap[i * kb + k] = A[(k0 + k) * lda + i0 + i];
          } else {
            for (int64_t i = 0; i < mb; ++i) std::memcpy(&ap[i * kb], A + (i0 + i) * lda + k0, size_t(kb) * sizeof(T));
          }
          if (tb) {
            for (int64_t j = 0; j < nb; ++j)
              for (int64_t k = 0; k < kb; ++k) bp[k * nb + j] = B[(j0 + j) * ldb + k0 + k];
          } else {
            for (int64_t k = 0; k < kb; ++k) std::memcpy(&bp[k * nb], B + (k0 + k) * ldb + j0, size_t(nb) * sizeof(T));
          }
          tile(mb, nb, kb, ap.data(), bp.data(), C + i0 * N + j0, N);
        }
      }
  }
}

}  // namespace

template <typename T>
void cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate) {
  GENRELAB_CHECK(M >= 0 && N >= 0 && K >= 0, "cpu_gemm: negative size");
  if (!accumulate) std::fill(C, C + M * N, T(0));
  if (M == 0 || N == 0 || K == 0) return;
  gemm_impl<T>(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, true);
}

template void cpu_gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, const float*, float*, bool);
template void cpu_gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, const double*, double*, bool);

}  // namespace genrelab::nn
