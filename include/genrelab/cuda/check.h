// One error-check family for every CUDA library status (runtime, cuFFT, cuBLAS, cuRAND, cuDNN,
// NCCL): GENRELAB_CUDA_CHECK(call) throws RuntimeError naming the call, the status, file and line.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cufft.h>
#include <curand.h>
#if defined(GENRELAB_HAVE_NCCL) && GENRELAB_HAVE_NCCL
#include <nccl.h>
#endif

#include <string>

#include "genrelab/common.h"

namespace genrelab::cuda {

inline bool status_ok(cudaError_t s) { return s == cudaSuccess; }
inline bool status_ok(cufftResult s) { return s == CUFFT_SUCCESS; }
inline bool status_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool status_ok(curandStatus_t s) { return s == CURAND_STATUS_SUCCESS; }
inline bool status_ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }

inline std::string status_string(cudaError_t s) { return std::string(cudaGetErrorName(s)) + ": " + cudaGetErrorString(s); }
std::string status_string(cufftResult s);
inline std::string status_string(cublasStatus_t s) { return cublasGetStatusString(s); }
inline std::string status_string(curandStatus_t s) { return "curandStatus " + std::to_string(int(s)); }
inline std::string status_string(cudnnStatus_t s) { return cudnnGetErrorString(s); }

#if defined(GENRELAB_HAVE_NCCL) && GENRELAB_HAVE_NCCL
inline bool status_ok(ncclResult_t s) { return s == ncclSuccess; }
inline std::string status_string(ncclResult_t s) { return ncclGetErrorString(s); }
#endif

// True for statuses that mean "the GPU ran out of memory", so callers can suggest a smaller batch.
inline bool is_out_of_memory(cudaError_t s) { return s == cudaErrorMemoryAllocation; }

[[noreturn]] void throw_status(const char* call, const std::string& status, const char* file, int line);

template <typename Status>
inline void check_status(Status s, const char* call, const char* file, int line) {
  if (!status_ok(s)) throw_status(call, status_string(s), file, line);
}

}  // namespace genrelab::cuda

#define GENRELAB_CUDA_CHECK(call) ::genrelab::cuda::check_status((call), #call, __FILE__, __LINE__)
