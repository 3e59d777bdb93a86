// The probe of cuDNN's algorithm search (train.cudnn_search=probe, cuda/nn/cudnn_setup.cu): every
// candidate first runs on the batch's first few examples, and only those within kProbeRatio of the
// fastest there are timed on the whole batch. Find (train.cudnn_search=find) runs every algorithm
// on the whole batch, however slow: backward-data algo_0 took 30-167 ms a run in the baseline's
// fp32 convolutions on an H100, against 0.75-4.1 ms for the algorithm that won. Host-only rules,
// tested on the CPU (tests/test_conv_search.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace genrelab::nn {

// A candidate more than this many times slower than the fastest probe is not timed further. The
// margin allows for what a small batch distorts: a fast kernel that fills the GPU only at the whole
// batch, a slow one's fixed costs (an FFT of the kernel) spread over more examples.
constexpr double kProbeRatio = 4.0;
// And an absolute margin: on a tiny probe (microseconds) the events' resolution and launch jitter
// matter more than the ratio.
constexpr double kProbeSlackMs = 0.02;

// The examples a probe runs on for a batch of n: an eighth, at least one; 0 (no probe) where that
// would be the whole batch.
inline int64_t probe_batch(int64_t n) {
  const int64_t p = std::max<int64_t>(1, n / 8);
  return p < n ? p : 0;
}

// Which candidates to time on the whole batch, from their probe times (ms; negative: the probe did
// not run, which keeps the candidate): those within kProbeRatio of the fastest probe, plus
// kProbeSlackMs.
inline std::vector<bool> probe_keeps(const std::vector<float>& probe_ms) {
  float fastest = -1.0f;
  for (const float t : probe_ms)
    if (t >= 0 && (fastest < 0 || t < fastest)) fastest = t;
  std::vector<bool> keep(probe_ms.size(), true);
  for (size_t i = 0; i < probe_ms.size(); ++i)
    keep[i] = fastest < 0 || probe_ms[i] < 0 || double(probe_ms[i]) <= kProbeRatio * double(fastest) + kProbeSlackMs;
  return keep;
}

}  // namespace genrelab::nn
