// NVTX range helper for Nsight Systems timelines: `NvtxRange r("features");` marks a scope.
// Compiles to nothing in builds without CUDA.
#pragma once

#if GENRELAB_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace genrelab {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) {
#if GENRELAB_HAVE_CUDA
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~NvtxRange() {
#if GENRELAB_HAVE_CUDA
    nvtxRangePop();
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace genrelab
