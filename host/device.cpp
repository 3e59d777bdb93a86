// The backend switch; the CUDA query itself lives in cuda/device.cu (or below, for CPU-only builds).
#include "genrelab/device.h"

#include <iostream>

#include "genrelab/common.h"

namespace genrelab {

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

bool built_with_cuda() { return GENRELAB_HAVE_CUDA != 0; }

#if !GENRELAB_HAVE_CUDA
CudaStatus query_cuda() {
  CudaStatus s;
  s.reason = "this genrelab was built without the CUDA backend (GENRELAB_CUDA=OFF)";
  return s;
}
void use_gpu(int) { throw RuntimeError("this genrelab was built without the CUDA backend"); }
#endif

Device resolve_device(const std::string& requested) {
  if (requested == "cpu") return Device::cpu;
  if (requested != "cuda" && !requested.empty() && requested != "auto")
    throw ConfigError("--device must be 'cuda' or 'cpu', not '" + requested + "'");
  const CudaStatus s = query_cuda();
  if (s.usable) return Device::cuda;
  if (requested == "cuda") throw RuntimeError("--device cuda: no usable GPU (" + s.reason + ")");
  std::cerr << "genrelab: no usable GPU (" << s.reason << "); using the CPU backend\n";
  return Device::cpu;
}

}  // namespace genrelab
