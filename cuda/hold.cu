// A head start for GPU timings: a one-thread kernel that keeps a stream busy for a while, so that
// the host queues the work to be timed while the GPU is still on the hold, and the events around
// that work time the device alone rather than the host's launches (what torch.cuda._sleep does
// for PyTorch's benchmarks). Not device work with a CPU counterpart: only timings use it.
#include "genrelab/cuda/memory.h"

namespace genrelab::cuda {

namespace {

__device__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void hold_kernel(uint64_t ns) {
  const uint64_t start = global_ns();
  while (global_ns() - start < ns) __nanosleep(1000);
}

}  // namespace

void hold_stream(cudaStream_t s, double ms) {
  hold_kernel<<<1, 1, 0, s>>>(uint64_t(ms * 1e6));
  GENRELAB_CUDA_CHECK(cudaGetLastError());
}

}  // namespace genrelab::cuda
