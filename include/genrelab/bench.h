// `genrelab bench --what NAME`: each benchmark registers itself under a name. A benchmark checks
// its own correctness first, warms up, times, and prints a table on stdout (and JSON with --json).
#pragma once

#include <functional>
#include <string>

#include "genrelab/cli.h"
#include "genrelab/device.h"

namespace genrelab {

struct BenchEntry {
  std::string name;  // "decode", "features", "augment", "train", "layers", "allreduce"
  std::string help;
  std::function<int(const cli::Args&)> run;  // returns the exit code
};

void register_bench(BenchEntry entry);
const std::vector<BenchEntry>& benches();

// The GPU a benchmark runs on (the first visible one), for its name and peaks (device.h); a
// GpuInfo with name "cuda" and no peaks when none can be queried.
GpuInfo bench_gpu();

struct BenchRegistrar {
  explicit BenchRegistrar(BenchEntry entry) { register_bench(std::move(entry)); }
};

}  // namespace genrelab
