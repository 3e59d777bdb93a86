// `genrelab bench --what features`: mel spectrogram throughput of the CPU or CUDA backend on
// synthetic baseline-length clips, after checking the result against the CPU reference; prints
// clips/s, achieved GB/s and (on a GPU) the fraction of peak memory bandwidth.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "genrelab/bench.h"
#include "genrelab/config.h"
#include "genrelab/features.h"
#include "genrelab/io.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {
namespace {

// clips: (n, samples) of noise plus two tones per clip, deterministic.
std::vector<float> synthetic_clips(int64_t n, int64_t samples) {
  std::vector<float> audio(size_t(n) * size_t(samples));
  for (int64_t c = 0; c < n; ++c) {
    uint32_t state = uint32_t(c) * 2654435761u + 1u;
    const double f1 = 110.0 * double(1 + c % 7), f2 = 1000.0 + 37.0 * double(c);
    for (int64_t i = 0; i < samples; ++i) {
      state = state * 1664525u + 1013904223u;
      const double noise = (state >> 8) / 16777216.0 * 2.0 - 1.0;
      const double t = double(i) / 22050.0;
      audio[size_t(c * samples + i)] =
          float(0.05 * noise + 0.3 * std::sin(2 * M_PI * f1 * t) + 0.1 * std::sin(2 * M_PI * f2 * t));
    }
  }
  return audio;
}

double max_rel_error(const float* got, const float* want, size_t n) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::fabs(double(got[i]) - double(want[i])));
    ref = std::max(ref, std::fabs(double(want[i])));
  }
  return ref > 0 ? err / ref : err;
}

int run_features_bench(const cli::Args& args) {
  const Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  MelParams params = MelParams::from_config(config);
  params.standardize = false;  // statistics would come from a training set; not part of the timing
  const Device device = resolve_device(args.get_or("--device", ""));
  const int64_t samples = config.get_optional_int("dataset.clip_samples").value_or(617400);
  const int64_t clips = args.get_int("--clips", device == Device::cuda ? 256 : 16, 1);
  const int iterations = int(args.get_int("--iterations", 5, 1, 1 << 20));

  std::cerr << "bench features: " << clips << " clips of " << samples << " samples on " << device_name(device)
            << " (n_fft " << params.n_fft << ", hop " << params.hop_length << ", " << params.n_mels << " mels)\n";
  const std::vector<float> audio = synthetic_clips(clips, samples);  // audio: (clips, samples)
  MelExtractor extractor(params, device);
  const int64_t n_frames = extractor.n_frames(samples);
  const size_t per_clip = size_t(params.n_mels) * size_t(n_frames);

  // Correctness first: two clips through the measured backend against the CPU reference on
  // their own (a separate single-clip pass).
  {
    MelExtractor reference(params, Device::cpu);
    const int64_t k = std::min<int64_t>(2, clips);
    const std::vector<float> head(audio.begin(), audio.begin() + k * samples);
    const std::vector<float> got = extractor.compute_host(head, k, samples);
    // Linear outputs: max |got - want| / max |want|; dB outputs: max |got - want| in dB.
    double err = 0;
    for (int64_t c = 0; c < k; ++c) {
      const std::vector<float> one(head.begin() + c * samples, head.begin() + (c + 1) * samples);
      const std::vector<float> want = reference.compute_host(one, 1, samples);
      const float* g = got.data() + size_t(c) * per_clip;
      if (params.db) {
        for (size_t i = 0; i < per_clip; ++i) err = std::max(err, std::fabs(double(g[i]) - double(want[i])));
      } else {
        err = std::max(err, max_rel_error(g, want.data(), per_clip));
      }
    }
    const double tol = params.db ? 3e-3 : 1e-4;
    std::cerr << "bench features: check against the CPU reference: max "
              << (params.db ? "dB error " : "relative error ") << err << " (tolerance " << tol << ")\n";
    if (!(err <= tol))
      throw RuntimeError("bench features: result differs from the CPU reference (max error " + std::to_string(err) +
                         ")");
  }

  std::vector<double> seconds;
  double peak_gbs = 0;
  std::string device_label = "cpu";
  if (device == Device::cpu) {
    std::vector<float> mel(size_t(clips) * per_clip);             // mel: (clips, n_mels, n_frames)
    extractor.compute(audio.data(), clips, samples, mel.data());  // warm-up: FFTW plans, page faults
    for (int it = 0; it < iterations; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      extractor.compute(audio.data(), clips, samples, mel.data());
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  } else {
#if GENRELAB_HAVE_CUDA
    const GpuInfo gpu = bench_gpu();
    peak_gbs = gpu.peak_bandwidth_gbs;
    device_label = gpu.name;
    cuda::Stream stream;
    cuda::DeviceBuffer<float> d_audio(audio.size()), d_mel(size_t(clips) * per_clip);
    cuda::copy_to_device(d_audio.data(), audio.data(), audio.size());
    extractor.compute(d_audio.data(), clips, samples, d_mel.data(), stream.get());  // warm-up: cuFFT plan
    stream.synchronize();
    cuda::Event start(true), stop(true);
    for (int it = 0; it < iterations; ++it) {
      start.record(stream);
      extractor.compute(d_audio.data(), clips, samples, d_mel.data(), stream.get());
      stop.record(stream);
      stop.synchronize();
      seconds.push_back(stop.ms_since(start) / 1e3);
    }
#endif
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double bytes = mel_pipeline_bytes(params, clips, samples);
  const double gbs = bytes / median / 1e9;
  const double min_bytes = 4.0 * double(clips) * (double(samples) + double(per_clip));
  char line[512];
  std::printf("%-10s %-28s %8s %10s %12s %10s %12s\n", "bench", "device", "clips", "clips/s", "median ms", "GB/s",
              "of peak");
  std::snprintf(line, sizeof line, "%-10s %-28s %8lld %10.1f %12.3f %10.1f %12s\n", "features", device_label.c_str(),
                static_cast<long long>(clips), double(clips) / median, median * 1e3, gbs,
                peak_gbs > 0 ? (std::to_string(int(std::lround(100.0 * gbs / peak_gbs))) + " %").c_str() : "n/a");
  std::cout << line;
  std::cout << "  traffic model (float32 GPU layout): audio read + frames, spectrum and power written and read once + "
               "mel written = "
            << bytes / 1e9 << " GB per pass (audio in + mel out alone: " << min_bytes / 1e9 << " GB)\n";
  const json result = {{"bench", "features"},
                       {"device", device_name(device)},
                       {"device_name", device_label},
                       {"clips", clips},
                       {"samples_per_clip", samples},
                       {"n_fft", params.n_fft},
                       {"hop_length", params.hop_length},
                       {"n_mels", params.n_mels},
                       {"iterations", iterations},
                       {"median_seconds", median},
                       {"best_seconds", seconds.front()},
                       {"clips_per_s", double(clips) / median},
                       {"gb_per_s", gbs},
                       {"peak_gb_per_s", peak_gbs},
                       {"fraction_of_peak", peak_gbs > 0 ? gbs / peak_gbs : 0.0},
                       // the shared convention of tools/bench/README.md (paired with the peers by "work")
                       {"results", json::array({{{"work", "mel-baseline"},
                                                 {"device", device_name(device)},
                                                 {"items", clips},
                                                 {"unit", "clips"},
                                                 {"seconds", median},
                                                 {"items_per_s", double(clips) / median}}})}};
  std::cout << result.dump() << "\n";
  if (const auto out = args.get("--json")) write_file_atomic(*out, result.dump(2) + "\n");
  return 0;
}

BenchRegistrar reg{{"features",
                    "mel spectrograms (frames, FFT, power, filterbank): clips/s, GB/s, fraction of peak bandwidth",
                    run_features_bench}};

}  // namespace
}  // namespace genrelab
