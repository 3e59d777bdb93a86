// The CPU backend's Network: layers from cpu_layers.h, the fused softmax cross-entropy head, the
// L2 penalty, global-norm clipping and the optimizer updates, all through the functors of
// ops/nn_*.h that the CUDA backend launches too. bf16/fp16 round the conv2d/dense operands as the
// GPU does (ops/low_precision.h); fp16 adds the dynamic loss scale, read through a pointer as on the GPU.
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/ops/conv_pool.h"
#include "genrelab/nn/network.h"
#include "genrelab/nn/schedule.h"
#include "genrelab/nvtx.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/nn_gpu_extra.h"
#include "genrelab/ops/nn_loss.h"
#include "genrelab/ops/nn_optim.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

// LayerImpl over a float CpuLayer (parameter storage stays in the CpuLayer).
class CpuLayerImpl final : public LayerImpl {
 public:
  explicit CpuLayerImpl(CpuLayer<float>& l) : l_(l) {}
  void forward(const float* x, float* y, int64_t n, bool training, const StepKey& key) override { l_.forward(x, y, n, training, key); }
  void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n, const StepKey& key) override {
    l_.backward(x, y, dy, dx, n, key);
  }
  std::vector<float*> params() override {
    std::vector<float*> p;
    for (auto& v : l_.params()) p.push_back(v.data());
    return p;
  }
  std::vector<float*> grads() override {
    std::vector<float*> g;
    for (auto& v : l_.grads()) g.push_back(v.data());
    return g;
  }

 private:
  CpuLayer<float>& l_;
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

class CpuNetwork final : public Network {
 public:
  CpuNetwork(const ModelPlan& plan, const TrainHyper& hyper) : plan_(plan), hyper_(hyper) {
    GENRELAB_CHECK(!plan.layers.empty(), "empty model plan");
    slots_ = optimizer_slots(hyper.optimizer);
    const int half = matmul_half_format(hyper.precision);
    if (hyper.precision == "tf32")
      std::cerr << "genrelab: note: the cpu backend computes train.precision=tf32 in float32 (TF32 is a GPU tensor-core "
                   "rounding; bf16 and fp16 are emulated exactly)\n";
    fp16_ = hyper.precision == "fp16";
    loss_scale_ = {float(hyper.loss_scale_init), 0.0f, 1.0f, 0.0f};
    for (const auto& L : plan_.layers) {
      layers_.push_back(make_cpu_layer<float>(L));
      layers_.back()->set_matmul_format(half);
      fwd_names_.push_back("fwd " + L.name);  // NVTX range names, built once
      bwd_names_.push_back("bwd " + L.name);
      impls_.push_back(std::make_unique<CpuLayerImpl>(*layers_.back()));
      // Optimizer moments: one buffer per slot per trainable parameter.
      std::vector<std::vector<std::vector<float>>> per_param;
      for (const auto& p : L.params)
        if (p.trainable) per_param.emplace_back(slots_.size(), std::vector<float>(size_t(p.size()), 0.0f));
      moments_.push_back(std::move(per_param));
    }
    fused_ = use_fused_conv_pool(plan_, hyper, Device::cpu);
    if (fused_) {
      fused_geom_ = conv_pool_geom(plan_);
      fused_drop_ = conv_pool_dropout(plan_);
      fused_last_ = conv_pool_last(plan_);
      const std::string name = joined_layer_names(plan_, 0, fused_last_);
      fwd_names_[0] = "fwd " + name;
      bwd_names_[0] = "bwd " + name;
    }
    epilogue_at_.assign(plan_.layers.size(), nullptr);
    for (const auto& run : use_fused_conv_epilogues(plan_, hyper, fused_ ? fused_last_ + 1 : 0)) {
      epilogues_.push_back(std::make_unique<CpuConvEpilogue>(run));
      epilogue_at_[run.conv] = epilogue_at_[run.last()] = epilogues_.back().get();
      fwd_names_[run.conv] = "fwd " + run.name;
      bwd_names_[run.conv] = "bwd " + run.name;
    }
    load_weights(initial_weights(plan_, hyper_));
  }

  Device device() const override { return Device::cpu; }
  const ModelPlan& plan() const override { return plan_; }

  // train.sync_batchnorm: the batch-norm layers take their statistics over the ranks too.
  void set_communicator(dist::Communicator* comm) override {
    comm_ = comm;
    for (auto& l : layers_) l->set_communicator(hyper_.sync_batchnorm ? comm : nullptr);
  }

  void train_step(const float* x, const int32_t* labels, int64_t n, int64_t global_batch, float lr, const StepKey& key) override {
    GENRELAB_CHECK(n >= 0 && global_batch >= n && global_batch > 0 && (n > 0 || comm_),
                   "train_step: n = ", n, ", global_batch = ", global_batch);
    const int64_t C = plan_.classes;
    for (int64_t e = 0; e < n; ++e)
      GENRELAB_CHECK(labels[e] >= 0 && labels[e] < C, "train_step: label ", labels[e], " of example ", e, " is outside [0, ", C, ")");
    auto t0 = Clock::now();
    const size_t L = layers_.size();
    if (n == 0) {  // an empty shard: no gradient of its own, but the same collectives and update
      for (auto& l : layers_) l->zero_grads();
      if (hyper_.sync_batchnorm) {  // the batch-norm statistics' all-reduces, in the order of a full step
        for (size_t i = 0; i < L; ++i)
          if (plan_.layers[i].type == "batchnorm") layers_[i]->forward(nullptr, nullptr, 0, true, key);
        for (size_t i = L; i-- > 0;)
          if (plan_.layers[i].type == "batchnorm") layers_[i]->backward(nullptr, nullptr, nullptr, nullptr, 0, key);
      }
      stats_ = {};
      finish_step(lr, key.step);
      return;
    }
    layers_.back()->set_logits_output(true);
    {
      NvtxRange range("forward");
      forward_all(x, n, true, key);
    }
    const float* logits = acts_[L - 1].data();  // (n, classes)

    // Head: per-example loss and the gradient of the mean loss over the global batch.
    losses_.resize(size_t(n));
    correct_.resize(size_t(n));
    const float ls = float(hyper_.label_smoothing);
    cpu_for_1d(n, ops::SoftmaxXentLoss<float>{logits, labels, C, ls, losses_.data(), correct_.data()});
    stats_ = {};
    for (int64_t e = 0; e < n; ++e) {
      stats_.loss_sum += double(losses_[size_t(e)]);
      stats_.correct += correct_[size_t(e)];
    }
    stats_.examples = n;
    times_.forward_ms = ms_since(t0);

    t0 = Clock::now();
    auto backward_range = std::make_unique<NvtxRange>("backward");
    dy_.resize(size_t(n * C));
    cpu_for_1d(n * C, ops::SoftmaxXentGrad<float>{logits, labels, C, ls, 1.0f / float(global_batch), dy_.data()});
    if (fp16_) cpu_for_1d(n * C, ops::ScaleByDevice{dy_.data(), loss_scale_.data()});
    for (auto& l : layers_) l->zero_grads();
    for (size_t i = L; i-- > 0;) {
      if (fused_ && i == fused_last_) {  // the last fused layer's dy straight into the conv's gradients
        NvtxRange range(bwd_names_[0].c_str());
        auto& g = layers_[0]->grads();
        GENRELAB_CHECK(fused_argmax_.size() == size_t(n * plan_.layers[1].out.size()),
                       "fused conv+pool backward without a training forward of the batch");
        conv_pool_backward_cpu(fused_cell(x), dy_.data(), fused_argmax_.data(), n, g[0].data(),
                               g.size() > 1 ? g[1].data() : nullptr, fused_drop_.backward_scale());
        break;
      }
      if (epilogue_at_[i] && epilogue_at_[i]->run().last() == i) {  // a fused conv epilogue run, from its top
        const auto& run = epilogue_at_[i]->run();
        const size_t c = run.conv;
        NvtxRange range(bwd_names_[c].c_str());
        auto* conv = dynamic_cast<CpuConvProduct<float>*>(layers_[c].get());
        epilogue_at_[i]->backward(dy_.data(), acts_[run.pool].data(), conv->dz_buffer(n), n, key);
        if (c > 0) dx_.resize(size_t(n * plan_.layers[c].in.size()));
        conv->backward_product(c == 0 ? x : acts_[c - 1].data(), c == 0 ? nullptr : dx_.data(), n);
        if (c > 0) dy_.swap(dx_);
        i = c;
        continue;
      }
      const float* xin = i == 0 ? x : acts_[i - 1].data();
      float* dx = nullptr;
      if (i > 0) {
        dx_.resize(size_t(n * plan_.layers[i].in.size()));
        dx = dx_.data();
      }
      {
        NvtxRange range(bwd_names_[i].c_str());
        layers_[i]->backward(xin, acts_[i].data(), dy_.data(), dx, n, key);
      }
      if (i > 0) dy_.swap(dx_);
    }
    layers_.back()->set_logits_output(false);
    backward_range.reset();
    times_.backward_ms = ms_since(t0);

    finish_step(lr, key.step);
  }

  // Sums the gradients over the ranks (data-parallel), applies the optimizer, and lets the
  // non-trainable parameters follow rank 0.
  void finish_step(float lr, uint64_t step) {
    auto t0 = Clock::now();
    if (comm_) {
      NvtxRange range("all-reduce gradients");
      for (auto& l : layers_)
        for (auto& g : l->grads()) comm_->all_reduce_sum(g.data(), int64_t(g.size()), dist::DType::f32);
    }
    {
      NvtxRange range("optimizer");
      if (fp16_) unscale_gradients();
      apply_optimizer(lr, step);
    }
    if (comm_)
      for (size_t li = 0; li < layers_.size(); ++li)
        for (size_t j = 0; j < plan_.layers[li].params.size(); ++j)
          if (!plan_.layers[li].params[j].trainable) {
            auto& p = layers_[li]->params()[j];
            comm_->broadcast(p.data(), int64_t(p.size() * sizeof(float)), 0);
          }
    ++step_;
    pending_stats_.push_back(stats_);
    times_.optimizer_ms = ms_since(t0);
    times_.step_ms = times_.forward_ms + times_.backward_ms + times_.optimizer_ms;
  }

  void predict(const float* x, int64_t n, float* probs_host) override {
    if (n == 0) return;
    layers_.back()->set_logits_output(false);
    forward_all(x, n, false, StepKey{});
    const auto& probs = acts_.back();
    std::copy(probs.begin(), probs.begin() + n * plan_.classes, probs_host);
  }

  StepStats last_stats() override { return stats_; }
  std::vector<StepStats> take_step_stats() override { return std::exchange(pending_stats_, {}); }
  double loss_scale() override { return fp16_ ? double(loss_scale_[0]) : 0.0; }
  StepTimes last_times() override { return times_; }

  std::vector<NamedTensor> state() override {
    std::vector<NamedTensor> out;
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerDesc& L = plan_.layers[li];
      for (size_t j = 0; j < L.params.size(); ++j)
        out.push_back({param_tensor_name(L, L.params[j]), L.params[j].dims, layers_[li]->params()[j]});
    }
    for (size_t s = 0; s < slots_.size(); ++s)
      for (size_t li = 0; li < layers_.size(); ++li) {
        const LayerDesc& L = plan_.layers[li];
        size_t t = 0;
        for (const auto& p : L.params) {
          if (!p.trainable) continue;
          out.push_back({slots_[s] + "." + param_tensor_name(L, p), p.dims, moments_[li][t++][s]});
        }
      }
    out.push_back({"step", {1}, {float(step_)}});
    if (fp16_) {
      out.push_back({kLossScaleTensor, {1}, {loss_scale_[0]}});
      out.push_back({kLossScaleGoodTensor, {1}, {loss_scale_[1]}});
    }
    return out;
  }

  void load_state(const std::vector<NamedTensor>& state) override {
    const std::vector<NamedTensor> want = state_layout();
    std::map<std::string, const NamedTensor*> given;
    for (const auto& t : state) given[t.name] = &t;
    // The loss scale is optional: a state without it (saved at another precision) starts from
    // train.loss_scale_init; a network that does not scale ignores it.
    std::vector<float> scale = {float(hyper_.loss_scale_init), 0.0f};
    for (const char* nm : {kLossScaleTensor, kLossScaleGoodTensor}) {
      auto it = given.find(nm);
      if (it == given.end()) continue;
      check_tensor(*it->second, {nm, {1}, {}});
      scale[std::string(nm) == kLossScaleTensor ? 0 : 1] = it->second->data[0];
      given.erase(it);
    }
    for (const auto& w : want) {
      auto it = given.find(w.name);
      if (it == given.end()) throw RuntimeError("load_state: the state has no tensor '" + w.name + "' (model or optimizer differs)");
      check_tensor(*it->second, w);
    }
    if (given.size() != want.size())
      for (const auto& t : state) {
        bool known = t.name == kLossScaleTensor || t.name == kLossScaleGoodTensor;
        for (const auto& w : want) known = known || w.name == t.name;
        if (!known) throw RuntimeError("load_state: unexpected tensor '" + t.name + "' (not part of this model and optimizer)");
      }
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerDesc& L = plan_.layers[li];
      size_t t = 0;
      for (size_t j = 0; j < L.params.size(); ++j) {
        layers_[li]->params()[j] = given[param_tensor_name(L, L.params[j])]->data;
        if (!L.params[j].trainable) continue;
        for (size_t s = 0; s < slots_.size(); ++s) moments_[li][t][s] = given[slots_[s] + "." + param_tensor_name(L, L.params[j])]->data;
        ++t;
      }
    }
    step_ = uint64_t(std::llround(given["step"]->data[0]));
    loss_scale_ = {scale[0], scale[1], 1.0f, 0.0f};
  }

  LayerImpl& layer(size_t index) override {
    GENRELAB_CHECK(index < impls_.size(), "layer ", index, " of ", impls_.size());
    return *impls_[index];
  }

 protected:
  std::vector<int64_t> count_nonfinite(const std::vector<std::pair<const float*, int64_t>>& tensors) override {
    std::vector<int64_t> counts(tensors.size(), 0);
    for (size_t k = 0; k < tensors.size(); ++k)
      for (int64_t i = 0; i < tensors[k].second; ++i) counts[k] += std::isfinite(tensors[k].first[i]) ? 0 : 1;
    return counts;
  }
 public:

 private:
  // Names and shapes of state(), without the data.
  std::vector<NamedTensor> state_layout() const {
    std::vector<NamedTensor> out;
    for (const auto& L : plan_.layers)
      for (const auto& p : L.params) out.push_back({param_tensor_name(L, p), p.dims, {}});
    for (const auto& slot : slots_)
      for (const auto& L : plan_.layers)
        for (const auto& p : L.params)
          if (p.trainable) out.push_back({slot + "." + param_tensor_name(L, p), p.dims, {}});
    out.push_back({"step", {1}, {}});
    return out;
  }

  static std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
  }

  static void check_tensor(const NamedTensor& got, const NamedTensor& want) {
    int64_t size = 1;
    for (int64_t d : want.dims) size *= d;
    if (got.dims != want.dims)
      throw RuntimeError("load_state: tensor '" + want.name + "' has shape " + dims_str(got.dims) + ", the model expects " + dims_str(want.dims));
    if (int64_t(got.data.size()) != size)
      throw RuntimeError("load_state: tensor '" + want.name + "' holds " + std::to_string(got.data.size()) + " values, its shape " +
                         dims_str(want.dims) + " needs " + std::to_string(size));
  }

  void load_weights(const std::vector<NamedTensor>& w) {
    size_t k = 0;
    for (size_t li = 0; li < layers_.size(); ++li)
      for (auto& p : layers_[li]->params()) {
        GENRELAB_CHECK(k < w.size() && w[k].data.size() == p.size(), "initial weights do not match the plan");
        p = w[k++].data;
      }
  }

  // fp16: counts the non-finite (overflowed) gradients, steps the loss scale (ops::LossScaleStep
  // decides whether this step is skipped) and unscales the gradients before L2, clipping and the update.
  void unscale_gradients() {
    std::vector<std::pair<const float*, int64_t>> grads;
    for (size_t li = 0; li < layers_.size(); ++li) {
      size_t t = 0;
      for (const auto& p : plan_.layers[li].params)
        if (p.trainable) grads.push_back({layers_[li]->grads()[t++].data(), p.size()});
    }
    const std::vector<int64_t> bad = count_nonfinite(grads);
    cpu_for_1d(1, ops::LossScaleStep{bad.data(), int64_t(bad.size()), loss_scale_.data(), 2.0f, 0.5f,
                                     float(hyper_.loss_scale_growth_interval)});
    for (const auto& g : grads)
      cpu_for_1d(g.second, ops::ScaleByDevice{const_cast<float*>(g.first), loss_scale_.data() + 2});
  }

  // The fused pair's arithmetic on input x with the conv layer's parameters (train.fuse_conv_pool).
  ops::ConvPoolCell fused_cell(const float* x) {
    auto& p = layers_[0]->params();
    const LayerDesc& conv = plan_.layers[0];
    return ops::ConvPoolCell{fused_geom_, x, p[0].data(), p.size() > 1 ? p[1].data() : nullptr,
                             int(activation_of(conv)), float(activation_alpha(conv)),
                             matmul_half_format(hyper_.precision)};
  }

  void forward_all(const float* x, int64_t n, bool training, const StepKey& key) {
    acts_.resize(layers_.size());
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (fused_ && i == 0) {  // layers 0 to fused_last_ at once, into the last one's output; nothing else kept
        for (size_t j = 0; j < fused_last_; ++j) acts_[j].clear();
        std::vector<float>& y = acts_[fused_last_];
        y.resize(size_t(n * plan_.layers[fused_last_].out.size()));
        NvtxRange range(fwd_names_[0].c_str());
        fused_argmax_.resize(training ? y.size() : 0);
        const ops::DropoutStep step{key.step, key.first_example};  // the per-step key, for the loops below
        conv_pool_forward_cpu(fused_cell(x), y.data(), training ? fused_argmax_.data() : nullptr, n,
                              fused_drop_.of(key.seed, fused_drop_.drops(training) ? &step : nullptr));
        i = fused_last_;
        continue;
      }
      if (epilogue_at_[i] && epilogue_at_[i]->run().conv == i) {  // conv product, then one pass for the run
        const auto& run = epilogue_at_[i]->run();
        for (size_t j = i; j <= run.last(); ++j) acts_[j].resize(size_t(n * plan_.layers[j].out.size()));
        NvtxRange range(fwd_names_[i].c_str());
        dynamic_cast<CpuConvProduct<float>*>(layers_[i].get())->forward_product(i == 0 ? x : acts_[i - 1].data(),
                                                                                 acts_[i].data(), n);
        auto& p = layers_[i]->params();
        epilogue_at_[i]->forward(acts_[i].data(), p.size() > 1 ? p[1].data() : nullptr, acts_[run.pool].data(),
                                 run.dropout >= 0 ? acts_[size_t(run.dropout)].data() : nullptr, n, training, key);
        i = run.last();
        continue;
      }
      acts_[i].resize(size_t(n * plan_.layers[i].out.size()));
      NvtxRange range(fwd_names_[i].c_str());
      layers_[i]->forward(i == 0 ? x : acts_[i - 1].data(), acts_[i].data(), n, training, key);
    }
  }

  // L2 gradient (2·l2·w on kernels), global-norm clipping (TensorFlow's clip_by_global_norm:
  // scale = clip / max(norm, clip), the norm taken after the L2 term), then the update.
  void apply_optimizer(float lr, uint64_t step) {
    std::vector<std::pair<float*, float*>> pg;  // (param, grad) of trainable params
    std::vector<std::pair<int64_t, bool>> info;  // (size, decay)
    for (size_t li = 0; li < layers_.size(); ++li) {
      size_t t = 0;
      const LayerDesc& L = plan_.layers[li];
      for (size_t j = 0; j < L.params.size(); ++j) {
        if (!L.params[j].trainable) continue;
        pg.push_back({layers_[li]->params()[j].data(), layers_[li]->grads()[t++].data()});
        info.push_back({L.params[j].size(), L.params[j].decay});
      }
    }
    if (hyper_.l2 > 0)
      for (size_t k = 0; k < pg.size(); ++k)
        if (info[k].second) cpu_for_1d(info[k].first, ops::GradFinish<float>{pg[k].second, pg[k].first, 1.0f, float(2.0 * hyper_.l2)});
    if (hyper_.clip_norm > 0) {
      double sq = 0;
      for (size_t k = 0; k < pg.size(); ++k)
        for (int64_t i = 0; i < info[k].first; ++i) sq += double(pg[k].second[i]) * double(pg[k].second[i]);
      const double norm = std::sqrt(sq);
      last_grad_norm_ = norm;
      if (norm > hyper_.clip_norm) {
        const float scale = float(hyper_.clip_norm / norm);
        for (size_t k = 0; k < pg.size(); ++k) cpu_for_1d(info[k].first, ops::GradFinish<float>{pg[k].second, pg[k].first, scale, 0.0f});
      }
    }
    const bool adam = hyper_.optimizer != "sgd";
    const ops::OptimStep<float> scalars = optimizer_step(hyper_, lr, step);  // read through a pointer, as on the GPU
    size_t k = 0;
    for (size_t li = 0; li < layers_.size(); ++li)
      for (auto& slot : moments_[li]) {
        const bool decayed = info[k].second;
        const float* skip = fp16_ ? loss_scale_.data() + 3 : nullptr;
        if (adam)
          cpu_for_1d(info[k].first, ops::AdamUpdate<float>{pg[k].first, pg[k].second, slot[0].data(), slot[1].data(), &scalars,
                                                           float(hyper_.beta1), float(hyper_.beta2), float(hyper_.epsilon), decayed,
                                                           skip});
        else
          cpu_for_1d(info[k].first, ops::SgdUpdate<float>{pg[k].first, pg[k].second, slot[0].data(), &scalars, float(hyper_.momentum),
                                                          hyper_.nesterov, decayed, skip});
        ++k;
      }
  }

  ModelPlan plan_;
  TrainHyper hyper_;
  std::vector<std::string> slots_;
  std::vector<std::unique_ptr<CpuLayer<float>>> layers_;
  std::vector<std::string> fwd_names_, bwd_names_;  // NVTX range names per layer: "fwd conv2d_1"
  std::vector<std::unique_ptr<CpuLayerImpl>> impls_;
  std::vector<std::vector<std::vector<std::vector<float>>>> moments_;  // [layer][trainable param][slot]
  std::vector<std::vector<float>> acts_;  // acts_[i]: output of layer i, (n, out)
  std::vector<float> dy_, dx_, losses_;
  std::vector<int32_t> correct_;
  uint64_t step_ = 0;
  bool fp16_ = false;
  std::vector<float> loss_scale_;  // (4) ops::LossScaleStep's state: scale, good steps, 1/scale, skipped
  double last_grad_norm_ = 0;
  StepStats stats_;
  bool fused_ = false;  // train.fuse_conv_pool: layers 0 and 1, and a dropout after them, run as one (ops/conv_pool.h)
  ops::ConvPoolGeom fused_geom_;  // their geometry, when fused_
  FusedDropout fused_drop_;       // the dropout they apply (layer 2), if any
  size_t fused_last_ = 1;         // the last fused layer (1, or 2 with the dropout)
  std::vector<uint8_t> fused_argmax_;  // (n, qh, qw, f) the last training forward's argmax bytes
  // train.fuse_conv_epilogue: each fused run, found at its conv's index and its last layer's
  std::vector<std::unique_ptr<CpuConvEpilogue>> epilogues_;
  std::vector<CpuConvEpilogue*> epilogue_at_;
  std::vector<StepStats> pending_stats_;  // (steps since take_step_stats) the stats of each
  StepTimes times_;
};

}  // namespace

std::unique_ptr<Network> make_cpu_network(const ModelPlan& plan, const TrainHyper& hyper) {
  return std::make_unique<CpuNetwork>(plan, hyper);
}

}  // namespace genrelab::nn
