// cuDNN setup in one place for the GPU network: RAII descriptors, the per-network GPU context
// (stream, handles, shared workspace, ones vector, the per-step scalars block), and convolution
// algorithm choice cached by shape.
// Layout: every activation is NHWC (channels-last, the canonical host layout) and every conv
// kernel is KRSC = (filters, kh, kw, in_c), cuDNN's NHWC filter format; nothing is transposed.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "genrelab/cuda/memory.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/nn_optim.h"

namespace genrelab::cuda::nn {

// How matrix products and convolutions may round their inputs: fp32 strict, tf32 tensor cores,
// bf16/fp16 mixed precision (16-bit operands of conv2d and dense, float32 accumulation).
enum class Precision { fp32, tf32, bf16, fp16 };

// Who runs conv2d (train.conv_engine): per pass the faster of cuDNN's fastest algorithm and the
// im2col + cuBLAS GEMM engine (conv_gemm.h), measured on the first batch of each shape; cuDNN only;
// or the GEMM engine wherever it can run (every precision; columns within the memory limit; not
// a bf16/fp16 layer that needs the padded copy).
enum class ConvEngine { automatic, cudnn, gemm };

// "auto" | "cudnn" | "gemm" (the config's spelling); throws on anything else.
ConvEngine conv_engine_of(const std::string& name);

// The ops::kHalf* format of a precision (kHalfNone for fp32 and tf32).
int half_format(Precision precision);

// ---- RAII descriptors (move-only, destructors never throw) ----------------------------------

template <typename H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
class CudnnDesc {
 public:
  CudnnDesc() { GENRELAB_CUDA_CHECK(Create(&h_)); }
  ~CudnnDesc() {
    if (h_) Destroy(h_);
  }
  CudnnDesc(CudnnDesc&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CudnnDesc& operator=(CudnnDesc&& o) noexcept {
    if (this != &o) {
      if (h_) Destroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  CudnnDesc(const CudnnDesc&) = delete;
  CudnnDesc& operator=(const CudnnDesc&) = delete;
  H get() const { return h_; }
  operator H() const { return h_; }

 private:
  H h_ = nullptr;
};

// A 4-D tensor in NHWC memory order (cuDNN takes the sizes as n, c, h, w), float unless a 16-bit
// type (CUDNN_DATA_BFLOAT16 / CUDNN_DATA_HALF) is given.
class TensorDesc
    : public CudnnDesc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor> {
 public:
  TensorDesc() = default;
  TensorDesc(int64_t n, int64_t h, int64_t w, int64_t c, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    set(n, h, w, c, type);
  }
  void set(int64_t n, int64_t h, int64_t w, int64_t c, cudnnDataType_t type = CUDNN_DATA_FLOAT);
};

// A conv kernel (filters, kh, kw, in_c) in cuDNN's NHWC filter format ("KRSC").
class FilterDesc
    : public CudnnDesc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor> {
 public:
  FilterDesc() = default;
  FilterDesc(int64_t k, int64_t r, int64_t s, int64_t c, cudnnDataType_t type = CUDNN_DATA_FLOAT);
};

// A 2-D cross-correlation (what Keras Conv2D computes) with symmetric padding.
class ConvDesc : public CudnnDesc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                                  cudnnDestroyConvolutionDescriptor> {
 public:
  ConvDesc() = default;
  ConvDesc(int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w);
};

class ActivationDesc
    : public CudnnDesc<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor> {
 public:
  ActivationDesc() = default;
  ActivationDesc(cudnnActivationMode_t mode, double coef);
};

// ---- convolution algorithms --------------------------------------------------------------

// The three passes of a convolution, each with its own algorithm.
enum class ConvPass { forward, backward_data, backward_filter };
// "forward", "backward-data" or "backward-filter" (the logs' spelling).
inline const char* pass_name(ConvPass pass) {
  static const char* names[] = {"forward", "backward-data", "backward-filter"};
  return names[int(pass)];
}

// What the current GPU's timed choices depend on besides their shape, the context they are kept
// under in the tuning cache (nn/tuning_cache.h): the GPU model (name, compute capability, SMs,
// memory), the driver, cuDNN, cuBLAS and GenreLab versions.
const std::string& tuning_context();
// "fp32" | "tf32" | "bf16" | "fp16", the config's spelling (tuning cache keys).
const char* precision_name(Precision precision);

// The engine of each pass under one train.conv_engine setting (conv.cu decides once per shape):
// the GEMM engine instead of cuDNN, and backward-filter's row ranges under it.
struct EngineChoice {
  bool decided[3] = {false, false, false};  // per ConvPass
  bool gemm[3] = {false, false, false};
  int64_t filter_splits = 1;
};

struct ConvAlgos {
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;
  bool chosen[3] = {false, false, false};  // per ConvPass
  // The chosen algorithm's benchmarked time (-1: heuristic choice); where this batch took a larger
  // batch's choice, that batch's time in proportion to this batch's size.
  float ms[3] = {-1, -1, -1};
  // Per train.conv_engine (ConvEngine's order): networks of another setting share the cuDNN
  // choices above and decide their engine on their own.
  EngineChoice engines[3];
};

// The geometry a convolution's algorithms depend on (input already padded when the padding is
// asymmetric, see conv.cu).
struct ConvShape {
  int64_t n, h, w, c;  // input (n, h, w, c)
  int64_t k, r, s;     // kernel (k, r, s, c)
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;  // of x, w and y (the compute type is always float)
  std::string key() const;           // "n,h,w,c|k,r,s|pads|strides|dilations|type"
  std::string geometry_key() const;  // the same without n
};

// How many algorithm searches (cudnnFind*Ex or cudnnGet*_v7, one per pass) this process has run:
// a smaller batch of a geometry already chosen for runs none out of deterministic runs
// (GpuContext::conv_algos).
int64_t conv_algo_searches();
// How many cuDNN algorithms the probed searches (train.cudnn_search=probe) have timed on the
// whole batch, and how many they have probed on its first examples, in this process: for tests.
int64_t conv_candidates_run();
int64_t conv_candidates_probed();

// ---- the per-network GPU context ---------------------------------------------------------

// Everything a training step reads that changes from step to step, in one device block that one
// copy fills before the step's work: kernels read it through a pointer, so a captured CUDA graph
// replays with each step's learning rate and dropout key (nothing is baked into the graph).
struct StepScalars {
  ops::OptimStep<float> optim;  // bias-corrected step size / learning rate, decoupled decay
  ops::DropoutStep dropout;     // step and first example of the dropout masks
};

// Everything the GPU layers of one network share. Handles are bound to `stream` once, so every
// cuDNN/cuBLAS call and every launch of one network runs in order on that stream.
class GpuContext {
 public:
  // cudnn_benchmark_limit: train.cudnn_benchmark_limit (0: every candidate); cudnn_find:
  // train.cudnn_search=find (cuDNN's Find times every algorithm on the whole batch) instead of probe.
  GpuContext(Precision precision, bool deterministic, ConvEngine conv_engine = ConvEngine::automatic,
             int64_t cudnn_benchmark_limit = 0, bool cudnn_find = false);
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  cudaStream_t stream() const { return stream_.get(); }
  void stream_sync() const { stream_.synchronize(); }
  cudnnHandle_t cudnn() const { return cudnn_.get(); }
  cublasHandle_t cublas() const { return cublas_.get(); }
  Precision precision() const { return precision_; }
  bool deterministic() const { return deterministic_; }
  ConvEngine conv_engine() const { return conv_engine_; }

  // The shared workspace, grown (never shrunk) to at least `bytes`. Growing frees the old block;
  // cudaFree waits for the device, so work already queued with the old block finishes first.
  void* workspace(size_t bytes);
  size_t workspace_bytes() const { return workspace_.bytes(); }

  // Scratch float buffers shared by the layers (slot 0: activation gradients, slot 1: padded
  // input gradients), grown to at least `count`; valid until the next call with the same slot.
  float* scratch(int slot, int64_t count);

  // A device vector of at least `count` ones (for bias gradients as matrix-vector products).
  const float* ones(int64_t count);

  // Algorithms for one convolution geometry and data type, cached by shape and each pass chosen
  // when first asked for (`pass`): an inference shape never searches the backward passes, and a
  // first layer, whose input gradient the network never takes, never searches backward-data. Out
  // of deterministic runs, a smaller batch of a geometry whose pass a larger batch has chosen (an
  // epoch's partial last batch, an evaluation's remainder) takes the nearest such batch's
  // algorithm and engine decisions instead of searching again, where that algorithm runs at its
  // size. The cache is the process's, shared by every context on the same GPU with the same
  // precision and determinism: a later network (the comparisons of bench train, a sweep's next
  // run) takes the choices the first one measured instead of searching again, which costs seconds
  // per network and can resolve near-ties the other way. One thread at a time uses a context's
  // choices.
  // Benchmarked on the given data (cudnnFind*Ex; float or 16-bit as the descriptors say) when
  // x_data and w_data are given and the run is not deterministic, else cuDNN's heuristics
  // restricted to deterministic algorithms when asked (see the .cu).
  ConvAlgos& conv_algos(const ConvShape& shape, const TensorDesc& x, const FilterDesc& w, const ConvDesc& conv,
                        const TensorDesc& y, ConvPass pass, const void* x_data = nullptr, const void* w_data = nullptr);

  // cudnnMathType_t that the precision asks of convolutions without a chosen algorithm.
  cudnnMathType_t conv_math() const;
  // The cuDNN data type of convolution tensors and filters: float, or the bf16/fp16 operand type.
  cudnnDataType_t conv_data_type() const;
  // The 16-bit format conv2d and dense round their operands to (ops::kHalf*).
  int half_format() const { return ::genrelab::cuda::nn::half_format(precision_); }

  // buf.resize(count), counting a move of the buffer in layout_epoch(): a captured CUDA graph
  // holds raw addresses, so the network rebuilds its graphs when the epoch has moved. Every
  // buffer a training step touches grows through this (or the network's own counter).
  // A failed allocation (which throws after the old block was freed) counts as a move too.
  template <typename T>
  void resize_tracked(DeviceBuffer<T>& buf, size_t count) {
    const T* before = buf.data();
    try {
      buf.resize(count);
    } catch (...) {
      if (before) ++layout_epoch_;
      throw;
    }
    if (buf.data() != before) ++layout_epoch_;
  }
  // buf freed, counted in layout_epoch() like a move (a graph captured with it must not replay).
  template <typename T>
  void release_tracked(DeviceBuffer<T>& buf) {
    if (!buf.data()) return;
    buf = DeviceBuffer<T>();
    ++layout_epoch_;
  }
  uint64_t layout_epoch() const { return layout_epoch_; }

  // Queues one copy of `s` into the device block and returns the block. The copy reads a slot of
  // a pinned ring (kRing slots, each reused only after its previous copy has run), so a later
  // host write cannot change what an earlier queued step reads. Refused while capturing.
  const StepScalars* upload_step(const StepScalars& s);
  // The device copy of `key`'s per-step part for dropout kernels: the block of the step the
  // network uploaded when it holds this key (no copy, so capturable), else a fresh upload with
  // the last optimizer scalars (a layer called on its own, as the layer tests and benches do).
  const ops::DropoutStep* dropout_step(const genrelab::nn::StepKey& key);
  // Data parallel: waits for ring slots go through the communicator, so a rank that died cannot
  // block this one past train.comm_timeout_s.
  void set_communicator(dist::Communicator* comm) { comm_ = comm; }
  // While true, upload_step throws (a copy from the ring inside a graph would replay stale data).
  void set_capturing(bool on) { capturing_ = on; }
  bool capturing() const { return capturing_; }

  // Host seconds spent choosing algorithms on this context (Network::tuning_seconds): the scopes
  // of cuDNN's searches, the GEMM engine's timings and GEMM kernel tuning. A scope first waits
  // for the work queued before it (which is not its own) and, at its end, for its own; a scope
  // inside another counts once, with the outer one.
  double tuning_seconds() const { return tuning_seconds_; }
  class TuningScope {
   public:
    explicit TuningScope(GpuContext& ctx);
    ~TuningScope();
    TuningScope(const TuningScope&) = delete;
    TuningScope& operator=(const TuningScope&) = delete;

   private:
    GpuContext& ctx_;
    std::chrono::steady_clock::time_point start_;
  };

 private:
  static constexpr size_t kRing = 8;
  Precision precision_;
  bool deterministic_;
  ConvEngine conv_engine_;
  int64_t cudnn_benchmark_limit_;
  bool cudnn_find_;
  Stream stream_;
  CudnnHandle cudnn_;
  // Declared before the handle, so that it outlives it.
  DeviceBuffer<uint8_t> cublas_workspace_;  // set with cublasSetWorkspace: cuBLAS allocates nothing while captured
  CublasHandle cublas_;
  DeviceBuffer<uint8_t> workspace_;
  DeviceBuffer<float> ones_;
  DeviceBuffer<float> scratch_[2];
  uint64_t layout_epoch_ = 0;
  DeviceBuffer<StepScalars> step_block_;  // (1) the current step's scalars
  PinnedBuffer<StepScalars> ring_;        // (kRing) staging slots of the copies
  std::vector<Event> ring_done_;          // (kRing) the slot's last copy has run
  size_t ring_next_ = 0;
  dist::Communicator* comm_ = nullptr;
  StepScalars current_{};                 // what step_block_ holds once the queued copies have run
  bool have_current_ = false, capturing_ = false;
  double tuning_seconds_ = 0;
  int tuning_depth_ = 0;  // open TuningScopes
};

}  // namespace genrelab::cuda::nn
