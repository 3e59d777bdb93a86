// Data-parallel training across processes: where this process stands (World, read from the
// launcher's environment: mpirun, srun, or `genrelab train --gpus`) and the collectives the
// trainer needs (Communicator: NCCL for the GPU backend, MPI for the CPU backend).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "genrelab/device.h"

namespace genrelab::dist {

enum class Launcher { none, mpirun, slurm, spawn };  // spawn: `genrelab train --gpus 0,1,...`

const char* launcher_name(Launcher l);

struct World {
  int rank = 0, size = 1;              // global
  int local_rank = 0, local_size = 1;  // on this node
  Launcher launcher = Launcher::none;
  std::string job_id;                  // names rendezvous files: OMPI/Slurm job id, or the spawner's
  bool distributed() const { return size > 1; }
  bool is_root() const { return rank == 0; }
  // From the environment: OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (mpirun),
  // SLURM_{PROCID,NTASKS,LOCALID,NTASKS_PER_NODE,JOB_ID} (srun), GENRELAB_{RANK,WORLD_SIZE,
  // LOCAL_RANK,JOB_ID} (--gpus). None of them: a world of one. Inconsistent values (a rank outside
  // [0, size)) are a RuntimeError naming the variables.
  static World from_environment();
};

enum class DType { f32, f64, i64, u8 };

size_t dtype_bytes(DType t);

// Collectives over all ranks of a World. Buffers live in the backend's memory: host for the MPI
// communicator, device for NCCL (the *_host calls take host memory on every implementation).
// Every rank must make the same calls in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "mpi", "nccl"
  // In-place sum over ranks; `stream` is the cudaStream_t to order on (NCCL), else ignored.
  virtual void all_reduce_sum(void* data, int64_t count, DType type, void* stream = nullptr) = 0;
  // In place: every rank gets root's bytes.
  virtual void broadcast(void* data, int64_t bytes, int root, void* stream = nullptr) = 0;
  // The backend-memory collectives queued between group_start() and group_end() are launched
  // together (NCCL: one group, one kernel launch); host communicators run each as it comes.
  virtual void group_start() {}
  virtual void group_end() {}
  // Host-memory forms, for control data (hashes, run-directory names, statistics); they finish
  // before returning.
  virtual void all_reduce_sum_host(void* data, int64_t count, DType type) = 0;
  virtual void broadcast_host(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Waits until the work queued on `stream` (a cudaStream_t) is done, giving up after the
  // communicator's timeout with an error when a collective on it cannot finish (another rank died
  // or hangs). Host communicators: nothing to wait for.
  virtual void wait(void* stream) {}
  // The same for one cudaEvent_t. Returns false when this communicator has nothing to wait for
  // (host communicators): the caller then waits for the event itself.
  virtual bool wait_event(void* event) { return false; }

  // Conveniences over the host forms.
  std::string broadcast_string(const std::string& s, int root);
  double sum(double v);
  int64_t sum(int64_t v);
};

// Which collectives this binary was built with.
bool built_with_mpi();
bool built_with_nccl();
std::string mpi_version();  // "" without MPI

// The communicator for `world` on `device`: MPI on the CPU (needs an MPI launcher), NCCL on the
// GPU (its unique id travels by MPI_Bcast under mpirun, else through `rendezvous_dir`, a folder
// on a file system every rank sees). A world of one needs none: nullptr. Errors say what is
// missing (a binary without MPI/NCCL, the CPU backend under --gpus) and what to do.
std::unique_ptr<Communicator> make_communicator(const World& world, Device device, const std::string& rendezvous_dir,
                                                double timeout_s);

// Ends MPI for this process, when it was started: MPI_Finalize after a coordinated exit (0, or a
// stop the ranks agreed on: > 128), MPI_Abort(exit_code) otherwise, so that one failing rank ends
// the job instead of leaving the others in a collective. `genrelab` calls it before exiting.
void shutdown(int exit_code);

// The GPU of this rank among those visible: local_rank modulo the count (mpirun/srun), 0 under
// --gpus (the spawner gives each worker one visible GPU).
int local_gpu(const World& world, int visible_gpus);

// FNV-1a 64-bit hash of a string, as 16 hex digits (the resolved-config check across ranks).
std::string hash_hex(const std::string& s);

// Rank r's share [first, first + count) of n items split as evenly as possible over `size` ranks
// (the first n % size ranks take one more).
struct Shard {
  int64_t first = 0, count = 0;
};
Shard shard_of(int64_t n, int rank, int size);

}  // namespace genrelab::dist
