// Device discovery: driver/runtime/library versions and the properties of every visible GPU,
// without creating a context on any of them.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cufft.h>

#include "genrelab/cuda/check.h"
#include "genrelab/device.h"

namespace genrelab {

void use_gpu(int index) {
  int n = 0;
  GENRELAB_CUDA_CHECK(cudaGetDeviceCount(&n));
  if (index < 0 || index >= n)
    throw RuntimeError("GPU " + std::to_string(index) + " is not visible (" + std::to_string(n) + " visible)");
  GENRELAB_CUDA_CHECK(cudaSetDevice(index));
}

int current_gpu() {
  int index = 0;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&index));
  return index;
}

CudaStatus query_cuda() {
  CudaStatus s;
  cudaDriverGetVersion(&s.driver_version);
  cudaRuntimeGetVersion(&s.runtime_version);
  s.cudnn_version = int(cudnnGetVersion());
  cufftGetVersion(&s.cufft_version);
  // The library's properties, not cublasGetVersion: that needs a handle, whose creation makes the
  // GPU's context here, on the caller's thread (train resolves its device first, then builds the
  // network on a thread of its own while the clips are read: the context belongs there).
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    s.cublas_version = major * 10000 + minor * 100 + patch;  // cublasGetVersion's form (CUBLAS_VERSION)
#if defined(GENRELAB_HAVE_NCCL) && GENRELAB_HAVE_NCCL
  ncclGetVersion(&s.nccl_version);
#endif
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    s.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    (void)cudaGetLastError();
    return s;
  }
  if (n == 0) { s.reason = "no CUDA device is visible"; return s; }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = p.name;
    g.cc_major = p.major;
    g.cc_minor = p.minor;
    g.total_bytes = p.totalGlobalMem;
    g.sm_count = p.multiProcessorCount;
    int mem_clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, i);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, i);
    g.peak_bandwidth_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8) / 1e9;  // DDR: two transfers a clock
    cudaDeviceGetAttribute(&g.sm_clock_khz, cudaDevAttrClockRate, i);
    s.gpus.push_back(g);
  }
  s.usable = !s.gpus.empty();
  if (!s.usable) s.reason = "no CUDA device could be queried";
  return s;
}

}  // namespace genrelab
