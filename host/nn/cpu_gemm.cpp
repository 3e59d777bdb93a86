// A small blocked GEMM for the CPU backend: packed A/B panels per (row, column) tile, a 4 × 2-vector
// register micro-kernel, OpenMP across tiles; the kernel is compiled twice (AVX2/FMA and baseline
// x86-64) and picked at run time, since the project builds without -march=native.
#include <algorithm>
#include <cstring>
#include <vector>

#include <omp.h>

#include "genrelab/common.h"
#include "genrelab/nn/cpu_layers.h"

namespace genrelab::nn {

namespace {

constexpr int64_t kMC = 64, kNC = 256, kKC = 256, kMR = 4;

// The register kernel twice: for AVX2/FMA (selected when the CPU has them) and baseline SSE2.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define GEMM_VECTOR_BYTES 32
#include "cpu_gemm_kernel.inc"
#undef GEMM_VECTOR_BYTES
}  // namespace avx2
#pragma GCC pop_options
namespace sse {
#define GEMM_VECTOR_BYTES 16
#include "cpu_gemm_kernel.inc"
#undef GEMM_VECTOR_BYTES
}  // namespace sse

const bool kHaveAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

// Column panel width: the packed B layout must match the kernel that runs.
template <typename T>
int64_t panel_width() {
  return kHaveAvx2 ? 2 * avx2::Vec<T>::width : 2 * sse::Vec<T>::width;
}

template <typename T>
void tile(int64_t mb, int64_t nb, int64_t kb, const T* ap, const T* bp, T* c, int64_t ldc) {
  if (kHaveAvx2) avx2::tile(mb, nb, kb, ap, bp, c, ldc);
  else sse::tile(mb, nb, kb, ap, bp, c, ldc);
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
    const int64_t NR = panel_width<T>();
    std::vector<T> ap(size_t(kMC * kKC)), bp(size_t(ceil_div(kNC, NR) * NR * kKC));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bi = 0; bi < mt; ++bi)
      for (int64_t bj = 0; bj < nt; ++bj) {
        const int64_t i0 = bi * kMC, mb = std::min(kMC, M - i0);
        const int64_t j0 = bj * kNC, nb = std::min(kNC, N - j0);
        for (int64_t k0 = 0; k0 < K; k0 += kKC) {
          const int64_t kb = std::min(kKC, K - k0);
          // ap: row panels (kb, 4); bp: column panels (kb, NR); both zero-padded.
          std::fill(ap.begin(), ap.begin() + ceil_div(mb, kMR) * kMR * kb, T(0));
          for (int64_t i = 0; i < mb; ++i) {
            T* dst = ap.data() + (i / kMR) * kb * kMR + i % kMR;
            if (ta)
              for (int64_t k = 0; k < kb; ++k) dst[k * kMR] = A[(k0 + k) * lda + i0 + i];
            else
              for (int64_t k = 0; k < kb; ++k) dst[k * kMR] = A[(i0 + i) * lda + k0 + k];
          }
          std::fill(bp.begin(), bp.begin() + ceil_div(nb, NR) * NR * kb, T(0));
          for (int64_t k = 0; k < kb; ++k)
            for (int64_t j = 0; j < nb; ++j)
              bp[size_t((j / NR) * kb * NR + k * NR + j % NR)] = tb ? B[(j0 + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + j];
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
