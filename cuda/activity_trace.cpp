// The CUPTI activity trace of activity_trace.h: CUPTI fills 8 MiB buffers with kernel, memcpy and
// memset records and hands each back (possibly on its own thread) to buffer_completed, which keeps
// their start and end times and names while a trace records.
#include "genrelab/cuda/activity_trace.h"

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "genrelab/common.h"
#include "genrelab/cuda/check.h"

#if GENRELAB_HAVE_CUPTI
#include <cupti.h>
#endif

namespace genrelab::cuda {

#if GENRELAB_HAVE_CUPTI

namespace {

// The newest record layouts of the CUPTI headers this builds with (CUPTI fills in the layouts of
// its own version, which is the toolkit's). Start and end sit at the same place in every layout
// since CUDA 11; the kernel's name further on is read only where the layout is the one checked
// (CUDA 13.0's) and the library loaded is the version of the headers (kernel_names_readable).
#if CUPTI_API_VERSION >= 130000
using KernelRecord = CUpti_ActivityKernel10;
using MemcpyRecord = CUpti_ActivityMemcpy6;
#else
using KernelRecord = CUpti_ActivityKernel9;
using MemcpyRecord = CUpti_ActivityMemcpy5;
#endif
using MemsetRecord = CUpti_ActivityMemset4;
constexpr bool kCheckedKernelLayout = CUPTI_API_VERSION / 100 == 1300;

bool kernel_names_readable() {
  static const bool readable = [] {
    uint32_t v = 0;
    return kCheckedKernelLayout && cuptiGetVersion(&v) == CUPTI_SUCCESS && v == CUPTI_API_VERSION;
  }();
  return readable;
}

constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                         CUPTI_ACTIVITY_KIND_MEMSET};
constexpr size_t kBufferBytes = size_t(8) << 20;

// The records of the recording trace, and the name table of the process: the fixed names of
// ActivityTrace (unnamed, copies, memsets, kernels without a readable name), then every kernel
// seen (demangled), interned once by CUPTI's name pointer (shared by all records of a kernel) and
// by text. The activity kinds are enabled once, by the first trace, and stay enabled: a trace
// starts and stops by keeping or dropping what CUPTI delivers (turning kernel records off and on
// again is where CUPTI releases have had deadlocks and lost records).
struct Sink {
  std::mutex m;
  bool enabled = false;
  bool recording = false;
  std::vector<ActivityInterval> records;
  uint64_t dropped = 0;  // records CUPTI dropped while recording (no buffer, or one too late)
  uint64_t untimed = 0;  // records delivered without timestamps (no device memory to take them)
  std::vector<std::string> names{"", "[memcpy]", "[memset]", "[kernel]", "[memcpy HtoD]", "[memcpy DtoH]",
                                 "[memcpy DtoD]"};
  std::unordered_map<const char*, uint32_t> by_pointer;
  std::unordered_map<std::string, uint32_t> by_text;
  uint32_t intern(const char* raw) {
    if (!raw) return ActivityTrace::kKernel;
    if (auto it = by_pointer.find(raw); it != by_pointer.end()) return it->second;
    int status = 0;
    char* demangled = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
    std::string text = status == 0 && demangled ? demangled : raw;
    std::free(demangled);
    auto [it, added] = by_text.emplace(text, uint32_t(names.size()));
    if (added) names.push_back(std::move(text));
    by_pointer.emplace(raw, it->second);
    return it->second;
  }
};
// Never destroyed: CUPTI may hand back a last buffer while the process exits.
Sink& sink() {
  static Sink* s = new Sink;
  return *s;
}

std::string result_string(CUptiResult r) {
  const char* s = nullptr;
  cuptiGetResultString(r, &s);
  return s ? s : "CUPTI error " + std::to_string(int(r));
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));  // CUPTI asks for 8-byte alignment
  *size = *buffer ? kBufferBytes : 0;                                    // none: CUPTI drops the records
  *max_records = 0;                                                      // as many as fit
}

template <typename Record>
void keep(const CUpti_Activity* r, uint32_t name, uint64_t bytes, Sink& s) {
  const Record* rec = reinterpret_cast<const Record*>(r);
  if (rec->start == 0 && rec->end == 0) ++s.untimed;
  else s.records.push_back({rec->start, rec->end, name, bytes});
}

// One lock for the whole buffer: its kernels' names go into the table, its records to the trace.
// A buffer delivered while no trace records is dropped whole.
void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream_id, uint8_t* buffer, size_t, size_t valid) {
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(context, stream_id, &dropped) != CUPTI_SUCCESS) dropped = 0;
  Sink& s = sink();
  std::lock_guard<std::mutex> lock(s.m);
  if (!s.recording) {
    std::free(buffer);
    return;
  }
  s.dropped += dropped;
  CUpti_Activity* r = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
    switch (r->kind) {
      case CUPTI_ACTIVITY_KIND_KERNEL:
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const uint32_t name =
            kernel_names_readable() ? s.intern(reinterpret_cast<const KernelRecord*>(r)->name) : ActivityTrace::kKernel;
        keep<KernelRecord>(r, name, 0, s);
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const MemcpyRecord* copy = reinterpret_cast<const MemcpyRecord*>(r);
        const uint8_t kind = copy->copyKind;
        keep<MemcpyRecord>(r,
                           kind == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD   ? ActivityTrace::kMemcpyHtoD
                           : kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH ? ActivityTrace::kMemcpyDtoH
                           : kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOD ? ActivityTrace::kMemcpyDtoD
                                                                     : ActivityTrace::kMemcpy,
                           copy->bytes, s);
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMSET:
        keep<MemsetRecord>(r, ActivityTrace::kMemset, reinterpret_cast<const MemsetRecord*>(r)->bytes, s);
        break;
      default: break;
    }
  }
  std::free(buffer);
}

// The tools that trace through CUPTI themselves (Nsight Systems, Nsight Compute, compute-sanitizer)
// inject a library into the processes they start: taking over CUPTI's buffers there would empty
// their trace. GENRELAB_GPU_TRACE=0 turns the trace off by hand.
std::string attached_tool() {
  if (const char* v = std::getenv("GENRELAB_GPU_TRACE"); v && std::strcmp(v, "0") == 0)
    return "GENRELAB_GPU_TRACE=0 turns it off";
  for (const char* var : {"CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH", "NSYS_PROFILING_SESSION_ID"})
    if (const char* v = std::getenv(var); v && *v)
      return std::string("a profiler or sanitizer is attached (") + var + " is set) and traces through CUPTI itself";
  if (const char* v = std::getenv("LD_PRELOAD"); v && (std::strstr(v, "Injection") || std::strstr(v, "sanitizer")))
    return std::string("a profiler or sanitizer is attached (LD_PRELOAD=") + v + ") and traces through CUPTI itself";
  return "";
}

}  // namespace

std::string ActivityTrace::unavailable() {
  if (std::string tool = attached_tool(); !tool.empty()) return tool;
  static const CUptiResult registered = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  if (registered != CUPTI_SUCCESS) return "CUPTI refused its activity buffers: " + result_string(registered);
  return "";
}

ActivityTrace::ActivityTrace() {
  const std::string why = unavailable();
  if (!why.empty()) throw RuntimeError("GPU activity trace: " + why);
  // CUPTI is called only without the sink's lock: its thread delivers buffers holding locks of its own.
  Sink& s = sink();
  bool enable = false;
  {
    std::lock_guard<std::mutex> lock(s.m);
    if (s.recording) throw RuntimeError("GPU activity trace: another trace of this process is recording");
    s.recording = true;
    s.records.clear();
    s.dropped = s.untimed = 0;
    enable = !s.enabled;
  }
  if (!enable) return;
  for (size_t i = 0; i < std::size(kKinds); ++i) {
    const CUptiResult r = cuptiActivityEnable(kKinds[i]);
    if (r == CUPTI_SUCCESS) continue;
    for (size_t j = 0; j < i; ++j) cuptiActivityDisable(kKinds[j]);
    std::lock_guard<std::mutex> lock(s.m);
    s.recording = false;
    throw RuntimeError("GPU activity trace: CUPTI cannot record activity kind " + std::to_string(int(kKinds[i])) +
                       ": " + result_string(r));
  }
  std::lock_guard<std::mutex> lock(s.m);
  s.enabled = true;
}

ActivityTrace::~ActivityTrace() {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  Sink& s = sink();
  std::lock_guard<std::mutex> lock(s.m);
  s.recording = false;
  s.records.clear();
}

std::vector<std::string> ActivityTrace::names() const {
  Sink& s = sink();
  std::lock_guard<std::mutex> lock(s.m);
  return s.names;
}

uint64_t ActivityTrace::now() const {
  uint64_t t = 0;
  cuptiGetTimestamp(&t);
  return t;
}

std::vector<ActivityInterval> ActivityTrace::collect(uint64_t since) {
  GENRELAB_CUDA_CHECK(cudaDeviceSynchronize());  // every record complete, then delivered
  const CUptiResult r = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  if (r != CUPTI_SUCCESS) throw RuntimeError("GPU activity trace: flushing the records failed: " + result_string(r));
  std::vector<ActivityInterval> all;
  uint64_t dropped = 0, untimed = 0;
  {
    Sink& s = sink();
    std::lock_guard<std::mutex> lock(s.m);
    all.swap(s.records);
    dropped = std::exchange(s.dropped, 0);
    untimed = std::exchange(s.untimed, 0);
  }
  // An incomplete trace would count the missing kernels' time as idle: no numbers rather than
  // wrong ones.
  if (dropped > 0)
    throw RuntimeError("GPU activity trace: CUPTI dropped " + std::to_string(dropped) +
                       " records (no buffer in time); the trace is incomplete");
  if (untimed > 0)
    throw RuntimeError("GPU activity trace: " + std::to_string(untimed) +
                       " records came without timestamps (CUPTI had no device memory for them); the trace is "
                       "incomplete");
  std::vector<ActivityInterval> out;
  bool kernels = false;
  for (const ActivityInterval& a : all)
    if (a.start_ns >= since) {
      out.push_back(a);
      kernels = kernels || is_kernel(a.name);
    }
  if (!kernels)
    throw RuntimeError("GPU activity trace: no kernel was recorded in the window (another tool may hold CUPTI's "
                       "activity records)");
  return out;
}

#else  // built without CUPTI

std::string ActivityTrace::unavailable() {
  return "this genrelab was built without CUPTI (the CUDA toolkit's profiling library was not found)";
}
ActivityTrace::ActivityTrace() { throw RuntimeError("GPU activity trace: " + unavailable()); }
ActivityTrace::~ActivityTrace() = default;
std::vector<std::string> ActivityTrace::names() const { return {}; }
uint64_t ActivityTrace::now() const { return 0; }
std::vector<ActivityInterval> ActivityTrace::collect(uint64_t) { return {}; }

#endif

}  // namespace genrelab::cuda
