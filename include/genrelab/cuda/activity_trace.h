// The GPU's own record of when its work ran, without an outside profiler: a CUPTI activity trace
// of every kernel, memcpy and memset, from which gpu_idle.h computes the idle time inside
// training steps on machines without Nsight Systems (bench --what train). One trace at a time per
// process; Nsight Systems, Nsight Compute and compute-sanitizer trace through the same interface,
// so under them the trace is unavailable and says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "genrelab/gpu_idle.h"

namespace genrelab::cuda {

class ActivityTrace {
 public:
  // Why this process cannot trace, or "" when it can: built without CUPTI, turned off
  // (GENRELAB_GPU_TRACE=0), a profiler or sanitizer attached, or CUPTI refused its buffers.
  static std::string unavailable();
  // Starts recording (RuntimeError with the reason when unavailable or already recording). Start
  // it before building CUDA graphs whose kernels it should see.
  ActivityTrace();
  // Stops recording and drops what was not collected.
  ~ActivityTrace();
  ActivityTrace(const ActivityTrace&) = delete;
  ActivityTrace& operator=(const ActivityTrace&) = delete;
  // The trace's clock (ns, the records' timebase).
  uint64_t now() const;
  // Waits for the device, then returns the activities recorded since the last collect (or the
  // start) that began at or after `since`; RuntimeError when they cannot be complete (CUPTI
  // dropped records or gave some without timestamps) or hold no kernel.
  std::vector<ActivityInterval> collect(uint64_t since);
  // The name table ActivityInterval::name indexes: the fixed names below, then the kernels'
  // demangled names (the table only grows, so an index stays valid).
  std::vector<std::string> names() const;
  // The fixed names' indexes: "" (unnamed), "[memcpy]" (other directions), "[memset]", "[kernel]"
  // (a kernel whose name this CUPTI version's records do not give), "[memcpy HtoD]",
  // "[memcpy DtoH]", "[memcpy DtoD]"; kernel names from kFirstKernelName on.
  enum : uint32_t {
    kUnnamed, kMemcpy, kMemset, kKernel, kMemcpyHtoD, kMemcpyDtoH, kMemcpyDtoD, kFirstKernelName
  };
  static bool is_kernel(uint32_t name) { return name == kKernel || name >= kFirstKernelName; }
};

}  // namespace genrelab::cuda
