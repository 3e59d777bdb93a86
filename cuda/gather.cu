// Batch assembly on the GPU: ops::GatherRows over (n, row), one thread per element, on the
// caller's stream.
#include "genrelab/cuda/gather.h"
#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/gather.h"

namespace genrelab::cuda {

template <typename T>
void gather_rows(const T* src, const int64_t* rows, int64_t n, int64_t row, T* dst, cudaStream_t stream) {
  launch_2d(n, row, ops::GatherRows<T>{src, rows, row, dst}, stream);
}

template void gather_rows<float>(const float*, const int64_t*, int64_t, int64_t, float*, cudaStream_t);
template void gather_rows<int32_t>(const int32_t*, const int64_t*, int64_t, int64_t, int32_t*, cudaStream_t);
template void gather_rows<int64_t>(const int64_t*, const int64_t*, int64_t, int64_t, int64_t*, cudaStream_t);

}  // namespace genrelab::cuda
