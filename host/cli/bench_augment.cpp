// `genrelab bench --what augment`: the baseline's offline augmentation (per clip the original plus
// a noise copy with p 0.7 and a pitch-shift copy with p 0.5) of N synthetic 617 400-sample clips,
// on the CPU reference or the GPU; checks a noise copy's statistics first, then times.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <numeric>
#include <vector>

#include "genrelab/augment.h"
#include "genrelab/bench.h"
#include "genrelab/config.h"
#include "genrelab/device.h"
#include "genrelab/io.h"
#include "genrelab/ops/philox.h"

#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/augment.h"
#endif

namespace genrelab {
namespace {

constexpr int64_t kSamples = 617400;
constexpr int kRate = 22050;

// A music-like test clip: a few partials with vibrato plus low noise (content does not change the work).
std::vector<float> synth_clip(uint32_t k) {
  std::vector<float> x(static_cast<size_t>(kSamples));
  const PhiloxStream rng(k, RngPurpose::noise, 0xbe, 0);
  const double f0 = 110.0 * (1 + k % 7);
  for (int64_t i = 0; i < kSamples; ++i) {
    const double t = double(i) / kRate;
    double v = 0;
    for (int h = 1; h <= 4; ++h) v += 0.2 / h * std::sin(2 * M_PI * f0 * h * t + 0.3 * std::sin(2 * M_PI * 4 * t));
    x[size_t(i)] = float(v) + 0.01f * rng.normal(uint64_t(i));
  }
  return x;
}

// The noise copy's difference to its source must have the drawn amplitude as its std.
void check_noise(const std::vector<float>& x, const float* y, double amplitude) {
  double sq = 0;
  for (int64_t i = 0; i < kSamples; ++i) {
    const double d = double(y[i]) - x[size_t(i)];
    sq += d * d;
  }
  const double sd = std::sqrt(sq / double(kSamples));
  if (std::fabs(sd / amplitude - 1) > 0.02)
    throw RuntimeError("bench augment: noise copy has std " + std::to_string(sd) + ", drawn amplitude " +
                       std::to_string(amplitude));
}

// Process CPU time (all threads), to read CPU results on a shared, loaded machine.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int run(const cli::Args& args) {
  const Device device = resolve_device(args.get_or("--device", ""));
  const int64_t clips = args.get_int("--clips", device == Device::cpu ? 4 : 64, 1);
  // GPU: timed passes after a warm-up, the median counts; the CPU times its one pass.
  const int64_t iterations = args.get_int("--iterations", 5, 1);
  Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  AugmentSettings s = AugmentSettings::from_config(config);
  s.mode = AugmentSettings::Mode::offline;
  s.noise = {0.7, 0.001, 0.015};
  s.pitch_shift.p = 0.5;
  s.pitch_shift.min_semitones = -4;
  s.pitch_shift.max_semitones = 12;

  std::vector<uint32_t> keys(static_cast<size_t>(clips));
  std::iota(keys.begin(), keys.end(), 0u);
  const auto plan = plan_offline(s, keys);
  std::vector<AugmentedExample> work;  // the copies with a step that fired
  int64_t noise = 0, pitch = 0;
  for (const auto& e : plan)
    if (!e.steps.empty()) {
      work.push_back(e);
      (e.steps[0].kind == AugmentKind::noise ? noise : pitch)++;
    }
  if (work.empty())
    args.usage_error("--clips " + std::to_string(clips) + ": no copy drew noise or a pitch shift, so there is nothing "
                     "to time; use more clips (the default is " + std::string(device == Device::cpu ? "4" : "64") + ")");
  // distinct source clips: cycle through 4 synthetic ones (the work does not depend on content)
  const int64_t distinct = std::min<int64_t>(clips, 4);
  std::vector<std::vector<float>> source;
  for (int64_t k = 0; k < distinct; ++k) source.push_back(synth_clip(uint32_t(k)));
  auto src_of = [&](const AugmentedExample& e) -> const std::vector<float>& { return source[size_t(e.source % distinct)]; };

  double seconds = 0, cpu_time = 0, peak_gbs = 0;
  std::string device_desc = "cpu";
  json stage_list = json::array();  // cuda: the stages of one more pass, which took staged_ms
  double staged_ms = 0;
  std::string stage_table;
  if (device == Device::cpu) {
    // correctness first: one noise copy
    for (const auto& e : work)
      if (e.steps[0].kind == AugmentKind::noise) {
        const auto y = apply_augment_cpu(e, s, src_of(e).data(), kSamples, kRate);
        check_noise(src_of(e), y.data(), e.steps[0].value);
        break;
      }
    // The copies spread over the threads, each augmented whole on one, as training makes its
    // offline copies (train/examples.cpp): no thread waits at the end of each step of a clip.
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    std::exception_ptr error;
    std::atomic<bool> wrong_length{false};
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < int64_t(work.size()); ++i) {
      try {
        const AugmentedExample& e = work[size_t(i)];
        if (apply_augment_cpu(e, s, src_of(e).data(), kSamples, kRate).size() != size_t(kSamples)) wrong_length = true;
      } catch (...) {
#pragma omp critical(bench_augment_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    if (wrong_length) throw RuntimeError("bench augment: wrong output length");
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_time = cpu_seconds() - c0;
  } else {
#if GENRELAB_HAVE_CUDA
    const GpuInfo gpu = bench_gpu();
    device_desc = gpu.name;
    peak_gbs = gpu.peak_bandwidth_gbs;
    const int64_t batch = std::min<int64_t>(16, std::max<int64_t>(1, int64_t(work.size())));
    cuda::Stream stream;
    cuda::DeviceBuffer<float> dsrc(static_cast<size_t>(distinct * kSamples)), dx(static_cast<size_t>(batch * kSamples)),
        dy(size_t(batch * kSamples));  // dsrc: (distinct, n); dx, dy: (batch, n)
    for (int64_t k = 0; k < distinct; ++k)
      GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dsrc.data() + k * kSamples, source[size_t(k)].data(), kSamples * sizeof(float),
                                          cudaMemcpyHostToDevice, stream));
    cuda::Augmenter aug;
    auto run_all = [&]() {
      for (size_t at = 0; at < work.size(); at += size_t(batch)) {
        const size_t end = std::min(work.size(), at + size_t(batch));
        const std::vector<AugmentedExample> chunk(work.begin() + long(at), work.begin() + long(end));
        for (size_t r = 0; r < chunk.size(); ++r)
          GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dx.data() + r * kSamples, dsrc.data() + (chunk[r].source % distinct) * kSamples,
                                              kSamples * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        aug.apply(chunk, s, dx.data(), dy.data(), kSamples, stream);
      }
    };
    // correctness first: the first chunk against the CPU reference (noise rows bit-identical)
    {
      const std::vector<AugmentedExample> chunk(work.begin(), work.begin() + long(std::min<size_t>(work.size(), 2)));
      for (size_t r = 0; r < chunk.size(); ++r)
        GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dx.data() + r * kSamples, dsrc.data() + (chunk[r].source % distinct) * kSamples,
                                            kSamples * sizeof(float), cudaMemcpyDeviceToDevice, stream));
      aug.apply(chunk, s, dx.data(), dy.data(), kSamples, stream);
      std::vector<float> y(static_cast<size_t>(kSamples));
      for (size_t r = 0; r < chunk.size(); ++r) {
        GENRELAB_CUDA_CHECK(cudaMemcpyAsync(y.data(), dy.data() + r * kSamples, kSamples * sizeof(float),
                                            cudaMemcpyDeviceToHost, stream));
        stream.synchronize();
        const auto want = apply_augment_cpu(chunk[r], s, src_of(chunk[r]).data(), kSamples, kRate);
        double max_err = 0;
        for (int64_t i = 0; i < kSamples; ++i) max_err = std::max(max_err, double(std::fabs(y[size_t(i)] - want[size_t(i)])));
        if (max_err > 1e-3) throw RuntimeError("bench augment: GPU differs from the CPU reference by " + std::to_string(max_err));
      }
    }
    run_all();  // warm-up (plans, workspaces)
    stream.synchronize();
    // The median of `iterations` passes: one pass of 64 clips takes tens of milliseconds.
    std::vector<double> times;
    cuda::Event start(true), stop(true);
    for (int64_t it = 0; it < iterations; ++it) {
      start.record(stream);
      run_all();
      stop.record(stream);
      stop.synchronize();
      times.push_back(stop.ms_since(start) / 1000.0);
    }
    std::nth_element(times.begin(), times.begin() + long(times.size() / 2), times.end());
    seconds = times[times.size() / 2];
    // One more pass with each pass of the work timed on the device (outside the timed passes: the
    // events and their reading cost a little).
    aug.set_stage_timing(true);
    start.record(stream);
    run_all();
    stop.record(stream);
    stop.synchronize();
    staged_ms = stop.ms_since(start);
    const auto stages = aug.take_stage_times();
    aug.set_stage_timing(false);
    double stage_sum = 0;
    char row[256];
    for (const auto& st : stages) {
      const double gbs = st.ms > 0 ? st.bytes / (st.ms * 1e-3) / 1e9 : 0;
      std::snprintf(row, sizeof row, "    %-34s %8.3f ms  %7.1f GB/s  %5.1f %%  (%lld passes)\n", st.name.c_str(),
                    st.ms, gbs, peak_gbs > 0 ? 100.0 * gbs / peak_gbs : 0.0, (long long)st.passes);
      stage_table += row;
      stage_sum += st.ms;
      stage_list.push_back({{"name", st.name},
                            {"ms", st.ms},
                            {"bytes", st.bytes},
                            {"gb_per_s", gbs},
                            {"fraction_of_peak", peak_gbs > 0 ? gbs / peak_gbs : 0.0},
                            {"passes", st.passes}});
    }
    std::snprintf(row, sizeof row,
                  "    sum of the stages %.3f ms of that pass's %.3f ms; the rest is host work between them (filter\n"
                  "    design, parameter uploads, synchronisations)\n",
                  stage_sum, staged_ms);
    stage_table = "  stages of one more pass (device time; GB/s and % of peak by the bytes of each pass's buffers):\n" +
                  stage_table + row;
#else
    throw RuntimeError("this build has no CUDA backend; use --device cpu");
#endif
  }
  const int64_t passes = device == Device::cuda ? iterations : 1;
  // bytes: every applied copy reads and writes one clip of float samples
  const double gbytes = double(work.size()) * 2.0 * kSamples * sizeof(float) / 1e9;
  const double clips_per_s = double(clips) / seconds;
  char line[512];
  std::snprintf(line, sizeof line,
                "augment (offline: noise p 0.7 + pitch shift p 0.5) on %s\n"
                "  clips %lld x %lld samples -> %zu examples (%lld noise, %lld pitch shift applied)\n"
                "  time %.3f s (%s; process CPU time %.3f s)   %.2f clips/s   %.1f pitch shifts/s   audio in+out %.3f GB/s\n",
                device_desc.c_str(), (long long)clips, (long long)kSamples, plan.size(), (long long)noise,
                (long long)pitch, seconds, passes == 1 ? "one pass" : ("median of " + std::to_string(passes) + " passes").c_str(),
                cpu_time, clips_per_s, double(pitch) / seconds, gbytes / seconds);
  std::cout << line;
  // A lower bound of the traffic: the phase vocoder's frames and spectra move several times the
  // audio, so this fraction understates how close the work is to the bandwidth.
  if (peak_gbs > 0)
    std::printf("  audio in+out alone: %.1f %% of the %.0f GB/s peak bandwidth\n", 100.0 * gbytes / seconds / peak_gbs,
                peak_gbs);
  std::cout << stage_table;
  if (args.has("--json")) {
    json steps = json::array();
    for (const auto& e : work) steps.push_back({augment_name(e.steps[0].kind), e.steps[0].value});
    const json j = {{"bench", "augment"},
                    {"impl", "genrelab"},
                    {"device", device_name(device)},
                    {"device_name", device_desc},
                    {"clips", clips},
                    {"samples", kSamples},
                    {"examples", int64_t(plan.size())},
                    {"noise_applied", noise},
                    {"pitch_applied", pitch},
                    {"iterations", passes},
                    {"seconds", seconds},
                    {"cpu_seconds", cpu_time},
                    {"clips_per_second", clips_per_s},
                    {"audio_gb_per_second", gbytes / seconds},
                    {"peak_gb_per_s", peak_gbs},
                    {"audio_fraction_of_peak", peak_gbs > 0 ? gbytes / seconds / peak_gbs : 0.0},
                    {"steps", steps},
                    {"stages", stage_list},
                    {"staged_pass_ms", staged_ms},
                    // the shared convention of tools/bench/README.md (paired with the peers by "work")
                    {"results", json::array({{{"work", "augment-offline-baseline"},
                                              {"device", device_name(device)},
                                              {"items", clips},
                                              {"unit", "clips"},
                                              {"seconds", seconds},
                                              {"cpu_seconds", cpu_time},
                                              {"items_per_s", clips_per_s}}})}};
    write_file_atomic(*args.get("--json"), j.dump() + "\n");
  }
  return 0;
}

BenchRegistrar reg{{"augment",
                    "baseline offline augmentation (noise p 0.7 + pitch shift p 0.5 copies) of --clips N clips of 617400 samples",
                    run}};

}  // namespace
}  // namespace genrelab
