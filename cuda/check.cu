// Out-of-line parts of the CUDA status checks: cuFFT status names and the thrown message.
#include "genrelab/cuda/check.h"

namespace genrelab::cuda {

std::string status_string(cufftResult s) {
  switch (s) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED (out of GPU memory)";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    default: return "cufftResult " + std::to_string(int(s));
  }
}

void throw_status(const char* call, const std::string& status, const char* file, int line) {
  throw RuntimeError(std::string("CUDA call failed: ") + call + " -> " + status + " at " + file + ":" +
                     std::to_string(line));
}

}  // namespace genrelab::cuda
