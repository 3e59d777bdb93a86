// `genrelab train`: the whole job. Everything that can be wrong with the request (config, data
// root, model shape, output folder) is checked before any long work; the run directory is
// created first and every file in it is written atomically; SIGINT/SIGTERM stop at the next
// step boundary with a checkpoint; `--resume` continues to the result an uninterrupted run gives
// (all randomness is keyed by seed, epoch, step and clip, never by wall-clock or order of work).
#include <omp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <numeric>
#include <optional>
#include <thread>
#include <utility>

#include "examples.h"
#include "genrelab/augment.h"
#include "genrelab/common.h"
#include "genrelab/dataset.h"
#include "genrelab/dist.h"
#include "genrelab/gpu_idle.h"
#include "genrelab/io.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/schedule.h"
#include "genrelab/nn/tuning_cache.h"
#include "genrelab/nvtx.h"
#include "genrelab/ops/philox.h"
#include "genrelab/plots.h"
#include "genrelab/progress.h"
#include "genrelab/split.h"
#include "genrelab/train.h"
#include "streaming.h"
#if GENRELAB_HAVE_CUDA
#include <cuda_profiler_api.h>

#include "genrelab/cuda/activity_trace.h"
#endif

namespace fs = std::filesystem;

namespace genrelab {

// train.sync_every_steps = 0 on cuda: the host reads the step stats (and runs the NaN guard) every
// 16 steps, so it can queue up to 16 steps ahead of the GPU (the network's pinned ring of step
// scalars bounds the lead at 8). On the CPU every step is synchronous anyway: 1.
constexpr int64_t kGpuSyncEverySteps = 16;

// ---- small shared pieces ---------------------------------------------------------------------

WindowSpec WindowSpec::from_config(const Config& c) {
  WindowSpec w;
  const auto clip = c.get_optional_int("dataset.clip_samples");
  const auto win = c.get_optional_int("dataset.window_samples");
  if (!win && !clip)
    c.fail("dataset.clip_samples",
           "training needs a fixed input length: set dataset.clip_samples (e.g. 617400 = 28 s at 22050 Hz) "
           "or dataset.window_samples");
  w.window = win ? *win : *clip;
  if (clip && win && *win > *clip)
    c.fail("dataset.window_samples", "is longer than dataset.clip_samples (" + std::to_string(*win) + " > " +
                                         std::to_string(*clip) + ")");
  w.hop = c.get_optional_int("dataset.window_hop").value_or(w.window);
  return w;
}

std::vector<int64_t> WindowSpec::starts(int64_t n) const {
  std::vector<int64_t> s;
  if (n <= window) return {0};
  for (int64_t p = 0; p + window <= n; p += hop) s.push_back(p);
  return s;
}

std::vector<int64_t> epoch_permutation(int64_t n, uint32_t seed, uint32_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  const PhiloxStream rng(seed, RngPurpose::shuffle, epoch, 0);
  for (int64_t i = n - 1; i > 0; --i) {
    // Unbiased draw in [0, i] by rejection on 32-bit words.
    const uint64_t range = uint64_t(i) + 1;
    const uint64_t limit = (uint64_t(1) << 32) - ((uint64_t(1) << 32) % range);
    uint64_t k = uint64_t(n - 1 - i) * 16, w;
    do { w = rng.word(k++); } while (w >= limit);
    std::swap(p[size_t(i)], p[size_t(w % range)]);
  }
  return p;
}

ClipScores score_clips(const std::vector<float>& probs, int64_t classes, const std::vector<int64_t>& group,
                       const std::vector<int32_t>& labels) {
  ClipScores s;
  s.clips = int64_t(labels.size());
  s.confusion.assign(size_t(classes), std::vector<int64_t>(size_t(classes), 0));
  std::vector<double> sum(size_t(s.clips * classes), 0.0);
  std::vector<int64_t> windows(size_t(s.clips), 0);
  for (size_t w = 0; w < group.size(); ++w) {
    const int64_t c = group[w];
    ++windows[size_t(c)];
    for (int64_t k = 0; k < classes; ++k) sum[size_t(c * classes + k)] += probs[w * size_t(classes) + size_t(k)];
  }
  int64_t correct = 0;
  for (int64_t c = 0; c < s.clips; ++c) {
    int64_t best = 0;
    for (int64_t k = 1; k < classes; ++k)
      if (sum[size_t(c * classes + k)] > sum[size_t(c * classes + best)]) best = k;
    const double p_true = windows[size_t(c)] ? sum[size_t(c * classes + labels[size_t(c)])] / double(windows[size_t(c)]) : 0.0;
    s.loss += -std::log(std::max(p_true, 1e-12));
    correct += best == labels[size_t(c)];
    ++s.confusion[size_t(labels[size_t(c)])][size_t(best)];
  }
  if (s.clips > 0) {
    s.loss /= double(s.clips);
    s.accuracy = double(correct) / double(s.clips);
  }
  return s;
}

namespace {

#if GENRELAB_HAVE_CUDA
// The lines `train --profile` ends with on the GPU, from the activity trace of the profiled steps:
// the GPU idle time, and how much of the time of the batches' host-to-device copies
// (dataset.streaming's, through the pinned ring: copies of 64 KiB or more, not the labels or the
// step's parameters) ran beside kernels. A trace that cannot say (CUPTI lost records, or none of
// the steps' kernels) is reported as not measured, after the profiled steps have run.
void report_profiled_activity(cuda::ActivityTrace& trace, uint64_t since, int steps) {
  std::vector<ActivityInterval> iv;
  try {
    iv = trace.collect(since);
  } catch (const RuntimeError& e) {
    std::cerr << "genrelab train: the GPU idle time of the profiled steps is not measured: " << e.what() << "\n";
    return;
  }
  const IdleStats st = idle_stats(iv);
  char line[320];
  std::snprintf(line, sizeof line,
                "genrelab train: GPU idle over the %d profiled steps: %.2f %% of %.3f ms (%.3f ms a step; %lld gaps, "
                "largest %.3f ms; GPU activity trace)\n",
                steps, 100.0 * st.idle_fraction, st.span_ms, st.span_ms / steps, (long long)st.gaps, st.largest_gap_ms);
  std::cerr << line;
  constexpr uint64_t kBatchCopyBytes = 64 << 10;
  std::vector<ActivityInterval> copies, kernels;
  for (const ActivityInterval& a : iv) {
    if (a.name == cuda::ActivityTrace::kMemcpyHtoD && a.bytes >= kBatchCopyBytes) copies.push_back(a);
    else if (cuda::ActivityTrace::is_kernel(a.name)) kernels.push_back(a);
  }
  if (copies.empty()) return;
  const double copy_ms = idle_stats(copies).busy_ms, beside = covered_ms(copies, kernels);
  std::snprintf(line, sizeof line,
                "genrelab train: host-to-device copies in the profiled steps: %zu of 64 KiB or more, %.3f ms, %.1f %% "
                "of it beside running kernels\n",
                copies.size(), copy_ms, copy_ms > 0 ? 100.0 * beside / copy_ms : 0.0);
  std::cerr << line;
}
#endif

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// Installs SIGINT/SIGTERM handlers for the scope of a training run.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%5.1f %%", 100.0 * v);
  return b;
}

// Window probabilities of every example of `set`: (count, classes) host. Data-parallel: each rank
// predicts its shard and the sum over ranks (zeros elsewhere) gives every rank all of them.
std::vector<float> predict_all(nn::Network& net, const ExampleSet& set, int64_t classes, int64_t batch,
                               dist::Communicator* comm) {
  std::vector<float> probs(size_t(set.count * classes), 0.0f);
  const dist::Shard mine = comm ? dist::shard_of(set.count, comm->rank(), comm->size()) : dist::Shard{0, set.count};
  for (int64_t first = mine.first; first < mine.first + mine.count; first += batch) {
    const int64_t n = std::min(batch, mine.first + mine.count - first);
    net.predict(set.features.data() + first * set.feature_size, n, probs.data() + first * classes);
  }
  if (comm) comm->all_reduce_sum_host(probs.data(), int64_t(probs.size()), dist::DType::f32);
  return probs;
}

// Silences std::cerr for its lifetime (the ranks other than 0 of a data-parallel run: rank 0
// speaks for the job). Errors are printed after it is gone.
class QuietStderr {
 public:
  explicit QuietStderr(bool quiet) : old_(quiet ? std::cerr.rdbuf(nullptr) : nullptr) {}
  ~QuietStderr() {
    if (old_) std::cerr.rdbuf(old_);
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  std::streambuf* old_;
};

// Free bytes on the file system holding `path`.
uint64_t free_bytes(const std::string& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0) return UINT64_MAX;
  return uint64_t(s.f_bavail) * s.f_frsize;
}

// After the first epoch, one line on stderr when the tuning cache supplied choices: that epoch's
// time then leaves out what timing them would have cost.
void note_tuning_cache() {
  const nn::TuningCacheCounts counts = nn::tuning_cache_counts();
  if (counts.found == 0) return;
  std::cerr << "genrelab train: " << counts.found << " timed choice" << (counts.found > 1 ? "s" : "")
            << " (conv algorithms, engines, GEMM kernels) taken from the tuning cache " << nn::tuning_cache_path()
            << ", measured by an earlier run on this kind of GPU; GENRELAB_TUNING_CACHE=off times them afresh\n";
}

}  // namespace

int run_training(const TrainRequest& req) {
  const auto t_start = std::chrono::steady_clock::now();
  Progress::set_enabled(!req.quiet);
  StopSignals signals;  // SIGINT/SIGTERM: stop at the next step (or stage) boundary

  // ---- 1. the request: world, config, device, run directory ----
  const dist::World world = dist::World::from_environment();  // a world of one without a launcher
  Config config;
  std::unique_ptr<RunDir> run;
  json run_info;
  if (!req.resume.empty()) {
    if (!req.experiment.empty()) throw ConfigError("genrelab train: give either EXPERIMENT.json or --resume RUN_DIR, not both");
    if (!req.overrides.empty()) throw ConfigError("genrelab train --resume: --set is not allowed (the run keeps its config)");
    run = std::make_unique<RunDir>(RunDir::open(req.resume));
    if (run->has("summary.json")) {
      std::cerr << "genrelab train: " << run->path() << " has already finished (summary.json exists); nothing to resume\n";
      std::cout << run->path() << "\n";
      return 0;
    }
    // A kill during a write can leave NAME.tmp beside the intact NAME: drop the leftovers.
    if (world.is_root())
      for (const auto& e : fs::directory_iterator(run->path()))
        if (e.path().extension() == ".tmp") fs::remove(e.path());
    config = Config::from_resolved(run->read_json("config.json"), run->file("config.json"));
    run_info = run->has("run.json") ? run->read_json("run.json") : json::object();
  } else {
    if (req.experiment.empty()) throw ConfigError("genrelab train: expects EXPERIMENT.json (or --resume RUN_DIR)");
    config = Config::load(req.experiment, req.overrides);
  }
  const Device device = resolve_device(req.device.empty() && run_info.contains("device") ? run_info["device"].get<std::string>() : req.device);

  // Data parallel (mpirun, srun, --gpus): one rank per GPU (or CPU process), rank 0 writes.
  const bool root = world.is_root();
  QuietStderr quiet_rank(!root);
  if (!root) Progress::set_enabled(false);
  if (world.distributed() && device == Device::cuda) use_gpu(dist::local_gpu(world, int(query_cuda().gpus.size())));
  // The node's cores are shared by its ranks: OpenMP would give each rank every core it may run
  // on, and the ranks' spinning threads would fight over them. A launcher's binding (a rank's CPU
  // set) still bounds it; OMP_NUM_THREADS, when set, decides instead.
  if (world.local_size > 1 && !std::getenv("OMP_NUM_THREADS"))
    omp_set_num_threads(
        std::max(1, std::min(omp_get_num_procs(), int(std::thread::hardware_concurrency()) / world.local_size)));
  const std::string out_parent =
      !req.resume.empty() ? fs::path(req.resume).parent_path().string() : req.out.empty() ? config.get_path("output.dir") : req.out;
  std::unique_ptr<dist::Communicator> comm =
      dist::make_communicator(world, device, out_parent, config.get_number("train.comm_timeout_s"));
  if (comm) {
    // Every rank must train the same experiment: compare the resolved configs' hashes.
    const std::string mine = dist::hash_hex(config.resolved_for_saving().dump());
    const std::string rank0 = comm->broadcast_string(mine, 0);
    const int64_t differing = comm->sum(int64_t(mine != rank0));
    if (differing > 0) {
      // Every rank reports before any exits (the first exit ends the job).
      const std::string msg =
          mine != rank0 ? "rank " + std::to_string(world.rank) + ": its resolved config (hash " + mine +
                              ") differs from rank 0's (hash " + rank0 +
                              "); start every rank with the same experiment file, --set overrides and environment"
                        : "rank " + std::to_string(world.rank) + ": " + std::to_string(differing) +
                              " rank(s) have a resolved config different from rank 0's (hash " + rank0 +
                              "); start every rank with the same experiment file, --set overrides and environment";
      std::fprintf(stderr, "genrelab: error: %s\n", msg.c_str());
      std::fflush(stderr);
      comm->barrier();
      throw ReportedError(msg, 2);
    }
    std::cerr << "genrelab train: data parallel over " << world.size << " ranks (" << dist::launcher_name(world.launcher)
              << ", " << comm->name() << "); global batch " << config.get_int("train.batch_size")
              << (config.get_bool("train.sync_batchnorm") ? "; batch-norm statistics over all ranks" : "") << "\n";
  }

  // Everything checkable is checked before any long work.
  const MelParams mel_params = MelParams::from_config(config);
  mel_params.validate();
  const AugmentSettings augment = AugmentSettings::from_config(config);
  const nn::TrainHyper hyper = nn::TrainHyper::from_config(config);
  const WindowSpec windows = WindowSpec::from_config(config);
  const bool streaming = config.get_bool("dataset.streaming");
  if (streaming && !config.get_optional_int("dataset.clip_samples"))
    config.fail("dataset.streaming", "needs dataset.clip_samples (every clip cut or padded to one length), e.g. "
                                     "--set dataset.clip_samples=617400");
  const int64_t frames = mel_params.n_frames(windows.window);
  if (frames < 1) config.fail("dataset.window_samples", "gives no feature frame (shorter than features.n_fft)");
  if (config.get_number("augment.spec_mask.p") > 0) {
    // A mask as wide as the spectrogram blanks whole examples: legal, but rarely meant.
    const auto warn_wide = [&](const char* key, int64_t extent, const char* what) {
      if (config.get_int(key) >= extent)
        std::cerr << "warning: " << key << " = " << config.get_int(key) << " is not below the spectrogram's " << extent
                  << " " << what << ": one mask can blank a whole example\n";
    };
    warn_wide("augment.spec_mask.max_time_width", frames, "frames");
    warn_wide("augment.spec_mask.max_freq_width", mel_params.n_mels, "mel bands");
    // Masks fill with 0: silence in a power mel, the mean once standardised, but in dB the
    // reference level (the loudest cell with ref "max"), far above a clip's typical -40 dB.
    if (mel_params.db && !mel_params.standardize)
      std::cerr << "warning: augment.spec_mask fills masked cells with 0, which in dB features (features.db) without "
                   "features.standardize is the reference level, not silence; set features.standardize=true\n";
  }
  DatasetOptions data_options = dataset_options_from_config(config);
  const Dataset dataset = scan_dataset(data_options);
  const int64_t classes = int64_t(dataset.classes.size());
  const nn::ModelPlan plan = nn::plan_model(config, nn::Shape3{mel_params.n_mels, frames, 1}, classes);
  const SplitOptions split_options = split_options_from_config(config);
  auto check_split = [&](const Split& split, size_t clips) {
    if (split.train.empty() || split.test.empty())
      throw ConfigError("the split leaves " + std::to_string(split.train.size()) + " training and " +
                        std::to_string(split.test.size()) + " test clips out of " + std::to_string(clips) +
                        "; add clips or change split.test_fraction");
  };
  // The split of every clip found, as if all decode: a split the settings make impossible (a test
  // fraction of 0, a missing list) is refused before the run directory exists. The run's own split,
  // of the clips that do decode, is made once they are read.
  if (!run) check_split(make_split(dataset.clips, int(classes), split_options), dataset.clips.size());

  if (!run && !root) {
    run = std::make_unique<RunDir>(RunDir::open(comm->broadcast_string("", 0)));  // rank 0 names it
  } else if (!run) {
    run = std::make_unique<RunDir>(RunDir::create(out_parent, config.name()));
    run->write_json("config.json", config.resolved_for_saving());
    run_info = {{"experiment", fs::absolute(req.experiment).string()},
                {"overrides", req.overrides},
                {"device", device_name(device)},
                {"started_utc", utc_timestamp()},
                {"host", [] { char h[256] = {}; ::gethostname(h, sizeof h - 1); return std::string(h); }()},
                {"versions", version_info()},
                {"world", {{"ranks", world.size}, {"launcher", dist::launcher_name(world.launcher)},
                           {"threads_per_rank", omp_get_max_threads()}}}};
    run->write_json("run.json", run_info);
    if (comm) comm->broadcast_string(run->path(), 0);  // the others open it once it is complete
  }
  std::cerr << "genrelab train: run directory " << run->path() << " (" << device_name(device) << ", "
            << plan.param_count() << " parameters)\n";
  // The run directory's path on stdout as soon as it exists, so that a script has it to resume or
  // inspect whatever happens next.
  if (root) std::cout << run->path() << std::endl;
  const uint64_t checkpoint_bytes = uint64_t(plan.param_count()) * 4 * 3 + (1 << 20);
  if (free_bytes(run->path()) < checkpoint_bytes)
    throw RuntimeError("the output folder " + run->path() + " has less free space than one checkpoint needs (" +
                       std::to_string(checkpoint_bytes >> 20) + " MiB); free some space or choose --out elsewhere");

  // ---- the network, built beside the data ----
  // Setting the network up needs no data (on the GPU: the CUDA context, the cuDNN and cuBLAS
  // handles, the initial weights), so a thread does it while this one decodes the clips and makes
  // the examples. Its error, if any, surfaces once the data is loaded or where section 4 waits.
  const int gpu = device == Device::cuda ? current_gpu() : -1;
  std::future<std::unique_ptr<nn::Network>> network_build =
      std::async(std::launch::async, [&plan, &hyper, device, gpu] {
        if (gpu >= 0) use_gpu(gpu);  // the thread works on this rank's GPU
        return nn::make_network(device, plan, hyper);
      });
  std::unique_ptr<nn::Network> net;
  // Where this process's wall time goes (summary.json "time_seconds", the report's last line).
  RunTime spent;
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };

  // ---- 2. data: decode, split ----
  const auto t_data = std::chrono::steady_clock::now();
  LoadOptions load;
  load.decode = decode_options_from_config(config);
  load.progress = !req.quiet;
  // dataset.streaming: this pass only checks that every clip decodes (each rank a shard of the
  // files, sharing what they skipped); training decodes them again.
  LoadedDataset loaded = streaming ? check_dataset_sharded(dataset, load, comm.get()) : load_dataset(dataset, load);
  // A network that could not be set up stops the run here, before the examples are made.
  if (network_build.wait_for(std::chrono::seconds(0)) == std::future_status::ready) net = network_build.get();
  const std::vector<Clip> clips = clip_records(loaded);
  if (!streaming && !config.get_optional_int("dataset.clip_samples")) {
    const size_t n0 = loaded.clips.front().samples.size();
    for (const auto& c : loaded.clips)
      if (c.samples.size() != n0)
        config.fail("dataset.clip_samples", "is null but the clips differ in length (" + c.clip.name + " has " +
                                                std::to_string(c.samples.size()) + " samples, " +
                                                loaded.clips.front().clip.name + " " + std::to_string(n0) +
                                                "); set a length, e.g. --set dataset.clip_samples=" +
                                                std::to_string(n0));
  }
  auto stopped_before_training = [&]() {
    if (!g_stop_signal) return false;
    std::cerr << "genrelab train: stopped by " << (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM")
              << " before training started; continue with: genrelab train --resume " << run->path() << "\n";
    return true;
  };
  if (stopped_before_training()) return 128 + g_stop_signal;
  const Split split = make_split(clips, int(classes), split_options, loaded.skipped);
  for (const auto& miss : split.missed)
    std::cerr << "warning: " << miss.list << ":" << miss.line << ": " << miss.entry << ": " << miss.reason << "\n";
  check_split(split, clips.size());
  {
    json names = {{"train", json::array()}, {"valid", json::array()}, {"test", json::array()}, {"skipped", json::array()}};
    for (int64_t i : split.train) names["train"].push_back(clips[size_t(i)].name);
    for (int64_t i : split.valid) names["valid"].push_back(clips[size_t(i)].name);
    for (int64_t i : split.test) names["test"].push_back(clips[size_t(i)].name);
    for (const auto& s : loaded.skipped) names["skipped"].push_back({{"file", s.name}, {"reason", s.reason}});
    names["classes"] = dataset.classes;
    names["root"] = dataset.root;
    names["class_root"] = dataset.class_root;
    if (root) run->write_json("split.json", names);
  }
  {
    std::vector<int64_t> test_per_class(size_t(classes), 0), train_per_class(size_t(classes), 0);
    for (int64_t i : split.test) ++test_per_class[size_t(clips[size_t(i)].label)];
    for (int64_t i : split.train) ++train_per_class[size_t(clips[size_t(i)].label)];
    for (int64_t k = 0; k < classes; ++k) {
      if (train_per_class[size_t(k)] == 0)
        std::cerr << "warning: class '" << dataset.classes[size_t(k)] << "' has no training clip; the model cannot learn it\n";
      if (test_per_class[size_t(k)] == 0)
        std::cerr << "warning: class '" << dataset.classes[size_t(k)]
                  << "' has no test clip; its test accuracy is reported as 0 (use split.kind stratified to keep every class)\n";
    }
  }
  auto gather = [&](const std::vector<int64_t>& idx, std::vector<const std::vector<float>*>& audio, std::vector<int32_t>& labels) {
    for (int64_t i : idx) {
      audio.push_back(&loaded.clips[size_t(i)].samples);
      labels.push_back(int32_t(loaded.clips[size_t(i)].clip.label));
    }
  };
  std::vector<const std::vector<float>*> train_audio, valid_audio, test_audio;
  std::vector<int32_t> train_labels, valid_labels, test_labels;
  gather(split.train, train_audio, train_labels);
  gather(split.valid, valid_audio, valid_labels);
  gather(split.test, test_audio, test_labels);
  std::vector<uint32_t> train_keys;
  for (int64_t i : split.train) train_keys.push_back(uint32_t(i));
  std::cerr << "genrelab train: " << clips.size() << " clips (" << loaded.skipped.size() << " skipped): "
            << split.train.size() << " train, " << split.valid.size() << " valid, " << split.test.size() << " test\n";

  spent.data = seconds_since(t_data);

  // ---- 3. features ----
  const auto t_examples = std::chrono::steady_clock::now();
  MelExtractor mel(mel_params, device);
  ExampleBuilder builder(device, mel, augment, windows, mel_params.sample_rate);
  // Streaming: the sets' clips are decoded from disk whenever a step or an evaluation needs them.
  std::unique_ptr<StreamingSet> train_stream, valid_stream, test_stream;
  if (streaming) {
    auto streaming_set = [&](const std::vector<int64_t>& idx) -> std::unique_ptr<StreamingSet> {
      if (idx.empty()) return nullptr;
      std::vector<std::string> paths;
      std::vector<int32_t> labels;
      for (int64_t i : idx) {
        paths.push_back(loaded.clips[size_t(i)].clip.path);
        labels.push_back(int32_t(loaded.clips[size_t(i)].clip.label));
      }
      // The node's cores shared by its ranks.
      const int threads = std::max(1, int(std::thread::hardware_concurrency()) / std::max(1, world.local_size));
      return std::make_unique<StreamingSet>(builder, std::move(paths), std::move(labels), load.decode,
                                            *load.decode.length, threads);
    };
    train_stream = streaming_set(split.train);
    valid_stream = streaming_set(split.valid);
    test_stream = streaming_set(split.test);
    std::cerr << "genrelab train: streaming clips from disk (dataset.streaming), " << StreamingSet::kLookahead
              << " steps ahead\n";
  }
  // Plans index the key list, which runs parallel to train_audio.
  auto plan_for_epoch = [&](int epoch) { return plan_augment(augment, train_keys, uint32_t(epoch)); };
  const bool online = augment.mode == AugmentSettings::Mode::online;
  std::vector<AugmentedExample> train_plan;  // the train examples' plan (online: this epoch's)
  if (!online) train_plan = plan_for_epoch(0);
  // On the GPU the training clips are uploaded once and kept there (when they take at most an
  // eighth of the free GPU memory) where they are read more than once: for the band statistics
  // and the training examples, when an offline plan reads each clip for several copies, and for
  // the whole run under online augmentation, which remakes the examples every epoch.
  if (device == Device::cuda && !streaming && !train_audio.empty()) {
    const bool stats_pass = mel_params.standardize && !run->has("feature_stats.json");
    const bool copies = train_plan.size() > train_audio.size();
    if ((online || stats_pass || copies) && !builder.keep_on_device(train_audio))
      std::cerr << "note: the training clips do not fit in an eighth of the free GPU memory; each chunk of examples "
                   "uploads its own\n";
  }
  if (mel_params.standardize) {
    MelBandStats stats;
    if (run->has("feature_stats.json")) {
      stats = run->read_feature_stats(mel_params.n_mels);
    } else {
      // Every rank gets the same statistics (streaming: from its shard and the others').
      stats = streaming ? train_stream->band_stats(comm.get()) : builder.band_stats(train_audio);
      if (root) run->write_json("feature_stats.json", {{"mean", stats.mean}, {"std", stats.std}});
    }
    mel.set_band_stats(stats);
  }
  // Train examples: offline copies once; online, rebuilt every epoch.
  // Streaming keeps only the examples' labels and plans; their features are made step by step.
  ExampleSet train_set(device), valid_set(device), test_set(device);
  const int64_t per_clip = builder.windows_per_clip(streaming ? *load.decode.length : int64_t(train_audio.front()->size()));
  auto make_examples = [&](const std::vector<const std::vector<float>*>& audio, const std::vector<int32_t>& labels,
                           const std::vector<AugmentedExample>& plan, ExampleSet& set, const std::string& label) {
    if (streaming) {
      describe_examples(labels, plan, per_clip, set);
      set.feature_size = builder.feature_size();
    } else {
      builder.build(audio, labels, plan, set, label);
    }
  };
  if (!online) {
    make_examples(train_audio, train_labels, train_plan, train_set, "train set");
    builder.release_device_clips();  // made once: the clips' device copy is not needed again
  }
  make_examples(test_audio, test_labels, identity_plan(int64_t(test_audio.size())), test_set, "test set");
  if (!valid_audio.empty())
    make_examples(valid_audio, valid_labels, identity_plan(int64_t(valid_audio.size())), valid_set, "valid set");

  spent.examples = seconds_since(t_examples);
  if (stopped_before_training()) return 128 + g_stop_signal;

  // ---- 4. network, resume state ----
  const auto t_network = std::chrono::steady_clock::now();
#if GENRELAB_HAVE_CUDA
  // train --profile on the GPU: the GPU's activity trace, for the idle time of the profiled steps
  // (started before the first step, so it also sees the kernels of the step graphs captured there;
  // not during the data, whose kernels would only fill its buffers).
  std::optional<cuda::ActivityTrace> idle_trace;
  uint64_t idle_since = 0;
  if (req.profile_steps > 0 && device == Device::cuda) {
    try {
      idle_trace.emplace();
    } catch (const RuntimeError& e) {
      std::cerr << "genrelab train: the GPU idle time of the profiled steps is not measured: " << e.what() << "\n";
    }
  }
#endif
  if (!net) net = network_build.get();
  net->set_communicator(comm.get());
  const int epochs = int(config.get_int("train.epochs"));
  const int64_t batch = config.get_int("train.batch_size");
  const int checkpoint_every = int(config.get_int("train.checkpoint_every"));
  std::vector<EpochMetrics> metrics;
  int start_epoch = 1;
  uint64_t step = 0;
  int64_t resume_batches = 0;  // batches of start_epoch already done (mid-epoch stop)
  double resume_loss = 0, resume_seconds = 0;
  int64_t resume_correct = 0, resume_examples = 0;
  const std::string checkpoint_path = run->file("checkpoint.bin");
  if (fs::exists(checkpoint_path)) {
    const nn::CheckpointMeta ck = nn::restore_checkpoint(checkpoint_path, *net);
    const json& m = ck.extra;
    start_epoch = int(ck.epoch) + 1;
    step = uint64_t(ck.step);
    resume_batches = m.value("batches_done", int64_t(0));  // > 0: stopped inside epoch start_epoch
    resume_loss = m.value("loss_sum", 0.0);
    resume_correct = m.value("correct", int64_t(0));
    resume_examples = m.value("examples", int64_t(0));
    resume_seconds = m.value("seconds", 0.0);
    metrics = run->read_metrics();
    if (int(metrics.size()) > start_epoch - 1) metrics.resize(size_t(start_epoch - 1));
    std::cerr << "genrelab train: resuming at epoch " << start_epoch
              << (resume_batches ? " after its first " + std::to_string(resume_batches) + " steps" : "") << " from "
              << checkpoint_path << "\n";
  } else if (!req.resume.empty()) {
    std::cerr << "genrelab train: " << run->path() << " has no checkpoint yet; starting from the beginning\n";
  }
  spent.network = seconds_since(t_network);
  // A checkpoint records the completed epochs and steps; a stop inside an epoch also records the
  // batches done and the epoch's running sums, so resuming continues mid-epoch. End-of-epoch
  // checkpoints are written by a background thread from a snapshot of the state while the next
  // epoch trains (the baseline's 188 MB take about half a second). Training never waits for the
  // disk: an end-of-epoch save that finds the previous one still being written moves to the next
  // epoch end (short epochs, slow disks). A stop and the end of the run wait for
  // the writer and then save synchronously; the writer's errors surface there or at the next save.
  // A kill meanwhile leaves the previous checkpoint (each is written to a temporary file and
  // renamed), from which --resume reaches the same result.
  std::future<void> checkpoint_writer;
  bool deferral_said = false;  // stderr says once that a save moved on
  auto finish_checkpoint = [&] {
    if (checkpoint_writer.valid()) checkpoint_writer.get();
  };
  // Returns false when a background save was deferred because the previous one is still running.
  auto save_checkpoint = [&](int completed_epochs, int64_t batches_done, double loss_sum, int64_t correct,
                             int64_t examples, double seconds, bool background) {
    if (background && checkpoint_writer.valid() &&
        checkpoint_writer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (!std::exchange(deferral_said, true))
        std::cerr << "note: epoch " << completed_epochs << "'s checkpoint deferred: the previous one is still being "
                  << "written (training does not wait for the disk; the next epoch end saves)\n";
      return false;
    }
    nn::CheckpointMeta meta;
    meta.epoch = completed_epochs;
    meta.step = int64_t(step);
    meta.rng = {{"train_seed", hyper.seed}, {"augment_seed", augment.seed}, {"shuffle_epoch", completed_epochs + 1}};
    meta.extra = {{"batches_done", batches_done}, {"loss_sum", loss_sum}, {"correct", correct},
                  {"examples", examples}, {"seconds", seconds}, {"experiment", config.name()}};
    if (!background) {
      std::vector<nn::NamedTensor> state = net->state();
      finish_checkpoint();
      nn::save_checkpoint(checkpoint_path, plan, hyper, state, meta);
      return true;
    }
    finish_checkpoint();  // already done (checked above); rethrows its error
    // The writer takes the state to the host too (on the GPU: from a device-side copy).
    checkpoint_writer = std::async(std::launch::async, [&checkpoint_path, &plan, &hyper, snapshot = net->state_snapshot(), meta] {
      // Test hook: a slow disk, so that the next epoch ends while this write is still running.
      if (const char* ms = std::getenv("GENRELAB_TEST_CHECKPOINT_DELAY_MS"))
        std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(ms)));
      nn::save_checkpoint(checkpoint_path, plan, hyper, snapshot(), meta);
    });
    return true;
  };
  bool checkpoint_due = false;  // an end-of-epoch save is owed (checkpoint_every, or deferred)

  // ---- 5. epochs ----
#if GENRELAB_HAVE_CUDA
  bool profiling = false;
#endif
  // train --profile: `warmup_steps` steps of this process (a resumed run counts from its
  // checkpoint's step), then the profiled ones.
  const int64_t warmup_steps = 3;
  const int64_t profile_first_step = int64_t(step) + warmup_steps;
  int profile_epoch = 0;  // the epoch of the first profiled step
  const int64_t test_stop_after_steps = [] {
    const char* v = std::getenv("GENRELAB_TEST_STOP_AFTER_STEPS");
    return v ? std::atoll(v) : int64_t(0);
  }();
  ClipScores last_test;
  // The step's input buffers live across epochs: stable addresses let the cuda backend replay its
  // captured step graphs (train.cuda_graph) in every epoch instead of capturing them again.
  BackendArray<float> x(device);
  BackendArray<int32_t> y(device);
  BackendArray<int64_t> perm_rows(device);  // perm_rows: (train examples) the epoch's permutation
  // The host waits for the device only every sync_every steps (and at the end of an epoch, a stop
  // or the profiled steps): there it reads the steps' losses, runs the NaN guard and agrees on
  // stops with the other ranks. In between, batch gathers and steps are queued back to back.
  const int64_t sync_every = [&] {
    const int64_t k = config.get_int("train.sync_every_steps");
    return k > 0 ? k : device == Device::cuda ? kGpuSyncEverySteps : 1;
  }();
  // Global batch b of an epoch of `count` examples: its size, and this rank's shard of it (global
  // positions [first, first + count)).
  auto batch_size_of = [batch](int64_t count, int64_t b) { return std::min(batch, count - b * batch); };
  auto shard_of_batch = [batch_size_of, &world, &comm](int64_t count, int64_t b) {
    const int64_t n = batch_size_of(count, b);
    return comm ? dist::shard_of(n, world.rank, world.size) : dist::Shard{0, n};
  };
  // Streaming: starts epoch e of `plan`'s examples at step first_batch, so that its first steps
  // decode from now on. The next epoch is started before this one's evaluation, whose own clips
  // then decode beside the next epoch's first steps, instead of the steps waiting for theirs.
  int streamed_epoch = 0;  // the epoch train_stream was last started for
  auto start_streamed_epoch = [&](int e, const std::vector<AugmentedExample>& plan, int64_t first_batch) {
    const int64_t count = int64_t(plan.size()) * per_clip;
    // This rank's examples of global batch b, as the in-memory gather below takes them.
    auto rows_of_step = [perm = epoch_permutation(count, hyper.seed, uint32_t(e)), count, batch,
                         shard_of_batch](int64_t b) {
      const dist::Shard mine = shard_of_batch(count, b);
      return std::vector<int64_t>(perm.begin() + b * batch + mine.first, perm.begin() + b * batch + mine.first + mine.count);
    };
    train_stream->start_epoch(plan, rows_of_step, first_batch, ceil_div(count, batch));
    streamed_epoch = e;
  };
  spent.before_training = seconds_since(t_start);
  for (int epoch = start_epoch; epoch <= epochs; ++epoch) {
    NvtxRange epoch_range("epoch");
    const auto t_prepare = std::chrono::steady_clock::now();
    if (online) {
      train_plan = plan_for_epoch(epoch);
      make_examples(train_audio, train_labels, train_plan, train_set, "augment");
    }
    const int64_t steps_per_epoch = ceil_div(train_set.count, batch);
    const nn::LrSchedule schedule = nn::LrSchedule::from_config(config, steps_per_epoch);
    if (!streaming) {  // streamed steps bring their own inputs (StreamingSet::load_step)
      const std::vector<int64_t> perm = epoch_permutation(train_set.count, hyper.seed, uint32_t(epoch));
      perm_rows.resize(perm.size());
      perm_rows.upload(0, perm.data(), perm.size());
      x.resize(size_t(batch * train_set.feature_size));
      y.resize(size_t(batch));
    }
    // This rank's sums over its shards (rank 0 also holds what a resumed epoch had before the stop);
    // summed over the ranks when the epoch ends or stops.
    const bool resumed_here = epoch == start_epoch && root;
    double loss_sum = resumed_here ? resume_loss : 0;
    int64_t correct = resumed_here ? resume_correct : 0, seen = resumed_here ? resume_examples : 0;
    auto global_sums = [&] {
      if (comm) {
        double sums[3] = {loss_sum, double(correct), double(seen)};
        comm->all_reduce_sum_host(sums, 3, dist::DType::f64);
        loss_sum = sums[0];
        correct = int64_t(sums[1]);
        seen = int64_t(sums[2]);
      }
    };
    const int64_t first_batch = epoch == start_epoch ? resume_batches : 0;
    // A streamed step whose clips no longer decode (here or on another rank): training stops
    // before it, with a checkpoint of the steps before it.
    std::string decode_failure;
    auto decode_stop = [&](const std::string& why, const std::string& where, const std::string& holds) {
      return RuntimeError(why + ". Training stopped " + where + "; the checkpoint in " + checkpoint_path + " holds " +
                          holds + ": once the file is restored (or the error mended), continue with genrelab train "
                                  "--resume " +
                          run->path());
    };
    if (streaming && streamed_epoch != epoch) start_streamed_epoch(epoch, train_plan, first_batch);
    const auto t_epoch = std::chrono::steady_clock::now();
    spent.preparing += std::chrono::duration<double>(t_epoch - t_prepare).count();
    const double seconds_before = epoch == start_epoch ? resume_seconds : 0;
    Progress bar("epoch " + std::to_string(epoch), steps_per_epoch - first_batch, "steps", true);
    // A stop inside the epoch (a signal, a clip that no longer decodes): the ranks' sums and rank
    // 0's checkpoint of the epoch's first `batches_done` steps, complete before any rank exits.
    auto checkpoint_mid_epoch = [&](int64_t batches_done) {
      const double secs = seconds_before + seconds_since(t_epoch);
      global_sums();
      if (root) save_checkpoint(epoch - 1, batches_done, loss_sum, correct, seen, secs, false);
      if (comm) comm->barrier();
      bar.finish();
    };
    uint64_t synced_step = step;  // the global step the host last read the stats of
    for (int64_t b = first_batch; b < steps_per_epoch; ++b) {
      const int64_t n = batch_size_of(train_set.count, b);  // the global batch
      const dist::Shard mine = shard_of_batch(train_set.count, b);
      const float* step_x = x.data();  // step_x: (mine.count, n_mels, n_frames); step_y: (mine.count,)
      const int32_t* step_y = y.data();
      if (req.profile_steps > 0 && int64_t(step) == profile_first_step) {
        profile_epoch = epoch;
#if GENRELAB_HAVE_CUDA
        if (device == Device::cuda) {
          (void)net->last_stats();  // waits for the queued warm-up steps, which stay out of the profile
          cudaProfilerStart();
          profiling = true;
          if (idle_trace) idle_since = idle_trace->now();
        }
#endif
      }
      if (streaming) {
        NvtxRange load_range("load streamed batch");
        try {
          const StreamedBatch in = train_stream->load_step(b, net->stream(), comm.get());
          step_x = in.x;
          step_y = in.y;
        } catch (const StreamedDecodeError& e) {
          decode_failure = e.what();
        }
      } else {
        NvtxRange gather_range("gather batch");
        const int64_t* rows = perm_rows.data() + b * batch + mine.first;
        train_set.features.gather_rows(rows, mine.count, train_set.feature_size, x.data(), net->stream());
        train_set.labels_backend.gather_rows(rows, mine.count, 1, y.data(), net->stream());
      }
      if (decode_failure.empty()) {
        NvtxRange step_range("train step");  // queues the step; it runs while the host goes on
        net->train_step(step_x, step_y, mine.count, n, float(schedule.at(step)),
                        nn::StepKey{hyper.seed, step, mine.first});
        ++step;
        bar.advance();
      }
      const bool profile_done = req.profile_steps > 0 && int64_t(step) >= profile_first_step + req.profile_steps;
      // GENRELAB_TEST_STOP_AFTER_STEPS=N (a test hook) acts as a SIGTERM after global step N.
      const bool test_stop = test_stop_after_steps > 0 && step == uint64_t(test_stop_after_steps);
      if (step % uint64_t(sync_every) != 0 && b + 1 < steps_per_epoch && !profile_done && !test_stop &&
          decode_failure.empty())
        continue;

      // ---- a synchronisation point: the stats of the steps since the last one ----
      const std::vector<nn::StepStats> done = [&] {
        NvtxRange sync_range("read step stats");
        return net->take_step_stats();
      }();
      const uint64_t first_step = step - done.size();
      std::string broken;  // why training cannot go on: a non-finite loss here or on another rank
      for (size_t k = 0; k < done.size() && broken.empty(); ++k) {
        if (!std::isfinite(done[k].loss_sum))
          broken = "the loss became " + std::string(std::isnan(done[k].loss_sum) ? "NaN" : "infinite") + " at epoch " +
                   std::to_string(epoch) + ", step " + std::to_string(first_step + k);
        loss_sum += done[k].loss_sum;
        correct += done[k].correct;
        seen += done[k].examples;
      }
      // Ranks agree on a broken loss and on a stop in one collective, so none waits for the others.
      int stop_signal = g_stop_signal;
      if (test_stop) stop_signal = SIGTERM;
      if (comm) {
        int64_t flags[2] = {int64_t(!broken.empty()), int64_t(stop_signal != 0)};
        comm->all_reduce_sum_host(flags, 2, dist::DType::i64);
        if (flags[0] > 0 && broken.empty())
          broken = "the loss became NaN or infinite on another rank between epoch " + std::to_string(epoch) +
                   ", steps " + std::to_string(first_step) + "–" + std::to_string(step - 1);
        if (flags[1] > 0 && !stop_signal) stop_signal = SIGTERM;
      }
      // What is kept: the last checkpoint, if the run made one before the loss broke.
      auto kept = [&] {
        return fs::exists(checkpoint_path) ? "the last good checkpoint is kept in " + checkpoint_path
                                           : std::string("no checkpoint had been written");
      };
      if (!broken.empty()) throw RuntimeError(broken + "; " + kept() + ". Try a lower train.lr or train.clip_norm");
      // The loss can be finite while a gradient or the updated weights are not: the next step
      // would then train on NaN. Stop here, before any checkpoint takes the broken weights.
      if (std::string where; !net->check_finite(&where)) {
        const std::string steps =
            step - synced_step > 1 ? " (one check covered steps " + std::to_string(synced_step) + "–" +
                                         std::to_string(step - 1) + "; train.sync_every_steps=1 checks each step)"
                                   : "";
        throw RuntimeError(where + " at epoch " + std::to_string(epoch) + ", step " + std::to_string(step - 1) + steps +
                           "; training stopped and " + kept() + ". Try a lower train.lr or train.clip_norm");
      }
      synced_step = step;
      if (!decode_failure.empty()) {
        // Every rank stops before step b (they agreed in load_step), with a checkpoint of the steps
        // before it: nothing trained is lost.
        checkpoint_mid_epoch(b);
        throw decode_stop(decode_failure, "before step " + std::to_string(b + 1) + " of epoch " + std::to_string(epoch),
                          "every step before it");
      }
      if (profile_done) {
#if GENRELAB_HAVE_CUDA
        if (profiling) cudaProfilerStop();
#endif
        bar.finish();
        std::cerr << "genrelab train: profiled " << req.profile_steps << " steps after " << warmup_steps
                  << " warm-up steps";
        if (profile_epoch != epoch)  // an epoch's end inside the window: its evaluation ran there too
          std::cerr << " (they span the end of epoch " << profile_epoch
                    << ", so the profile includes its evaluation and checkpoint; fewer steps keep it inside one epoch)";
        std::cerr << "\n";
#if GENRELAB_HAVE_CUDA
        // From the profiled steps' first GPU activity to the end of the last one (the NaN guard
        // of the closing synchronisation point included), as tools/bench/gpu_idle.py measures
        // an Nsight Systems trace of the same range.
        if (idle_trace) report_profiled_activity(*idle_trace, idle_since, req.profile_steps);
#endif
        return 0;
      }
      // A stop happens at the same step on every rank: they agreed on it above.
      if (stop_signal) {
        checkpoint_mid_epoch(b + 1);
        const int sig = stop_signal;
        std::cerr << "genrelab train: stopped by " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " at epoch " << epoch
                  << ", step " << step << "; checkpoint written. Continue with: genrelab train --resume " << run->path() << "\n";
        return 128 + sig;
      }
    }
    bar.finish();
    global_sums();
    const double seconds = seconds_before + seconds_since(t_epoch);
    if (streaming && epoch < epochs) start_streamed_epoch(epoch + 1, online ? plan_for_epoch(epoch + 1) : train_plan, 0);

    EpochMetrics m;
    m.epoch = epoch;
    m.train_loss = seen ? loss_sum / double(seen) : 0;
    m.train_accuracy = seen ? double(correct) / double(seen) : 0;
    spent.training += seconds - seconds_before;
    const auto t_evaluate = std::chrono::steady_clock::now();
    {
      NvtxRange eval_range("evaluate");
      auto window_probs = [&](const ExampleSet& set, StreamingSet* stream) {
        if (!stream) return predict_all(*net, set, classes, batch, comm.get());
        try {
          return stream->predict(*net, classes, batch, comm.get());
        } catch (const StreamedDecodeError& e) {
          // The epoch's training is kept: a checkpoint after its last step (every rank agreed).
          if (root) save_checkpoint(epoch - 1, steps_per_epoch, loss_sum, correct, seen, seconds, false);
          if (comm) comm->barrier();
          throw decode_stop(e.what(), "while evaluating epoch " + std::to_string(epoch), "the epoch's training");
        }
      };
      last_test = score_clips(window_probs(test_set, test_stream.get()), classes, test_set.group, test_set.clip_labels);
      m.test_loss = last_test.loss;
      m.test_accuracy = last_test.accuracy;
      if (valid_set.count > 0) {
        const ClipScores v = score_clips(window_probs(valid_set, valid_stream.get()), classes, valid_set.group,
                                         valid_set.clip_labels);
        m.valid_loss = v.loss;
        m.valid_accuracy = v.accuracy;
      }
    }
    m.evaluate_seconds = seconds_since(t_evaluate);
    spent.evaluation += m.evaluate_seconds;
    m.seconds = seconds;
    m.samples_per_second = seconds > 0 ? double(seen) / seconds : 0;
    m.lr = schedule.at(step > 0 ? step - 1 : 0);
    metrics.push_back(m);
    const auto t_save = std::chrono::steady_clock::now();
    if (root) {
      run->write_metrics(metrics);
      write_file_atomic(run->file("curves.svg"), curves_svg(metrics, config.name()));
      write_file_atomic(run->file("confusion.svg"), confusion_svg(last_test.confusion, dataset.classes,
                                                                  config.name() + ": test, epoch " + std::to_string(epoch)));
      checkpoint_due = checkpoint_due || epoch % checkpoint_every == 0 || epoch == epochs;
      if (checkpoint_due) checkpoint_due = !save_checkpoint(epoch, 0, 0, 0, 0, 0, epoch < epochs);
    }
    // The GPU's timed choices of this epoch (its first, or the first of a new batch shape), kept
    // for later runs (nn/tuning_cache.h); nothing to write after that.
    nn::flush_tuning_cache();
    (epoch < epochs ? spent.saving : spent.last_checkpoint) += seconds_since(t_save);
    if (epoch == start_epoch) note_tuning_cache();
    char line[256];
    std::snprintf(line, sizeof line, "epoch %3d/%d  loss %.4f  train %s  test %s%s  %.1f s  %.0f samples/s", epoch, epochs,
                  m.train_loss, pct(m.train_accuracy).c_str(), pct(m.test_accuracy).c_str(),
                  m.valid_accuracy ? ("  valid " + pct(*m.valid_accuracy)).c_str() : "", m.seconds, m.samples_per_second);
    std::cerr << line << "\n";
  }

  // ---- 6. summary ----
  const auto t_last = std::chrono::steady_clock::now();
  finish_checkpoint();
  spent.last_checkpoint += seconds_since(t_last);
  const double wall = seconds_since(t_start);
  RunSummary summary = summarize(metrics, last_test.confusion, dataset.classes, wall, device_name(device));
  spent.tuning = net->tuning_seconds();
  summary.time = spent;
  if (root) run->write_json("summary.json", to_json(summary));
  if (comm) comm->barrier();  // summary.json is complete before any rank exits
  std::cerr << "\n  " << config.name() << " (" << device_name(device) << ")\n"
            << "  best test accuracy   " << pct(summary.best_test_accuracy) << "  (epoch " << summary.best_epoch
            << ", selected on " << summary.best_epoch_selected_by << ")\n"
            << "  final test accuracy  " << pct(summary.final_test_accuracy) << "\n";
  for (size_t k = 0; k < summary.classes.size(); ++k) {
    char row[128];
    std::snprintf(row, sizeof row, "    %-12s %s\n", summary.classes[k].c_str(), pct(summary.per_class_accuracy[k]).c_str());
    std::cerr << row;
  }
  {
    char when[256];
    std::snprintf(when, sizeof when,
                  "  wall time  %.1f s: %.1f s before the first epoch, %.1f s preparing epochs, %.1f s training, %.1f s "
                  "evaluating, %.1f s saving\n",
                  wall, spent.before_training, spent.preparing, spent.training, spent.evaluation,
                  spent.saving + spent.last_checkpoint);
    std::cerr << when;
    std::snprintf(
        when, sizeof when,
        "  parts      %.1f s reading the data, %.1f s making examples, %.1f s waiting for the network (before "
        "the first epoch); %.1f s choosing algorithms (training and evaluating)\n",
        spent.data, spent.examples, spent.network, spent.tuning);
    std::cerr << when;
  }
  std::cerr << "  curves:    " << run->file("curves.svg") << "\n  confusion: " << run->file("confusion.svg") << "\n";
  return 0;
}

}  // namespace genrelab
