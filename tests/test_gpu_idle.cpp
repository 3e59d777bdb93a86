// GPU idle time inside training steps: idle_stats against hand-computed windows and against
// tools/bench/gpu_idle.py (what the Nsight Systems path reports) on the same intervals, and the
// GPU activity trace that feeds it on a GPU ([gpu][trace]).
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "genrelab/gpu_idle.h"
#include "genrelab/io.h"
#include "genrelab/ops/philox.h"
#include "test_util.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/activity_trace.h"
#include "genrelab/cuda/gather.h"
#include "genrelab/cuda/memory.h"
#endif

using namespace genrelab;

TEST_CASE("gpu idle stats of hand-made windows", "[bench]") {
  const IdleStats none = idle_stats({});
  CHECK(none.activities == 0);
  CHECK(none.idle_fraction == 0.0);
  // [0, 4 ms) and [1, 2 ms) nested, [4, 5 ms) touching, then a 3 ms gap, [8, 10 ms): span 10 ms,
  // busy 7 ms, one gap (touching is not a gap). Given out of order.
  const uint64_t ms = 1000000;
  const IdleStats s = idle_stats({{8 * ms, 10 * ms}, {1 * ms, 2 * ms}, {0, 4 * ms}, {4 * ms, 5 * ms}});
  CHECK(s.activities == 4);
  CHECK(s.span_ms == Approx(10.0));
  CHECK(s.busy_ms == Approx(7.0));
  CHECK(s.idle_fraction == Approx(0.3));
  CHECK(s.gaps == 1);
  CHECK(s.largest_gap_ms == Approx(3.0));
  // Overlaps that extend the busy stretch ([0, 3) then [2, 6)), two gaps of 1 and 2 ms, and an
  // interval that ends before it starts (instantaneous, at 12 ms).
  const IdleStats t = idle_stats({{0, 3 * ms}, {2 * ms, 6 * ms}, {7 * ms, 9 * ms}, {12 * ms, 11 * ms}});
  CHECK(t.span_ms == Approx(12.0));
  CHECK(t.busy_ms == Approx(8.0));
  CHECK(t.gaps == 2);
  CHECK(t.largest_gap_ms == Approx(3.0));
  CHECK(t.idle_fraction == Approx(4.0 / 12.0));
  // One instantaneous activity: no span, nothing idle.
  CHECK(idle_stats({{5, 5}}).idle_fraction == 0.0);
}

TEST_CASE("gpu activity totals add up each name's calls and time, longest first", "[bench]") {
  const std::vector<std::string> names = {"", "[memcpy]", "[memset]", "[kernel]", "sgemm", "im2col"};
  const uint64_t us = 1000;
  // sgemm 2 calls, 300 µs; im2col 3 calls, 90 µs; memcpy 1, 90 µs (ties with im2col: by name);
  // an index past the table and the unnamed index 0 both count as "(unnamed)".
  const std::vector<ActivityInterval> iv = {{0, 100 * us, 4},         {100 * us, 300 * us, 4}, {0, 30 * us, 5},
                                            {40 * us, 70 * us, 5},    {80 * us, 110 * us, 5}, {0, 90 * us, 1},
                                            {0, 5 * us, 0},           {10 * us, 15 * us, 99}, {7 * us, 6 * us, 2}};
  const std::vector<ActivityTotal> t = activity_totals(iv, names);
  REQUIRE(t.size() == 5);
  CHECK(t[0].name == "sgemm");
  CHECK(t[0].calls == 2);
  CHECK(t[0].total_ms == Approx(0.3));
  CHECK(t[1].name == "[memcpy]");
  CHECK(t[1].total_ms == Approx(0.09));
  CHECK(t[2].name == "im2col");
  CHECK(t[2].calls == 3);
  CHECK(t[2].total_ms == Approx(0.09));
  CHECK(t[3].name == "(unnamed)");  // index 0 and index 99 together
  CHECK(t[3].calls == 2);
  CHECK(t[3].total_ms == Approx(0.010));
  CHECK(t[4].name == "[memset]");  // an interval that ends before it starts lasts no time
  CHECK(t[4].calls == 1);
  CHECK(t[4].total_ms == 0.0);
  CHECK(activity_totals({}, names).empty());
  CHECK(activity_totals({{0, 1000, 3}}, {}).front().name == "(unnamed)");
}

TEST_CASE("covered time is the overlap of two unions of intervals", "[bench]") {
  const uint64_t ms = 1000000;
  // Copies [0, 4) and [3, 6) (union [0, 6)) and [10, 12); kernels [1, 2), [2, 5) (union [1, 5)),
  // [5.5, 11) and [11.5, 20): overlaps [1, 5) 4 ms + [5.5, 6) 0.5 + [10, 11) 1 + [11.5, 12) 0.5 = 6 ms.
  const std::vector<ActivityInterval> copies = {{3 * ms, 6 * ms}, {0, 4 * ms}, {10 * ms, 12 * ms}};
  const std::vector<ActivityInterval> kernels = {
      {1 * ms, 2 * ms}, {2 * ms, 5 * ms}, {11 * ms + ms / 2, 20 * ms}, {5 * ms + ms / 2, 11 * ms}};
  CHECK(covered_ms(copies, kernels) == Approx(6.0));
  CHECK(covered_ms(kernels, copies) == Approx(6.0));  // symmetric
  CHECK(covered_ms(copies, copies) == Approx(idle_stats(copies).busy_ms));
  CHECK(covered_ms(copies, {}) == 0.0);
  CHECK(covered_ms({{0, 1 * ms}}, {{1 * ms, 2 * ms}}) == 0.0);  // touching is not overlapping
  // Against a brute-force count over a 10 µs grid on random intervals.
  const PhiloxStream rng(11, RngPurpose::noise, 3, 4);
  std::vector<ActivityInterval> a, b;
  for (int i = 0; i < 40; ++i) {
    const uint64_t s1 = uint64_t(1000 * rng.uniform(uint64_t(4 * i))) * 10000;
    const uint64_t s2 = uint64_t(1000 * rng.uniform(uint64_t(4 * i + 1))) * 10000;
    a.push_back({s1, s1 + uint64_t(30 * rng.uniform(uint64_t(4 * i + 2))) * 10000});
    b.push_back({s2, s2 + uint64_t(30 * rng.uniform(uint64_t(4 * i + 3))) * 10000});
  }
  auto inside = [](const std::vector<ActivityInterval>& v, uint64_t t) {
    for (const ActivityInterval& x : v)
      if (t >= x.start_ns && t < x.end_ns) return true;
    return false;
  };
  int64_t cells = 0;
  for (uint64_t t = 0; t < 1100 * 10000; t += 10000) cells += inside(a, t) && inside(b, t) ? 1 : 0;
  CHECK(cells > 0);
  CHECK(covered_ms(a, b) == Approx(double(cells) * 0.01));
}

TEST_CASE("gpu idle stats equal gpu_idle.py on the same intervals", "[bench][python]") {
  // 300 kernels of 1 to 50 µs, each starting 0 to 60 µs after the previous one's start (so some
  // overlap, some leave gaps), written as the GPU trace CSV that `nsys stats` writes.
  const PhiloxStream rng(7, RngPurpose::noise, 1, 2);
  std::vector<ActivityInterval> iv;
  uint64_t t = 1000000000;
  const auto dir = test::temp_dir("gpu-idle");
  std::ofstream csv(dir / "trace.csv");
  csv << "Start (ns),Duration (ns),Name\n";
  for (int i = 0; i < 300; ++i) {
    t += uint64_t(60000 * rng.uniform(uint64_t(2 * i)));
    const uint64_t d = 1000 + uint64_t(49000 * rng.uniform(uint64_t(2 * i + 1)));
    iv.push_back({t, t + d});
    csv << t << "," << d << ",kernel" << i << "\n";
  }
  csv.close();
  const IdleStats s = idle_stats(iv);
  std::string out;
  const char* py = std::getenv("GENRELAB_PYTHON");
  const std::string cmd = std::string(py && *py ? py : "python3") + " " + test::source_dir() +
                          "/tools/bench/gpu_idle.py " + (dir / "trace.csv").string() + " --json " +
                          (dir / "idle.json").string();
  REQUIRE(test::run_command(cmd, &out) == 0);
  const nlohmann::json j = nlohmann::json::parse(read_file((dir / "idle.json").string()));
  INFO(out);
  CHECK(s.activities == 300);
  CHECK(s.gaps > 10);  // the draws leave gaps and overlaps both
  CHECK(s.idle_fraction > 0.05);
  CHECK(s.idle_fraction == Approx(j["idle_fraction"].get<double>()).epsilon(1e-12));
  CHECK(s.span_ms == Approx(j["span_ms"].get<double>()).epsilon(1e-12));
}

#if GENRELAB_HAVE_CUDA
TEST_CASE("gpu activity trace steps aside for an attached profiler and when turned off", "[bench]") {
  if (cuda::ActivityTrace::unavailable().find("built without CUPTI") != std::string::npos) {
    WARN("SKIPPED: " << cuda::ActivityTrace::unavailable());
    return;
  }
  // Nsight Systems, Nsight Compute and compute-sanitizer inject a library through these variables;
  // taking over CUPTI there would empty their trace, so the trace says why it is unavailable.
  for (const char* var : {"CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH", "NSYS_PROFILING_SESSION_ID"}) {
    INFO(var);
    const char* old = std::getenv(var);
    const std::string saved = old ? old : "";
    ::setenv(var, "/opt/nsight/libToolsInjection64.so", 1);
    const std::string why = cuda::ActivityTrace::unavailable();
    CHECK(why.find(var) != std::string::npos);
    CHECK(why.find("profiler or sanitizer is attached") != std::string::npos);
    CHECK_THROWS_WITH(cuda::ActivityTrace(), Catch::Contains(var));
    if (old) ::setenv(var, saved.c_str(), 1);
    else ::unsetenv(var);
  }
  // And off by hand.
  ::setenv("GENRELAB_GPU_TRACE", "0", 1);
  CHECK(cuda::ActivityTrace::unavailable() == "GENRELAB_GPU_TRACE=0 turns it off");
  ::unsetenv("GENRELAB_GPU_TRACE");
}

TEST_CASE("gpu activity trace records kernels copies and memsets and the idle gap between them", "[gpu][trace]") {
  GENRELAB_REQUIRE_GPU();
  // Under a profiler or sanitizer (or a CUPTI that refuses) there is no trace: the reason is the skip.
  std::optional<cuda::ActivityTrace> trace;
  try {
    trace.emplace();
  } catch (const RuntimeError& e) {
    WARN("SKIPPED: " << e.what());
    return;
  }
  const int64_t rows = 1024, row = 256;
  cuda::DeviceBuffer<float> src(size_t(rows * row)), dst(size_t(rows * row));
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) order[size_t(r)] = rows - 1 - r;
  cuda::DeviceBuffer<int64_t> index(order.size());
  cuda::copy_to_device(index.data(), order.data(), order.size());
  GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());
  // Two bursts of a memset, a gather kernel and a device-to-device copy, 30 ms of host sleep apart.
  // 1 ms after each clock reading, so that no activity's converted GPU timestamp falls before it.
  const uint64_t since = trace->now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto burst = [&] {
    src.zero(nullptr);
    cuda::gather_rows(src.data(), index.data(), rows, row, dst.data(), nullptr);
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(src.data(), dst.data(), src.bytes(), cudaMemcpyDeviceToDevice, nullptr));
  };
  burst();
  GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  burst();
  const std::vector<ActivityInterval> iv = trace->collect(since);
  const uint64_t until = trace->now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // At least the three activities of each burst (a driver may record a copy or memset as more
  // than one piece), all inside the window.
  REQUIRE(iv.size() >= 6);
  for (const ActivityInterval& a : iv) {
    CHECK(a.start_ns >= since);
    CHECK(a.end_ns >= a.start_ns);
    CHECK(a.end_ns <= until);
  }
  const IdleStats s = idle_stats(iv);
  CHECK(s.largest_gap_ms >= 29.0);  // the sleep, less the clocks' slop
  CHECK(s.idle_fraction > 0.5);     // the bursts take microseconds
  CHECK(s.span_ms < 1000.0);
  // The gather's kernel by its demangled name (or "[kernel]" where this CUPTI's records give none).
  bool gather_named = false;
  for (const ActivityTotal& a : activity_totals(iv, trace->names()))
    gather_named = gather_named || a.name.find("GatherRows") != std::string::npos || a.name == "[kernel]";
  CHECK(gather_named);
  // The device-to-device copy under its direction's name, as a copy (not a kernel).
  bool copy_named = false;
  for (const ActivityInterval& a : iv)
    if (a.name == cuda::ActivityTrace::kMemcpyDtoD) copy_named = !cuda::ActivityTrace::is_kernel(a.name);
  CHECK(copy_named);
  // A collect returns only what ran since the last one.
  burst();
  const std::vector<ActivityInterval> again = trace->collect(0);
  CHECK(again.size() >= 3);
  for (const ActivityInterval& a : again) CHECK(a.start_ns >= until);
  // One trace at a time.
  CHECK_THROWS_AS(cuda::ActivityTrace(), RuntimeError);
}
#endif
