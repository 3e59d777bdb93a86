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
  int sm_clock_khz = 0;           // the SM clock the driver reports (its maximum)
  double peak_bandwidth_gbs = 0;  // from memory clock × bus width
};

// Dense multiply-add throughput of one SM in one clock, in FLOPs (an FMA is 2), for the work a
// train.precision runs: fp32 on the CUDA cores, tf32 / bf16 / fp16 on the tensor cores (dense,
// float accumulation), from the architecture's published per-SM rates (compute capability 7.0 to
// 12.x). 0 when the architecture has no such path or is unknown.
double flops_per_sm_clock(int cc_major, int cc_minor, const std::string& precision);
// The GPU's peak TFLOP/s for a precision: SMs × SM clock × flops_per_sm_clock (0: unknown). At the
// driver's maximum clock, which can be above the boost clock of a spec sheet's tensor figures.
double peak_tflops(const GpuInfo& gpu, const std::string& precision);

// Where a piece of work sits on the roofline. Its ideal time is the larger of its FLOPs at the
// FLOP peak and its bytes at the memory bandwidth; the side that sets it is the bound ("flop" or
// "memory"), and the fraction is that ideal time over the measured one: how much of the binding
// peak the work achieved (a memory-bound layer with some FLOPs is judged by its bytes). Without
// work, time or the bound's peak: bound "" and zeros.
struct Roofline {
  std::string bound;    // "flop" | "memory" | ""
  double rate = 0;      // achieved, in the bound's unit: TFLOP/s (flop) or GB/s (memory)
  double fraction = 0;  // of the bound's peak
};
Roofline roofline(double flops, double bytes, double seconds, double peak_tflops, double peak_gbs);

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
// The index of the GPU current for the calling thread: a thread started later passes it to
// use_gpu to work on the same GPU. RuntimeError without the CUDA backend.
int current_gpu();

// True when this binary was built with the CUDA backend.
bool built_with_cuda();

}  // namespace genrelab
