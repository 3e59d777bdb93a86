// cuDNN descriptors, the shared GPU context and convolution algorithm selection (cached by shape).
#include "cudnn_setup.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/cuda/launch.cuh"
#include "genrelab/dist.h"
#include "genrelab/nn/conv_search.h"
#include "genrelab/nn/tuning_cache.h"
#include "genrelab/ops/low_precision.h"

namespace genrelab::cuda::nn {

const std::string& tuning_context() {
  static std::mutex m;
  static auto* contexts = new std::map<int, std::string>;  // by device; never destroyed
  int device = 0;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(m);
  std::string& c = (*contexts)[device];
  if (c.empty()) {
    cudaDeviceProp p{};
    GENRELAB_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    int driver = 0, major = 0, minor = 0, patch = 0;
    cudaDriverGetVersion(&driver);
    cublasGetProperty(MAJOR_VERSION, &major);
    cublasGetProperty(MINOR_VERSION, &minor);
    cublasGetProperty(PATCH_LEVEL, &patch);
    std::ostringstream os;
    os << p.name << " sm_" << p.major << p.minor << " " << p.multiProcessorCount << " SMs " << (p.totalGlobalMem >> 20)
       << " MiB; driver " << driver << "; cuDNN " << cudnnGetVersion() << "; cuBLAS " << major << "." << minor << "."
       << patch << "; genrelab " << GENRELAB_VERSION;
    c = os.str();
  }
  return c;
}

const char* precision_name(Precision precision) {
  static const char* names[] = {"fp32", "tf32", "bf16", "fp16"};
  return names[int(precision)];
}

namespace {
struct FillOnes {
  float* p;
  __device__ void operator()(int64_t i) const { p[i] = 1.0f; }
};

int to_int(int64_t v, const char* what) {
  GENRELAB_CHECK(v > 0 && v < (int64_t(1) << 31), what, " ", v, " does not fit a cuDNN descriptor");
  return int(v);
}

// Waits for everything queued on `s`, unless it is capturing (a search is never captured; the
// guard keeps a wait from invalidating a capture). Errors are left to the next checked call.
void wait_unless_capturing(cudaStream_t s) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &capture) == cudaSuccess && capture == cudaStreamCaptureStatusNone)
    (void)cudaStreamSynchronize(s);
}
}  // namespace

ConvEngine conv_engine_of(const std::string& name) {
  if (name == "auto") return ConvEngine::automatic;
  if (name == "cudnn") return ConvEngine::cudnn;
  if (name == "gemm") return ConvEngine::gemm;
  throw ConfigError("train.conv_engine: unknown engine '" + name + "' (auto | cudnn | gemm)");
}

int half_format(Precision precision) {
  return precision == Precision::bf16 ? ops::kHalfBf16 : precision == Precision::fp16 ? ops::kHalfFp16 : ops::kHalfNone;
}

void TensorDesc::set(int64_t n, int64_t h, int64_t w, int64_t c, cudnnDataType_t type) {
  GENRELAB_CUDA_CHECK(cudnnSetTensor4dDescriptor(get(), CUDNN_TENSOR_NHWC, type, to_int(n, "batch"),
                                                 to_int(c, "channels"), to_int(h, "height"), to_int(w, "width")));
}

FilterDesc::FilterDesc(int64_t k, int64_t r, int64_t s, int64_t c, cudnnDataType_t type) {
  // NHWC filter format = memory order (k, r, s, c): the canonical conv kernel layout.
  GENRELAB_CUDA_CHECK(cudnnSetFilter4dDescriptor(get(), type, CUDNN_TENSOR_NHWC, to_int(k, "filters"),
                                                 to_int(c, "channels"), to_int(r, "kernel height"),
                                                 to_int(s, "kernel width")));
}

// The compute type is float for every data type: 16-bit tensors take cuDNN's PSEUDO_HALF /
// PSEUDO_BFLOAT16 configurations (16-bit x, w, y; float accumulation).
ConvDesc::ConvDesc(int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w) {
  GENRELAB_CUDA_CHECK(cudnnSetConvolution2dDescriptor(get(), pad_h, pad_w, stride_h, stride_w, dil_h, dil_w,
                                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
}

ActivationDesc::ActivationDesc(cudnnActivationMode_t mode, double coef) {
  GENRELAB_CUDA_CHECK(cudnnSetActivationDescriptor(get(), mode, CUDNN_PROPAGATE_NAN, coef));
}

std::string ConvShape::key() const { return std::to_string(n) + ',' + geometry_key(); }

std::string ConvShape::geometry_key() const {
  std::ostringstream os;
  os << h << ',' << w << ',' << c << '|' << k << ',' << r << ',' << s << '|' << pad_h << ',' << pad_w << '|' << stride_h
     << ',' << stride_w << '|' << dil_h << ',' << dil_w << '|' << int(type);
  return os.str();
}

GpuContext::GpuContext(Precision precision, bool deterministic, ConvEngine conv_engine, int64_t cudnn_benchmark_limit,
                       bool cudnn_find)
    : precision_(precision),
      deterministic_(deterministic),
      conv_engine_(conv_engine),
      cudnn_benchmark_limit_(cudnn_benchmark_limit),
      cudnn_find_(cudnn_find) {
  GENRELAB_CUDA_CHECK(cudnnSetStream(cudnn_.get(), stream_.get()));
  GENRELAB_CUDA_CHECK(cublasSetStream(cublas_.get(), stream_.get()));
  // fp32: plain FMA products (CUBLAS_PEDANTIC_MATH would also forbid split-K reductions that are
  // still exact fp32). tf32: tensor cores round the inputs of each product to 10-bit mantissas.
  // bf16/fp16: the dense and GEMM-engine products are cublasGemmEx calls on 16-bit operands
  // (dense.cu, conv_gemm.cu) with float accumulation; a product with a 16-bit output is rounded
  // once, at the end (no split-K partial sums added in 16 bits), as the CPU reference and cuDNN
  // round it. The handle's other float work (bias gradients) stays strict fp32.
  const bool half = precision == Precision::bf16 || precision == Precision::fp16;
  GENRELAB_CUDA_CHECK(cublasSetMathMode(
      cublas_.get(), precision == Precision::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                     : half ? cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                            : CUBLAS_DEFAULT_MATH));
  // Bias gradients and dense products only read device pointers for alpha/beta from the host.
  GENRELAB_CUDA_CHECK(cublasSetPointerMode(cublas_.get(), CUBLAS_POINTER_MODE_HOST));
  // A workspace of our own (32 MiB, what cuBLAS recommends for Hopper): without it cuBLAS may
  // allocate its default one on first use on a stream, which a CUDA graph capture refuses. Set
  // after cublasSetStream, which resets it.
  cublas_workspace_.resize(size_t(32) << 20);
  GENRELAB_CUDA_CHECK(cublasSetWorkspace(cublas_.get(), cublas_workspace_.data(), cublas_workspace_.bytes()));
  step_block_.resize(1);
  ring_ = PinnedBuffer<StepScalars>(kRing);
  // Blocking-sync events: a host that has run kRing steps ahead sleeps instead of spinning a core.
  for (size_t k = 0; k < kRing; ++k) ring_done_.emplace_back(false, true);
}

void* GpuContext::workspace(size_t bytes) {
  if (bytes > workspace_.bytes()) resize_tracked(workspace_, bytes);
  return workspace_.data();
}

GpuContext::TuningScope::TuningScope(GpuContext& ctx) : ctx_(ctx) {
  if (ctx_.tuning_depth_++ > 0) return;
  wait_unless_capturing(ctx_.stream());
  start_ = std::chrono::steady_clock::now();
}

GpuContext::TuningScope::~TuningScope() {
  if (--ctx_.tuning_depth_ > 0) return;
  wait_unless_capturing(ctx_.stream());
  ctx_.tuning_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

float* GpuContext::scratch(int slot, int64_t count) {
  GENRELAB_CHECK(slot >= 0 && slot < 2, "scratch slot ", slot);
  if (size_t(count) > scratch_[slot].size()) resize_tracked(scratch_[slot], size_t(count));
  return scratch_[slot].data();
}

const StepScalars* GpuContext::upload_step(const StepScalars& s) {
  if (capturing_)
    throw RuntimeError("a per-step scalar upload was queued during CUDA graph capture (a layer's step key differs "
                       "from the network's)");
  const size_t k = ring_next_;
  ring_next_ = (ring_next_ + 1) % kRing;
  // The slot's previous copy (kRing uploads ago) has read it.
  if (!comm_ || !comm_->wait_event(ring_done_[k].get())) ring_done_[k].synchronize();
  ring_[k] = s;
  GENRELAB_CUDA_CHECK(
      cudaMemcpyAsync(step_block_.data(), &ring_[k], sizeof(StepScalars), cudaMemcpyHostToDevice, stream()));
  ring_done_[k].record(stream());
  current_ = s;
  have_current_ = true;
  return step_block_.data();
}

const ops::DropoutStep* GpuContext::dropout_step(const genrelab::nn::StepKey& key) {
  if (!have_current_ || current_.dropout.step != key.step || current_.dropout.first_example != key.first_example) {
    StepScalars s = current_;
    s.dropout = ops::DropoutStep{key.step, key.first_example};
    upload_step(s);
  }
  return &step_block_.data()->dropout;
}

const float* GpuContext::ones(int64_t count) {
  if (size_t(count) > ones_.size()) {
    resize_tracked(ones_, size_t(count));
    float* p = ones_.data();
    launch_1d(count, FillOnes{p}, stream());
  }
  return ones_.data();
}

cudnnMathType_t GpuContext::conv_math() const {
  // In cuDNN 8+ the default math of float convolutions may use TF32 tensor cores; FMA_MATH keeps
  // strict fp32. TENSOR_OP_MATH asks for TF32 (ALLOW_CONVERSION could go down to fp16: not used).
  // bf16/fp16 take the tensor cores (TENSOR_OP_MATH) on their 16-bit operands.
  return precision_ == Precision::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

cudnnDataType_t GpuContext::conv_data_type() const {
  return precision_ == Precision::bf16 ? CUDNN_DATA_BFLOAT16
         : precision_ == Precision::fp16 ? CUDNN_DATA_HALF
                                         : CUDNN_DATA_FLOAT;
}

namespace {

// Whether a candidate of cuDNN's ranking can be chosen: it ran or can run (status success), needs
// no more workspace than ws_limit, and keeps the math the precision allows (never
// ALLOW_CONVERSION, which may round to fp16; no tensor ops in fp32).
template <typename Perf>
bool usable(const Perf& p, Precision precision, size_t ws_limit) {
  return p.status == CUDNN_STATUS_SUCCESS && p.memory <= ws_limit &&
         p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
         !(precision == Precision::fp32 && p.mathType == CUDNN_TENSOR_OP_MATH);
}

// The first algorithm in cuDNN's ranking (fastest measured for Find, heuristic order for Get) that
// is usable and, when asked, deterministic.
template <typename Perf>
const Perf* pick(const std::vector<Perf>& perfs, int count, bool deterministic, Precision precision, const char* what,
                 const ConvShape& shape, size_t ws_limit) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perfs[size_t(i)];
    if (usable(p, precision, ws_limit) && (!deterministic || p.determinism == CUDNN_DETERMINISTIC)) return &p;
  }
  throw RuntimeError(std::string("cuDNN offers no ") + (deterministic ? "deterministic " : "") + what +
                     " algorithm for the convolution " + shape.key() +
                     (deterministic ? "; set train.deterministic=false" : ""));
}

// fp32 forces FMA math on the descriptor whatever the heuristic reported (DEFAULT_MATH may use
// TF32 on Ampere and newer); tf32, bf16 and fp16 take the math type that goes with the chosen algorithm.
cudnnMathType_t math_for(cudnnMathType_t reported, Precision precision) {
  return precision == Precision::fp32 ? CUDNN_FMA_MATH : reported;
}

// cuDNN's algorithm names, by pass (the enums' order in cudnn_cnn.h).
const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  static const char* names[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm", "direct",
                                "fft", "fft_tiling", "winograd", "winograd_nonfused"};
  return int(a) >= 0 && int(a) < 8 ? names[int(a)] : "?";
}
const char* algo_name(cudnnConvolutionBwdDataAlgo_t a) {
  static const char* names[] = {"algo_0", "algo_1", "fft", "fft_tiling", "winograd", "winograd_nonfused"};
  return int(a) >= 0 && int(a) < 6 ? names[int(a)] : "?";
}
const char* algo_name(cudnnConvolutionBwdFilterAlgo_t a) {
  static const char* names[] = {"algo_0", "algo_1", "fft", "algo_3", "winograd", "winograd_nonfused", "fft_tiling"};
  return int(a) >= 0 && int(a) < 7 ? names[int(a)] : "?";
}

// With GENRELAB_LOG_CONV_ALGOS set, cuDNN's whole ranking of a pass on stderr: each candidate's
// status, time (benchmarked) and workspace, and which one was taken (docs/profiling.md).
template <typename Perf>
void log_ranking(const std::vector<Perf>& perfs, int count, const Perf* taken, const char* what,
                 const ConvShape& shape, bool benchmarked, size_t ws_limit) {
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (!on) return;
  std::ostringstream os;
  os << "cudnn " << what << " " << shape.key() << (benchmarked ? " (benchmarked" : " (heuristic")
     << ", workspace limit " << (ws_limit >> 20) << " MiB):";
  for (int i = 0; i < count; ++i) {
    const Perf& p = perfs[size_t(i)];
    os << (&p == taken ? "  [" : "  ") << algo_name(p.algo);
    if (p.status != CUDNN_STATUS_SUCCESS) os << " " << cudnnGetErrorString(p.status);
    else os << " " << (benchmarked ? std::to_string(p.time) + " ms " : std::string()) << (p.memory >> 20) << " MiB"
            << (p.mathType == CUDNN_TENSOR_OP_MATH ? " tensor-op" : "");
    if (&p == taken) os << "]";
  }
  std::cerr << os.str() << "\n";
}

// A candidate as the logs name it: the algorithm, with "/tensor-op" for its tensor-core variant.
template <typename Perf>
std::string candidate_name(const Perf& p) {
  return std::string(algo_name(p.algo)) + (p.mathType == CUDNN_TENSOR_OP_MATH ? "/tensor-op" : "");
}

// With GENRELAB_LOG_CONV_ALGOS set, beside a benchmarked search: cuDNN's heuristic order for the
// same pass (`query`, a cudnnGet*_v7 call: nothing runs), on stderr. How far down that order the
// benchmark's winners sit says how many candidates a search needs to time.
template <typename Perf, typename Query>
void log_heuristic_order(const char* what, const ConvShape& shape, int max, Query query) {
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (!on) return;
  std::vector<Perf> perfs(size_t(std::max(max, 1)));
  int got = 0;
  if (query(max, &got, perfs.data()) != CUDNN_STATUS_SUCCESS) return;
  std::ostringstream os;
  os << "cudnn " << what << " " << shape.key() << " heuristic order:";
  for (int i = 0; i < got; ++i) {
    const Perf& p = perfs[size_t(i)];
    os << " " << candidate_name(p)
       << (p.status != CUDNN_STATUS_SUCCESS ? "(" + std::string(cudnnGetErrorString(p.status)) + ")" : "");
  }
  std::cerr << os.str() << "\n";
}

// One pass's algorithm from cuDNN's ranking (`pick`), stored with the math type it runs under,
// which is also set on the descriptor for the workspace query that follows.
template <typename Perf, typename Algo>
void choose(const std::vector<Perf>& perfs, int got, bool deterministic, Precision precision, const char* what,
            const ConvShape& shape, const ConvDesc& conv, Algo& algo, cudnnMathType_t& math, float& ms,
            bool benchmarked, size_t ws_limit) {
  const Perf* p = pick(perfs, got, deterministic, precision, what, shape, ws_limit);
  log_ranking(perfs, got, p, what, shape, benchmarked, ws_limit);
  algo = p->algo;
  math = math_for(p->mathType, precision);
  ms = benchmarked ? p->time : -1.0f;
  GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv, math));
}

std::atomic<int64_t> g_candidates_run{0};
std::atomic<int64_t> g_candidates_probed{0};

// With GENRELAB_LOG_CONV_ALGOS set, a search's probe on stderr: each probed candidate's time on
// the batch's first `probe_n` examples (probe_ms[i] for cands[i]), and which ones the whole batch
// then timed.
template <typename Perf>
void log_probe(const std::vector<Perf>& cands, const std::vector<float>& probe_ms, const std::vector<bool>& keep,
               const char* what, const ConvShape& shape, int64_t probe_n) {
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (!on) return;
  std::ostringstream os;
  os << "cudnn " << what << " " << shape.key() << " probe on " << probe_n << " of " << shape.n << " examples:";
  for (size_t i = 0; i < probe_ms.size(); ++i) {
    os << "  " << candidate_name(cands[i]) << " ";
    if (probe_ms[i] < 0)
      os << "refused";
    else
      os << probe_ms[i] << " ms";
    if (!keep[i]) os << " (not timed further)";
  }
  std::cerr << os.str() << "\n";
}

// The search of train.cudnn_search=probe. perfs[0, got) is cuDNN's heuristic ranking of a pass
// (cudnnGet*_v7); its usable candidates (status success, within ws_limit, math the precision
// allows), the first `limit` of them (train.cudnn_benchmark_limit; 0: all), are each run
// on the batch's first probe_n examples through run(algo, true), once untimed and once timed (none
// when probe_n is 0 or there is one candidate); those within kProbeRatio of the fastest probe
// (nn/conv_search.h) then run on the whole batch through run(algo, false), once untimed and twice
// behind a 1-ms hold of the stream (hold_stream: the host's launches do not count, as in the GEMM
// engine's timing). A candidate cuDNN refuses on the whole batch does not count: where every one
// was refused, the next candidates are timed in order until one runs. perfs then holds what
// cudnnFind*Ex would give: the ones timed, fastest first, with their time (the faster run); the
// ones the probe left out, with their probe time scaled to the batch; the refused ones, with
// cuDNN's status. Returns their count.
template <typename Perf, typename Run>
int time_ranked(std::vector<Perf>& perfs, int got, int64_t limit, int64_t probe_n, Precision precision, size_t ws_limit,
                const ConvDesc& conv, cudaStream_t stream, const char* what, const ConvShape& shape, Run run) {
  std::vector<Perf> cands;
  for (int i = 0; i < got; ++i)
    if (usable(perfs[size_t(i)], precision, ws_limit)) cands.push_back(perfs[size_t(i)]);
  const size_t first = limit > 0 ? std::min(cands.size(), size_t(limit)) : cands.size();
  std::vector<float> probe_ms(first, -1.0f);
  const bool probing = probe_n > 0 && first > 1;
  for (size_t i = 0; probing && i < first; ++i) {
    GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv, math_for(cands[i].mathType, precision)));
    probe_ms[i] = fastest_run_ms(stream, 0.5, 1, [&] { return run(cands[i].algo, true) == CUDNN_STATUS_SUCCESS; });
    ++g_candidates_probed;
  }
  const std::vector<bool> keep = genrelab::nn::probe_keeps(probe_ms);
  if (probing) log_probe(cands, probe_ms, keep, what, shape, probe_n);
  std::vector<Perf> ran, left_out, refused;
  for (size_t i = 0; i < cands.size() && (i < first || ran.empty()); ++i) {
    Perf p = cands[i];
    if (i < first && !keep[i]) {
      p.time = float(double(probe_ms[i]) * double(shape.n) / double(probe_n));
      left_out.push_back(p);
      continue;
    }
    GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv, math_for(p.mathType, precision)));
    p.time = fastest_run_ms(stream, 1.0, 2, [&] { return (p.status = run(p.algo, false)) == CUDNN_STATUS_SUCCESS; });
    if (p.status == CUDNN_STATUS_SUCCESS) ++g_candidates_run;
    (p.status == CUDNN_STATUS_SUCCESS ? ran : refused).push_back(p);
  }
  const auto faster = [](const Perf& a, const Perf& b) { return a.time < b.time; };
  std::stable_sort(ran.begin(), ran.end(), faster);
  std::stable_sort(left_out.begin(), left_out.end(), faster);
  ran.insert(ran.end(), left_out.begin(), left_out.end());
  ran.insert(ran.end(), refused.begin(), refused.end());
  std::copy(ran.begin(), ran.end(), perfs.begin());
  return int(ran.size());
}

// The most workspace any usable candidate of cuDNN's ranking perfs[0, got) needs: what the probed
// search allocates instead of the whole limit.
template <typename Perf>
size_t largest_workspace(const std::vector<Perf>& perfs, int got, Precision precision, size_t ws_limit) {
  size_t most = 0;
  for (int i = 0; i < got; ++i)
    if (usable(perfs[size_t(i)], precision, ws_limit)) most = std::max(most, perfs[size_t(i)].memory);
  return most;
}

// The descriptor of NHWC tensor t's first n examples (the same memory: the batch is outermost).
TensorDesc first_examples(const TensorDesc& t, int64_t n) {
  cudnnDataType_t type{};
  int tn = 0, c = 0, h = 0, w = 0, ns = 0, cs = 0, hs = 0, ws = 0;
  GENRELAB_CUDA_CHECK(cudnnGetTensor4dDescriptor(t, &type, &tn, &c, &h, &w, &ns, &cs, &hs, &ws));
  return TensorDesc(n, h, w, c, type);
}

// Output buffers and workspace for cudnnFind*Ex, which runs every candidate on real data. The
// outputs are scratch (the forward's y and the backward's dx slots, a temporary dw), so benchmarking
// never overwrites activations or accumulated gradients.
struct FindBuffers {
  float* y = nullptr;   // y-sized; also stands in for dy (its contents do not matter)
  float* dx = nullptr;  // x-sized
  DeviceBuffer<float> dw;
  DeviceBuffer<uint8_t> ws;
};

size_t bytes_of(const TensorDesc& t) {
  size_t b = 0;
  GENRELAB_CUDA_CHECK(cudnnGetTensorSizeInBytes(t, &b));
  return b;
}

std::atomic<int64_t> g_searches{0};

// The process's algorithm choices (GpuContext::conv_algos), by GPU, precision, determinism and
// geometry, then batch size. Never destroyed, and entries are never removed: layers keep
// references to them. Beside the entry of batch n: the entry of the nearest batch above n of the
// same geometry whose `pass` is chosen and, unless `engine` is cudnn, whose engine decision under
// `engine` is made, if any.
struct CachedAlgos {
  ConvAlgos& algos;
  const ConvAlgos* larger = nullptr;
  int64_t larger_n = 0;
};
CachedAlgos process_conv_algos(const std::string& geometry, int64_t n, ConvPass pass, ConvEngine engine) {
  static std::mutex m;
  static auto* algos = new std::map<std::string, std::map<int64_t, ConvAlgos>>;
  std::lock_guard<std::mutex> lock(m);
  std::map<int64_t, ConvAlgos>& by_batch = (*algos)[geometry];
  ConvAlgos& a = by_batch[n];
  const int p = int(pass);
  for (auto it = by_batch.upper_bound(n); it != by_batch.end(); ++it)
    if (it->second.chosen[p] && (engine == ConvEngine::cudnn || it->second.engines[int(engine)].decided[p]))
      return {a, &it->second, it->first};
  return {a};
}

// A pass's chosen algorithm, as cudnnConvolution*Algo_t's value, its name and its math type; its workspace.
struct PassChoice {
  int algo;
  const char* name;
  int math;
  size_t bytes;
};
PassChoice pass_choice(const ConvAlgos& a, ConvPass pass) {
  switch (pass) {
    case ConvPass::forward:
      return {int(a.fwd), algo_name(a.fwd), int(a.fwd_math), a.fwd_bytes};
    case ConvPass::backward_data:
      return {int(a.bwd_data), algo_name(a.bwd_data), int(a.bwd_data_math), a.bwd_data_bytes};
    default:
      return {int(a.bwd_filter), algo_name(a.bwd_filter), int(a.bwd_filter_math), a.bwd_filter_bytes};
  }
}

// One pass's algorithm `algo` (the value of the pass's cudnnConvolution*Algo_t) and math type,
// with its workspace queried for the descriptors x, w, y (under that math type); false, with
// nothing taken, where cuDNN refuses the algorithm for them.
bool take_pass_algo(ConvAlgos& a, ConvPass pass, int algo, cudnnMathType_t math, cudnnHandle_t h, const TensorDesc& x,
                    const FilterDesc& w, const ConvDesc& conv, const TensorDesc& y) {
  GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv, math));
  size_t b = 0;
  switch (pass) {
    case ConvPass::forward: {
      const auto al = cudnnConvolutionFwdAlgo_t(algo);
      if (cudnnGetConvolutionForwardWorkspaceSize(h, x, w, conv, y, al, &b) != CUDNN_STATUS_SUCCESS) return false;
      a.fwd = al, a.fwd_math = math, a.fwd_bytes = b;
      return true;
    }
    case ConvPass::backward_data: {
      const auto al = cudnnConvolutionBwdDataAlgo_t(algo);
      if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, y, conv, x, al, &b) != CUDNN_STATUS_SUCCESS) return false;
      a.bwd_data = al, a.bwd_data_math = math, a.bwd_data_bytes = b;
      return true;
    }
    case ConvPass::backward_filter: {
      const auto al = cudnnConvolutionBwdFilterAlgo_t(algo);
      if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x, y, conv, w, al, &b) != CUDNN_STATUS_SUCCESS)
        return false;
      a.bwd_filter = al, a.bwd_filter_math = math, a.bwd_filter_bytes = b;
      return true;
    }
  }
  return false;
}

// `pass` of `a` (batch n) taken from `larger` (the same geometry at batch larger_n): the algorithm
// with its math type, and the engine decisions of every setting that made one; the workspace
// queried for this batch. False, with nothing taken, where cuDNN does not run the algorithm at
// this batch size (then the pass is searched as for a new geometry).
bool take_larger_batch(ConvAlgos& a, const ConvAlgos& larger, int64_t n, int64_t larger_n, ConvPass pass,
                       cudnnHandle_t h, const TensorDesc& x, const FilterDesc& w, const ConvDesc& conv,
                       const TensorDesc& y) {
  const int p = int(pass);
  const PassChoice from = pass_choice(larger, pass);
  if (!take_pass_algo(a, pass, from.algo, cudnnMathType_t(from.math), h, x, w, conv, y)) return false;
  // For a later network of another engine setting that still has to time the engine at this batch.
  a.ms[p] = larger.ms[p] < 0 ? -1.0f : float(double(larger.ms[p]) * double(n) / double(larger_n));
  for (int e = 0; e < 3; ++e) {
    if (!larger.engines[e].decided[p]) continue;
    a.engines[e].decided[p] = true;
    a.engines[e].gemm[p] = larger.engines[e].gemm[p];
    if (pass == ConvPass::backward_filter) a.engines[e].filter_splits = larger.engines[e].filter_splits;
  }
  a.chosen[p] = true;
  return true;
}

// `pass` of `a` from the tuning cache (nn/tuning_cache.h): the algorithm, math type and time an
// earlier process's benchmark of the same key chose on this kind of GPU, with the workspace
// queried here. False, with the pass left to search, where nothing is stored, the value is not
// one this code stores, the math is not one `precision` allows, cuDNN refuses the algorithm, its
// workspace is above ws_limit, or that search ran under a workspace limit well below ws_limit
// (less memory then: an algorithm it could not consider may win now).
bool take_stored(ConvAlgos& a, ConvPass pass, const std::string& key, Precision precision, size_t ws_limit,
                 cudnnHandle_t h, const TensorDesc& x, const FilterDesc& w, const ConvDesc& conv, const TensorDesc& y) {
  const std::optional<json> v = genrelab::nn::find_tuning(tuning_context(), key);
  if (!v || !v->is_object()) return false;
  const json& j = *v;
  const auto integer = [&](const char* k) { return j.contains(k) && j[k].is_number_integer(); };
  if (!integer("algo") || !integer("math") || !j.contains("ms") || !j["ms"].is_number() ||
      !j.contains("workspace_limit") || !j["workspace_limit"].is_number_unsigned() ||
      j["workspace_limit"].get<uint64_t>() < ws_limit / 16 * 15)
    return false;
  const int algo = j["algo"].get<int>(), math_value = j["math"].get<int>();
  const auto math = cudnnMathType_t(math_value);
  if (algo < 0 || algo > 7 || (math != CUDNN_DEFAULT_MATH && math != CUDNN_TENSOR_OP_MATH && math != CUDNN_FMA_MATH) ||
      math != math_for(math, precision))
    return false;
  if (!take_pass_algo(a, pass, algo, math, h, x, w, conv, y) || pass_choice(a, pass).bytes > ws_limit) return false;
  a.ms[int(pass)] = j["ms"].get<float>();
  a.chosen[int(pass)] = true;
  genrelab::nn::count_tuning_taken();
  return true;
}

// What take_stored reads back: the pass's algorithm, math type and benchmarked time, and the
// workspace limit its search ran under.
json stored_choice(const ConvAlgos& a, ConvPass pass, size_t ws_limit) {
  const PassChoice c = pass_choice(a, pass);
  return json{{"algo", c.algo}, {"math", c.math}, {"ms", a.ms[int(pass)]}, {"workspace_limit", uint64_t(ws_limit)}};
}

// With GENRELAB_LOG_CONV_ALGOS set, a pass taken from a larger batch (take_larger_batch), on stderr.
void log_taken(const ConvAlgos& a, ConvPass pass, ConvEngine engine, const ConvShape& shape, int64_t larger_n) {
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (!on) return;
  const PassChoice c = pass_choice(a, pass);
  const EngineChoice& e = a.engines[int(engine)];
  std::cerr << "cudnn " << pass_name(pass) << " " << shape.key() << " (as batch " << larger_n << "): " << c.name << " "
            << (c.bytes >> 20) << " MiB"
            << (engine == ConvEngine::cudnn ? ""
                : e.gemm[int(pass)]         ? ", engine gemm"
                                            : ", engine cudnn")
            << "\n";
}

// With GENRELAB_LOG_CONV_ALGOS set, a pass taken from the tuning cache (take_stored), on stderr.
void log_stored(const ConvAlgos& a, ConvPass pass, const ConvShape& shape) {
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (!on) return;
  const PassChoice c = pass_choice(a, pass);
  std::cerr << "cudnn " << pass_name(pass) << " " << shape.key() << " (tuning cache): " << c.name << " "
            << a.ms[int(pass)] << " ms " << (c.bytes >> 20) << " MiB\n";
}

}  // namespace

int64_t conv_algo_searches() { return g_searches.load(); }
int64_t conv_candidates_run() { return g_candidates_run.load(); }
int64_t conv_candidates_probed() { return g_candidates_probed.load(); }

ConvAlgos& GpuContext::conv_algos(const ConvShape& shape, const TensorDesc& x, const FilterDesc& w,
                                  const ConvDesc& conv, const TensorDesc& y, ConvPass pass, const void* x_data,
                                  const void* w_data) {
  int device = 0;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&device));
  // Deterministic choices, Find's and each probed search's (by its limit) are kept apart.
  const std::string mode = deterministic_ ? "det"
                           : cudnn_find_
                               ? "bench"
                               : "probe" + (cudnn_benchmark_limit_ > 0 ? std::to_string(cudnn_benchmark_limit_) : "");
  const CachedAlgos cached = process_conv_algos(
      std::to_string(device) + "|" + std::to_string(int(precision_)) + "|" + mode + "|" + shape.geometry_key(), shape.n,
      pass, conv_engine_);
  ConvAlgos& a = cached.algos;
  if (a.chosen[int(pass)]) return a;
  // An epoch's partial last batch or an evaluation's remainder: the same work on fewer examples,
  // where searching again would cost about what the full batch's search did (cuDNN's Find runs
  // every algorithm; 0.4 s of the baseline's first epoch in fp32 on an H200, 0.7 s in bf16). Not
  // in deterministic runs: their heuristic query costs nothing, and it keeps each batch size's
  // choice independent of which sizes the process met first (a resumed run meets the partial
  // batch first).
  if (!deterministic_ && cached.larger &&
      take_larger_batch(a, *cached.larger, shape.n, cached.larger_n, pass, cudnn(), x, w, conv, y)) {
    log_taken(a, pass, conv_engine_, shape, cached.larger_n);
    return a;
  }

  // Benchmark (the heuristics' candidates probed and timed here, train.cudnn_search=probe; or
  // cudnnFind*Ex, PyTorch's benchmark mode) unless deterministic: timings vary run to run, and a
  // different algorithm rounds differently, so deterministic runs take the heuristics' stable
  // ranking (cudnnGet*_v7) instead.
  const bool bench = !deterministic_ && x_data && w_data;
  // The workspace an algorithm may need: 4 GiB (explicit GEMM, im2col of the whole batch, for the
  // baseline's second conv needs about 1.2 GB, which a 1 GiB limit kept out of the benchmark) or a
  // quarter of the free memory. What the chosen algorithm needs stays allocated (the shared
  // workspace); the heuristics' ranking is held to the same limit.
  size_t free_b = 0, total_b = 0;
  GENRELAB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  size_t ws_limit = std::min<size_t>(size_t(4) << 30, free_b / 4);
  // A benchmark of the same pass that an earlier process ran on this kind of GPU, with these
  // libraries (the tuning cache), is taken instead of running it again.
  const std::string stored_key =
      std::string("cudnn ") + mode + " " + precision_name(precision_) + " " + pass_name(pass) + " " + shape.key();
  if (bench && take_stored(a, pass, stored_key, precision_, ws_limit, cudnn(), x, w, conv, y)) {
    log_stored(a, pass, shape);
    return a;
  }
  ++g_searches;
  std::optional<TuningScope> tuning;  // a benchmark's time (a heuristic query costs next to nothing)
  if (bench) tuning.emplace(*this);
  FindBuffers fb;
  if (bench) {
    // Float slots hold 16-bit tensors too: count floats by bytes, rounded up.
    fb.y = scratch(0, int64_t((bytes_of(y) + sizeof(float) - 1) / sizeof(float)));
    // The backward passes read fb.y as dy: zeros, not a stale slot's bits (NaN patterns in 16-bit
    // data would time differently).
    if (pass != ConvPass::forward) GENRELAB_CUDA_CHECK(cudaMemsetAsync(fb.y, 0, bytes_of(y), stream()));
    if (pass == ConvPass::backward_data) fb.dx = scratch(1, int64_t((bytes_of(x) + sizeof(float) - 1) / sizeof(float)));
    if (pass == ConvPass::backward_filter) fb.dw.resize(size_t(shape.k * shape.r * shape.s * shape.c));
  }
  // The search's workspace: `want` bytes, at most ws_limit (Find's whole limit; the probe's
  // largest candidate). Where that cannot be had, the limit halves, down to 64 MiB, then 0: only
  // the algorithms that need none.
  auto reserve_workspace = [&](size_t want) {
    for (;;) {
      try {
        fb.ws.resize(std::min(want, ws_limit));
        return;
      } catch (const RuntimeError&) {
        ws_limit = ws_limit > (size_t(64) << 20) ? ws_limit / 2 : 0;
        if (ws_limit == 0) return;
      }
    }
  };

  cudnnHandle_t h = cudnn();
  GENRELAB_CUDA_CHECK(cudnnSetConvolutionMathType(conv, conv_math()));
  int max = 0, got = 0;
  // train.cudnn_search=probe: the heuristics' candidates probed on the batch's first examples (x
  // and y of probe_n examples: xp, yp) and timed here (time_ranked) instead of cudnnFind's every
  // algorithm on the whole batch. Scaling factors are float for float and 16-bit data alike.
  const bool probed = bench && !cudnn_find_;
  const int64_t probe_n = probed ? genrelab::nn::probe_batch(shape.n) : 0;
  const TensorDesc xp = probe_n > 0 ? first_examples(x, probe_n) : TensorDesc();
  const TensorDesc yp = probe_n > 0 ? first_examples(y, probe_n) : TensorDesc();
  if (bench && !probed) reserve_workspace(ws_limit);
  // The probed search of a pass whose heuristic ranking is perfs[0, got): its workspace, then
  // time_ranked with run(algo, probe), the pass's cuDNN call on the probe's or the whole batch.
  auto probe_search = [&](auto& perfs, ConvPass p, auto run) {
    reserve_workspace(largest_workspace(perfs, got, precision_, ws_limit));
    got = time_ranked(perfs, got, cudnn_benchmark_limit_, probe_n, precision_, ws_limit, conv, stream(), pass_name(p),
                      shape, run);
  };
  const float one = 1.0f, zero = 0.0f;
  switch (pass) {
    case ConvPass::forward: {
      GENRELAB_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perfs(size_t(std::max(max, 1)));
      auto heuristic = [&](int m, int* g, cudnnConvolutionFwdAlgoPerf_t* p) {
        return cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, conv, y, m, g, p);
      };
      if (bench)
        log_heuristic_order<cudnnConvolutionFwdAlgoPerf_t>(pass_name(ConvPass::forward), shape, max, heuristic);
      if (bench && !probed) {
        GENRELAB_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, x, x_data, w, w_data, conv, y, fb.y, max, &got,
                                                                   perfs.data(), fb.ws.data(), ws_limit));
      } else {
        GENRELAB_CUDA_CHECK(heuristic(max, &got, perfs.data()));
        if (probed)
          probe_search(perfs, ConvPass::forward, [&](auto algo, bool probe) {
            return cudnnConvolutionForward(h, &one, probe ? xp : x, x_data, w, w_data, conv, algo, fb.ws.data(),
                                           fb.ws.bytes(), &zero, probe ? yp : y, fb.y);
          });
      }
      choose(perfs, got, deterministic_, precision_, pass_name(ConvPass::forward), shape, conv, a.fwd, a.fwd_math, a.ms[0], bench,
             ws_limit);
      GENRELAB_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, x, w, conv, y, a.fwd, &a.fwd_bytes));
      break;
    }
    case ConvPass::backward_data: {
      GENRELAB_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perfs(size_t(std::max(max, 1)));
      auto heuristic = [&](int m, int* g, cudnnConvolutionBwdDataAlgoPerf_t* p) {
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w, y, conv, x, m, g, p);
      };
      if (bench)
        log_heuristic_order<cudnnConvolutionBwdDataAlgoPerf_t>(pass_name(ConvPass::backward_data), shape, max,
                                                               heuristic);
      if (bench && !probed) {
        GENRELAB_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, w, w_data, y, fb.y, conv, x, fb.dx, max,
                                                                        &got, perfs.data(), fb.ws.data(), ws_limit));
      } else {
        GENRELAB_CUDA_CHECK(heuristic(max, &got, perfs.data()));
        if (probed)
          probe_search(perfs, ConvPass::backward_data, [&](auto algo, bool probe) {
            return cudnnConvolutionBackwardData(h, &one, w, w_data, probe ? yp : y, fb.y, conv, algo, fb.ws.data(),
                                                fb.ws.bytes(), &zero, probe ? xp : x, fb.dx);
          });
      }
      choose(perfs, got, deterministic_, precision_, pass_name(ConvPass::backward_data), shape, conv, a.bwd_data, a.bwd_data_math,
             a.ms[int(ConvPass::backward_data)], bench, ws_limit);
      GENRELAB_CUDA_CHECK(
          cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, y, conv, x, a.bwd_data, &a.bwd_data_bytes));
      break;
    }
    case ConvPass::backward_filter: {
      GENRELAB_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perfs(size_t(std::max(max, 1)));
      auto heuristic = [&](int m, int* g, cudnnConvolutionBwdFilterAlgoPerf_t* p) {
        return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x, y, conv, w, m, g, p);
      };
      if (bench)
        log_heuristic_order<cudnnConvolutionBwdFilterAlgoPerf_t>(pass_name(ConvPass::backward_filter), shape, max,
                                                                 heuristic);
      if (bench && !probed) {
        GENRELAB_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
            h, x, x_data, y, fb.y, conv, w, fb.dw.data(), max, &got, perfs.data(), fb.ws.data(), ws_limit));
      } else {
        GENRELAB_CUDA_CHECK(heuristic(max, &got, perfs.data()));
        if (probed)
          probe_search(perfs, ConvPass::backward_filter, [&](auto algo, bool probe) {
            return cudnnConvolutionBackwardFilter(h, &one, probe ? xp : x, x_data, probe ? yp : y, fb.y, conv, algo,
                                                  fb.ws.data(), fb.ws.bytes(), &zero, w, fb.dw.data());
          });
      }
      choose(perfs, got, deterministic_, precision_, pass_name(ConvPass::backward_filter), shape, conv, a.bwd_filter,
             a.bwd_filter_math, a.ms[int(ConvPass::backward_filter)], bench, ws_limit);
      GENRELAB_CUDA_CHECK(
          cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x, y, conv, w, a.bwd_filter, &a.bwd_filter_bytes));
      break;
    }
  }
  a.chosen[int(pass)] = true;
  if (bench) genrelab::nn::store_tuning(tuning_context(), stored_key, stored_choice(a, pass, ws_limit));
  return a;
}

}  // namespace genrelab::cuda::nn
