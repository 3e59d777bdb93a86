// `genrelab bench --what train` (one epoch of whole optimisation steps: examples/s, forward/backward/optimizer
// split, achieved GFLOP/s from the plan's conv/dense/recurrent FLOPs; on the GPU also eager against
// CUDA-graph step time, the GPU idle time inside steps, each fusion and conv engine against its
// alternative, and the stages of an eager step) and `--what layers`
// (forward and backward time per layer, like `caffe time`), on synthetic inputs for the model of
// an experiment file (default: the baseline), on either backend.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "genrelab/bench.h"
#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/device.h"
#include "genrelab/gpu_idle.h"
#include "genrelab/io.h"
#include "genrelab/nn/network.h"
#include "genrelab/nvtx.h"
#include "genrelab/ops/philox.h"
#include "genrelab/parallel_for.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/activity_trace.h"
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {
namespace {

using Clock = std::chrono::steady_clock;

// A buffer in the backend's memory: zeros of a given size, or filled from the host (on the GPU the
// host copy is dropped after the upload: the layer table's largest maps are 1.25 GB each).
template <typename T>
class BackendBuffer {
 public:
  BackendBuffer(Device d, size_t count) : device_(d) {
#if GENRELAB_HAVE_CUDA
    if (d == Device::cuda) {
      dev_.resize(count);
      dev_.zero(nullptr);
      GENRELAB_CUDA_CHECK(cudaStreamSynchronize(nullptr));
      return;
    }
#endif
    host_.assign(count, T{});
  }
  BackendBuffer(Device d, std::vector<T> host) : device_(d), host_(std::move(host)) {
#if GENRELAB_HAVE_CUDA
    if (d == Device::cuda) {
      dev_.resize(host_.size());
      cuda::copy_to_device(dev_.data(), host_.data(), host_.size());
      std::vector<T>().swap(host_);
    }
#endif
  }
  T* data() {
#if GENRELAB_HAVE_CUDA
    if (device_ == Device::cuda) return dev_.data();
#endif
    return host_.data();
  }

 private:
  Device device_;
  std::vector<T> host_;
#if GENRELAB_HAVE_CUDA
  cuda::DeviceBuffer<T> dev_;
#endif
};

void sync(Device d) {
#if GENRELAB_HAVE_CUDA
  if (d == Device::cuda) GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

std::vector<float> uniform_floats(size_t n, uint32_t salt) {
  const PhiloxStream s(42, RngPurpose::noise, salt, 0);
  std::vector<float> v(n);
  cpu_for_1d(int64_t(n), [&](int64_t i) { v[size_t(i)] = s.uniform(uint64_t(i)); });
  return v;
}

struct Setup {
  Config config;
  Device device = Device::cpu;
  nn::ModelPlan plan;
  nn::TrainHyper hyper;
  int64_t batch = 0, iterations = 0;
};

Setup setup(const cli::Args& args) {
  Setup s;
  s.config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  s.device = resolve_device(args.get_or("--device", ""));
  std::optional<nn::Shape3> in = nn::input_shape(s.config);
  if (!in) {
    std::cerr << "bench: the config fixes no clip or window length; using the baseline's 617400 samples\n";
    in = nn::Shape3{s.config.get_int("features.n_mels"), nn::feature_frames(s.config, 617400), 1};
  }
  int64_t classes = int64_t(s.config.get_string_list("dataset.classes").size());
  if (classes == 0) classes = 10;
  s.plan = nn::plan_model(s.config, *in, classes);
  s.hyper = nn::TrainHyper::from_config(s.config);
  s.batch = s.config.get_int("train.batch_size");
  s.iterations = args.get_int("--iterations", s.device == Device::cpu ? 3 : 20, 1);
  std::cerr << "bench: " << s.plan.layers.size() << " layers, " << s.plan.param_count() << " parameters, input "
            << s.plan.input.str() << ", batch " << s.batch << ", " << device_name(s.device) << "\n";
  return s;
}

// The GPU's peaks for this run's precision (genrelab/device.h): 0 on the CPU or for an unknown
// architecture.
struct Peaks {
  double tflops = 0, gbs = 0;
};
Peaks peaks_of(const Setup& s) {
  if (s.device != Device::cuda) return {};
  const GpuInfo gpu = bench_gpu();
  return {peak_tflops(gpu, s.hyper.precision), gpu.peak_bandwidth_gbs};
}
// "43 %", or "n/a" without a peak.
std::string percent_of(double achieved, double peak) {
  if (!(peak > 0)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.0f %%", 100.0 * achieved / peak);
  return b;
}

// A switch of the training step (train.cuda_graph, train.fuse_conv_pool, train.conv_engine) off
// against on, on full batches: a fresh network per mode with this run's other settings warms up
// (3 steps: for graphs the eager step, the capture and the first replay), then `steps` steps run
// back to back with one synchronisation at the end, so the time per step includes the host's
// launch work wherever the GPU waits for it. `graphed`: whether the "on" network's last warm-up step replayed a CUDA graph
// (false after a capture failure, which the network reports on stderr, or for recurrent layers).
struct ModeCompare {
  int64_t steps = 0;
  double off_ms = 0, on_ms = 0;
  bool graphed = false;
};

// A fresh network with the settings h after its 3 warm-up steps on full batches, the device idle;
// `graphed`: whether the last warm-up step replayed a CUDA graph.
std::unique_ptr<nn::Network> warmed_up(const Setup& s, const nn::TrainHyper& h, const float* x, const int32_t* labels,
                                       int64_t n, bool& graphed) {
  auto net = nn::make_network(s.device, s.plan, h);
  for (uint64_t w = 0; w < 3; ++w) net->train_step(x, labels, n, n, float(h.lr), {h.seed, w, 0});
  net->last_stats();
  graphed = net->last_times().graphed;
  sync(s.device);
  return net;
}
// Queues `steps` more full steps after the warm-up, back to back (no synchronisation).
void queue_steps(nn::Network& net, const nn::TrainHyper& h, const float* x, const int32_t* labels, int64_t n,
                 int64_t steps) {
  for (int64_t it = 0; it < steps; ++it) net.train_step(x, labels, n, n, float(h.lr), {h.seed, uint64_t(3 + it), 0});
}

// set(h, on) puts the "off" or "on" setting into h.
template <typename Set>
ModeCompare compare_modes(const Setup& s, Set&& set, const float* x, const int32_t* labels, int64_t n, int64_t steps) {
  ModeCompare c;
  c.steps = steps;
  for (const bool on : {false, true}) {
    nn::TrainHyper h = s.hyper;
    set(h, on);
    bool graphed = false;
    auto net = warmed_up(s, h, x, labels, n, graphed);
    if (on) c.graphed = graphed;
    const auto t0 = Clock::now();
    queue_steps(*net, h, x, labels, n, steps);
    net->take_step_stats();  // synchronises and empties the queued step stats
    sync(s.device);
    (on ? c.on_ms : c.off_ms) = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(steps);
  }
  return c;
}

// The GPU's idle time inside training steps (gpu_idle.h), eager and with train.cuda_graph, from
// its own activity trace (cuda/activity_trace.h; no Nsight Systems needed): per mode a fresh
// network with this run's other settings, built while the trace records (so it sees a graph's
// kernels), warms up 3 steps, then `steps` full steps run back to back; the window runs from the
// first kernel, copy or memset of those steps to the end of the last. Gaps where the GPU waits
// for the host's launches count as idle, and so does the trace's own small cost per kernel: an
// upper bound. `why` says why there is none (no CUPTI, a profiler attached).
struct IdleCompare {
  std::string why;
  int64_t steps = 0;
  IdleStats eager, graph;
  bool graphed = false;
  std::vector<ActivityTotal> eager_kernels;  // the eager steps' device time by kernel (and copies, memsets)
};
IdleCompare idle_compare(const Setup& s, const float* x, const int32_t* labels, int64_t n, int64_t steps) {
  IdleCompare c;
  c.steps = steps;
#if GENRELAB_HAVE_CUDA
  c.why = cuda::ActivityTrace::unavailable();
  if (!c.why.empty()) return c;
  try {
    for (const bool on : {false, true}) {
      cuda::ActivityTrace trace;
      nn::TrainHyper h = s.hyper;
      h.cuda_graph = on;
      bool graphed = false;
      auto net = warmed_up(s, h, x, labels, n, graphed);
      if (on) c.graphed = graphed;
      const uint64_t since = trace.now();
      queue_steps(*net, h, x, labels, n, steps);
      const std::vector<ActivityInterval> iv = trace.collect(since);  // waits for the steps
      (on ? c.graph : c.eager) = idle_stats(iv);
      if (!on) c.eager_kernels = activity_totals(iv, trace.names());
      net->take_step_stats();
    }
  } catch (const RuntimeError& e) {
    c.why = e.what();
  }
#else
  c.why = "this genrelab was built without CUDA";
#endif
  return c;
}
json idle_json(const IdleStats& st, int64_t steps) {
  return {{"idle_fraction", st.idle_fraction}, {"span_ms", st.span_ms}, {"busy_ms", st.busy_ms},
          {"step_ms", st.span_ms / double(steps)}, {"activities", st.activities}, {"gaps", st.gaps},
          {"largest_gap_ms", st.largest_gap_ms}};
}

// Where an eager step's device time goes: the mean time of each stage (Network::last_stage_times:
// each layer or fused run forward and backward, the loss head, the optimizer) over `steps`
// full-batch steps of a fresh network with this run's settings but train.cuda_graph off (a graph
// has no timing points inside), after the 3 warm-up steps of the mode comparisons (warmed_up).
// Empty where the backend does not time stages (cpu).
std::vector<nn::StageTime> stage_breakdown(const Setup& s, const float* x, const int32_t* labels, int64_t n,
                                           int64_t steps) {
  nn::TrainHyper h = s.hyper;
  h.cuda_graph = false;
  bool graphed = false;
  auto net = warmed_up(s, h, x, labels, n, graphed);
  net->set_stage_timing(true);
  std::vector<nn::StageTime> mean;
  for (int64_t it = 0; it < steps; ++it) {
    net->train_step(x, labels, n, n, float(h.lr), {h.seed, uint64_t(3 + it), 0});
    const std::vector<nn::StageTime> t = net->last_stage_times();
    if (t.empty()) return {};
    if (mean.empty()) mean.assign(t.size(), {});
    GENRELAB_CHECK(t.size() == mean.size(), "bench train: the step's stages changed between steps");
    for (size_t i = 0; i < t.size(); ++i) {
      mean[i].name = t[i].name;
      mean[i].ms += t[i].ms / double(steps);
    }
  }
  net->take_step_stats();
  return mean;
}

// A fusion's back-to-back comparison (compare_modes with the fusion off, then on): printed under
// `what` (the config key named in it), and its JSON (unfused, fused and their ratio).
void print_fusion_compare(const std::string& what, const ModeCompare& c, bool this_run_fused) {
  std::printf("  %s; %lld full steps per mode, %s; this run's steps: %s)\n", what.c_str(), (long long)c.steps,
              c.graphed ? "graphed" : "eager", this_run_fused ? "fused" : "unfused");
  std::printf("    unfused ms/step %8.3f\n    fused ms/step   %8.3f\n    unfused/fused   %8.3f x\n", c.off_ms, c.on_ms,
              c.off_ms / c.on_ms);
}
json fusion_compare_json(const ModeCompare& c) {
  return {{"steps", c.steps}, {"unfused_ms_per_step", c.off_ms}, {"fused_ms_per_step", c.on_ms},
          {"unfused_over_fused", c.off_ms / c.on_ms}, {"graphed", c.graphed}};
}

// After a failed comparison: clears a recoverable CUDA error, so that the next one starts clean (a
// sticky error fails the next ones again, each with its own message).
void clear_device_error() {
#if GENRELAB_HAVE_CUDA
  (void)cudaGetLastError();
#endif
}

void maybe_write_json(const cli::Args& args, const json& j) {
  if (auto path = args.get("--json")) write_file_atomic(*path, j.dump(2) + "\n");
}

// One epoch of the baseline's training work (SPEC §1: 2 397 training examples, batch 32, so 74 full
// steps and one of 29) on random inputs of the model's shape, timed after a warm-up step. On the
// GPU the whole epoch runs by default; with --iterations K below the epoch's step count (the CPU
// default is 3) only K full steps run and the epoch time is extrapolated (said in the output).
int bench_train(const cli::Args& args) {
  Setup s = setup(args);
  auto net = nn::make_network(s.device, s.plan, s.hyper);
  const int64_t n = s.batch, C = s.plan.classes;
  const int64_t examples = args.get_int("--clips", 2397, 1);  // examples an epoch; the baseline's training set
  const int64_t epoch_steps = (examples + n - 1) / n;
  const int64_t steps = (s.device == Device::cuda && !args.has("--iterations")) ? epoch_steps
                                                                               : std::min(s.iterations, epoch_steps);
  const bool extrapolated = steps < epoch_steps;
  // x: (batch, H, W, C) random inputs reused by every step (the work does not depend on the values)
  BackendBuffer<float> x(s.device, uniform_floats(size_t(n * s.plan.input.size()), 1));
  std::vector<int32_t> labels_host(static_cast<size_t>(n));
  for (int64_t e = 0; e < n; ++e) labels_host[size_t(e)] = int32_t(e % C);
  BackendBuffer<int32_t> labels(s.device, labels_host);
  // Correctness first: a warm-up step must give a finite loss near ln(classes) (random init).
  net->train_step(x.data(), labels.data(), n, n, float(s.hyper.lr), {s.hyper.seed, 0, 0});
  const nn::StepStats first = net->last_stats();
  const double mean_loss = first.loss_sum / double(n);
  if (!std::isfinite(mean_loss) || first.examples != n)
    throw RuntimeError("bench train: the warm-up step gave loss " + std::to_string(mean_loss));
  // The epoch's last, partial batch has its own shape (cuDNN algorithm choice): warm it up too.
  if (!extrapolated && examples % n != 0) {
    const int64_t tail = examples % n;
    net->train_step(x.data(), labels.data(), tail, tail, float(s.hyper.lr), {s.hyper.seed, 0, 0});
    // and a full step again, in case the tail's algorithm search grew a shared buffer (the full
    // batch's captured graph would then warm up again inside the timed epoch)
    net->train_step(x.data(), labels.data(), n, n, float(s.hyper.lr), {s.hyper.seed, 0, 0});
    net->last_stats();
  }
  double total_ms = 0;
  int64_t timed_examples = 0, graphed_steps = 0;
  nn::StepTimes parts;
  sync(s.device);
  const auto epoch_t0 = Clock::now();
  for (int64_t it = 0; it < steps; ++it) {
    // the epoch's last step is partial (2 397 = 74 × 32 + 29); an extrapolated run times full steps
    const int64_t nb = extrapolated ? n : std::min(n, examples - it * n);
    const auto t0 = Clock::now();
    net->train_step(x.data(), labels.data(), nb, nb, float(s.hyper.lr), {s.hyper.seed, uint64_t(it + 1), 0});
    if (s.device == Device::cpu || extrapolated) {
      net->last_stats();  // synchronises; on the GPU a full epoch runs without per-step syncs
      const nn::StepTimes t = net->last_times();
      parts.forward_ms += t.forward_ms;
      parts.backward_ms += t.backward_ms;
      parts.optimizer_ms += t.optimizer_ms;
      graphed_steps += t.graphed ? 1 : 0;
    }
    total_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    timed_examples += nb;
  }
  net->take_step_stats();  // synchronises and empties the queued step stats
  sync(s.device);
  const double loop_s = std::chrono::duration<double>(Clock::now() - epoch_t0).count();
  const double timed_s = extrapolated ? total_ms * 1e-3 : loop_s;
  const double epoch_s = extrapolated ? timed_s * double(examples) / double(timed_examples) : timed_s;
  const double ms = timed_s * 1e3 / double(steps);
  const double per_s = double(examples) / epoch_s;
  const bool have_parts = s.device == Device::cpu || extrapolated;
  const double flops = 3.0 * double(s.plan.forward_flops()) * double(n);  // forward + 2× for backward
  const double gflops = flops / (ms * 1e-3) / 1e9;
  char line[768];
  std::printf("train epoch (%s, %s, batch %lld, %lld examples = %lld steps; timed %lld step%s%s; first loss %.4f)\n",
              device_name(s.device), s.hyper.precision.c_str(), (long long)n, (long long)examples,
              (long long)epoch_steps, (long long)steps, steps == 1 ? "" : "s",
              extrapolated ? ", epoch time EXTRAPOLATED from them" : "", mean_loss);
  std::snprintf(line, sizeof line,
                "  examples/s     %10.1f\n  epoch s        %10.3f%s\n  ms/step        %10.2f\n", per_s, epoch_s,
                extrapolated ? " (extrapolated)" : "", ms);
  std::cout << line;
  if (have_parts) {
    std::snprintf(line, sizeof line, "    forward      %10.2f\n    backward     %10.2f\n    optimizer    %10.2f\n",
                  parts.forward_ms / double(steps), parts.backward_ms / double(steps), parts.optimizer_ms / double(steps));
    std::cout << line;
    if (graphed_steps > 0)
      std::printf("    (%lld of the timed steps ran as CUDA graphs, which have no forward/backward/optimizer split)\n",
                  (long long)graphed_steps);
  }
  std::snprintf(line, sizeof line, "  GFLOP/step     %10.2f\n  GFLOP/s        %10.2f\n", flops / 1e9, gflops);
  std::cout << line;
  const Peaks peak = peaks_of(s);
  if (s.device == Device::cuda) {
    std::snprintf(line, sizeof line, "  of peak        %10s   (%s peak %.1f TFLOP/s, dense)\n",
                  percent_of(gflops / 1e3, peak.tflops).c_str(), s.hyper.precision.c_str(), peak.tflops);
    std::cout << line;
  }
  if (extrapolated)
    std::cerr << "bench train: timed " << steps << " of the epoch's " << epoch_steps
              << " steps; the epoch time is extrapolated (use --iterations " << epoch_steps << " for a full epoch)\n";
  // "train-epoch-baseline" only for the baseline's work (SPEC §1), which the peer train_torch.py does
  const bool baseline = s.plan.param_count() == 15637450 && n == 32 && examples == 2397 &&
                        s.plan.input == nn::Shape3{128, 1206, 1};
  const std::string work =
      baseline ? std::string("train-epoch-baseline") : "train-epoch-" + s.config.name();
  json j = {{"bench", "train"}, {"device", device_name(s.device)}, {"precision", s.hyper.precision}, {"batch", n},
            {"examples", examples}, {"epoch_steps", epoch_steps}, {"timed_steps", steps}, {"extrapolated", extrapolated},
            {"params", s.plan.param_count()}, {"samples_per_second", per_s}, {"ms_per_step", ms},
            {"gflop_per_step", flops / 1e9}, {"gflops", gflops}, {"first_loss", mean_loss},
            {"peak_tflops", peak.tflops}, {"fraction_of_peak", peak.tflops > 0 ? gflops / 1e3 / peak.tflops : 0.0},
            // the shared convention of tools/bench/README.md (paired with the peers by "work")
            {"results", json::array({{{"work", work}, {"device", device_name(s.device)},
                                      {"precision", s.hyper.precision}, {"items", examples}, {"unit", "examples"},
                                      {"seconds", epoch_s}, {"items_per_s", per_s}, {"extrapolated", extrapolated}}})}};
  j["cuda_graph"] = s.hyper.cuda_graph;  // how this run's own steps ran (when the graph works)
  j["fuse_conv_pool"] = s.hyper.fuse_conv_pool;  // how this run's own steps ran (when the plan fuses)
  j["fuse_conv_epilogue"] = s.hyper.fuse_conv_epilogue;
  j["conv_engine"] = s.hyper.conv_engine;
  if (have_parts) {
    j["forward_ms"] = parts.forward_ms / double(steps);
    j["backward_ms"] = parts.backward_ms / double(steps);
    j["optimizer_ms"] = parts.optimizer_ms / double(steps);
  }
  maybe_write_json(args, j);
  std::fflush(stdout);
  if (s.device != Device::cuda) return 0;

  // The comparisons, each with fresh networks (this one's memory is freed for them). The JSON is
  // written again after each: one that fails (out of memory, an algorithm cuDNN refuses) prints
  // and records its error under its own key, and the others still run.
  net.reset();
  auto attempt = [&](const char* key, auto&& run) {
    try {
      run();
    } catch (const std::exception& e) {
      clear_device_error();
      std::printf("  %s: FAILED (%s)\n", key, e.what());
      j[key] = {{"error", e.what()}};
    }
    maybe_write_json(args, j);
    std::fflush(stdout);
  };
  const int64_t compare_steps = extrapolated ? steps : std::min<int64_t>(epoch_steps, 50);
  // The host overhead a CUDA graph removes: eager against graphed steps on full batches.
  attempt("graph_compare", [&] {
    const ModeCompare graph = compare_modes(s, [](nn::TrainHyper& h, bool on) { h.cuda_graph = on; }, x.data(),
                                            labels.data(), n, compare_steps);
    std::printf("  cuda graph (%lld full steps per mode, back to back; this run's steps: %s)\n", (long long)graph.steps,
                s.hyper.cuda_graph ? "train.cuda_graph=true" : "eager");
    std::snprintf(line, sizeof line, "    eager ms/step %10.3f\n", graph.off_ms);
    std::cout << line;
    if (graph.graphed) {
      std::snprintf(line, sizeof line, "    graph ms/step %10.3f\n    eager/graph   %10.3f x\n", graph.on_ms,
                    graph.off_ms / graph.on_ms);
      std::cout << line;
    } else {
      std::printf("    graph         NOT USED: the step was not captured (see the message on stderr); %.3f ms/step eager\n",
                  graph.on_ms);
    }
    j["graph_compare"] = {{"steps", graph.steps}, {"eager_ms_per_step", graph.off_ms},
                          {"graph_ms_per_step", graph.graphed ? json(graph.on_ms) : json(nullptr)},
                          {"eager_over_graph", graph.graphed ? json(graph.off_ms / graph.on_ms) : json(nullptr)},
                          {"graphed", graph.graphed}};
  });
  const bool fusable = nn::conv_pool_fusable(s.plan);
  if (fusable) {
    attempt("fuse_compare", [&] {
      const ModeCompare fuse = compare_modes(s, [](nn::TrainHyper& h, bool on) { h.fuse_conv_pool = on; }, x.data(),
                                             labels.data(), n, compare_steps);
      // Unfused, the first conv runs as the other convs do: its product and, where
      // train.fuse_conv_epilogue allows, one fused epilogue pass that also takes the dropout after the pooling.
      const std::vector<nn::ConvEpilogueRun> runs = nn::conv_epilogue_runs(s.plan, 0);
      const bool first_epilogue = s.hyper.fuse_conv_epilogue && !runs.empty() && runs.front().conv == 0;
      print_fusion_compare(std::string("fused first conv2d + maxpool2d (train.fuse_conv_pool; unfused: ") +
                               (first_epilogue ? "its product + fused epilogue" : "layer by layer"),
                           fuse, s.hyper.fuse_conv_pool);
      j["fuse_compare"] = fusion_compare_json(fuse);
    });
  }
  // Each conv2d's bias + activation, max pooling and dropout fused and one by one.
  if (!nn::conv_epilogue_runs(s.plan, fusable ? 2 : 0).empty()) {
    attempt("epilogue_compare", [&] {
      const ModeCompare epilogue = compare_modes(s, [](nn::TrainHyper& h, bool on) { h.fuse_conv_epilogue = on; },
                                                 x.data(), labels.data(), n, compare_steps);
      print_fusion_compare("fused conv2d epilogues (train.fuse_conv_epilogue", epilogue, s.hyper.fuse_conv_epilogue);
      j["epilogue_compare"] = fusion_compare_json(epilogue);
    });
  }
  // cuDNN alone against this run's conv engine (auto unless set).
  if (std::any_of(s.plan.layers.begin(), s.plan.layers.end(), [](const nn::LayerDesc& L) { return L.type == "conv2d"; })) {
    attempt("engine_compare", [&] {
      const std::string engine_on = s.hyper.conv_engine == "cudnn" ? "auto" : s.hyper.conv_engine;
      const ModeCompare engine = compare_modes(
          s, [&](nn::TrainHyper& h, bool on) { h.conv_engine = on ? engine_on : "cudnn"; }, x.data(), labels.data(), n,
          compare_steps);
      std::printf("  conv2d engine (train.conv_engine; %lld full steps per mode, %s; this run's steps: %s)\n",
                  (long long)engine.steps, engine.graphed ? "graphed" : "eager", s.hyper.conv_engine.c_str());
      std::snprintf(line, sizeof line, "    cudnn ms/step %10.3f\n    %-5s ms/step %10.3f\n    cudnn/%-5s    %8.3f x\n",
                    engine.off_ms, engine_on.c_str(), engine.on_ms, engine_on.c_str(), engine.off_ms / engine.on_ms);
      std::cout << line;
      j["engine_compare"] = {{"steps", engine.steps}, {"engine", engine_on}, {"cudnn_ms_per_step", engine.off_ms},
                             {"engine_ms_per_step", engine.on_ms}, {"cudnn_over_engine", engine.off_ms / engine.on_ms},
                             {"graphed", engine.graphed}};
    });
  }
  // Where the step goes, stage by stage.
  attempt("stages", [&] {
    const int64_t stage_steps = std::min<int64_t>(20, compare_steps);
    const std::vector<nn::StageTime> stages = stage_breakdown(s, x.data(), labels.data(), n, stage_steps);
    if (stages.empty()) return;
    double sum = 0;
    for (const auto& st : stages) sum += st.ms;
    // Each stage against the roofline (genrelab::roofline): its FLOPs against the precision's
    // peak or its least float traffic against the memory bandwidth (nn::stage_work), whichever
    // bounds it.
    const Peaks peak = peaks_of(s);
    const int slots = int(nn::optimizer_slots(s.hyper.optimizer).size());
    std::printf(
        "  stages of an eager step (train.cuda_graph off; mean of %lld steps; device time between events; of "
        "peak: of the roofline's bound, FLOPs or least float traffic):\n",
        (long long)stage_steps);
    json list = json::array();
    for (const auto& st : stages) {
      const nn::StageWork w = nn::stage_work(s.plan, st.name, n, slots);
      const Roofline r = roofline(w.flops, w.bytes, st.ms * 1e-3, peak.tflops, peak.gbs);
      std::printf("    %-44s %9.3f ms %6.1f %%  %8.1f %-7s %8s\n", st.name.c_str(), st.ms,
                  sum > 0 ? 100.0 * st.ms / sum : 0.0, r.rate, r.bound == "flop" ? "TFLOP/s" : "GB/s",
                  r.bound.empty() ? "-" : percent_of(r.fraction, 1.0).c_str());
      list.push_back({{"name", st.name},
                      {"ms", st.ms},
                      {"flops", w.flops},
                      {"bytes", w.bytes},
                      {"peak", r.bound.empty() ? "none" : r.bound},
                      {"fraction_of_peak", r.fraction}});
    }
    std::printf("    %-44s %9.3f ms\n", "sum of the stages", sum);
    j["stages"] = {{"steps", stage_steps}, {"eager", true}, {"list", list}};
  });
  // Last (whatever goes wrong in the tracing library leaves the rest): the GPU idle time inside
  // eager and graphed steps (the target: under 5 %).
  attempt("gpu_idle", [&] {
    const IdleCompare idle = idle_compare(s, x.data(), labels.data(), n, std::min<int64_t>(compare_steps, 20));
    if (!idle.why.empty()) {
      std::printf("  GPU idle inside steps: not measured (%s)\n", idle.why.c_str());
      j["gpu_idle"] = {{"unavailable", idle.why}};
      return;
    }
    std::printf("  GPU idle inside steps (GPU activity trace of %lld full steps per mode; first to last kernel, "
                "copy or memset):\n", (long long)idle.steps);
    for (const bool on : {false, true}) {
      const IdleStats& st = on ? idle.graph : idle.eager;
      std::snprintf(line, sizeof line, "    %-6s idle %6.2f %%   %8.3f ms a step, %lld gaps, largest %.3f ms%s\n",
                    on ? "graph" : "eager", 100.0 * st.idle_fraction, st.span_ms / double(idle.steps),
                    (long long)st.gaps, st.largest_gap_ms, on && !idle.graphed ? " (NOT captured: eager steps)" : "");
      std::cout << line;
    }
    j["gpu_idle"] = {{"tool", "cupti"}, {"steps", idle.steps}, {"eager", idle_json(idle.eager, idle.steps)},
                     {"graph", idle_json(idle.graph, idle.steps)}, {"graphed", idle.graphed}};
    // Where the eager step's device time goes, kernel by kernel (what Nsight Systems' kernel
    // summary lists): the longest first, as ms and calls a step and share of the busy time.
    const std::vector<ActivityTotal>& k = idle.eager_kernels;
    const double steps_d = double(idle.steps), busy = idle.eager.busy_ms;
    std::printf("  GPU kernels, copies and memsets of an eager step (same trace; the %zu longest of %zu, ms a step):\n",
                std::min<size_t>(k.size(), 15), k.size());
    for (size_t i = 0; i < k.size() && i < 15; ++i) {
      const std::string name = k[i].name.size() > 110 ? k[i].name.substr(0, 107) + "..." : k[i].name;
      std::printf("    %9.3f ms %6.1f %%  %6.1f calls  %s\n", k[i].total_ms / steps_d,
                  busy > 0 ? 100.0 * k[i].total_ms / busy : 0.0, double(k[i].calls) / steps_d, name.c_str());
    }
    json list = json::array();
    for (size_t i = 0; i < k.size() && i < 40; ++i)
      list.push_back({{"name", k[i].name}, {"ms_per_step", k[i].total_ms / steps_d},
                      {"calls_per_step", double(k[i].calls) / steps_d}});
    j["kernels"] = {{"steps", idle.steps}, {"eager", true}, {"kinds", k.size()}, {"list", list}};
  });
  return 0;
}

int bench_layers(const cli::Args& args) {
  Setup s = setup(args);
  auto net = nn::make_network(s.device, s.plan, s.hyper);
  const int64_t n = s.batch;
  // The table times each layer on its own, so a fused first conv2d + maxpool2d (+ dropout) shows as its layers.
  const bool fused = s.hyper.fuse_conv_pool && nn::conv_pool_fusable(s.plan);
  if (fused)
    std::cerr
        << "bench layers: layers 0 and 1" << (nn::conv_pool_last(s.plan) == 2 ? " and the dropout after them" : "")
        << " run fused in training (train.fuse_conv_pool); this table times them unfused, one by one. bench --what "
           "train compares the fused and unfused steps (fuse_compare)\n";
  if (s.hyper.fuse_conv_epilogue && !nn::conv_epilogue_runs(s.plan, fused ? nn::conv_pool_last(s.plan) + 1 : 0).empty())
    std::cerr << "bench layers: conv2d epilogues with the max pooling and dropout after them run fused in training "
                 "(train.fuse_conv_epilogue); this table times the layers one by one. bench --what train --device cuda "
                 "compares the fused and unfused steps (epilogue_compare)\n";
  // "of peak": layers with products against the precision's FLOP peak, the others against the
  // memory bandwidth with a traffic model of one read of the input and one write of the output
  // a pass (forward: x in, y out; backward: dy in, dx out), as float32 (flatten moves nothing).
  const Peaks peak = peaks_of(s);
  std::printf("%-4s %-18s %-15s %-22s %12s %12s %12s %12s\n", "#", "layer", "type", "output", "forward ms", "backward ms",
              "GFLOP/s", "of peak");
  json rows = json::array();
  double fsum = 0, bsum = 0;
  for (size_t i = 0; i < s.plan.layers.size(); ++i) {
    const nn::LayerDesc& L = s.plan.layers[i];
    nn::LayerImpl& impl = net->layer(i);
    BackendBuffer<float> x(s.device, uniform_floats(size_t(n * L.in.size()), uint32_t(2 * i)));
    BackendBuffer<float> dy(s.device, uniform_floats(size_t(n * L.out.size()), uint32_t(2 * i + 1)));
    BackendBuffer<float> y(s.device, size_t(n * L.out.size()));
    BackendBuffer<float> dx(s.device, size_t(n * L.in.size()));
    const nn::StepKey key{s.hyper.seed, 0, 0};
    impl.forward(x.data(), y.data(), n, true, key);  // warm-up (and cuDNN algorithm choice)
    impl.backward(x.data(), y.data(), dy.data(), i ? dx.data() : nullptr, n, key);
    sync(s.device);
    // Each timed pass in the NVTX range a training step gives the layer run one by one, so the
    // Nsight filters of docs/profiling.md select it here too.
    const std::string fwd_range = "fwd " + L.name, bwd_range = "bwd " + L.name;
    auto t0 = Clock::now();
    for (int64_t it = 0; it < s.iterations; ++it) {
      NvtxRange range(fwd_range.c_str());
      impl.forward(x.data(), y.data(), n, true, key);
    }
    sync(s.device);
    const double f = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(s.iterations);
    t0 = Clock::now();
    for (int64_t it = 0; it < s.iterations; ++it) {
      NvtxRange range(bwd_range.c_str());
      impl.backward(x.data(), y.data(), dy.data(), i ? dx.data() : nullptr, n, key);
    }
    sync(s.device);
    const double b = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(s.iterations);
    const double flops = 3.0 * double(L.forward_flops()) * double(n);
    const double seconds = (f + b) * 1e-3;
    const double gf = flops > 0 ? flops / seconds / 1e9 : 0.0;
    // Least traffic of both passes: the input and output read or written twice, the parameters
    // read twice and their gradients written once.
    const double bytes = L.type == "flatten" ? 0.0
                                             : 4.0 * double(n) * 2.0 * double(L.in.size() + L.out.size()) +
                                                   4.0 * 3.0 * double(L.param_count());
    const double gbs = bytes > 0 ? bytes / seconds / 1e9 : 0.0;
    // The CPU has no peak model here (its peaks are 0).
    const Roofline r = roofline(flops, bytes, seconds, peak.tflops, peak.gbs);
    const std::string of_peak =
        r.bound.empty() ? std::string("-") : percent_of(r.fraction, 1.0) + (r.bound == "flop" ? " flop" : " mem");
    std::printf("%-4zu %-18s %-15s %-22s %12.3f %12.3f %12.2f %12s\n", i, L.name.c_str(), L.type.c_str(),
                L.out.str().c_str(), f, b, gf, of_peak.c_str());
    json row = {{"index", i}, {"name", L.name}, {"type", L.type}, {"forward_ms", f}, {"backward_ms", b}, {"gflops", gf}};
    if (bytes > 0) row["gb_per_s"] = gbs;
    if (!r.bound.empty()) {
      row["fraction_of_peak"] = r.fraction;
      row["peak"] = r.bound;
    }
    rows.push_back(row);
    fsum += f;
    bsum += b;
  }
  std::printf("Average Forward pass: %.3f ms.\nAverage Backward pass: %.3f ms.\nAverage Forward-Backward: %.3f ms.\n", fsum, bsum, fsum + bsum);
  maybe_write_json(args, {{"bench", "layers"}, {"device", device_name(s.device)}, {"batch", n}, {"iterations", s.iterations},
                          {"layers_timed_unfused", fused},
                          {"layers", rows}, {"forward_ms", fsum}, {"backward_ms", bsum},
                          // the shared convention of tools/bench/README.md: the sum of the layers' times
                          {"results", json::array({{{"work", "layers-forward-backward"}, {"device", device_name(s.device)},
                                                    {"precision", s.hyper.precision}, {"items", n}, {"unit", "examples"},
                                                    {"seconds", (fsum + bsum) * 1e-3},
                                                    {"items_per_s", double(n) / ((fsum + bsum) * 1e-3)}}})}});
  return 0;
}

BenchRegistrar train_reg{{"train", "whole training steps of the experiment's model: samples/s, forward/backward/optimizer ms, GFLOP/s, eager vs CUDA-graph ms/step (cuda)",
                          bench_train}};
BenchRegistrar layers_reg{{"layers", "forward and backward time of each layer of the experiment's model", bench_layers}};

}  // namespace
}  // namespace genrelab
