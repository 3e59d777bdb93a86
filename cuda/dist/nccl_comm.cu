// The NCCL communicator: one GPU per rank, a non-blocking communicator so that a rank that dies
// or hangs cannot block the others forever (every wait polls ncclCommGetAsyncError and aborts
// after the timeout), the unique id bootstrapped by MPI_Bcast under mpirun or a rendezvous file.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../../host/dist/dist_impl.h"
#include "genrelab/common.h"
#include "genrelab/cuda/check.h"
#include "genrelab/cuda/memory.h"
#include "genrelab/io.h"

namespace genrelab::dist {

#if GENRELAB_HAVE_NCCL_V

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  return ncclUint8;
}

// Rank 0 writes the id to DIR/genrelab-nccl-<job>.id (temporary file, then rename; `file` names
// it, and rank 0 removes it once every rank has joined); the others wait for it up to the timeout.
ncclUniqueId rendezvous(const World& world, const std::string& dir, double timeout_s, std::string& file) {
  ncclUniqueId id{};
  if (world.is_root()) GENRELAB_CUDA_CHECK(ncclGetUniqueId(&id));
  if (world.size == 1 || mpi_broadcast_bootstrap(world, &id, int(sizeof id))) return id;
  GENRELAB_CHECK(!dir.empty(), "NCCL rendezvous needs a folder every rank sees (the --out folder)");
  const std::string path = (fs::path(dir) / ("genrelab-nccl-" + world.job_id + ".id")).string();
  file = path;
  if (world.is_root()) {
    fs::create_directories(dir);
    write_file_atomic(path, std::string(reinterpret_cast<const char*>(&id), sizeof id));
    return id;
  }
  const auto t0 = Clock::now();
  for (;;) {
    std::ifstream in(path, std::ios::binary);
    if (in && in.read(reinterpret_cast<char*>(&id), sizeof id) && in.gcount() == sizeof id) return id;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s)
      throw RuntimeError("rank " + std::to_string(world.rank) + ": rank 0 did not publish the NCCL id in " + path +
                         " within " + std::to_string(int(timeout_s)) +
                         " s; check that every rank sees that folder (a shared file system) and that rank 0 started");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const World& world, const std::string& dir, double timeout_s)
      : world_(world), timeout_s_(timeout_s) {
    std::string file;
    const ncclUniqueId id = rendezvous(world, dir, timeout_s, file);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, world.size, id, world.rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) GENRELAB_CUDA_CHECK(r);
    settle("ncclCommInitRank");  // every rank has joined: the id file has served
    if (world.is_root() && !file.empty()) {
      std::error_code ec;
      fs::remove(file, ec);
    }
    GENRELAB_CUDA_CHECK(cudaStreamCreateWithFlags(&host_stream_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);  // an aborted one is gone already
    if (host_stream_) cudaStreamDestroy(host_stream_);
  }

  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  std::string name() const override { return "nccl"; }

  void all_reduce_sum(void* data, int64_t count, DType type, void* stream) override {
    enqueued(ncclAllReduce(data, data, size_t(count), nccl_type(type), ncclSum, live("ncclAllReduce"), cudaStream_t(stream)),
             "ncclAllReduce");
  }
  void broadcast(void* data, int64_t bytes, int root, void* stream) override {
    enqueued(ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, live("ncclBroadcast"), cudaStream_t(stream)),
             "ncclBroadcast");
  }
  void group_start() override {
    live("ncclGroupStart");  // no group is opened on an aborted communicator
    enqueued(ncclGroupStart(), "ncclGroupStart");
    group_open_ = true;
  }
  // A non-blocking communicator's group may still be in progress here: settled like one call.
  void group_end() override {
    group_open_ = false;
    enqueued(ncclGroupEnd(), "ncclGroupEnd");
  }
  void all_reduce_sum_host(void* data, int64_t count, DType type) override {
    const size_t bytes = size_t(count) * dtype_bytes(type);
    staging_.resize(bytes);
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(staging_.data(), data, bytes, cudaMemcpyHostToDevice, host_stream_));
    all_reduce_sum(staging_.data(), count, type, host_stream_);
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(data, staging_.data(), bytes, cudaMemcpyDeviceToHost, host_stream_));
    wait(host_stream_);
  }
  void broadcast_host(void* data, int64_t bytes, int root) override {
    staging_.resize(size_t(bytes));
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(staging_.data(), data, size_t(bytes), cudaMemcpyHostToDevice, host_stream_));
    broadcast(staging_.data(), bytes, root, host_stream_);
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(data, staging_.data(), size_t(bytes), cudaMemcpyDeviceToHost, host_stream_));
    wait(host_stream_);
  }
  void barrier() override {
    int64_t one = 1;
    all_reduce_sum_host(&one, 1, DType::i64);
  }

  // Polls the stream; NCCL's asynchronous errors and the timeout end the wait with an abort.
  void wait(void* stream) override {
    poll([stream] { return cudaStreamQuery(cudaStream_t(stream)); });
  }
  bool wait_event(void* event) override {
    poll([event] { return cudaEventQuery(cudaEvent_t(event)); });
    return true;
  }

 private:
  template <typename Query>
  void poll(const Query& query) {
    const auto t0 = Clock::now();
    for (;;) {
      const cudaError_t q = query();
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) GENRELAB_CUDA_CHECK(q);
      check_async("a collective");
      if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s_) fail_timeout("a collective");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  // A failed or stuck collective: abort the communicator at once. Its kernels then return, so
  // the cudaFree and synchronisations of the cleanup that follows the error cannot hang on them.
  void abort_now() noexcept {
    if (group_open_) {  // a failure inside a group: close it first, or the thread's later NCCL calls stay deferred
      group_open_ = false;
      (void)ncclGroupEnd();
    }
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  ncclComm_t live(const char* what) const {
    if (!comm_)
      throw RuntimeError("rank " + std::to_string(world_.rank) + ": " + what +
                         " after the NCCL communicator was aborted by an earlier failure");
    return comm_;
  }
  // A non-blocking call may return ncclInProgress; anything else but success is an error.
  void enqueued(ncclResult_t r, const char* what) {
    if (r == ncclInProgress) {
      settle(what);
      return;
    }
    if (r != ncclSuccess) {
      abort_now();
      GENRELAB_CUDA_CHECK(r);
    }
  }
  void settle(const char* what) {
    const auto t0 = Clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      GENRELAB_CUDA_CHECK(ncclCommGetAsyncError(live(what), &state));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        abort_now();
        throw RuntimeError("rank " + std::to_string(world_.rank) + ": " + what + " failed: " + ncclGetErrorString(state));
      }
      if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s_) fail_timeout(what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  void check_async(const char* what) {
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(live(what), &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      abort_now();
      throw RuntimeError("rank " + std::to_string(world_.rank) + ": " + what + " failed: " + ncclGetErrorString(state) +
                         " (another rank probably died); the run directory keeps its last checkpoint: resume it");
    }
  }
  [[noreturn]] void fail_timeout(const char* what) {
    abort_now();
    throw RuntimeError("rank " + std::to_string(world_.rank) + " of " + std::to_string(world_.size) + ": " + what +
                       " made no progress for " + std::to_string(int(timeout_s_)) +
                       " s (train.comm_timeout_s): another rank died or hangs. The run directory keeps its last "
                       "checkpoint: resume it with genrelab train --resume");
  }

  World world_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  bool group_open_ = false;  // between group_start() and group_end()
  cudaStream_t host_stream_ = nullptr;
  cuda::DeviceBuffer<char> staging_;  // host collectives: (bytes,)
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const World& world, const std::string& rendezvous_dir,
                                                     double timeout_s) {
  return std::make_unique<NcclCommunicator>(world, rendezvous_dir, timeout_s);
}

#endif

}  // namespace genrelab::dist
