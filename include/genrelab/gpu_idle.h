// GPU idle time over a window of device work: the gaps between its busy intervals (kernels,
// copies, memsets, from an activity trace), measured the way tools/bench/gpu_idle.py measures an
// Nsight Systems trace: idle = 1 − (union of the busy intervals) / (first start to last end);
// where the busy time goes, per kernel name (what `nsys stats --report cuda_gpu_kern_sum` lists);
// and how much of one kind of activity ran under another (copies under kernels).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace genrelab {

// One piece of device work, in the trace's nanoseconds; `name` indexes the trace's name table
// (0: unnamed); `bytes` is a copy's or memset's size (0 for kernels).
struct ActivityInterval {
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t name = 0;
  uint64_t bytes = 0;
};

struct IdleStats {
  int64_t activities = 0;     // intervals in the window
  double span_ms = 0;         // first start to last end
  double busy_ms = 0;         // union of the intervals
  double idle_fraction = 0;   // 1 − busy / span (0 for an empty or instantaneous window)
  int64_t gaps = 0;           // idle stretches between activities
  double largest_gap_ms = 0;  // the longest of them
};

// The idle time of the window the intervals cover (in any order; overlapping and nested intervals
// count once, an interval that ends before it starts counts as instantaneous).
IdleStats idle_stats(std::vector<ActivityInterval> intervals);

// How much of the time the `of` intervals cover (their union) also lies inside the `under`
// intervals (their union), in ms: e.g. the host-to-device copies of a streamed step under its
// kernels, which is the overlap the pinned ring buffers are for.
double covered_ms(std::vector<ActivityInterval> of, std::vector<ActivityInterval> under);

// The device time of each name (names: the trace's table that ActivityInterval::name indexes;
// index 0, or any index past the table, is "(unnamed)"), longest total first, ties by name.
struct ActivityTotal {
  std::string name;
  int64_t calls = 0;
  double total_ms = 0;
};
std::vector<ActivityTotal> activity_totals(const std::vector<ActivityInterval>& intervals,
                                           const std::vector<std::string>& names);

}  // namespace genrelab
