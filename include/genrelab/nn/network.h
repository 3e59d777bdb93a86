// A trainable network on one backend: forward, softmax cross-entropy, backward and the
// optimizer update in one train_step; inference; state (weights, statistics, optimizer moments)
// as host tensors for checkpoints and cross-backend tests. Both backends implement this
// interface layer by layer (LayerImpl), so tests can compare any layer across backends.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "genrelab/config.h"
#include "genrelab/device.h"
#include "genrelab/dist.h"
#include "genrelab/nn/model.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; declared here so CPU code needs no CUDA header

namespace genrelab::nn {

struct TrainHyper {
  std::string optimizer = "adam";  // adam | adamw | sgd
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;       // decoupled (AdamW, SGD)
  double l2 = 0.0;                 // l2 * sum(w^2) over kernels added to the loss
  double clip_norm = 0.0;          // 0 = off
  double label_smoothing = 0.0;
  std::string init = "glorot_uniform";
  std::string precision = "fp32";  // fp32 | tf32 | bf16 | fp16
  // fp16 dynamic loss scaling (PyTorch GradScaler): initial scale, and the consecutive finite
  // steps after which the scale doubles (an overflow halves it and skips the step).
  double loss_scale_init = 65536.0;
  int64_t loss_scale_growth_interval = 2000;
  bool deterministic = false;
  std::string conv_engine = "auto";  // auto | cudnn | gemm (cuda conv2d passes, every precision)
  std::string cudnn_search = "probe";  // cuda: probe | find (how a pass's cuDNN algorithm is benchmarked)
  int64_t cudnn_benchmark_limit = 0;   // cuda, probe: cuDNN candidates a pass's benchmark considers (0: all)
  bool cuda_graph = false;         // cuda: replay each batch shape's step as a captured CUDA graph (config default: on)
  bool cuda_graph_set = false;     // the experiment set train.cuda_graph itself: say when it cannot apply
  bool fuse_conv_pool = false;     // leading conv2d → maxpool2d as one layer (ops/conv_pool.h; config default: on)
  bool fuse_conv_pool_set = false; // the experiment set train.fuse_conv_pool itself: say when it cannot apply
  bool fuse_conv_epilogue = false; // conv2d's bias + activation, maxpool2d and dropout as one pass (ops/conv_epilogue.h; config default: on)
  bool fuse_conv_epilogue_set = false;  // the experiment set train.fuse_conv_epilogue itself
  bool sync_batchnorm = false;     // data parallel: batch-norm statistics over all ranks
  uint32_t seed = 0;
  static TrainHyper from_config(const Config& config);
};

// Keys every random draw of a step (dropout masks): the example's position in the global batch,
// never the rank or the local position, so data-parallel runs draw what a single process draws.
struct StepKey {
  uint32_t seed = 0;
  uint64_t step = 0;           // global optimisation step (0-based)
  int64_t first_example = 0;   // global batch position of this shard's first example
};

struct StepStats {
  double loss_sum = 0;   // sum of per-example losses over the batch (without the L2 term)
  int64_t correct = 0;   // argmax == label
  int64_t examples = 0;
};

// Wall time of the parts of the last train_step (milliseconds; 0 where a backend does not time).
// A step replayed as a CUDA graph (train.cuda_graph) has no timing points inside it: `graphed` is
// true, step_ms holds the whole step and the three parts stay 0.
struct StepTimes {
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;
  double step_ms = 0;    // the whole step (cuda backend; the parts' sum when not graphed)
  bool graphed = false;  // the step ran as a CUDA graph launch
};

// Device time of one stage of the last train_step (set_stage_timing): a layer, or a run of layers
// executed as one (a fused conv2d epilogue, the fused first conv2d + maxpool2d), forward or
// backward, named as its NVTX range ("fwd conv2d_2+maxpool2d_2+dropout_2", "bwd dense_1"), and
// the loss head ("loss") and the optimizer ("optimizer").
struct StageTime {
  std::string name;
  double ms = 0;
};

struct NamedTensor {
  std::string name;           // "3.conv2d_2.kernel", "adam.m.3.conv2d_2.kernel", "step"
  std::vector<int64_t> dims;
  std::vector<float> data;
};

// One backend's implementation of one layer. Buffers live in the backend's memory (host for
// cpu, device for cuda). x: (n, in.h, in.w, in.c); y: (n, out.h, out.w, out.c).
class LayerImpl {
 public:
  virtual ~LayerImpl() = default;
  virtual void forward(const float* x, float* y, int64_t n, bool training, const StepKey& key) = 0;
  // Writes dx (skipped when dx is null) and ADDS the parameter gradients into grads().
  virtual void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n,
                        const StepKey& key) = 0;
  virtual std::vector<float*> params() { return {}; }  // in LayerDesc::params order
  virtual std::vector<float*> grads() { return {}; }   // trainable params only, same order
};

class Network {
 public:
  virtual ~Network() = default;
  virtual Device device() const = 0;
  virtual const ModelPlan& plan() const = 0;

  // One optimisation step: x (n, H, W, C) and labels (n) in this backend's memory; the learning
  // rate of this step comes from the schedule (outside). `global_batch` is the example count the
  // gradient is averaged over (the sum of all shards in data-parallel training).
  virtual void train_step(const float* x, const int32_t* labels, int64_t n, int64_t global_batch, float lr,
                          const StepKey& key) = 0;
  // Inference (dropout off, batch norm on moving statistics): probabilities (n, classes) into
  // host memory; x in this backend's memory.
  virtual void predict(const float* x, int64_t n, float* probs_host) = 0;
  // Loss sum and correct count of the last train_step (synchronises on the GPU).
  virtual StepStats last_stats() = 0;
  // The stats of every train_step since the previous call, in step order (synchronises on the
  // GPU, once). The training loop reads them every train.sync_every_steps steps instead of
  // calling last_stats() after each step, so the GPU runs ahead of the host inside an epoch.
  virtual std::vector<StepStats> take_step_stats() = 0;
  // The stream train_step and predict queue their work on (cuda; nullptr on cpu): work that
  // prepares a step's input (the batch gather) goes there so that the step follows it.
  virtual CUstream_st* stream() { return nullptr; }
  // Forward / backward / optimizer split of the last train_step (for `bench --what train`).
  virtual StepTimes last_times() { return {}; }
  // Per-stage device times of eager steps (cuda; `bench --what train`): with timing on, each
  // eager train_step records a pair of events around every stage, and last_stage_times()
  // (which synchronises) returns them in execution order; empty when off, after a CUDA-graph
  // replay (no timing points inside a graph), or on a backend that does not time stages. A timed
  // step is queued behind a 20 ms hold of the GPU (cuda::hold_stream), so the stages' events time
  // the device, not the host's launches: a measurement mode, not for training.
  virtual void set_stage_timing(bool on) {}
  virtual std::vector<StageTime> last_stage_times() { return {}; }
  // Host seconds this network has spent choosing how to run its layers (cuda: cuDNN's algorithm
  // searches, the GEMM engine's timing runs, GEMM kernel tuning; each once per shape, mostly in the
  // first steps and evaluations). 0 on a backend that chooses nothing.
  virtual double tuning_seconds() const { return 0.0; }

  // Weights, batch-norm statistics, optimizer moments and the step counter as host tensors.
  virtual std::vector<NamedTensor> state() = 0;
  // state() as of now, handed over later: calling the returned function (once, from any thread)
  // gives what state() gives now. The cuda backend copies the state into a device buffer of its
  // own (device-to-device copies queued on its stream; the host does not wait) and the function
  // copies that to the host, so a checkpoint written in the background costs the training loop
  // a few microseconds instead of a synchronous host copy of every tensor. The function must
  // have returned before the next state_snapshot(), and the network must outlive it.
  using StateSnapshot = std::function<std::vector<NamedTensor>()>;
  virtual StateSnapshot state_snapshot() {
    auto now = std::make_shared<std::vector<NamedTensor>>(state());
    return [now] { return std::move(*now); };
  }
  // Throws RuntimeError naming the first tensor whose name or shape does not match.
  virtual void load_state(const std::vector<NamedTensor>& state) = 0;

  // The layer implementations, for per-layer tests and `bench --what layers`.
  virtual LayerImpl& layer(size_t index) = 0;

  // Data-parallel training over `comm`'s ranks (nullptr: one process, the default). Each rank's
  // train_step takes its shard of the global batch (n may be 0 when the batch has fewer examples
  // than ranks); the parameter gradients are summed over the ranks between the backward pass and
  // the optimizer (the loss gradient is already divided by global_batch), so every rank applies
  // the same update; non-trainable parameters (batch-norm moving statistics) then follow rank 0,
  // as PyTorch's DDP broadcasts its buffers. last_stats() stays this rank's own. With
  // TrainHyper::sync_batchnorm the batch-norm layers normalise with the global batch's statistics
  // (two all-reduces per layer and step, one forward and one backward; an empty shard joins them).
  virtual void set_communicator(dist::Communicator* comm) { comm_ = comm; }

  // NaN/Inf guard, called after train_step: true when every gradient of the last step and every
  // parameter is finite. Otherwise false, and `where` (when given) names the layer, e.g.
  // "non-finite gradient in layer 3 (conv2d_2)" or "non-finite weights in layer 0 (conv2d_1)";
  // layers are searched from the output back (the order backward meets them), gradients first.
  // Under fp16 loss scaling a non-finite gradient is an overflow: the step was skipped and the
  // scale halved, so only the weights are checked, and the check fails when the scale has fallen
  // below kMinLossScale (every step overflows: the forward pass itself is non-finite).
  bool check_finite(std::string* where = nullptr);

  // The fp16 loss scale the next step multiplies dL/dlogits by (synchronises on the GPU); 0 when
  // the precision is not fp16 (no loss scaling).
  virtual double loss_scale() { return 0.0; }
  static constexpr double kMinLossScale = 1.0 / 16384;  // 2^-14

 protected:
  dist::Communicator* comm_ = nullptr;
  // Non-finite value counts of host-side (cpu) or device-side (cuda) float tensors, one count per
  // (pointer, length) pair; the cuda backend reduces on the device and synchronises once.
  virtual std::vector<int64_t> count_nonfinite(const std::vector<std::pair<const float*, int64_t>>& tensors) = 0;
};

// The state() tensor names: "<index>.<layer name>.<param>" for every parameter (batch-norm moving
// statistics included), then the optimizer's moments under "adam.m.", "adam.v." (adam and adamw)
// or "sgd.velocity." + the parameter's name, then "step" (dims {1}, the optimisation steps taken;
// exact up to 2^24). Both backends use these helpers so checkpoints move between them.
std::string param_tensor_name(const LayerDesc& layer, const ParamSpec& param);
std::vector<std::string> optimizer_slots(const std::string& optimizer);  // {"adam.m", "adam.v"} | {"sgd.velocity"}
// fp16 networks add "loss_scale" (dims {1}) and "loss_scale.good_steps" (dims {1}) after "step";
// load_state starts from train.loss_scale_init when they are missing and ignores them elsewhere.
inline constexpr const char* kLossScaleTensor = "loss_scale";
inline constexpr const char* kLossScaleGoodTensor = "loss_scale.good_steps";

// The 16-bit format conv2d and dense round their operands to under train.precision
// (ops::kHalfBf16 | ops::kHalfFp16, or ops::kHalfNone for fp32 and tf32).
int matmul_half_format(const std::string& precision);

// Whether a network on `device` runs the plan's first conv2d → maxpool2d as one fused layer:
// TrainHyper::fuse_conv_pool asked for it and conv_pool_fusable(plan). When the experiment set the
// key itself, says on stderr why the plan cannot fuse, or (cpu) that the fused layer gains nothing there.
bool use_fused_conv_pool(const ModelPlan& plan, const TrainHyper& hyper, Device device);

// The conv2d → maxpool2d [→ dropout] runs a network runs with their epilogue fused
// (train.fuse_conv_epilogue; none when it is off), after the layers the first conv + pool fusion
// takes (`first_free`: 2 when that applies, else 0). When the experiment set the key itself and
// no run qualifies, says so on stderr.
std::vector<ConvEpilogueRun> use_fused_conv_epilogues(const ModelPlan& plan, const TrainHyper& hyper, size_t first_free);

// Host-side initial weights for a plan (Philox keyed by seed, layer and parameter), identical for
// every backend: one tensor per parameter in plan order.
std::vector<NamedTensor> initial_weights(const ModelPlan& plan, const TrainHyper& hyper);

std::unique_ptr<Network> make_cpu_network(const ModelPlan& plan, const TrainHyper& hyper);
#if GENRELAB_HAVE_CUDA
std::unique_ptr<Network> make_cuda_network(const ModelPlan& plan, const TrainHyper& hyper);
#endif
std::unique_ptr<Network> make_network(Device device, const ModelPlan& plan, const TrainHyper& hyper);

}  // namespace genrelab::nn
