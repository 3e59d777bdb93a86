// The backend switch; the CUDA query itself lives in cuda/device.cu (or below, for CPU-only builds).
#include "genrelab/device.h"

#include <iostream>

#include "genrelab/common.h"

namespace genrelab {

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

bool built_with_cuda() { return GENRELAB_HAVE_CUDA != 0; }

double flops_per_sm_clock(int cc_major, int cc_minor, const std::string& precision) {
  const int cc = 10 * cc_major + cc_minor;
  if (precision == "fp32") {  // FP32 lanes × 2: 64 a SM on Volta, Turing and A100, 128 after
    if (cc >= 70 && cc <= 80) return 128;
    return cc > 80 ? 256 : 0;
  }
  const bool tf32 = precision == "tf32", half = precision == "bf16" || precision == "fp16";
  if (!tf32 && !half) return 0;
  switch (cc) {
    case 70: case 72: case 75: return precision == "fp16" ? 1024 : 0;  // no tf32 or bf16 tensor cores
    case 80: return tf32 ? 1024 : 2048;                               // A100
    case 86: case 87: return tf32 ? 256 : 512;                        // RTX 30, Orin
    case 89: return tf32 ? 512 : 1024;                                // L40, RTX 40
    case 90: return tf32 ? 2048 : 4096;                               // H100, H200
    case 100: case 103: return tf32 ? 4096 : 8192;                    // B200, B300
    case 120: case 121: return tf32 ? 256 : 512;                      // RTX 50
    default: return 0;
  }
}

double peak_tflops(const GpuInfo& gpu, const std::string& precision) {
  return double(gpu.sm_count) * gpu.sm_clock_khz * 1e3 * flops_per_sm_clock(gpu.cc_major, gpu.cc_minor, precision) /
         1e12;
}

Roofline roofline(double flops, double bytes, double seconds, double peak_tflops, double peak_gbs) {
  Roofline r;
  if (!(seconds > 0)) return r;
  // A side with work but no known peak (a GPU or precision the FLOP table lacks) could be the
  // bound, so the work cannot be judged.
  if ((flops > 0 && !(peak_tflops > 0)) || (bytes > 0 && !(peak_gbs > 0))) return r;
  // Each side's ideal seconds (0 where it has no work).
  const double t_flop = flops > 0 ? flops / (peak_tflops * 1e12) : 0.0;
  const double t_mem = bytes > 0 ? bytes / (peak_gbs * 1e9) : 0.0;
  if (t_flop == 0 && t_mem == 0) return r;
  const bool flop = t_flop >= t_mem;
  r.bound = flop ? "flop" : "memory";
  r.rate = flop ? flops / seconds / 1e12 : bytes / seconds / 1e9;
  r.fraction = (flop ? t_flop : t_mem) / seconds;
  return r;
}

#if !GENRELAB_HAVE_CUDA
CudaStatus query_cuda() {
  CudaStatus s;
  s.reason = "this genrelab was built without the CUDA backend (GENRELAB_CUDA=OFF)";
  return s;
}
void use_gpu(int) { throw RuntimeError("this genrelab was built without the CUDA backend"); }
int current_gpu() { throw RuntimeError("this genrelab was built without the CUDA backend"); }
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
