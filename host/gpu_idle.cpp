// GPU idle time from the busy intervals of an activity trace (see gpu_idle.h).
#include "genrelab/gpu_idle.h"

#include <algorithm>
#include <utility>

namespace genrelab {

IdleStats idle_stats(std::vector<ActivityInterval> iv) {
  IdleStats s;
  s.activities = int64_t(iv.size());
  if (iv.empty()) return s;
  for (ActivityInterval& a : iv) a.end_ns = std::max(a.end_ns, a.start_ns);
  std::sort(iv.begin(), iv.end(), [](const ActivityInterval& a, const ActivityInterval& b) {
    return a.start_ns < b.start_ns || (a.start_ns == b.start_ns && a.end_ns < b.end_ns);
  });
  // Sweep in start order, merging each interval into the current busy stretch or starting a new
  // one after a gap.
  uint64_t busy = 0, largest_gap = 0, cur_start = iv[0].start_ns, cur_end = iv[0].end_ns;
  for (size_t i = 1; i < iv.size(); ++i) {
    if (iv[i].start_ns > cur_end) {
      busy += cur_end - cur_start;
      largest_gap = std::max(largest_gap, iv[i].start_ns - cur_end);
      ++s.gaps;
      cur_start = iv[i].start_ns;
    }
    cur_end = std::max(cur_end, iv[i].end_ns);
  }
  busy += cur_end - cur_start;
  const uint64_t span = cur_end - iv[0].start_ns;
  s.span_ms = double(span) * 1e-6;
  s.busy_ms = double(busy) * 1e-6;
  s.largest_gap_ms = double(largest_gap) * 1e-6;
  s.idle_fraction = span > 0 ? 1.0 - double(busy) / double(span) : 0.0;
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
