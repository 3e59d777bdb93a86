// Compute devices: what GPUs this machine has (or why none is usable) and the backend switch
// `cuda | cpu`. Nothing here touches CUDA unless asked, so `--device cpu` never initialises it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace genrelab {

enum class Device { cpu, cuda };

const char* device_name(Device d);

struct GpuInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t total_bytes = 0;
  int sm_count = 0;
  double peak_bandwidth_gbs = 0;  // from memory clock × bus width
};

struct CudaStatus {
  bool usable = false;
  std::string reason;             // why not usable
  int driver_version = 0;         // e.g. 13000
  int runtime_version = 0;
  int cudnn_version = 0;          // cudnnGetVersion()
  int cufft_version = 0;
  int cublas_version = 0;
  int nccl_version = 0;           // 0 when built without NCCL
  std::vector<GpuInfo> gpus;
};

// Queries the CUDA runtime (initialises it). Never throws: problems land in `reason`.
CudaStatus query_cuda();

// Turns "cuda" | "cpu" | "" (auto) into a device. Auto picks cuda when a GPU is usable, else cpu
// with one line on stderr saying why; an explicit "cuda" without a usable GPU is a RuntimeError.
Device resolve_device(const std::string& requested);

// Makes GPU `index` (among the visible ones) current for this process; a data-parallel rank calls
// it before any CUDA work. RuntimeError when the index is not visible.
void use_gpu(int index);

// True when this binary was built with the CUDA backend.
bool built_with_cuda();

}  // namespace genrelab
