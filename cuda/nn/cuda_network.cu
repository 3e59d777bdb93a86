// The CUDA backend's Network: GPU layers on one stream, the fused softmax cross-entropy head,
// the L2 term, global-norm clipping and the optimizer updates through the shared functors of
// ops/nn_*.h (the CPU backend runs the same arithmetic), loss and accuracy counted on the device.
// train_step never synchronises the host; last_stats(), last_times(), state() and predict() do.
// fp16 adds the dynamic loss scale (ops::LossScaleStep), kept and read on the device.
// With train.cuda_graph a step is captured once per batch shape and replayed (see StepGraph).
#include <thrust/iterator/transform_iterator.h>
#include <cub/device/device_reduce.cuh>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

#include "conv_epilogue.h"
#include "conv_pool.h"
#include "genrelab/common.h"
#include "genrelab/cuda/launch.cuh"
#include "genrelab/cuda/stage_clock.h"
#include "genrelab/nn/network.h"
#include "genrelab/nn/schedule.h"
#include "genrelab/nvtx.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_gpu_extra.h"
#include "genrelab/ops/nn_loss.h"
#include "genrelab/ops/nn_optim.h"
#include "gpu_layers.h"

namespace genrelab::nn {

namespace {

using cuda::DeviceBuffer;
using cuda::launch_1d;
using cuda::nn::GpuContext;
using cuda::nn::GpuLayer;
using cuda::nn::Precision;
using cuda::nn::StepScalars;

struct SquareToDouble {
  __host__ __device__ double operator()(float v) const { return double(v) * double(v); }
};
// 1 for a NaN or infinite value, else 0 (summed by the NaN/Inf guard).
struct NonFiniteToCount {
  __host__ __device__ int64_t operator()(float v) const { return isfinite(v) ? 0 : 1; }
};
struct FloatToDouble {
  __host__ __device__ double operator()(float v) const { return double(v); }
};

// TensorFlow's clip_by_global_norm scale from the per-tensor sums of squares (one thread):
// scale = clip / norm when norm > clip, else 1.
struct ClipScale {
  const double* sq;
  int64_t tensors;
  double clip;
  float* scale;
  double* norm;
  __device__ void operator()(int64_t) const {
    double s = 0;
    for (int64_t k = 0; k < tensors; ++k) s += sq[k];
    const double nrm = sqrt(s);
    norm[0] = nrm;
    scale[0] = nrm > clip ? float(clip / nrm) : 1.0f;
  }
};

Precision precision_of(const TrainHyper& h) {
  if (h.precision == "fp32") return Precision::fp32;
  if (h.precision == "tf32") return Precision::tf32;
  if (h.precision == "bf16") return Precision::bf16;
  if (h.precision == "fp16") return Precision::fp16;
  throw ConfigError("train.precision: unknown precision '" + h.precision + "' (fp32 | tf32 | bf16 | fp16)");
}

std::string mib(double bytes) {
  std::ostringstream os;
  os.precision(0);
  os << std::fixed << bytes / (1 << 20) << " MiB";
  return os.str();
}

using cuda::StageClock;
using cuda::StageRange;

class CudaLayerImpl;

class CudaNetwork final : public Network {
 public:
  CudaNetwork(const ModelPlan& plan, const TrainHyper& hyper)
      : plan_(plan),
        hyper_(hyper),
        ctx_(precision_of(hyper), hyper.deterministic, cuda::nn::conv_engine_of(hyper.conv_engine),
             hyper.cudnn_benchmark_limit, hyper.cudnn_search == "find") {
    GENRELAB_CHECK(!plan.layers.empty(), "empty model plan");
    slots_ = optimizer_slots(hyper.optimizer);
    for (const auto& L : plan_.layers) {
      if (L.type == "gru" || L.type == "lstm") has_rnn_ = true;
      layers_.push_back(cuda::nn::make_gpu_layer(L, ctx_));
      fwd_names_.push_back("fwd " + L.name);  // NVTX range names, built once
      bwd_names_.push_back("bwd " + L.name);
      allreduce_names_.push_back("all-reduce " + L.name);
      for (const auto& p : L.params)
        if (p.trainable) {
          Trainable t;
          t.layer = layers_.size() - 1;
          t.param = size_t(&p - L.params.data());
          t.size = p.size();
          t.decay = p.decay;
          for (size_t s = 0; s < slots_.size(); ++s) {
            t.moments.emplace_back(size_t(p.size()));
            t.moments.back().zero(ctx_.stream());
          }
          trainable_.push_back(std::move(t));
        }
    }
    for (auto& t : trainable_) {
      GpuLayer& l = *layers_[t.layer];
      t.w = l.params()[t.param];
      // grads() lists trainable parameters only: count the trainable ones before t.param.
      size_t g = 0;
      for (size_t j = 0; j < t.param; ++j) g += plan_.layers[t.layer].params[j].trainable ? 1 : 0;
      t.g = l.grads()[g];
    }
    if (use_fused_conv_pool(plan_, hyper, Device::cuda)) {
      fused_ = std::make_unique<cuda::nn::FusedConvPool>(plan_, ctx_);
      const std::string name = genrelab::nn::joined_layer_names(plan_, 0, fused_->last());
      fwd_names_[0] = "fwd " + name;
      bwd_names_[0] = "bwd " + name;
    }
    epilogue_at_.assign(plan_.layers.size(), nullptr);
    for (const auto& run : use_fused_conv_epilogues(plan_, hyper, fused_ ? fused_->last() + 1 : 0)) {
      epilogues_.push_back(std::make_unique<cuda::nn::FusedConvEpilogue>(run, ctx_));
      epilogue_at_[run.conv] = epilogue_at_[run.last()] = epilogues_.back().get();
      fwd_names_[run.conv] = "fwd " + run.name;
      bwd_names_[run.conv] = "bwd " + run.name;
    }
    capture_fault_ = std::getenv("GENRELAB_TEST_CUDA_GRAPH_FAULT") != nullptr;
    sq_.resize(std::max<size_t>(trainable_.size(), 1));
    scalars_.resize(2);  // clip scale, spare
    step_result_.resize(1);
    fp16_ = hyper.precision == "fp16";
    loss_scale_.resize(4);
    set_loss_scale(float(hyper.loss_scale_init), 0.0f);
    load_weights(initial_weights(plan_, hyper_));
    // Reduction scratch, sized for the largest tensor (the clip norm) once.
    size_t bytes = 1;
    for (const auto& t : trainable_) bytes = std::max({bytes, reduce_bytes(t.size), reduce_bytes_nonfinite(t.size)});
    dgrad_bad_.resize(std::max<size_t>(trainable_.size(), 1));
    reduce_tmp_.resize(bytes);
    ctx_.stream_sync();
  }

  Device device() const override { return Device::cuda; }
  const ModelPlan& plan() const override { return plan_; }

  // train.sync_batchnorm: the batch-norm layers take their statistics over the ranks too.
  void set_communicator(dist::Communicator* comm) override {
    comm_ = comm;
    ctx_.set_communicator(comm);
    for (auto& l : layers_) l->set_communicator(hyper_.sync_batchnorm ? comm : nullptr, comm_stream_.get());
  }

  void train_step(const float* x, const int32_t* labels, int64_t n, int64_t global_batch, float lr,
                  const StepKey& key) override {
    GENRELAB_CHECK(n >= 0 && global_batch >= n && global_batch > 0 && (n > 0 || comm_),
                   "train_step: n = ", n, ", global_batch = ", global_batch);
    try {
      run_train_step(x, labels, n, global_batch, lr, key);
    } catch (const RuntimeError& e) {
      rethrow_oom(e, n);
    }
    record_step_stats();
  }

  CUstream_st* stream() override { return ctx_.stream(); }

  void predict(const float* x, int64_t n, float* probs_host) override {
    if (n == 0) return;
    try {
      ensure_batch(n);
      layers_.back()->set_logits_output(false);
      clock_ = nullptr;  // inference is not a timed step (also after a step that threw)
      forward_all(x, n, false, StepKey{});
    } catch (const RuntimeError& e) {
      rethrow_oom(e, n);
    }
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(probs_host, act_[layers_.size() - 1], size_t(n * plan_.classes) * sizeof(float),
                                        cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.stream_sync();
  }

  StepStats last_stats() override {
    StepStats s;
    if (last_n_ == 0) return s;
    StepResult r{};
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(&r, step_result_.data(), sizeof r, cudaMemcpyDeviceToHost, ctx_.stream()));
    sync();
    s.loss_sum = r.loss_sum;
    s.correct = r.correct;
    s.examples = last_n_;
    return s;
  }

  std::vector<StepStats> take_step_stats() override {
    drain_stats_window();
    return std::exchange(taken_stats_, {});
  }

  void set_stage_timing(bool on) override { stage_timing_ = on; }
  std::vector<StageTime> last_stage_times() override {
    if (!stage_timing_ || last_n_ == 0 || last_graphed_) return {};
    std::vector<StageTime> out;
    stages_.read([&](const std::string& name, double ms, double) { out.push_back({name, ms}); });
    return out;
  }

  StepTimes last_times() override {
    StepTimes t;
    if (last_n_ == 0) return t;
    ev_end_.synchronize();
    t.step_ms = ev_end_.ms_since(ev_start_);
    t.graphed = last_graphed_;
    if (last_graphed_) return t;  // no timing points inside a graph: the whole step only
    t.forward_ms = ev_fwd_.ms_since(ev_start_);
    t.backward_ms = ev_bwd_.ms_since(ev_fwd_);
    t.optimizer_ms = ev_end_.ms_since(ev_bwd_);
    return t;
  }

  std::vector<NamedTensor> state() override {
    std::vector<NamedTensor> out;
    for (auto& part : state_parts()) {
      if (part.device) part.tensor.data = to_host(part.device, part.count);
      out.push_back(std::move(part.tensor));
    }
    return out;
  }

  StateSnapshot state_snapshot() override {
    std::vector<StatePart> parts = state_parts();
    size_t total = 0;
    for (const auto& part : parts) total += part.device ? size_t(part.count) : 0;
    if (total > snapshot_.size()) {
      try {
        snapshot_.resize(total);  // untracked: no step touches it
      } catch (const RuntimeError&) {
        return Network::state_snapshot();  // no room for the copy: the host copy, now
      }
    }
    // Device-to-device copies behind the queued steps; each part then points into snapshot_.
    size_t offset = 0;
    for (auto& part : parts) {
      if (!part.device) continue;
      float* dst = snapshot_.data() + offset;
      GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dst, part.device, size_t(part.count) * sizeof(float),
                                          cudaMemcpyDeviceToDevice, ctx_.stream()));
      part.device = dst;
      offset += size_t(part.count);
    }
    snapshot_copied_.record(ctx_.stream());
    int device = 0;
    GENRELAB_CUDA_CHECK(cudaGetDevice(&device));
    return [this, parts = std::move(parts), device]() mutable {
      GENRELAB_CUDA_CHECK(cudaSetDevice(device));  // a new thread starts on device 0
      snapshot_copied_.synchronize();
      std::vector<NamedTensor> out;
      for (auto& part : parts) {
        std::vector<float>& data = part.tensor.data;
        if (part.device) {
          data.resize(size_t(part.count));
          GENRELAB_CUDA_CHECK(cudaMemcpyAsync(data.data(), part.device, size_t(part.count) * sizeof(float),
                                              cudaMemcpyDeviceToHost, snapshot_stream_.get()));
        }
        out.push_back(std::move(part.tensor));
      }
      GENRELAB_CUDA_CHECK(cudaStreamSynchronize(snapshot_stream_.get()));
      return out;
    };
  }

  double tuning_seconds() const override { return ctx_.tuning_seconds(); }
  double loss_scale() override { return fp16_ ? double(to_host(loss_scale_.data(), 1)[0]) : 0.0; }

  void load_state(const std::vector<NamedTensor>& state) override {
    std::map<std::string, const NamedTensor*> given;
    for (const auto& t : state) given[t.name] = &t;
    // The loss scale is optional: a state without it (saved at another precision) starts from
    // train.loss_scale_init; a network that does not scale ignores it.
    float scale[2] = {float(hyper_.loss_scale_init), 0.0f};
    for (const char* nm : {kLossScaleTensor, kLossScaleGoodTensor}) {
      auto it = given.find(nm);
      if (it == given.end()) continue;
      check_tensor(*it->second, nm, {1});
      scale[std::string(nm) == kLossScaleTensor ? 0 : 1] = it->second->data[0];
      given.erase(it);
    }
    size_t expected = 1;  // "step"
    auto find = [&](const std::string& name, const std::vector<int64_t>& dims) -> const NamedTensor& {
      auto it = given.find(name);
      if (it == given.end())
        throw RuntimeError("load_state: the state has no tensor '" + name + "' (model or optimizer differs)");
      check_tensor(*it->second, name, dims);
      return *it->second;
    };
    // Validate everything before copying anything.
    for (const auto& L : plan_.layers)
      for (const auto& p : L.params) {
        find(param_tensor_name(L, p), p.dims);
        ++expected;
      }
    for (const auto& slot : slots_)
      for (const auto& t : trainable_) {
        const ParamSpec& p = plan_.layers[t.layer].params[t.param];
        find(slot + "." + param_tensor_name(plan_.layers[t.layer], p), p.dims);
        ++expected;
      }
    const NamedTensor& step = find("step", {1});
    if (given.size() != expected)
      for (const auto& t : state) {
        bool known = t.name == "step" || t.name == kLossScaleTensor || t.name == kLossScaleGoodTensor;
        for (const auto& L : plan_.layers)
          for (const auto& p : L.params) {
            const std::string nm = param_tensor_name(L, p);
            known = known || t.name == nm;
            if (p.trainable)
              for (const auto& slot : slots_) known = known || t.name == slot + "." + nm;
          }
        if (!known)
          throw RuntimeError("load_state: unexpected tensor '" + t.name + "' (not part of this model and optimizer)");
      }
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerDesc& L = plan_.layers[li];
      const auto ptrs = layers_[li]->params();
      for (size_t j = 0; j < L.params.size(); ++j) to_device(given[param_tensor_name(L, L.params[j])]->data, ptrs[j]);
    }
    for (size_t s = 0; s < slots_.size(); ++s)
      for (auto& t : trainable_) {
        const LayerDesc& L = plan_.layers[t.layer];
        to_device(given[slots_[s] + "." + param_tensor_name(L, L.params[t.param])]->data, t.moments[s].data());
      }
    step_ = uint64_t(std::llround(step.data[0]));
    set_loss_scale(scale[0], scale[1]);
    ctx_.stream_sync();  // the host vectors may go away after return
  }

  // One device-side sum per tensor into dnonfinite_, one copy back, one synchronisation.
  std::vector<int64_t> count_nonfinite(const std::vector<std::pair<const float*, int64_t>>& tensors) override {
    std::vector<int64_t> counts(tensors.size(), 0);
    if (tensors.empty()) return counts;
    cudaStream_t s = ctx_.stream();
    if (dnonfinite_.size() < tensors.size()) dnonfinite_.resize(tensors.size());
    size_t need = 1;
    for (const auto& t : tensors) {
      size_t bytes = 0;
      auto it = thrust::make_transform_iterator(t.first, NonFiniteToCount{});
      GENRELAB_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes, it, static_cast<int64_t*>(nullptr), t.second, s));
      need = std::max(need, bytes);
    }
    if (need > reduce_tmp_.bytes()) {
      ctx_.stream_sync();
      ctx_.resize_tracked(reduce_tmp_, need);
    }
    for (size_t k = 0; k < tensors.size(); ++k) {
      size_t bytes = reduce_tmp_.bytes();
      auto it = thrust::make_transform_iterator(tensors[k].first, NonFiniteToCount{});
      GENRELAB_CUDA_CHECK(
          cub::DeviceReduce::Sum(reduce_tmp_.data(), bytes, it, dnonfinite_.data() + k, tensors[k].second, s));
    }
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(counts.data(), dnonfinite_.data(), tensors.size() * sizeof(int64_t),
                                        cudaMemcpyDeviceToHost, s));
    sync();
    return counts;
  }

  LayerImpl& layer(size_t index) override {
    GENRELAB_CHECK(index < layers_.size(), "layer ", index, " of ", layers_.size());
    return *layers_[index];
  }

 private:
  struct Trainable {
    size_t layer = 0, param = 0;
    int64_t size = 0;
    bool decay = false;
    float* w = nullptr;
    float* g = nullptr;
    std::vector<DeviceBuffer<float>> moments;  // one per optimizer slot
  };

  // Queues one copy of this step's results (loss sum and correct count; zeros for an empty shard)
  // into the next pinned window slot: no synchronisation until the window is read.
  void record_step_stats() {
    if (stats_window_n_.size() == kStatsWindow) drain_stats_window();
    const size_t k = stats_window_n_.size();
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(&stats_window_[k], step_result_.data(), sizeof(StepResult),
                                        cudaMemcpyDeviceToHost, ctx_.stream()));
    stats_window_n_.push_back(last_n_);
  }

  // One synchronisation, then the window's slots move to taken_stats_ in step order.
  void drain_stats_window() {
    if (stats_window_n_.empty()) return;
    sync();
    for (size_t k = 0; k < stats_window_n_.size(); ++k) {
      StepStats st;
      st.loss_sum = stats_window_[k].loss_sum;
      st.correct = stats_window_[k].correct;
      st.examples = stats_window_n_[k];
      taken_stats_.push_back(st);
    }
    stats_window_n_.clear();
  }

  // Waits for the network's stream; with a communicator, through it (a collective that cannot
  // finish, because another rank died or hangs, ends the wait after train.comm_timeout_s).
  void sync() {
    if (comm_) comm_->wait(ctx_.stream());
    else ctx_.stream_sync();
  }

  // Data parallel: layer i's gradients are all-reduced on comm_stream_ as soon as its backward
  // has run (an event orders them), overlapping the backward of the layers below it; its kernel
  // and bias go in one communicator group (one NCCL launch).
  void all_reduce_layer(size_t i) {
    if (!comm_ || layers_[i]->grads().empty()) return;
    if (layer_done_.size() != layers_.size()) layer_done_ = std::vector<cuda::Event>(layers_.size());
    layer_done_[i].record(ctx_.stream());
    layer_done_[i].wait_on(comm_stream_);
    NvtxRange range(allreduce_names_[i].c_str());
    const LayerDesc& L = plan_.layers[i];
    size_t g = 0;
    comm_->group_start();
    for (const auto& p : L.params)
      if (p.trainable) comm_->all_reduce_sum(layers_[i]->grads()[g++], p.size(), dist::DType::f32, comm_stream_.get());
    comm_->group_end();
  }
  // The optimizer waits for every all-reduce; then the non-trainable parameters (batch-norm
  // moving statistics) follow rank 0, queued after the update.
  void join_all_reduce() {
    if (!comm_) return;
    comm_done_.record(comm_stream_);
    comm_done_.wait_on(ctx_.stream());
  }
  void broadcast_buffers() {
    if (!comm_) return;
    for (size_t li = 0; li < layers_.size(); ++li) {
      const auto ptrs = layers_[li]->params();
      for (size_t j = 0; j < plan_.layers[li].params.size(); ++j)
        if (!plan_.layers[li].params[j].trainable)
          comm_->broadcast(ptrs[j], plan_.layers[li].params[j].size() * int64_t(sizeof(float)), 0, ctx_.stream());
    }
  }

  void run_train_step(const float* x, const int32_t* labels, int64_t n, int64_t global_batch, float lr,
                      const StepKey& key) {
    cudaStream_t s = ctx_.stream();
    // The step's changing scalars, one copy into the device block every kernel reads them from.
    const StepScalars* scalars =
        ctx_.upload_step(StepScalars{optimizer_step(hyper_, lr, key.step), ops::DropoutStep{key.step, key.first_example}});
    last_graphed_ = false;
    if (n == 0) {  // an empty shard: zero gradients, the same collectives and the same update
      for (auto& l : layers_) l->zero_grads();
      GENRELAB_CUDA_CHECK(cudaMemsetAsync(step_result_.data(), 0, sizeof(StepResult), s));
      // Synchronised batch norm: the layers' all-reduces in the order of a full step.
      const bool sync_bn = hyper_.sync_batchnorm;
      if (sync_bn)
        for (size_t i = 0; i < layers_.size(); ++i)
          if (plan_.layers[i].type == "batchnorm") layers_[i]->forward(nullptr, nullptr, 0, true, key);
      for (size_t i = layers_.size(); i-- > 0;) {
        if (sync_bn && plan_.layers[i].type == "batchnorm")
          layers_[i]->backward(nullptr, nullptr, nullptr, nullptr, 0, key);
        all_reduce_layer(i);
      }
      join_all_reduce();
      apply_optimizer(scalars);
      broadcast_buffers();
      ++step_;
      last_n_ = 0;
      return;
    }
    ensure_batch(n);
    StepGraph* warming = nullptr;
    if (graphs_usable()) {
      const GraphKey gk{x, labels, n, global_batch, key.seed};
      if (run_graph(gk, key, scalars, warming)) {
        ++step_;
        last_n_ = n;
        return;
      }
    }
    // Stage timing times the device: the step is queued behind a hold long enough for the host
    // to queue all of it, so no stage's events also time the host's launches of its kernels.
    if (stage_timing_) cuda::hold_stream(s, kStageTimingHoldMs);
    ev_start_.record(s);
    enqueue_step(x, labels, n, global_batch, key, scalars, true);
    ++step_;
    last_n_ = n;
    ev_end_.record(s);
    // A key's first step ran eagerly above: algorithm search and buffer growth are done, so the
    // next step with this key can be captured (unless a buffer moves before then).
    if (warming) warming->epoch = layout_epoch();
  }

  // The device work of one training step, queued on the stream: forward, head, backward, the
  // gradient all-reduces (data parallel) and the optimizer. `timed` records the forward/backward
  // split events (not while capturing: a graph has no timing points inside).
  void enqueue_step(const float* x, const int32_t* labels, int64_t n, int64_t global_batch, const StepKey& key,
                    const StepScalars* scalars, bool timed) {
    cudaStream_t s = ctx_.stream();
    const size_t L = layers_.size();
    stages_.clear();
    clock_ = timed && stage_timing_ ? &stages_ : nullptr;  // the stages' events, for this step only
    const int64_t C = plan_.classes;
    const float ls = float(hyper_.label_smoothing);
    layers_.back()->set_logits_output(true);
    {
      NvtxRange range("forward");
      forward_all(x, n, true, key);
    }
    const float* logits = act_[L - 1];  // (n, classes)

    // Head: per-example loss and correct flags, summed on the device (read in last_stats).
    auto loss_stage = std::make_unique<StageRange>(kLossStage, clock_, s);
    launch_1d(n, ops::SoftmaxXentLoss<float>{logits, labels, C, ls, losses_.data(), correct_.data()}, s);
    {
      auto it = thrust::make_transform_iterator(losses_.data(), FloatToDouble{});
      size_t bytes = reduce_tmp_.bytes();
      StepResult* r = step_result_.data();
      GENRELAB_CUDA_CHECK(cub::DeviceReduce::Sum(reduce_tmp_.data(), bytes, it, &r->loss_sum, n, s));
      bytes = reduce_tmp_.bytes();
      GENRELAB_CUDA_CHECK(cub::DeviceReduce::Sum(reduce_tmp_.data(), bytes, correct_.data(), &r->correct, n, s));
    }
    if (timed) ev_fwd_.record(s);

    // Backward: dlogits into grad buffer 0, then ping-pong between the two gradient buffers.
    auto backward_range = std::make_unique<NvtxRange>("backward");
    float* dy = grad_[0].data();
    float* dx = grad_[1].data();
    launch_1d(n * C, ops::SoftmaxXentGrad<float>{logits, labels, C, ls, 1.0f / float(global_batch), dy}, s);
    if (fp16_) launch_1d(n * C, ops::ScaleByDevice{dy, loss_scale_.data()}, s);
    for (auto& l : layers_) l->zero_grads();
    loss_stage.reset();
    // dy as the columns of the conv above, when it left them for a fused epilogue run to sum.
    ops::ColumnsGrad dy_columns;
    for (size_t i = L; i-- > 0;) {
      if (plan_.layers[i].type == "flatten") continue;  // same memory in and out: dy passes through
      if (fused_ && i == fused_->last()) {              // the last fused layer's dy straight into the conv's gradients
        {
          StageRange range(bwd_names_[0], clock_, s);
          const std::vector<float*> p = layers_[0]->params(), g = layers_[0]->grads();
          fused_->backward(x, dy, p[0], p.size() > 1 ? p[1] : nullptr, g[0], g.size() > 1 ? g[1] : nullptr, n);
        }
        for (size_t j = i + 1; j-- > 0;) all_reduce_layer(j);
        break;
      }
      if (epilogue_at_[i] && epilogue_at_[i]->run().last() == i) {  // a fused conv epilogue run, from its top
        const auto& run = epilogue_at_[i]->run();
        const size_t c = run.conv;
        {
          StageRange range(bwd_names_[c], clock_, s);
          auto* conv = dynamic_cast<cuda::nn::ConvProduct*>(layers_[c].get());
          // dz into the other buffer (bf16/fp16: only its 16-bit copy, which the conv keeps), then
          // the conv's dx back into dy's, which the next layer down reads, or left as its GEMM
          // engine's columns when that layer is another fused run's last (whose backward sums
          // them: dx is never stored); the bias gradient from the gradient at each window's maximum.
          uint16_t* dz16 = conv->dz16(n);
          float* dz = dz16 ? nullptr : dx;
          epilogue_at_[i]->backward(dy, dy_columns, act_[run.pool], dz, dz16, n, key);
          const bool run_below = c > 0 && epilogue_at_[c - 1] && epilogue_at_[c - 1]->run().last() == c - 1;
          conv->backward_product(c == 0 ? x : act_[c - 1], act_[c], dz, epilogue_at_[i]->dpool(),
                                 n * run.pooled_size() / run.c, c == 0 ? nullptr : dy, n,
                                 run_below ? &dy_columns : nullptr);
          if (!run_below) dy_columns = ops::ColumnsGrad();
        }
        for (size_t j = i + 1; j-- > c;) all_reduce_layer(j);
        i = c;
        continue;
      }
      const float* xin = i == 0 ? x : act_[i - 1];
      {
        StageRange range(bwd_names_[i], clock_, s);
        layers_[i]->backward(xin, act_[i], dy, i == 0 ? nullptr : dx, n, key);
      }
      all_reduce_layer(i);
      std::swap(dy, dx);
    }
    layers_.back()->set_logits_output(false);
    backward_range.reset();
    if (timed) ev_bwd_.record(s);

    join_all_reduce();
    {
      StageRange range(kOptimizerStage, clock_, s);
      apply_optimizer(scalars);
    }
    broadcast_buffers();
    clock_ = nullptr;
  }

  // ---- CUDA graphs (train.cuda_graph) ------------------------------------------------------
  //
  // A captured graph holds raw addresses and launch parameters, so it is keyed by everything a
  // step bakes in: the input and label buffers, the batch, the global batch and the dropout
  // seed; the changing scalars (learning rate, Adam's step size, the dropout step) live in the
  // device block the graph reads. A key's first step runs eagerly (cuDNN algorithm search,
  // workspace and buffer growth happen there: nothing may allocate during capture), the second
  // is captured and launched, later ones are replayed. Any buffer that moves afterwards
  // (GpuContext::layout_epoch) sends the key back to an eager warm-up. A capture or launch error
  // turns graphs off for this network with one warning; the step then runs eagerly.
  struct GraphKey {
    const float* x;
    const int32_t* labels;
    int64_t n, global_batch;
    uint32_t seed;
    bool operator==(const GraphKey& o) const {
      return x == o.x && labels == o.labels && n == o.n && global_batch == o.global_batch && seed == o.seed;
    }
  };
  struct StepGraph {
    GraphKey key;
    uint64_t epoch = ~uint64_t(0);  // layout epoch after the warm-up step (none yet: ~0)
    uint64_t used = 0;              // last use, for least-recently-used eviction
    cuda::GraphExec exec;
  };
  // The full batch and an epoch's partial last batch, for each of two input buffers (streamed
  // steps take turns between two: StreamingSet::load_step).
  static constexpr size_t kMaxGraphs = 4;

  bool graphs_usable() {
    if (!hyper_.cuda_graph || graphs_failed_) return false;
    if (comm_ || has_rnn_) {
      if (!graph_note_ && hyper_.cuda_graph_set) {
        std::cerr << "genrelab: train.cuda_graph is ignored: "
                  << (comm_ ? "data-parallel steps (NCCL all-reduces on a second stream) are not captured"
                            : "cuDNN's recurrent layers (gru, lstm) are not captured")
                  << "; the steps run eagerly\n";
        graph_note_ = true;
      }
      return false;
    }
    return true;
  }

  uint64_t layout_epoch() const { return ctx_.layout_epoch(); }

  // Runs the step as a graph when `gk` has one (or can be captured now) and returns true; returns
  // false for an eager step, with `warming` set when that step is the key's warm-up.
  bool run_graph(const GraphKey& gk, const StepKey& key, const StepScalars* scalars, StepGraph*& warming) {
    StepGraph* g = nullptr;
    for (auto& c : graphs_)
      if (c.key == gk) g = &c;
    if (!g) {
      if (graphs_.size() >= kMaxGraphs) {
        auto lru = std::min_element(graphs_.begin(), graphs_.end(),
                                    [](const StepGraph& a, const StepGraph& b) { return a.used < b.used; });
        graphs_.erase(lru);
      }
      graphs_.push_back(StepGraph{gk});
      g = &graphs_.back();
    }
    g->used = ++graph_uses_;
    if (g->epoch != layout_epoch()) {  // new key, or a buffer moved since: warm up eagerly
      g->exec = cuda::GraphExec();
      warming = g;
      return false;
    }
    if (!g->exec && !capture(*g, key, scalars)) return false;
    cudaStream_t s = ctx_.stream();
    ev_start_.record(s);
    {
      NvtxRange range("train step (cuda graph)");
      const cudaError_t e = cudaGraphLaunch(g->exec.get(), s);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        graph_failed(std::string("cudaGraphLaunch: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
        return false;
      }
    }
    ev_end_.record(s);
    last_graphed_ = true;
    return true;
  }

  // Captures the step of `g.key` into g.exec (nothing runs); false after a failure (reported).
  bool capture(StepGraph& g, const StepKey& key, const StepScalars* scalars) {
    cudaStream_t s = ctx_.stream();
    std::string failure;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
      failure = std::string("cudaStreamBeginCapture: ") + cudaGetErrorName(e);
    } else {
      ctx_.set_capturing(true);
      try {
        enqueue_step(g.key.x, g.key.labels, g.key.n, g.key.global_batch, key, scalars, false);
        // Test hook: a synchronisation inside the capture, which CUDA refuses
        // (cudaErrorStreamCaptureUnsupported), to exercise the fallback on a real capture error.
        if (capture_fault_) ctx_.stream_sync();
      } catch (const std::exception& ex) {
        failure = ex.what();
      }
      ctx_.set_capturing(false);
      e = cudaStreamEndCapture(s, &graph);  // always ends the capture, also after a failure
      if (failure.empty() && e != cudaSuccess) failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorName(e);
    }
    if (failure.empty() && layout_epoch() != g.epoch) failure = "a device buffer was reallocated during capture";
    if (failure.empty()) {
      cudaGraphExec_t exec = nullptr;
      e = cudaGraphInstantiate(&exec, graph, 0);
      if (e == cudaSuccess) g.exec = cuda::GraphExec(exec);
      else failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorName(e);
    }
    if (graph) cudaGraphDestroy(graph);
    if (failure.empty()) return true;
    if (e != cudaSuccess) failure += std::string(" (") + cudaGetErrorString(e) + ")";
    (void)cudaGetLastError();  // capture errors are not sticky: clear them for the eager step
    graph_failed(failure);
    return false;
  }

  void graph_failed(const std::string& why) {
    std::cerr << "genrelab: warning: CUDA graph of the training step failed (" << why
              << "); train.cuda_graph is off for the rest of this run and the steps run eagerly\n";
    graphs_failed_ = true;
    graphs_.clear();
    layers_.back()->set_logits_output(false);  // a capture may have stopped halfway
  }

  // L2 gradient (2·l2·w on kernels), global-norm clipping with the norm taken after the L2 term
  // (TensorFlow's clip_by_global_norm; the scale stays on the device), then the update: the order
  // and functors of the CPU backend.
  void apply_optimizer(const StepScalars* scalars) {
    cudaStream_t s = ctx_.stream();
    if (fp16_) unscale_gradients();
    if (hyper_.l2 > 0)
      for (auto& t : trainable_)
        if (t.decay) launch_1d(t.size, ops::GradFinish<float>{t.g, t.w, 1.0f, float(2.0 * hyper_.l2)}, s);
    if (hyper_.clip_norm > 0) {
      for (size_t k = 0; k < trainable_.size(); ++k) {
        auto it = thrust::make_transform_iterator(trainable_[k].g, SquareToDouble{});
        size_t bytes = reduce_tmp_.bytes();
        GENRELAB_CUDA_CHECK(
            cub::DeviceReduce::Sum(reduce_tmp_.data(), bytes, it, sq_.data() + k, trainable_[k].size, s));
      }
      cuda::launch_1d(1,
                      ClipScale{sq_.data(), int64_t(trainable_.size()), hyper_.clip_norm, scalars_.data(),
                                &step_result_.data()->global_norm},
                      s);
      for (auto& t : trainable_)
        launch_1d(t.size, ops::ScaleByDevice{t.g, scalars_.data()}, s);  // g · clip scale (L2 is already in g)
    }
    const bool adam = hyper_.optimizer != "sgd";
    const ops::OptimStep<float>* step = &scalars->optim;  // device memory: lr_t / lr and the decay of this step
    const float* skip = fp16_ ? loss_scale_.data() + 3 : nullptr;
    for (auto& t : trainable_) {
      if (adam)
        launch_1d(t.size,
                  ops::AdamUpdate<float>{t.w, t.g, t.moments[0].data(), t.moments[1].data(), step, float(hyper_.beta1),
                                         float(hyper_.beta2), float(hyper_.epsilon), t.decay, skip},
                  s);
      else
        launch_1d(
            t.size,
            ops::SgdUpdate<float>{t.w, t.g, t.moments[0].data(), step, float(hyper_.momentum), hyper_.nesterov, t.decay,
                                  skip},
            s);
    }
  }

  // fp16: one device-side non-finite count per gradient tensor (after the all-reduce, so every
  // rank decides alike), the loss-scale step on one thread (skip flag, new scale), then the
  // gradients unscaled by 1/scale read on the device: no host synchronisation.
  void unscale_gradients() {
    cudaStream_t s = ctx_.stream();
    for (size_t k = 0; k < trainable_.size(); ++k) {
      auto it = thrust::make_transform_iterator(static_cast<const float*>(trainable_[k].g), NonFiniteToCount{});
      size_t bytes = reduce_tmp_.bytes();
      GENRELAB_CUDA_CHECK(
          cub::DeviceReduce::Sum(reduce_tmp_.data(), bytes, it, dgrad_bad_.data() + k, trainable_[k].size, s));
    }
    launch_1d(1,
              ops::LossScaleStep{dgrad_bad_.data(), int64_t(trainable_.size()), loss_scale_.data(), 2.0f, 0.5f,
                                 float(hyper_.loss_scale_growth_interval)},
              s);
    for (auto& t : trainable_) launch_1d(t.size, ops::ScaleByDevice{t.g, loss_scale_.data() + 2}, s);
  }

  // Writes the loss-scale state (scale, good steps, unscale factor 1, not skipped) to the device.
  void set_loss_scale(float scale, float good) {
    const float h[4] = {scale, good, 1.0f, 0.0f};
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(loss_scale_.data(), h, sizeof h, cudaMemcpyHostToDevice, ctx_.stream()));
    ctx_.stream_sync();  // h lives on this stack frame
  }

  // The columns of the fused run's conv right after layer `last`, where that layer's pass writes
  // its output instead (im2col fused into it; ConvProduct::columns_from_below), or none.
  ops::ColumnsOut columns_after(size_t last, int64_t n, bool training) {
    const size_t j = last + 1;
    if (j >= layers_.size() || !epilogue_at_[j] || epilogue_at_[j]->run().conv != j) return {};
    return dynamic_cast<cuda::nn::ConvProduct*>(layers_[j].get())->columns_from_below(n, training);
  }

  void forward_all(const float* x, int64_t n, bool training, const StepKey& key) {
    bool cols_written = false;  // the layer below wrote this conv's columns instead of its input
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (fused_ && i == 0) {  // layers 0 to fused_->last() at once, into the last one's output
        StageRange range(fwd_names_[0], clock_, ctx_.stream());
        const std::vector<float*> p = layers_[0]->params();
        i = fused_->last();
        const ops::ColumnsOut next = columns_after(i, n, training);
        fused_->forward(x, p[0], p.size() > 1 ? p[1] : nullptr, act_[i], n, training, key, next);
        cols_written = next.cols != nullptr;
        continue;
      }
      const float* xin = i == 0 ? x : act_[i - 1];
      if (epilogue_at_[i] && epilogue_at_[i]->run().conv == i) {  // conv product, then one pass for the run
        const auto& run = epilogue_at_[i]->run();
        StageRange range(fwd_names_[i], clock_, ctx_.stream());
        const uint16_t* z16 =
            dynamic_cast<cuda::nn::ConvProduct*>(layers_[i].get())->forward_product(xin, act_[i], n, cols_written);
        const std::vector<float*> p = layers_[i]->params();
        const ops::ColumnsOut next = columns_after(run.last(), n, training);
        epilogue_at_[i]->forward(act_[i], z16, p.size() > 1 ? p[1] : nullptr, act_[run.pool],
                                 run.dropout >= 0 ? act_[size_t(run.dropout)] : nullptr, n, training, key, next);
        cols_written = next.cols != nullptr;
        i = run.last();
        continue;
      }
      GENRELAB_CHECK(!cols_written, "layer ", i, ": its input was left as columns");
      if (plan_.layers[i].type == "flatten") {
        act_[i] = const_cast<float*>(xin);  // NHWC is already flat: a view of the input
        continue;
      }
      StageRange range(fwd_names_[i], clock_, ctx_.stream());
      layers_[i]->forward(xin, act_[i], n, training, key);
    }
  }

  // Activation, gradient and head buffers for batches up to n (grown, never shrunk; a move
  // counts in the layout epoch, which captured graphs check).
  void ensure_batch(int64_t n) {
    if (n <= cap_) return;
    // The gradient buffers hold every dy and dx the backward pass writes: with the fused first
    // layers, not the conv output's (nor that activation itself, nor the pooled map when the fused
    // layer applies the dropout).
    int64_t widest = plan_.classes;
    for (size_t i = 0; i < plan_.layers.size(); ++i) {
      const auto& L = plan_.layers[i];
      if (!(fused_ && i == 0)) widest = std::max(widest, L.out.size());
      if (!(fused_ && i <= 1)) widest = std::max(widest, L.in.size());
    }
    if (fused_) fused_->reserve(n);
    for (auto& e : epilogues_) e->reserve(n);
    act_store_.resize(layers_.size());
    act_.assign(layers_.size(), nullptr);
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (plan_.layers[i].type == "flatten" || (fused_ && i < fused_->last())) continue;
      // Under bf16/fp16 the conv of a fused epilogue run writes only its 16-bit product (which the
      // conv layer keeps): its float output is never written nor read.
      if (epilogue_at_[i] && epilogue_at_[i]->run().conv == i && ctx_.half_format() != ops::kHalfNone) continue;
      // A fused run's pooled map that no forward writes (ops::EpilogueOutputs).
      if (epilogue_at_[i] && epilogue_at_[i]->run().pool == i &&
          !ops::EpilogueOutputs::pooled_ever_written(epilogue_at_[i]->run().dropout >= 0,
                                                     epilogue_at_[i]->run().sign_coded()))
        continue;
      ctx_.resize_tracked(act_store_[i], size_t(n * plan_.layers[i].out.size()));
      act_[i] = act_store_[i].data();
    }
    ctx_.resize_tracked(grad_[0], size_t(n * widest));
    ctx_.resize_tracked(grad_[1], size_t(n * widest));
    ctx_.resize_tracked(losses_, size_t(n));
    ctx_.resize_tracked(correct_, size_t(n));
    const size_t bytes = std::max({reduce_bytes(n), reduce_bytes_loss(n), reduce_bytes_int(n)});
    if (bytes > reduce_tmp_.bytes()) ctx_.resize_tracked(reduce_tmp_, bytes);
    cap_ = n;
  }

  size_t reduce_bytes(int64_t count) {
    size_t bytes = 0;
    auto it = thrust::make_transform_iterator(static_cast<const float*>(nullptr), SquareToDouble{});
    GENRELAB_CUDA_CHECK(
        cub::DeviceReduce::Sum(nullptr, bytes, it, static_cast<double*>(nullptr), count, ctx_.stream()));
    return bytes;
  }
  size_t reduce_bytes_nonfinite(int64_t count) {
    size_t bytes = 0;
    auto it = thrust::make_transform_iterator(static_cast<const float*>(nullptr), NonFiniteToCount{});
    GENRELAB_CUDA_CHECK(
        cub::DeviceReduce::Sum(nullptr, bytes, it, static_cast<int64_t*>(nullptr), count, ctx_.stream()));
    return bytes;
  }
  size_t reduce_bytes_loss(int64_t count) {
    size_t bytes = 0;
    auto it = thrust::make_transform_iterator(static_cast<const float*>(nullptr), FloatToDouble{});
    GENRELAB_CUDA_CHECK(
        cub::DeviceReduce::Sum(nullptr, bytes, it, static_cast<double*>(nullptr), count, ctx_.stream()));
    return bytes;
  }
  size_t reduce_bytes_int(int64_t count) {
    size_t bytes = 0;
    GENRELAB_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), count, ctx_.stream()));
    return bytes;
  }

  // Bytes one example needs on the device (activations, two gradient buffers, scratch), for
  // the out-of-memory message.
  double bytes_per_example() const {
    double floats = 0, widest = double(plan_.classes);
    for (const auto& L : plan_.layers) {
      if (L.type != "flatten") floats += double(L.out.size());
      widest = std::max({widest, double(L.in.size()), double(L.out.size())});
    }
    return (floats + 4 * widest) * sizeof(float);
  }

  [[noreturn]] void rethrow_oom(const RuntimeError& e, int64_t n) {
    const std::string what = e.what();
    if (what.find("out of GPU memory") == std::string::npos && what.find("ALLOC_FAILED") == std::string::npos &&
        what.find("out of memory") == std::string::npos)
      throw;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const double per = bytes_per_example();
    const double have = double(free_b) + double(cap_) * per;  // what this network's buffers could reuse
    const int64_t fit = int64_t(0.8 * have / per);
    std::ostringstream os;
    os << "the GPU ran out of memory for a batch of " << n << " examples: this model needs about " << mib(per)
       << " per example (" << mib(per * double(n)) << " for the batch) plus cuDNN workspace; " << mib(double(free_b))
       << " of " << mib(double(total_b)) << " are free. Try train.batch_size=" << std::max<int64_t>(1, fit)
       << " or smaller (" << what << ")";
    throw RuntimeError(os.str());
  }

  // The tensors of state(), in its order: each names its device memory (`device`, `count`
  // floats), or holds its value already (`tensor.data`: the host's step counter).
  struct StatePart {
    NamedTensor tensor;
    const float* device = nullptr;
    int64_t count = 0;
  };
  std::vector<StatePart> state_parts() {
    std::vector<StatePart> parts;
    auto on_device = [&](std::string name, std::vector<int64_t> dims, const float* device, int64_t count) {
      parts.push_back({{std::move(name), std::move(dims), {}}, device, count});
    };
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerDesc& L = plan_.layers[li];
      const auto ptrs = layers_[li]->params();
      for (size_t j = 0; j < L.params.size(); ++j)
        on_device(param_tensor_name(L, L.params[j]), L.params[j].dims, ptrs[j], L.params[j].size());
    }
    for (size_t s = 0; s < slots_.size(); ++s)
      for (const auto& t : trainable_) {
        const LayerDesc& L = plan_.layers[t.layer];
        const ParamSpec& p = L.params[t.param];
        on_device(slots_[s] + "." + param_tensor_name(L, p), p.dims, t.moments[s].data(), p.size());
      }
    parts.push_back({{"step", {1}, {float(step_)}}});
    if (fp16_) {
      on_device(kLossScaleTensor, {1}, loss_scale_.data(), 1);
      on_device(kLossScaleGoodTensor, {1}, loss_scale_.data() + 1, 1);
    }
    return parts;
  }

  std::vector<float> to_host(const float* d, int64_t count) {
    std::vector<float> h(static_cast<size_t>(count));
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(h.data(), d, size_t(count) * sizeof(float), cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.stream_sync();
    return h;
  }
  void to_device(const std::vector<float>& h, float* d) {
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice, ctx_.stream()));
  }

  static std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
  }
  static void check_tensor(const NamedTensor& got, const std::string& name, const std::vector<int64_t>& dims) {
    int64_t size = 1;
    for (int64_t d : dims) size *= d;
    if (got.dims != dims)
      throw RuntimeError("load_state: tensor '" + name + "' has shape " + dims_str(got.dims) + ", the model expects " +
                         dims_str(dims));
    if (int64_t(got.data.size()) != size)
      throw RuntimeError("load_state: tensor '" + name + "' holds " + std::to_string(got.data.size()) +
                         " values, its shape " + dims_str(dims) + " needs " + std::to_string(size));
  }

  void load_weights(const std::vector<NamedTensor>& w) {
    size_t k = 0;
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerDesc& L = plan_.layers[li];
      const auto ptrs = layers_[li]->params();
      for (size_t j = 0; j < L.params.size(); ++j) {
        GENRELAB_CHECK(k < w.size() && int64_t(w[k].data.size()) == L.params[j].size(),
                       "initial weights do not match the plan");
        to_device(w[k++].data, ptrs[j]);
      }
    }
    ctx_.stream_sync();
  }

  ModelPlan plan_;
  TrainHyper hyper_;
  GpuContext ctx_;
  std::vector<std::string> slots_;
  std::vector<std::unique_ptr<GpuLayer>> layers_;
  std::vector<std::string> fwd_names_, bwd_names_, allreduce_names_;  // NVTX range names per layer: "fwd conv2d_1"
  std::vector<Trainable> trainable_;
  int64_t cap_ = 0;                             // batch size the buffers hold
  std::vector<DeviceBuffer<float>> act_store_;  // act_store_[i]: (cap, out_i); empty for flatten, the fused
                                                // first conv (and its pool, when the dropout after it is fused),
                                                // a fused epilogue's pool before a dropout (when sign-coded)
                                                // and, under bf16/fp16, a fused epilogue's conv
  std::vector<float*> act_;                     // output of layer i (flatten: its input's memory)
  DeviceBuffer<float> grad_[2];                 // (cap, widest layer): dy / dx ping-pong
  DeviceBuffer<float> losses_;                  // (cap) per-example loss
  DeviceBuffer<int32_t> correct_;               // (cap) argmax == label
  // What a step leaves on the device for the host, in one block so that one copy reads it.
  struct StepResult {
    double loss_sum = 0;     // the step's summed example losses
    double global_norm = 0;  // its gradients' global norm (train.clip_norm)
    int32_t correct = 0;     // its examples whose argmax is the label
    int32_t unused = 0;
  };
  DeviceBuffer<StepResult> step_result_;  // (1) the last step's
  // take_step_stats(): each step's StepResult, copied into a pinned slot as it runs.
  static constexpr size_t kStatsWindow = 64;
  cuda::PinnedBuffer<StepResult> stats_window_{kStatsWindow};  // (kStatsWindow)
  std::vector<int64_t> stats_window_n_;  // (filled slots) examples of each slot's step
  std::vector<StepStats> taken_stats_;   // drained slots not yet returned by take_step_stats()
  DeviceBuffer<double> sq_;                     // (trainable tensors) sums of squared gradients
  DeviceBuffer<float> scalars_;                 // [0] clip scale
  DeviceBuffer<uint8_t> reduce_tmp_;            // CUB scratch
  DeviceBuffer<int64_t> dnonfinite_;            // (tensors) non-finite counts of check_finite
  bool fp16_ = false;                           // dynamic loss scaling on
  DeviceBuffer<float> loss_scale_;              // (4) ops::LossScaleStep's state: scale, good steps, 1/scale, skipped
  DeviceBuffer<int64_t> dgrad_bad_;             // (trainable tensors) non-finite gradient counts of this step
  cuda::Event ev_start_{true}, ev_fwd_{true}, ev_bwd_{true}, ev_end_{true};
  // Stage timing (set_stage_timing): the clock, and the step's pointer to it (null when the step
  // is not timed: off, a capture, or predict).
  bool stage_timing_ = false;
  StageClock stages_;
  StageClock* clock_ = nullptr;
  inline static const std::string kLossStage = "loss", kOptimizerStage = "optimizer";
  // The hold before a stage-timed step: well above the host's time to queue an eager step.
  static constexpr double kStageTimingHoldMs = 20.0;
  cuda::Stream comm_stream_;                // data parallel: gradient all-reduces
  std::vector<cuda::Event> layer_done_;     // per layer: its backward has run
  cuda::Event comm_done_;                   // every all-reduce of the step has run
  uint64_t step_ = 0;
  int64_t last_n_ = 0;
  bool last_graphed_ = false;         // the last step was a graph launch (last_times)
  bool has_rnn_ = false;              // gru/lstm layers: never captured
  bool graphs_failed_ = false;        // a capture or launch failed: eager from then on
  bool graph_note_ = false;           // the "ignored" note was printed
  bool capture_fault_ = false;        // GENRELAB_TEST_CUDA_GRAPH_FAULT: make captures fail (tests)
  std::vector<StepGraph> graphs_;     // (≤ kMaxGraphs) captured steps by key
  std::unique_ptr<cuda::nn::FusedConvPool> fused_;  // train.fuse_conv_pool: layers 0 to fused_->last() as one
  // train.fuse_conv_epilogue: each fused run, found at its conv's index and its last layer's
  std::vector<std::unique_ptr<cuda::nn::FusedConvEpilogue>> epilogues_;
  std::vector<cuda::nn::FusedConvEpilogue*> epilogue_at_;
  uint64_t graph_uses_ = 0;
  // state_snapshot(): the copy of every state tensor that the returned function reads, the event
  // after its copies, and the stream of the function's device-to-host copies.
  DeviceBuffer<float> snapshot_;
  cuda::Event snapshot_copied_{false, true};  // blocking: the writer thread sleeps while it waits
  cuda::Stream snapshot_stream_;
};

}  // namespace

std::unique_ptr<Network> make_cuda_network(const ModelPlan& plan, const TrainHyper& hyper) {
  return std::make_unique<CudaNetwork>(plan, hyper);
}

}  // namespace genrelab::nn
