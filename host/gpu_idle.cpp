// GPU idle time from the busy intervals of an activity trace (see gpu_idle.h).
#include "genrelab/gpu_idle.h"

#include <algorithm>
#include <utility>

namespace genrelab {

namespace {

// The union of the intervals as disjoint [start, end) pairs in order.
std::vector<ActivityInterval> merged(std::vector<ActivityInterval> iv) {
  for (ActivityInterval& a : iv) a.end_ns = std::max(a.end_ns, a.start_ns);
  std::sort(iv.begin(), iv.end(), [](const ActivityInterval& a, const ActivityInterval& b) {
    return a.start_ns < b.start_ns || (a.start_ns == b.start_ns && a.end_ns < b.end_ns);
  });
  std::vector<ActivityInterval> out;
  for (const ActivityInterval& a : iv) {
    if (!out.empty() && a.start_ns <= out.back().end_ns) out.back().end_ns = std::max(out.back().end_ns, a.end_ns);
    else out.push_back({a.start_ns, a.end_ns});
  }
  return out;
}

}  // namespace

double covered_ms(std::vector<ActivityInterval> of, std::vector<ActivityInterval> under) {
  const std::vector<ActivityInterval> a = merged(std::move(of)), b = merged(std::move(under));
  uint64_t both = 0;
  size_t j = 0;
  for (const ActivityInterval& x : a) {
    while (j < b.size() && b[j].end_ns <= x.start_ns) ++j;  // under-intervals that end before x
    for (size_t k = j; k < b.size() && b[k].start_ns < x.end_ns; ++k) {
      const uint64_t lo = std::max(x.start_ns, b[k].start_ns), hi = std::min(x.end_ns, b[k].end_ns);
      if (hi > lo) both += hi - lo;
    }
  }
  return double(both) * 1e-6;
}

IdleStats idle_stats(std::vector<ActivityInterval> iv) {
  IdleStats s;
  s.activities = int64_t(iv.size());
  const std::vector<ActivityInterval> busy = merged(std::move(iv));
  if (busy.empty()) return s;
  uint64_t busy_ns = 0, largest_gap = 0;
  for (size_t i = 0; i < busy.size(); ++i) {
    busy_ns += busy[i].end_ns - busy[i].start_ns;
    if (i > 0) largest_gap = std::max(largest_gap, busy[i].start_ns - busy[i - 1].end_ns);
  }
  const uint64_t span = busy.back().end_ns - busy.front().start_ns;
  s.gaps = int64_t(busy.size()) - 1;
  s.span_ms = double(span) * 1e-6;
  s.busy_ms = double(busy_ns) * 1e-6;
  s.largest_gap_ms = double(largest_gap) * 1e-6;
  s.idle_fraction = span > 0 ? 1.0 - double(busy_ns) / double(span) : 0.0;
  return s;
}

std::vector<ActivityTotal> activity_totals(const std::vector<ActivityInterval>& iv,
                                           const std::vector<std::string>& names) {
  // Slot 0 takes the unnamed ones and any index past the table.
  std::vector<ActivityTotal> by_name(std::max<size_t>(names.size(), 1));
  for (const ActivityInterval& a : iv) {
    ActivityTotal& t = by_name[a.name < names.size() ? a.name : 0];
    ++t.calls;
    t.total_ms += a.end_ns > a.start_ns ? double(a.end_ns - a.start_ns) * 1e-6 : 0.0;
  }
  std::vector<ActivityTotal> out;
  for (size_t i = 0; i < by_name.size(); ++i) {
    if (by_name[i].calls == 0) continue;
    by_name[i].name = i > 0 && !names[i].empty() ? names[i] : "(unnamed)";
    out.push_back(std::move(by_name[i]));
  }
  std::sort(out.begin(), out.end(), [](const ActivityTotal& a, const ActivityTotal& b) {
    return a.total_ms > b.total_ms || (a.total_ms == b.total_ms && a.name < b.name);
  });
  return out;
}

}  // namespace genrelab
