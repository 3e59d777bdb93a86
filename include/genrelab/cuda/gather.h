// GPU launch of ops::GatherRows for the training loop's batch assembly (host code calls these
// without CUDA headers of its own beyond the runtime's).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace genrelab::cuda {

// dst (n, row) = rows[0..n) of src viewed as (·, row); rows, src and dst in device memory.
// Queued on `stream`; returns at once. T: float, int32_t or int64_t (instantiated in gather.cu).
template <typename T>
void gather_rows(const T* src, const int64_t* rows, int64_t n, int64_t row, T* dst, cudaStream_t stream);

}  // namespace genrelab::cuda
