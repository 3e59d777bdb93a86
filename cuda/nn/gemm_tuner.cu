// tuned_sgemm (gemm_tuner.h): a shape's first call times cublasSgemm and cuBLASLt's heuristic
// candidates (its first kCandidates, each within kMaxWorkspace and the operands' alignment) on the
// real operands, each once untimed and then the faster of two timed runs, and keeps cuBLASLt's
// fastest when it beats cublasSgemm by kMargin; later calls of the shape run the kept choice.
// Products under kMinFlop run on cublasSgemm untimed: the timing (about 13 runs of the product)
// would cost more than a better kernel could win back over a training run.
// Choices are the process's, by device, math mode and every argument that can change a kernel's
// eligibility (shape, leading dimensions, batch strides, beta, operand alignment), and are kept
// between processes by the tuning cache (nn/tuning_cache.h), checked by cublasLtMatmulAlgoCheck.
#include "gemm_tuner.h"

#include <cublasLt.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "genrelab/nn/tuning_cache.h"

namespace genrelab::cuda::nn {

using genrelab::nn::GemmCall;

namespace {

constexpr int kCandidates = 5;
constexpr double kMinFlop = 8e9;  // the baseline's fourth conv (15 GFLOP a product at batch 32) and up
constexpr size_t kMaxWorkspace = size_t(32) << 20;  // cuBLASLt's recommended workspace on Hopper
constexpr float kMargin = 0.97f;                    // a cuBLASLt choice must be 3 % faster

// Test settings (set_gemm_tuning_for_tests).
std::atomic<bool> g_force_lt{false};
std::atomic<double> g_min_flop{kMinFlop};

// One shape's choice, with the cuBLASLt descriptors it runs with (kept for the process).
struct Tuned {
  bool lt = false;  // false: cublasSgemm
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

std::atomic<int64_t> g_shapes{0}, g_on_lt{0};

// What a product's choice depends on: the cache key (compared field by field: no string is built
// on the calls that find their choice) and, written out, the name of the shape in the log.
struct ShapeKey {
  int device = 0;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  int64_t batches = 1, stride_a = 0, stride_b = 0, stride_c = 0;  // strides 0 for one product
  bool accumulate = false, tf32 = false;
  uint32_t align_a = 0, align_b = 0, align_c = 0;
  bool forced = false;  // set_gemm_tuning_for_tests
  auto fields() const {
    return std::tie(device, trans_a, trans_b, m, n, k, lda, ldb, ldc, batches, stride_a, stride_b, stride_c, accumulate,
                    tf32, align_a, align_b, align_c, forced);
  }
  bool operator<(const ShapeKey& o) const { return fields() < o.fields(); }
  std::string str() const {
    std::ostringstream k;
    k << (trans_a ? 't' : 'n') << (trans_b ? 't' : 'n') << " " << m << "," << n << "," << this->k << " ld " << lda
      << "," << ldb << "," << ldc;
    if (batches > 1) k << " x" << batches << " strides " << stride_a << "," << stride_b << "," << stride_c;
    k << (accumulate ? " accumulate" : "") << (tf32 ? " tf32" : " fp32") << " align " << align_a << "," << align_b
      << "," << align_c << (forced ? " forced" : "");
    return k.str();
  }
};

cublasOperation_t op_of(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// The largest power of two up to 16 that divides p's address (at least 4: floats) and, for each
// batch after the first, `stride` floats more.
uint32_t alignment_of(const void* p, int64_t stride = 0) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p) | uintptr_t(stride * int64_t(sizeof(float)));
  uint32_t a = 16;
  while (a > 4 && v % a != 0) a /= 2;
  return a;
}

// cuBLASLt's handle for the current device, made once.
cublasLtHandle_t lt_handle(int device) {
  static std::mutex m;
  static auto* handles = new std::map<int, cublasLtHandle_t>;
  std::lock_guard<std::mutex> lock(m);
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  cublasLtHandle_t h = nullptr;
  GENRELAB_CUDA_CHECK(cublasLtCreate(&h));
  (*handles)[device] = h;
  return h;
}

cublasStatus_t run_sgemm(cublasHandle_t h, const GemmCall& c, const float* a, const float* b, float* out,
                         int64_t batches, GemmStrides s) {
  const float one = 1.0f;
  const int m = int(c.m), n = int(c.n), k = int(c.k), lda = int(c.lda), ldb = int(c.ldb), ldc = int(c.ldc);
  if (batches == 1)
    return cublasSgemm(h, op_of(c.trans_a), op_of(c.trans_b), m, n, k, &one, a, lda, b, ldb, &c.beta, out, ldc);
  return cublasSgemmStridedBatched(h, op_of(c.trans_a), op_of(c.trans_b), m, n, k, &one, a, lda, s.a, b, ldb, s.b,
                                   &c.beta, out, ldc, s.c, int(batches));
}

cublasStatus_t run_lt(cublasLtHandle_t h, const Tuned& t, const cublasLtMatmulAlgo_t& algo, const GemmCall& c,
                      const float* a, const float* b, float* out, void* workspace, size_t bytes, cudaStream_t s) {
  const float one = 1.0f;
  return cublasLtMatmul(h, t.op, &one, a, t.a, b, t.b, &c.beta, out, t.c, out, t.c, &algo, workspace, bytes, s);
}

void destroy(Tuned& t) {
  if (t.a) cublasLtMatrixLayoutDestroy(t.a);
  if (t.b) cublasLtMatrixLayoutDestroy(t.b);
  if (t.c) cublasLtMatrixLayoutDestroy(t.c);
  if (t.op) cublasLtMatmulDescDestroy(t.op);
  t = Tuned();
}

// The call as cuBLASLt descriptors (stored A is k × m when transposed, else m × k; B likewise).
bool describe(const GemmCall& c, int64_t batches, GemmStrides s, bool tf32, Tuned& t) {
  const cublasOperation_t ta = op_of(c.trans_a), tb = op_of(c.trans_b);
  bool ok =
      cublasLtMatmulDescCreate(&t.op, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F) ==
          CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute(t.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute(t.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) == CUBLAS_STATUS_SUCCESS;
  auto layout = [&](cublasLtMatrixLayout_t& l, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
    if (!ok || cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, uint64_t(rows), uint64_t(cols), ld) != CUBLAS_STATUS_SUCCESS)
      return false;
    if (batches == 1) return true;
    const int32_t count = int32_t(batches);
    return cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride) ==
               CUBLAS_STATUS_SUCCESS;
  };
  ok = layout(t.a, c.trans_a ? c.k : c.m, c.trans_a ? c.m : c.k, c.lda, s.a);
  ok = ok && layout(t.b, c.trans_b ? c.n : c.k, c.trans_b ? c.k : c.n, c.ldb, s.b);
  ok = ok && layout(t.c, c.m, c.n, c.ldc, s.c);
  if (!ok) destroy(t);
  return ok;
}

// Milliseconds of one product (`run` returns its cuBLAS status): the faster of two timed runs
// after an untimed one, each behind a 0.5-ms hold; −1 when a launch is refused. (A kernel that
// faulted while running would leave the context unusable: hence the candidates are asked for with
// the operands' real alignment.)
template <typename Run>
float best_ms(cudaStream_t s, Run&& run) {
  return fastest_run_ms(s, 0.5, 2, [&] { return run() == CUBLAS_STATUS_SUCCESS; });
}

// Destroys a shape's descriptors unless released (a choice kept for the process).
struct TunedGuard {
  Tuned& t;
  bool keep = false;
  ~TunedGuard() {
    if (!keep) destroy(t);
  }
};

// The choice for the shape of this call: out is written by the timing runs when beta is 0 (the
// caller's call then writes it again); with beta ≠ 0 they write a zeroed scratch copy of its extent.
// `measured` says whether the candidates were timed: false where a scratch buffer or workspace
// could not be had or cublasSgemm refused the call (a choice for now, not one to keep).
Tuned tune(GpuContext& ctx, int device, const GemmCall& c, const float* a, const float* b, float* out, int64_t batches,
           GemmStrides s, bool tf32, const std::string& key, bool& measured) {
  cudaStream_t stream = ctx.stream();
  measured = false;
  Tuned t;
  TunedGuard guard{t};
  DeviceBuffer<float> scratch;
  float* target = out;
  if (c.beta != 0.0f) {
    const int64_t extent = (batches - 1) * s.c + c.ldc * c.n;
    try {
      scratch.resize(size_t(extent));
    } catch (const RuntimeError&) {
      return t;  // no room to time it: cublasSgemm
    }
    scratch.zero(stream);
    target = scratch.data();
  }
  const float base = best_ms(stream, [&] { return run_sgemm(ctx.cublas(), c, a, b, target, batches, s); });
  measured = base > 0;
  std::vector<cublasLtMatmulHeuristicResult_t> found(kCandidates);
  int got = 0;
  cublasLtHandle_t h = lt_handle(device);
  if (base > 0 && describe(c, batches, s, tf32, t)) {
    cublasLtMatmulPreference_t pref = nullptr;
    const uint64_t ws = kMaxWorkspace;
    // The real pointers' alignment (the default assumes 256 bytes): a preference that cannot be
    // set leaves no candidates.
    const uint32_t align_a = alignment_of(a, batches > 1 ? s.a : 0), align_b = alignment_of(b, batches > 1 ? s.b : 0),
                   align_c = alignment_of(out, batches > 1 ? s.c : 0);
    if (cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS) {
      const bool set = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                            sizeof ws) == CUBLAS_STATUS_SUCCESS &&
                       cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                            sizeof align_a) == CUBLAS_STATUS_SUCCESS &&
                       cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                            sizeof align_b) == CUBLAS_STATUS_SUCCESS &&
                       cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                            sizeof align_c) == CUBLAS_STATUS_SUCCESS &&
                       cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                                            sizeof align_c) == CUBLAS_STATUS_SUCCESS;
      if (!set || cublasLtMatmulAlgoGetHeuristic(h, t.op, t.a, t.b, t.c, t.c, pref, kCandidates, found.data(), &got) !=
                      CUBLAS_STATUS_SUCCESS)
        got = 0;
      cublasLtMatmulPreferenceDestroy(pref);
    }
  }
  // Each candidate on one workspace of the largest size any of them asks for.
  size_t need = 0;
  for (int i = 0; i < got; ++i)
    if (found[size_t(i)].state == CUBLAS_STATUS_SUCCESS) need = std::max(need, found[size_t(i)].workspaceSize);
  DeviceBuffer<uint8_t> ws;
  try {
    if (need > 0) ws.resize(need);
  } catch (const RuntimeError&) {
    got = 0;
    measured = false;
  }
  std::ostringstream log;
  log << "gemm " << key << ": cublasSgemm " << base << " ms";
  // The fastest candidate, kept when it beats cublasSgemm by the margin.
  float best = -1.0f;
  int fastest = -1;
  for (int i = 0; i < got; ++i) {
    const cublasLtMatmulHeuristicResult_t& r = found[size_t(i)];
    if (r.state != CUBLAS_STATUS_SUCCESS) continue;
    const float ms =
        best_ms(stream, [&] { return run_lt(h, t, r.algo, c, a, b, target, ws.data(), r.workspaceSize, stream); });
    log << ", lt#" << i << " " << (ms < 0 ? std::string("refused") : std::to_string(ms) + " ms");
    if (ms > 0 && (fastest < 0 || ms < best)) best = ms, fastest = i;
  }
  const int chosen = fastest >= 0 && (g_force_lt.load() || best < kMargin * base) ? fastest : -1;
  if (chosen >= 0) {
    t.lt = true;
    t.algo = found[size_t(chosen)].algo;
    t.workspace = found[size_t(chosen)].workspaceSize;
    guard.keep = true;
  }
  static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
  if (on)
    std::cerr << log.str() << " -> " << (t.lt ? "lt#" + std::to_string(chosen) : std::string("cublasSgemm")) << "\n";
  return guard.keep ? t : Tuned();
}

// What the tuning cache keeps of a choice: cuBLASLt's algorithm (its opaque words, valid for
// the GPU and cuBLAS version of the cache's context) and workspace, or cublasSgemm.
json stored_choice(const Tuned& t) {
  if (!t.lt) return json{{"lt", false}};
  json words = json::array();
  for (uint64_t w : t.algo.data) words.push_back(w);
  return json{{"lt", true}, {"algo", words}, {"workspace", t.workspace}};
}

// A choice from the tuning cache for `key`: cublasSgemm, or a cuBLASLt algorithm that
// cublasLtMatmulAlgoCheck accepts for this call's descriptors with no more workspace than stored
// (then `found` is set). False where nothing usable is stored: the shape is timed.
bool take_stored(const std::string& key, const GemmCall& c, int64_t batches, GemmStrides s, bool tf32, int device,
                 Tuned& t) {
  const std::optional<json> v = genrelab::nn::find_tuning(tuning_context(), key);
  if (!v || !v->is_object() || !v->contains("lt") || !(*v)["lt"].is_boolean()) return false;
  const json& j = *v;
  if (!j["lt"].get<bool>()) {
    t = Tuned();
    genrelab::nn::count_tuning_taken();
    return true;
  }
  if (!j.contains("algo") || !j["algo"].is_array() || j["algo"].size() != 8 || !j.contains("workspace") ||
      !j["workspace"].is_number_unsigned())
    return false;
  Tuned stored;
  TunedGuard guard{stored};
  for (size_t i = 0; i < 8; ++i) {
    if (!j["algo"][i].is_number_unsigned()) return false;
    stored.algo.data[i] = j["algo"][i].get<uint64_t>();
  }
  stored.workspace = j["workspace"].get<size_t>();
  if (stored.workspace > kMaxWorkspace || !describe(c, batches, s, tf32, stored)) return false;
  cublasLtMatmulHeuristicResult_t check{};
  if (cublasLtMatmulAlgoCheck(lt_handle(device), stored.op, stored.a, stored.b, stored.c, stored.c, &stored.algo,
                              &check) != CUBLAS_STATUS_SUCCESS ||
      check.workspaceSize > stored.workspace)
    return false;
  stored.lt = true;
  guard.keep = true;
  t = stored;
  genrelab::nn::count_tuning_taken();
  return true;
}

}  // namespace

GemmTuning gemm_tuning() { return {g_shapes.load(), g_on_lt.load()}; }

void set_gemm_tuning_for_tests(bool force_lt, double min_flop) {
  g_force_lt = force_lt;
  g_min_flop = min_flop < 0 ? kMinFlop : min_flop;
}

void tuned_sgemm(GpuContext& ctx, const GemmCall& c, const float* a, const float* b, float* out, int64_t batches,
                 GemmStrides s, DeviceBuffer<uint8_t>& workspace, bool may_tune) {
  const float* fa = a + c.a_offset;
  const float* fb = b + c.b_offset;
  if (ctx.deterministic() || 2.0 * double(c.m) * double(c.n) * double(c.k) * double(batches) < g_min_flop.load()) {
    GENRELAB_CUDA_CHECK(run_sgemm(ctx.cublas(), c, fa, fb, out, batches, s));
    return;
  }
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  GENRELAB_CUDA_CHECK(cudaStreamIsCapturing(ctx.stream(), &capture));
  const bool capturing = capture != cudaStreamCaptureStatusNone;
  ShapeKey key;
  GENRELAB_CUDA_CHECK(cudaGetDevice(&key.device));
  key.trans_a = c.trans_a, key.trans_b = c.trans_b;
  key.m = c.m, key.n = c.n, key.k = c.k, key.lda = c.lda, key.ldb = c.ldb, key.ldc = c.ldc;
  key.batches = batches;
  if (batches > 1) key.stride_a = s.a, key.stride_b = s.b, key.stride_c = s.c;
  key.accumulate = c.beta != 0.0f;
  key.tf32 = ctx.precision() == Precision::tf32;  // the handle's TF32 math mode (cudnn_setup.cu)
  key.align_a = alignment_of(fa, key.stride_a), key.align_b = alignment_of(fb, key.stride_b);
  key.align_c = alignment_of(out, key.stride_c);
  key.forced = g_force_lt.load();

  static std::mutex m;
  static auto* shapes = new std::map<ShapeKey, Tuned>;  // never destroyed
  const Tuned* t = nullptr;
  {
    std::lock_guard<std::mutex> lock(m);
    auto it = shapes->find(key);
    if (it != shapes->end()) t = &it->second;
  }
  if (!t && !capturing && may_tune) {
    // Taken from the tuning cache (an earlier process on this kind of GPU), or timed and stored.
    const std::string stored_key = "gemm " + key.str();
    Tuned fresh;
    if (take_stored(stored_key, c, batches, s, key.tf32, key.device, fresh)) {
      static const bool on = std::getenv("GENRELAB_LOG_CONV_ALGOS") != nullptr;
      if (on) std::cerr << "gemm " << key.str() << " (tuning cache) -> " << (fresh.lt ? "lt" : "cublasSgemm") << "\n";
    } else {
      const GpuContext::TuningScope tuning(ctx);
      bool measured = false;
      fresh = tune(ctx, key.device, c, fa, fb, out, batches, s, key.tf32, key.str(), measured);
      if (measured && !key.forced) genrelab::nn::store_tuning(tuning_context(), stored_key, stored_choice(fresh));
    }
    std::lock_guard<std::mutex> lock(m);
    auto [it, added] = shapes->emplace(key, fresh);
    if (added) {
      ++g_shapes;
      if (fresh.lt) ++g_on_lt;
    } else {
      destroy(fresh);  // another thread tuned it meanwhile
    }
    t = &it->second;
  }
  if (t && t->lt) {
    if (workspace.bytes() < t->workspace && !capturing) {
      try {
        ctx.resize_tracked(workspace, t->workspace);
      } catch (const RuntimeError&) {  // out of memory for the workspace: cublasSgemm, which needs none of ours
        ctx.release_tracked(workspace);
      }
    }
    if (workspace.bytes() >= t->workspace) {
      GENRELAB_CUDA_CHECK(
          run_lt(lt_handle(key.device), *t, t->algo, c, fa, fb, out, workspace.data(), t->workspace, ctx.stream()));
      return;
    }
  }
  GENRELAB_CUDA_CHECK(run_sgemm(ctx.cublas(), c, fa, fb, out, batches, s));
}

}  // namespace genrelab::cuda::nn
