// conv2d on cuDNN: NHWC activations, KRSC kernel (the canonical layout), cross-correlation like
// Keras, then the fused bias + activation functor. Keras "same" padding with an odd total pads one
// more row/column at the bottom/right; cuDNN pads symmetrically, so such layers copy the input
// into an explicitly padded buffer (zeros) and run cuDNN unpadded; the input gradient comes back
// through that buffer and is cropped.
// bf16/fp16 (mixed precision): x and the kernel are cast to 16-bit copies (ops::ToHalf, exact
// round-to-nearest-even), cuDNN runs on 16-bit tensors with float accumulation and writes y, dx
// and dW in the 16-bit type, which ops::FromHalf brings back to float (dW added to the float
// gradient); the CPU backend rounds at the same points.
// Each pass may run on the GEMM engine (conv_gemm.h, train.conv_engine) instead, which takes the
// Keras padding itself (its input gradient needs no crop); under bf16/fp16 it multiplies the same
// 16-bit copies, and layers whose input needs the padded copy stay on cuDNN.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conv_gemm.h"
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/nn/tuning_cache.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/nn_gpu_extra.h"

namespace genrelab::cuda::nn {

namespace {

class ConvLayer final : public GpuLayer, public ConvProduct {
 public:
  ConvLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx),
        g_(genrelab::nn::window_of(d)),
        act_(int(genrelab::nn::activation_of(d))),
        alpha_(float(genrelab::nn::activation_alpha(d))),
        has_bias_(d.params.size() > 1),
        half_(ctx.half_format()),
        type_(ctx.conv_data_type()) {
    asym_ = g_.pad_top != g_.pad_bottom || g_.pad_left != g_.pad_right;
    hp_ = d.in.h + (asym_ ? g_.pad_top + g_.pad_bottom : 0);
    wp_ = d.in.w + (asym_ ? g_.pad_left + g_.pad_right : 0);
    const int ph = asym_ ? 0 : int(g_.pad_top), pw = asym_ ? 0 : int(g_.pad_left);
    conv_ = ConvDesc(ph, pw, int(g_.sh), int(g_.sw), int(g_.dh), int(g_.dw));
    w_ = FilterDesc(d.out.c, g_.kh, g_.kw, d.in.c, type_);
    GENRELAB_CHECK(act_ != ops::kActSoftmax, "conv2d layer ", d.index, ": softmax is only for the last dense layer");
    if (ctx.conv_engine() != ConvEngine::cudnn && !(half_ && asym_))
      gemm_ = std::make_unique<GemmConv>(genrelab::nn::conv_cols_geom(d), d.out.c, ctx);
  }

  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    const uint16_t* y16 = forward_product(x, y, n, false);
    const float* bias = has_bias_ ? param(1) : nullptr;
    if (y16)  // y = act(float(y16) + b) in one pass
      launch_1d(n * desc_.out.size(), ops::HalfBiasActivation{y16, y, bias, desc_.out.c, half_, act_, alpha_},
                ctx_.stream());
    else
      bias_activation(y, bias, n * desc_.out.size(), desc_.out.c, act_, alpha_, ctx_.stream());
  }

  const uint16_t* forward_product(const float* x, float* z, int64_t n, bool cols_written) override {
    const float* xin = pad_input(x, n);
    const void* xc = xin;       // what cuDNN reads: float, or the 16-bit copies
    const void* wc = param(0);
    void* zc = z;
    if (half_) {
      const int64_t xcount = n * hp_ * wp_ * desc_.in.c, wcount = desc_.params[0].size(), zcount = n * desc_.out.size();
      xc = to_half(xin, xcount, x16_);
      wc = to_half(param(0), wcount, w16_);
      zc = grown(y16_, zcount);
    }
    const void* xg = gemm_x(x);
    setup(n, xc, wc, ConvPass::forward, {xg, nullptr, zc});
    if (on_gemm(ConvPass::forward)) {
      gemm_->forward(xg, wc, zc, n, cols_written);
    } else {
      GENRELAB_CHECK(!cols_written, "conv2d layer ", desc_.index, ": columns written for a forward on cuDNN");
      // Scaling factors are float for float and 16-bit data alike.
      const float one = 1.0f, zero = 0.0f;
      void* ws = ctx_.workspace(algos_->fwd_bytes);
      GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->fwd_math));
      // z (n, oh, ow, k) = x (n, hp, wp, c) ⋆ w (k, kh, kw, c)
      GENRELAB_CUDA_CHECK(cudnnConvolutionForward(ctx_.cudnn(), &one, xd_, xc, w_, wc, conv_, algos_->fwd, ws,
                                                  algos_->fwd_bytes, &zero, yd_, zc));
    }
    return half_ ? y16_.data() : nullptr;
  }

  // Follows a training forward of the same x (the padded copy of x, and under bf16/fp16 the
  // 16-bit x and kernel, are reused).
  void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n, const StepKey&) override {
    // Before dz takes scratch slot 0 (an algorithm search uses it).
    const bool cols_ready = prepare_backward(x, y, dx, n);
    const int64_t ycount = n * desc_.out.size();
    // dz (n, oh, ow, k): gradient before the activation; bf16/fp16: also dz rounded into the
    // y-sized 16-bit buffer (the forward's y16 is no longer needed), in the same pass when there
    // is an activation.
    const float* dz = dy;
    const void* dzc = dy;
    if (act_ != ops::kActNone) {
      float* s = ctx_.scratch(0, ycount);
      if (half_) {
        uint16_t* half_dz = grown(y16_, ycount);
        launch_1d(ycount, ops::ActivationBackwardToHalf{y, dy, s, half_dz, half_, act_, alpha_}, ctx_.stream());
        dzc = half_dz;
      } else {
        activation_backward(y, dy, s, ycount, act_, alpha_, ctx_.stream());
        dzc = s;
      }
      dz = s;
    } else if (half_) {
      dzc = to_half(dz, ycount, y16_);
    }
    if (has_bias_) add_bias_grad(ctx_, dz, grad(1), n * desc_.out.h * desc_.out.w, desc_.out.c);
    products_backward(x, dzc, dx, n, cols_ready, nullptr);
  }

  uint16_t* dz16(int64_t n) override { return half_ ? grown(y16_, n * desc_.out.size()) : nullptr; }

  ops::ColumnsOut columns_from_below(int64_t n, bool training) override {
    if (!gemm_ || half_ || gemm_->direct() || !ops::ColumnsOut::writable(gemm_->geom())) return {};
    // Batch n's descriptors and decisions are the current ones (setup returns at once), and timing
    // is over: a pass still to time would run on x, or overwrite the columns before the kernel
    // gradient, which would then build them from x.
    if (n != n_ || !algos_) return {};
    const auto settled = [&](ConvPass p) {
      return algos_->chosen[int(p)] && engine_choice().decided[int(p)] && on_gemm(p);
    };
    if (!settled(ConvPass::forward)) return {};
    if (training && (!settled(ConvPass::backward_filter) || !algos_->chosen[int(ConvPass::backward_data)] ||
                     !engine_choice().decided[int(ConvPass::backward_data)]))
      return {};
    return {gemm_->written_columns(n), gemm_->geom()};
  }

  void backward_product(const float* x, const float* z, const float* dz, const float* bias_dz, int64_t bias_rows,
                        float* dx, int64_t n, ops::ColumnsGrad* dx_columns) override {
    const bool cols_ready = prepare_backward(x, z, dx, n);
    if (has_bias_) add_bias_grad(ctx_, bias_dz, grad(1), bias_rows, desc_.out.c);
    products_backward(x, half_ ? static_cast<const void*>(y16_.data()) : dz, dx, n, cols_ready, dx_columns);
  }

 private:
  using Shape3 = genrelab::nn::Shape3;

  // What timing the GEMM engine on a pass reads and writes (float, or 16-bit under bf16/fp16, as
  // the engine takes them): the forward's x and z; backward-filter's x and a stand-in for dz;
  // backward-data's stand-in for dz and its (float) dx.
  struct TimingData {
    const void* x;
    const void* dz;
    void* out;
  };

  // Descriptors for batch n, the algorithm of `pass` (cached by shape in the context; a new shape
  // is benchmarked on the input xin and the current kernel) and its engine. Returns true when
  // choosing the engine may have overwritten the forward's columns (choose_engine).
  bool setup(int64_t n, const void* xin, const void* win, ConvPass pass, const TimingData& data) {
    const int p = int(pass);
    if (n == n_ && algos_ && algos_->chosen[p] && (engine_choice().decided[p] || !gemm_)) return false;
    if (n != n_) {
      xd_.set(n, hp_, wp_, desc_.in.c, type_);
      yd_.set(n, desc_.out.h, desc_.out.w, desc_.out.c, type_);
      n_ = n;
    }
    const ConvShape shape{n, hp_, wp_, desc_.in.c, desc_.out.c, g_.kh, g_.kw,
                          asym_ ? 0 : int(g_.pad_top), asym_ ? 0 : int(g_.pad_left), int(g_.sh), int(g_.sw),
                          int(g_.dh), int(g_.dw), type_};
    algos_ = &ctx_.conv_algos(shape, xd_, w_, conv_, yd_, pass, xin, win);
    return choose_engine(shape, pass, n, data);
  }

  // The backward passes' algorithms and engines (timing the GEMM engine reads y, the forward's
  // output, in place of dz and writes dx, both rewritten afterwards; timing its backward-data
  // overwrites the forward's columns, which backward-filter then builds again). The input
  // gradient's algorithm only when asked for one: the network never asks its first layer.
  // Returns whether the forward's columns are still there for backward-filter.
  bool prepare_backward(const float* x, const float* y, float* dx, int64_t n) {
    const void* xc = backward_x(x);
    const void* wc = kernel_operand();
    // Stand-ins for dz: the forward's output (its 16-bit z under bf16/fp16).
    const void* xg = gemm_x(x);
    const void* dz_stand_in = half_ ? static_cast<const void*>(y16_.data()) : y;
    setup(n, xc, wc, ConvPass::backward_filter, {xg, dz_stand_in, nullptr});
    bool cols_ready = on_gemm(ConvPass::forward);
    if (dx && setup(n, xc, wc, ConvPass::backward_data, {nullptr, dz_stand_in, dx})) cols_ready = false;
    release_if_unused();
    return cols_ready;
  }

  // What cuDNN's backward passes read for x: the forward's 16-bit copy, its padded copy, or x.
  const void* backward_x(const float* x) const {
    if (half_) return x16_.data();
    return asym_ ? xpad_.data() : x;
  }
  // What the GEMM engine reads for x: x, or the forward's 16-bit copy (unpadded where the engine
  // runs).
  const void* gemm_x(const float* x) const { return half_ ? static_cast<const void*>(x16_.data()) : x; }
  // The kernel the products read: the parameter, or the forward's 16-bit copy.
  const void* kernel_operand() { return half_ ? static_cast<const void*>(w16_.data()) : param(0); }

  // Kernel and input gradients from dzc, what the products read: dz, or its 16-bit copy under
  // bf16/fp16; the input gradient left as the engine's columns where dx_columns takes them
  // (backward_product).
  void products_backward(const float* x, const void* dzc, float* dx, int64_t n, bool cols_ready,
                         ops::ColumnsGrad* dx_columns) {
    if (dx_columns) *dx_columns = ops::ColumnsGrad();
    const void* xc = backward_x(x);
    const void* wc = kernel_operand();
    const float one = 1.0f, zero = 0.0f;
    if (on_gemm(ConvPass::backward_filter)) {
      gemm_->backward_filter(gemm_x(x), dzc, grad(0), n, cols_ready, engine_choice().filter_splits);
    } else {
      void* ws = ctx_.workspace(algos_->bwd_filter_bytes);
      GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->bwd_filter_math));
      // dw (k, kh, kw, c) += x ⋆ dz  (beta = 1: gradients accumulate); bf16/fp16: this call's dw
      // in 16 bits (beta = 0), then added to the float gradient.
      const int64_t wcount = desc_.params[0].size();
      void* dwc = half_ ? static_cast<void*>(grown(dw16_, wcount)) : grad(0);
      GENRELAB_CUDA_CHECK(cudnnConvolutionBackwardFilter(ctx_.cudnn(), &one, xd_, xc, yd_, dzc, conv_,
                                                         algos_->bwd_filter, ws, algos_->bwd_filter_bytes,
                                                         half_ ? &zero : &one, w_, dwc));
      if (half_) launch_1d(wcount, ops::FromHalf{dw16_.data(), grad(0), half_, true}, ctx_.stream());
    }
    if (!dx) return;
    if (on_gemm(ConvPass::backward_data)) {
      if (dx_columns && !gemm_->direct())
        *dx_columns = gemm_->backward_data_columns(dzc, wc, n);
      else
        gemm_->backward_data(dzc, wc, dx, n);
      return;
    }
    const int64_t xcount = n * hp_ * wp_ * desc_.in.c;
    float* dxin = asym_ ? ctx_.scratch(1, xcount) : dx;
    void* dxc = half_ ? static_cast<void*>(grown(dx16_, xcount)) : dxin;
    void* ws = ctx_.workspace(algos_->bwd_data_bytes);
    GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv_, algos_->bwd_data_math));
    // dx (n, hp, wp, c) = dz ⋆ᵀ w
    GENRELAB_CUDA_CHECK(cudnnConvolutionBackwardData(ctx_.cudnn(), &one, w_, wc, yd_, dzc, conv_, algos_->bwd_data,
                                                     ws, algos_->bwd_data_bytes, &zero, xd_, dxc));
    if (half_) launch_1d(xcount, ops::FromHalf{dx16_.data(), dxin, half_, false}, ctx_.stream());
    if (asym_) {
      const Shape3 in = desc_.in;
      launch_1d(n * in.size(), ops::CropNhwc<float>{dxin, dx, in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left},
                ctx_.stream());
    }
  }

  // This layer's train.conv_engine's decisions for the current shape (kept with its algorithms).
  EngineChoice& engine_choice() const { return algos_->engines[int(ctx_.conv_engine())]; }

  bool on_gemm(ConvPass pass) const {
    return gemm_ && engine_choice().gemm[int(pass)] &&
           std::find(gemm_refused_.begin(), gemm_refused_.end(), algos_) == gemm_refused_.end();
  }

  // Frees the GEMM engine's buffers unless some pass of some batch shape of this layer runs on
  // it (cuDNN winning every pass of an epoch's partial last batch must not free the full batch's
  // columns: that would move them every epoch and send captured graphs back to a warm-up).
  void release_if_unused() {
    if (!gemm_) return;
    gemm_used_ = gemm_used_ || on_gemm(ConvPass::forward) || on_gemm(ConvPass::backward_filter) ||
                 on_gemm(ConvPass::backward_data);
    if (!gemm_used_) gemm_->release();
  }

  // Whether `pass` runs on the GEMM engine, decided once per shape (kept with its cuDNN algorithms):
  // train.conv_engine=gemm wherever the engine runs; auto when its time, measured here, beats the
  // time cuDNN's benchmark measured for its fastest algorithm (a deterministic run has no such
  // time and stays on cuDNN). Returns true when timing it may have overwritten the forward's
  // columns (overwrote_columns).
  bool choose_engine(const ConvShape& shape, ConvPass pass, int64_t n, const TimingData& data) {
    const ConvAlgos& a = *algos_;
    EngineChoice& e = engine_choice();
    const int p = int(pass);
    // A layer without the engine leaves the decision to a layer of the same shape that has one.
    if (!gemm_) return false;
    if (e.decided[p]) {
      // Another layer of this shape decided: this one follows where its own columns fit too (each
      // layer keeps its own), and stays on cuDNN for the whole shape where they do not.
      if (on_gemm(pass) && !gemm_->fits(n)) {
        gemm_refused_.push_back(algos_);
        log_engine(shape, pass, "another layer of this shape runs it on the engine, but this layer's column matrix "
                                "does not fit (memory or 32-bit indices)", false);
      }
      gemm_used_ = gemm_used_ || on_gemm(pass);
      return false;
    }
    e.decided[p] = true;
    if (!gemm_->fits(n)) {
      log_engine(shape, pass, "its column matrix does not fit (memory or 32-bit indices)", false);
      return false;
    }
    if (pass == ConvPass::backward_filter) e.filter_splits = gemm_->suggested_filter_splits(n);
    if (ctx_.conv_engine() == ConvEngine::gemm) {
      e.gemm[p] = true;
      log_engine(shape, pass, "train.conv_engine=gemm", true);
      return false;
    }
    if (a.ms[p] < 0) return false;
    // The engine's time on this pass as an earlier process on this kind of GPU measured it (the
    // tuning cache), or measured now and stored. Backward-filter's time includes building the
    // columns where the forward does not keep them.
    const std::string stored_key =
        std::string("conv engine ") + precision_name(ctx_.precision()) + " " + pass_name(pass) + " " + shape.key() +
        (pass == ConvPass::backward_filter && !on_gemm(ConvPass::forward) ? " columns built" : "");
    float ms = 0;
    std::string what;
    if (take_stored_time(pass, stored_key, ms, what)) {
      e.gemm[p] = ms < a.ms[p];
      release_if_unused();
      log_engine(shape, pass, times_text(ms, what + ", tuning cache", a.ms[p]), e.gemm[p]);
      return false;  // nothing ran: the forward's columns are as they were
    }
    const void* w = kernel_operand();
    try {
      const GpuContext::TuningScope tuning(ctx_);
      ms = time_engine(pass, n, data, w, what);
      genrelab::nn::store_tuning(tuning_context(), stored_key, json{{"ms", ms}, {"filter_splits", e.filter_splits}});
    } catch (const std::exception& e) {
      // A recoverable failure (out of memory for the columns, a launch or cuBLAS call refused)
      // leaves this pass on cuDNN; one that broke the context fails again at the next call anyway,
      // with its own message.
      cudaGetLastError();
      log_engine(shape, pass, std::string("the engine failed: ") + e.what(), false);
      release_if_unused();
      return overwrote_columns(pass);
    }
    e.gemm[p] = ms < a.ms[p];
    // Columns no decided pass uses are freed now (an inference network's, or before cuDNN's next search).
    release_if_unused();
    log_engine(shape, pass, times_text(ms, what, a.ms[p]), e.gemm[p]);
    return overwrote_columns(pass);
  }

  // The log's comparison of the engine's time with cuDNN's.
  static std::string times_text(float ms, const std::string& what, float cudnn_ms) {
    char times[128];
    std::snprintf(times, sizeof times, "im2col + cuBLAS %.3f ms%s vs cuDNN %.3f ms", ms, what.c_str(), cudnn_ms);
    return times;
  }

  // The engine's time on `pass` from the tuning cache (nn/tuning_cache.h) and, for backward-filter,
  // its row ranges (at most the ones suggested now, in engine_choice().filter_splits). False where
  // nothing usable is stored.
  bool take_stored_time(ConvPass pass, const std::string& key, float& ms, std::string& what) {
    const std::optional<json> v = genrelab::nn::find_tuning(tuning_context(), key);
    if (!v || !v->is_object() || !v->contains("ms") || !(*v)["ms"].is_number() || !v->contains("filter_splits") ||
        !(*v)["filter_splits"].is_number_integer())
      return false;
    ms = (*v)["ms"].get<float>();
    const int64_t splits = (*v)["filter_splits"].get<int64_t>();
    if (!(ms > 0)) return false;
    if (pass == ConvPass::backward_filter) {
      EngineChoice& e = engine_choice();
      if (splits < 1 || splits > std::max<int64_t>(e.filter_splits, 1)) return false;
      e.filter_splits = splits;
      what = ", " + std::to_string(splits) + " row range" + (splits > 1 ? "s" : "");
    }
    genrelab::nn::count_tuning_taken();
    return true;
  }

  // Whether timing `pass` on the engine may have overwritten the forward's columns.
  bool overwrote_columns(ConvPass pass) const {
    return pass == ConvPass::backward_data && !gemm_->backward_data_keeps_columns();
  }

  // Milliseconds of `pass` on the GEMM engine (timing data as in choose_engine); `what` says how
  // the kernel gradient ran.
  float time_engine(ConvPass pass, int64_t n, const TimingData& data, const void* w, std::string& what) {
    EngineChoice& e = engine_choice();
    float ms = 0;
    switch (pass) {
      case ConvPass::forward:
        ms = time_on_stream([&] { gemm_->forward(data.x, w, data.out, n); });
        break;
      case ConvPass::backward_filter: {
        // Into a scratch gradient; one SGEMM against row ranges, whichever is faster.
        DeviceBuffer<float> dw(size_t(desc_.params[0].size()));
        const bool ready = on_gemm(ConvPass::forward);
        const int64_t many = e.filter_splits;
        ms = time_on_stream([&] { gemm_->backward_filter(data.x, data.dz, dw.data(), n, ready, 1); });
        e.filter_splits = 1;
        if (many > 1) {
          const float ms_many = time_on_stream([&] { gemm_->backward_filter(data.x, data.dz, dw.data(), n, ready, many); });
          if (ms_many < ms) ms = ms_many, e.filter_splits = many;
        }
        what = ", " + std::to_string(e.filter_splits) + " row range" + (e.filter_splits > 1 ? "s" : "");
        break;
      }
      case ConvPass::backward_data:
        ms = time_on_stream([&] { gemm_->backward_data(data.dz, w, static_cast<float*>(data.out), n); });
        break;
    }
    return ms;
  }

  // Milliseconds of one run of `run` on the stream: the median of five, after one untimed run.
  // Each timed run is queued behind a hold (cuda::hold_stream), so that the host's launches
  // between its kernels (im2col, the product, the partial sums) do not count.
  template <typename F>
  float time_on_stream(F&& run) {
    Event start(true), stop(true);
    run();
    std::vector<float> t;
    for (int i = 0; i < 5; ++i) {
      hold_stream(ctx_.stream(), 1.0);
      start.record(ctx_.stream());
      run();
      stop.record(ctx_.stream());
      stop.synchronize();
      t.push_back(stop.ms_since(start));
    }
    std::sort(t.begin(), t.end());
    return t[2];
  }

  // With GENRELAB_LOG_CONV_ALGOS set, the engine of each pass and why, on stderr (docs/profiling.md).
  static void log_engine(const ConvShape& shape, ConvPass pass, const std::string& why, bool gemm) {
    static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
    if (!on) return;
    std::cerr << "conv engine " << pass_name(pass) << " " << shape.key() << ": " << why << " -> "
              << (gemm ? "gemm" : "cudnn") << "\n";
  }

  // src (count) cast to 16 bits into buf (grown as needed); returns buf's data.
  // buf grown (never shrunk) to at least `count` elements.
  template <typename T>
  T* grown(DeviceBuffer<T>& buf, int64_t count) {
    if (size_t(count) > buf.size()) ctx_.resize_tracked(buf, size_t(count));
    return buf.data();
  }

  const void* to_half(const float* src, int64_t count, DeviceBuffer<uint16_t>& buf) {
    uint16_t* out = grown(buf, count);
    launch_1d(count, ops::ToHalf{src, out, half_}, ctx_.stream());
    return out;
  }

  // x itself, or x copied into the zero-padded buffer (n, hp, wp, c) for asymmetric padding.
  const float* pad_input(const float* x, int64_t n) {
    if (!asym_) return x;
    const Shape3 in = desc_.in;
    const int64_t count = n * hp_ * wp_ * in.c;
    float* padded = grown(xpad_, count);
    launch_1d(count, ops::PadNhwc<float>{x, padded, in.h, in.w, in.c, hp_, wp_, g_.pad_top, g_.pad_left, 0.0f},
              ctx_.stream());
    return padded;
  }

  genrelab::nn::Window2d g_;
  int act_;
  float alpha_;
  bool has_bias_;
  bool asym_ = false;
  int64_t hp_ = 0, wp_ = 0;
  ConvDesc conv_;
  FilterDesc w_;
  TensorDesc xd_, yd_;
  int64_t n_ = 0;
  ConvAlgos* algos_ = nullptr;
  std::unique_ptr<GemmConv> gemm_;  // unless train.conv_engine=cudnn (or bf16/fp16 with a padded copy)
  bool gemm_used_ = false;          // some pass of some batch shape runs on gemm_ (release_if_unused)
  // Batch shapes whose engine decision (another layer's, shared through the algorithms) this layer
  // declines because its own column matrix does not fit: all their passes stay on cuDNN.
  std::vector<const ConvAlgos*> gemm_refused_;
  DeviceBuffer<float> xpad_;  // (n, hp, wp, c), only for asymmetric padding
  int half_;                  // ops::kHalf*: 16-bit operands under bf16/fp16
  cudnnDataType_t type_;      // of the cuDNN tensors and filter
  // bf16/fp16 only: x16 (n, hp, wp, c), w16 (k, kh, kw, c), y16 (n, oh, ow, k) (also dz in
  // backward), dw16 (k, kh, kw, c), dx16 (n, hp, wp, c)
  DeviceBuffer<uint16_t> x16_, w16_, y16_, dw16_, dx16_;
};

}  // namespace

std::unique_ptr<GpuLayer> make_conv_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<ConvLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
