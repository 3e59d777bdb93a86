// RAII, move-only owners of CUDA resources: device and pinned host buffers, streams, events,
// cuFFT plans, cuBLAS and cuDNN handles, instantiated CUDA graphs. Destructors never throw
// (errors there are ignored, as the owning context may already be tearing down).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cufft.h>

#include <cstddef>
#include <map>
#include <tuple>
#include <utility>

#include "genrelab/cuda/check.h"

namespace genrelab::cuda {

// Device memory for `count` elements of T (uninitialised).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) { resize(count); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)), capacity_(std::exchange(o.capacity_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Reallocates only when growing beyond the largest size so far (cudaFree synchronises the
  // device, so an epoch's smaller last batch must not cost a reallocation on the next full one);
  // contents are not kept.
  void resize(size_t count) {
    if (count <= capacity_ && ptr_) { count_ = count; return; }
    release();
    if (count == 0) return;
    const cudaError_t s = cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
    if (s != cudaSuccess) {
      (void)cudaGetLastError();
      ptr_ = nullptr;
      throw RuntimeError("out of GPU memory allocating " + std::to_string(count * sizeof(T) >> 20) +
                         " MiB (" + cudaGetErrorString(s) + "); try a smaller train.batch_size");
    }
    count_ = capacity_ = count;
  }
  void zero(cudaStream_t stream) { if (count_) GENRELAB_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, bytes(), stream)); }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  void release() noexcept { if (ptr_) cudaFree(ptr_); ptr_ = nullptr; count_ = capacity_ = 0; }
  T* ptr_ = nullptr;
  size_t count_ = 0, capacity_ = 0;
};

// Blocking copies between pageable host memory and the device for set-up, tests and other cold
// paths, complete on both sides when they return. Plain cudaMemcpy is not enough here: it runs on
// the legacy default stream, which the non-blocking streams used everywhere else (Stream below)
// do not wait for, and a host-to-device copy from pageable memory may return before its DMA has
// landed. Hot paths use cudaMemcpyAsync on their own stream instead.
template <typename T>
void copy_to_device(T* dst, const T* src, size_t count) {
  if (count == 0) return;
  GENRELAB_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(T), cudaMemcpyHostToDevice));
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}

// Waits for all queued device work first (src may come from any stream).
template <typename T>
void copy_to_host(T* dst, const T* src, size_t count) {
  GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());
  if (count == 0) return;
  GENRELAB_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(T), cudaMemcpyDeviceToHost));
}

// Page-locked host memory (cudaHostAlloc) so copies can run asynchronously.
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t count) {
    if (count == 0) return;
    GENRELAB_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T), cudaHostAllocDefault));
    count_ = count;
  }
  ~PinnedBuffer() { if (ptr_) cudaFreeHost(ptr_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) { if (ptr_) cudaFreeHost(ptr_); ptr_ = std::exchange(o.ptr_, nullptr); count_ = std::exchange(o.count_, 0); }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return count_; }
  T& operator[](size_t i) { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// A non-blocking stream (never the legacy default stream).
class Stream {
 public:
  Stream() { GENRELAB_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { if (s_) cudaStreamDestroy(s_); }
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept { if (this != &o) { if (s_) cudaStreamDestroy(s_); s_ = std::exchange(o.s_, nullptr); } return *this; }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  operator cudaStream_t() const { return s_; }
  void synchronize() const { GENRELAB_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  // `blocking_sync`: synchronize() sleeps until the event instead of spinning on it.
  explicit Event(bool timing = false, bool blocking_sync = false) {
    GENRELAB_CUDA_CHECK(cudaEventCreateWithFlags(
        &e_, (timing ? cudaEventDefault : cudaEventDisableTiming) | (blocking_sync ? cudaEventBlockingSync : 0)));
  }
  ~Event() { if (e_) cudaEventDestroy(e_); }
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept { if (this != &o) { if (e_) cudaEventDestroy(e_); e_ = std::exchange(o.e_, nullptr); } return *this; }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) { GENRELAB_CUDA_CHECK(cudaEventRecord(e_, s)); }
  // Makes `s` wait for this event (no host synchronisation).
  void wait_on(cudaStream_t s) const { GENRELAB_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }
  void synchronize() const { GENRELAB_CUDA_CHECK(cudaEventSynchronize(e_)); }
  // Milliseconds between `start` and this event (both recorded with timing = true).
  float ms_since(const Event& start) const {
    float ms = 0;
    GENRELAB_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

// Keeps stream s busy for `ms` milliseconds (a one-thread kernel; cuda/hold.cu): queued before
// the first event of a timing, it lets the host queue the timed work while the GPU waits, so the
// events time the device's work and not the host's launches.
void hold_stream(cudaStream_t s, double ms);

// Milliseconds of `run` (work it queues on s; returns false when refused) for an autotuner: once
// untimed, then the faster of `timed` runs, each behind a hold of hold_ms; −1 as soon as a run is
// refused, with the launch error a refused library call may leave cleared (it would otherwise fail
// the next kernel's launch check, naming that kernel).
template <typename Run>
float fastest_run_ms(cudaStream_t s, double hold_ms, int timed, Run&& run) {
  const auto refused = [] {
    (void)cudaGetLastError();
    return -1.0f;
  };
  if (!run()) return refused();
  Event start(true), stop(true);
  float best = -1.0f;
  for (int i = 0; i < timed; ++i) {
    hold_stream(s, hold_ms);
    start.record(s);
    if (!run()) return refused();
    stop.record(s);
    stop.synchronize();
    const float ms = stop.ms_since(start);
    best = best < 0 || ms < best ? ms : best;
  }
  return best;
}

// A cuFFT plan; build it with one of the cufftPlan* calls through `handle_for_init()`.
class FftPlan {
 public:
  FftPlan() = default;
  ~FftPlan() { if (valid_) cufftDestroy(h_); }
  FftPlan(FftPlan&& o) noexcept : h_(o.h_), valid_(std::exchange(o.valid_, false)) {}
  FftPlan& operator=(FftPlan&& o) noexcept {
    if (this != &o) { if (valid_) cufftDestroy(h_); h_ = o.h_; valid_ = std::exchange(o.valid_, false); }
    return *this;
  }
  FftPlan(const FftPlan&) = delete;
  FftPlan& operator=(const FftPlan&) = delete;
  // A batched 1-D real-to-complex plan: `batch` transforms of length n, rows `idist` floats apart
  // in the input and n/2+1 complex values apart in the output.
  static FftPlan r2c_1d(int n, int batch, int idist) {
    FftPlan p;
    int dims[1] = {n};
    GENRELAB_CUDA_CHECK(cufftPlanMany(&p.h_, 1, dims, nullptr, 1, idist, nullptr, 1, n / 2 + 1, CUFFT_R2C, batch));
    p.valid_ = true;
    return p;
  }
  static FftPlan c2r_1d(int n, int batch, int odist) {
    FftPlan p;
    int dims[1] = {n};
    GENRELAB_CUDA_CHECK(cufftPlanMany(&p.h_, 1, dims, nullptr, 1, n / 2 + 1, nullptr, 1, odist, CUFFT_C2R, batch));
    p.valid_ = true;
    return p;
  }
  cufftHandle get() const { return h_; }
  bool valid() const { return valid_; }

 private:
  cufftHandle h_ = 0;
  bool valid_ = false;
};

// Batched 1-D real plans (transforms n samples apart on the real side), kept by direction, n and
// transform count, for work whose batches vary in size (featurising batches of any size, the phase
// vocoder's pieces). Each plan holds its own cuFFT workspace: past `max_plans` the cache starts
// again, after the device has finished with the old plans.
class FftPlanCache {
 public:
  explicit FftPlanCache(size_t max_plans) : max_plans_(max_plans) {}
  // The plan of `batch` transforms of n points, bound to `stream`.
  cufftHandle r2c(int n, int64_t batch, cudaStream_t stream) { return get(CUFFT_R2C, n, batch, stream); }
  cufftHandle c2r(int n, int64_t batch, cudaStream_t stream) { return get(CUFFT_C2R, n, batch, stream); }

 private:
  cufftHandle get(cufftType type, int n, int64_t batch, cudaStream_t stream) {
    GENRELAB_CHECK(batch >= 1 && batch < (int64_t(1) << 31), "a cuFFT batch of ", batch, " transforms");
    const auto key = std::make_tuple(int(type), n, batch);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (plans_.size() >= max_plans_) {
        GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());
        plans_.clear();
      }
      it =
          plans_.emplace(key, type == CUFFT_R2C ? FftPlan::r2c_1d(n, int(batch), n) : FftPlan::c2r_1d(n, int(batch), n))
              .first;
    }
    GENRELAB_CUDA_CHECK(cufftSetStream(it->second.get(), stream));
    return it->second.get();
  }
  size_t max_plans_;
  std::map<std::tuple<int, int, int64_t>, FftPlan> plans_;
};

class CublasHandle {
 public:
  CublasHandle() { GENRELAB_CUDA_CHECK(cublasCreate(&h_)); }
  ~CublasHandle() { if (h_) cublasDestroy(h_); }
  CublasHandle(CublasHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& o) noexcept { if (this != &o) { if (h_) cublasDestroy(h_); h_ = std::exchange(o.h_, nullptr); } return *this; }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

class CudnnHandle {
 public:
  CudnnHandle() { GENRELAB_CUDA_CHECK(cudnnCreate(&h_)); }
  ~CudnnHandle() { if (h_) cudnnDestroy(h_); }
  CudnnHandle(CudnnHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CudnnHandle& operator=(CudnnHandle&& o) noexcept { if (this != &o) { if (h_) cudnnDestroy(h_); h_ = std::exchange(o.h_, nullptr); } return *this; }
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  cudnnHandle_t get() const { return h_; }

 private:
  cudnnHandle_t h_ = nullptr;
};

// An instantiated CUDA graph (cudaGraphExec_t), made from a captured cudaGraph_t.
class GraphExec {
 public:
  GraphExec() = default;
  explicit GraphExec(cudaGraphExec_t e) : e_(e) {}
  ~GraphExec() { if (e_) cudaGraphExecDestroy(e_); }
  GraphExec(GraphExec&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  GraphExec& operator=(GraphExec&& o) noexcept { if (this != &o) { if (e_) cudaGraphExecDestroy(e_); e_ = std::exchange(o.e_, nullptr); } return *this; }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  cudaGraphExec_t get() const { return e_; }
  explicit operator bool() const { return e_ != nullptr; }

 private:
  cudaGraphExec_t e_ = nullptr;
};

}  // namespace genrelab::cuda
