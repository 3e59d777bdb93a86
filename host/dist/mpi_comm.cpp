// The MPI communicator (MPI_COMM_WORLD, host buffers) for CPU data-parallel runs under mpirun, the
// MPI bootstrap of NCCL's unique id, and MPI's end: finalize after a coordinated exit, abort the
// job otherwise (a rank that fails alone must not leave the others waiting in a collective).
#include <mutex>

#include "dist_impl.h"
#include "genrelab/common.h"

#if GENRELAB_HAVE_MPI_V
#include <mpi.h>
#endif

namespace genrelab::dist {

#if GENRELAB_HAVE_MPI_V

namespace {

bool g_initialised = false;

void check_mpi(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(status, msg, &len);
  throw RuntimeError(std::string(what) + " failed: " + std::string(msg, size_t(len)));
}

void ensure_initialised(const World& world) {
  static std::once_flag once;
  std::call_once(once, [&] {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    g_initialised = true;
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != world.rank || size != world.size)
      throw RuntimeError("MPI sees rank " + std::to_string(rank) + " of " + std::to_string(size) + " but the " +
                         launcher_name(world.launcher) + " environment says rank " + std::to_string(world.rank) +
                         " of " + std::to_string(world.size));
  });
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

// MPI counts are int: long buffers go in chunks.
constexpr int64_t kChunk = int64_t(1) << 30;

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const World& world) : world_(world) { ensure_initialised(world); }
  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  std::string name() const override { return "mpi"; }

  void all_reduce_sum(void* data, int64_t count, DType type, void*) override { all_reduce_sum_host(data, count, type); }
  void broadcast(void* data, int64_t bytes, int root, void*) override { broadcast_host(data, bytes, root); }

  void all_reduce_sum_host(void* data, int64_t count, DType type) override {
    auto* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count; done += kChunk) {
      const int n = int(std::min(kChunk, count - done));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + done * int64_t(dtype_bytes(type)), n, mpi_type(type), MPI_SUM,
                              MPI_COMM_WORLD),
                "MPI_Allreduce");
    }
  }
  void broadcast_host(void* data, int64_t bytes, int root) override {
    auto* p = static_cast<char*>(data);
    for (int64_t done = 0; done < bytes; done += kChunk)
      check_mpi(MPI_Bcast(p + done, int(std::min(kChunk, bytes - done)), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

 private:
  World world_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const World& world) {
  return std::make_unique<MpiCommunicator>(world);
}

bool mpi_broadcast_bootstrap(const World& world, void* data, int bytes) {
  if (world.launcher != Launcher::mpirun) return false;
  ensure_initialised(world);
  check_mpi(MPI_Bcast(data, bytes, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast of the NCCL id");
  return true;
}

std::string mpi_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, size_t(len));
  const size_t nl = s.find_first_of(",\n");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

void shutdown(int exit_code) {
  if (!g_initialised) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (exit_code == 0 || exit_code > 128) {
    MPI_Finalize();  // every rank got here together (success, or a stop agreed on at a step)
  } else {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
}

#else  // without MPI

std::unique_ptr<Communicator> make_mpi_communicator(const World&) {
  throw RuntimeError("this genrelab was built without MPI; install libopenmpi-dev and rebuild (tools/setup.sh)");
}
bool mpi_broadcast_bootstrap(const World&, void*, int) { return false; }
std::string mpi_version() { return ""; }
void shutdown(int) {}

#endif

}  // namespace genrelab::dist
