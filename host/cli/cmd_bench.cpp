// `genrelab bench --what NAME [...]`: dispatches to the registered benchmarks (see bench.h).
#include <algorithm>
#include <iostream>

#include "genrelab/bench.h"
#include "genrelab/common.h"
#include "genrelab/config.h"

namespace genrelab {

namespace {
std::vector<BenchEntry>& bench_registry() {
  static std::vector<BenchEntry> r;
  return r;
}
}  // namespace

void register_bench(BenchEntry entry) {
  bench_registry().push_back(std::move(entry));
  std::sort(bench_registry().begin(), bench_registry().end(),
            [](const BenchEntry& a, const BenchEntry& b) { return a.name < b.name; });
}

const std::vector<BenchEntry>& benches() { return bench_registry(); }

GpuInfo bench_gpu() {
  const CudaStatus st = query_cuda();
  if (!st.gpus.empty()) return st.gpus[0];
  GpuInfo none;
  none.name = "cuda";
  return none;
}

namespace cli {
namespace {

int run_bench(const Args& args) {
  std::vector<std::string> names;
  for (const auto& b : benches()) names.push_back(b.name);
  const std::string what = args.get_or("--what", "");
  if (what.empty()) {
    std::cerr << "genrelab bench: choose one with --what:\n";
    for (const auto& b : benches()) std::cerr << "  " << b.name << "  " << b.help << "\n";
    return 2;
  }
  for (const auto& b : benches())
    if (b.name == what) return b.run(args);
  const std::string guess = closest_match(what, names);
  throw ConfigError("genrelab bench: unknown --what '" + what + "'" + (guess.empty() ? "" : " (did you mean '" + guess + "'?)"));
}

CommandRegistrar reg{{"bench", "benchmarks: decode, features, augment, train, layers, allreduce",
                      "usage: genrelab bench --what NAME [ARGS...] [--device cuda|cpu] [--json OUT.json]\n\n"
                      "Times one stage, after checking its result, and prints achieved throughput beside the\n"
                      "hardware's roofline. Run without --what for the list.\n",
                      {{"--what", true, false, "which benchmark"},
                       device_option(), config_option(), set_option(),
                       {"--threads", true, false, "host threads (decode)"},
                       {"--clips", true, false, "number of clips to process"},
                       {"--iterations", true, false, "timed iterations"},
                       {"--max-bytes", true, false, "largest message (allreduce; default 268435456 = 256 MiB)"},
                       {"--out", true, false, "a folder every rank sees, for NCCL's id without mpirun (allreduce)"},
                       {"--json", true, false, "also write the results as JSON to this file"}},
                      run_bench}};

}  // namespace
}  // namespace cli
}  // namespace genrelab
