// `genrelab bench --what decode ROOT [--threads N]`: decoded-PCM throughput of the parallel loader
// for 1..N threads (MB/s of float32 output and clips/s), after checking that the threaded
// result equals a serial decode.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "genrelab/bench.h"
#include "genrelab/config.h"
#include "genrelab/dataset.h"
#include "genrelab/io.h"

namespace genrelab {
namespace {

int run_decode_bench(const cli::Args& args) {
  if (args.positional().size() != 1) args.usage_error("bench --what decode expects one ROOT folder");
  Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  config.apply_override("dataset.root=" + args.positional()[0]);
  Dataset ds = scan_dataset(dataset_options_from_config(config));
  const int64_t clips = args.get_int("--clips", int64_t(ds.clips.size()), 1);
  if (size_t(clips) < ds.clips.size()) ds.clips.resize(size_t(clips));
  const int max_threads =
      int(args.get_int("--threads", int(std::max(1u, std::thread::hardware_concurrency())), 1, 1024));
  const int iterations = int(args.get_int("--iterations", 1, 1, 1 << 20));

  LoadOptions lo;
  lo.decode = decode_options_from_config(config);
  lo.warn = false;
  lo.progress = false;

  // Correctness first: the threaded loader must give exactly the serial decode.
  lo.threads = max_threads;
  const LoadedDataset threaded = load_dataset(ds, lo);  // also warms the page cache
  for (const auto& c : threaded.clips) {
    const Audio a = decode_audio(c.clip.path, lo.decode);
    if (a.samples != c.samples)
      throw RuntimeError("bench decode: threaded decode of " + c.clip.path + " differs from a serial decode");
  }
  double samples = 0;
  for (const auto& c : threaded.clips) samples += double(c.samples.size());
  const double mb = samples * sizeof(float) / 1e6;
  std::fprintf(
      stderr, "bench decode: %zu clips (%zu skipped), %.1f MB of float32 PCM per pass; threaded result equals serial\n",
      threaded.clips.size(), threaded.skipped.size(), mb);

  json results = json::array();
  std::printf("%-8s %10s %12s %10s %9s\n", "threads", "seconds", "MB/s", "clips/s", "speedup");
  double base = 0;
  for (int t = 1; t <= max_threads; ++t) {
    lo.threads = t;
    double best = 1e30;
    for (int it = 0; it < iterations; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      const LoadedDataset l = load_dataset(ds, lo);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (t == 1) base = best;
    const double clips_per_s = double(threaded.clips.size() + threaded.skipped.size()) / best;
    std::printf("%-8d %10.3f %12.1f %10.1f %8.2fx\n", t, best, mb / best, clips_per_s, base / best);
    // "work": "decode" is the row with the most threads (the one compared with peers)
    results.push_back({{"work", t == max_threads ? std::string("decode") : "decode-" + std::to_string(t) + "-threads"},
                       {"device", "cpu"},
                       {"threads", t},
                       {"items", threaded.clips.size() + threaded.skipped.size()},
                       {"unit", "clips"},
                       {"seconds", best},
                       {"mb_per_s", mb / best},
                       {"clips_per_s", clips_per_s},
                       {"items_per_s", clips_per_s}});
  }
  if (const auto out = args.get("--json")) {
    json doc = {{"bench", "decode"},
                {"device", "cpu"},
                {"root", ds.class_root},
                {"clips", threaded.clips.size()},
                {"skipped", threaded.skipped.size()},
                {"megabytes", mb},
                {"sample_rate", lo.decode.sample_rate},
                {"results", results}};
    write_file_atomic(*out, doc.dump(2) + "\n");
  }
  return 0;
}

BenchRegistrar reg{{"decode",
                    "decoded PCM MB/s and clips/s of the threaded loader for 1..--threads threads (ROOT argument)",
                    run_decode_bench}};

}  // namespace
}  // namespace genrelab
