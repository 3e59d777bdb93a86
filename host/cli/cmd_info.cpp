// `genrelab info`: GPUs, driver and library versions (MPI and NCCL for data-parallel runs, CUPTI
// for the GPU activity trace), or why no GPU is usable.
#include <sndfile.h>
#include <fftw3.h>

#include <cstdio>
#include <iostream>

#include "genrelab/cli.h"
#include "genrelab/device.h"
#include "genrelab/dist.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/activity_trace.h"
#endif

namespace genrelab::cli {
namespace {

std::string version_string(int v, int major_div, int minor_div) {
  if (v <= 0) return "n/a";
  return std::to_string(v / major_div) + "." + std::to_string((v % major_div) / minor_div);
}

int run_info(const Args& args) {
  if (!args.positional().empty()) args.usage_error("takes no arguments");
  std::cout << "genrelab " << GENRELAB_VERSION << "\n";
  std::cout << "libsndfile: " << sf_version_string() << "\n";
  std::cout << "FFTW: " << fftwf_version << "\n";
  std::cout << "MPI: " << (dist::built_with_mpi() ? dist::mpi_version() : "not built") << "\n";
  std::cout << "CUDA backend: " << (built_with_cuda() ? "built in" : "not built") << "\n";
  if (!built_with_cuda()) {
    // The lines a CUDA build prints too, so that every build answers both questions.
    std::cout << "NCCL: not built (it needs the CUDA backend)\n"
              << "GPUs: none usable (this genrelab was built without the CUDA backend)\n";
    return 0;
  }
  const CudaStatus s = query_cuda();
  std::cout << "CUDA driver: " << version_string(s.driver_version, 1000, 10)
            << ", runtime: " << version_string(s.runtime_version, 1000, 10) << "\n";
  std::cout << "cuDNN: " << (s.cudnn_version ? std::to_string(s.cudnn_version / 10000) + "." +
                                                   std::to_string((s.cudnn_version % 10000) / 100) + "." +
                                                   std::to_string(s.cudnn_version % 100)
                                             : "n/a")
            << ", cuFFT: " << s.cufft_version << ", cuBLAS: " << s.cublas_version << "\n";
  std::cout << "NCCL: " << (s.nccl_version ? std::to_string(s.nccl_version) : "not built") << "\n";
#if GENRELAB_HAVE_CUDA
  // What bench train and train --profile measure the GPU idle time and kernel times with.
  const std::string trace = cuda::ActivityTrace::unavailable();
  std::cout << "GPU activity trace (CUPTI): "
            << (trace.empty() ? "loaded (whether the GPU lets it record shows when bench or train --profile starts it)"
                              : trace)
            << "\n";
#endif
  if (!s.usable) {
    std::cout << "GPUs: none usable (" << s.reason << ")\n";
    return 0;
  }
  for (const auto& g : s.gpus) {
    char line[384];
    std::snprintf(line, sizeof line,
                  "GPU %d: %s, compute capability %d.%d, %.1f GiB, %d SMs at %.0f MHz, %.0f GB/s peak, "
                  "%.1f TFLOP/s fp32, %.0f tf32, %.0f bf16 peak (dense)",
                  g.index, g.name.c_str(), g.cc_major, g.cc_minor, g.total_bytes / double(1ull << 30), g.sm_count,
                  g.sm_clock_khz / 1e3, g.peak_bandwidth_gbs, peak_tflops(g, "fp32"), peak_tflops(g, "tf32"),
                  peak_tflops(g, "bf16"));
    std::cout << line << "\n";
  }
  return 0;
}

CommandRegistrar reg{{"info", "GPUs, driver and library versions (or why no GPU is usable)",
                      "usage: genrelab info\n\nPrints the build's backends, library versions and every visible GPU.\n",
                      {}, run_info}};

}  // namespace
}  // namespace genrelab::cli
