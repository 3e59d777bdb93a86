// Where a process stands in a data-parallel job (from the launcher's environment), even shards,
// the config hash, and the communicator factory that picks MPI or NCCL.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "genrelab/common.h"
#include "genrelab/dist.h"
#include "dist_impl.h"

namespace genrelab::dist {

const char* launcher_name(Launcher l) {
  switch (l) {
    case Launcher::none: return "none";
    case Launcher::mpirun: return "mpirun";
    case Launcher::slurm: return "srun";
    case Launcher::spawn: return "genrelab --gpus";
  }
  return "?";
}

size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

namespace {

// The integer in environment variable `name`, or `fallback` when unset; a malformed value is an
// error naming the variable.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > (1 << 24))
    throw RuntimeError(std::string("environment variable ") + name + " = '" + v + "' is not a rank or count");
  return int(x);
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

World World::from_environment() {
  World w;
  if (std::getenv("GENRELAB_RANK")) {
    w.launcher = Launcher::spawn;
    w.rank = env_int("GENRELAB_RANK", 0);
    w.size = env_int("GENRELAB_WORLD_SIZE", 1);
    w.local_rank = env_int("GENRELAB_LOCAL_RANK", w.rank);
    w.local_size = w.size;
    w.job_id = env_str("GENRELAB_JOB_ID");
  } else if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    w.launcher = Launcher::mpirun;
    w.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    w.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    w.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    w.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    w.job_id = env_str("OMPI_MCA_ess_base_jobid");
    if (w.job_id.empty()) w.job_id = env_str("PMIX_NAMESPACE");
  } else if (std::getenv("SLURM_PROCID") && std::getenv("SLURM_NTASKS")) {
    w.launcher = Launcher::slurm;
    w.rank = env_int("SLURM_PROCID", 0);
    w.size = env_int("SLURM_NTASKS", 1);
    w.local_rank = env_int("SLURM_LOCALID", 0);
    w.local_size = env_int("SLURM_NTASKS_PER_NODE", 0);
    if (w.local_size == 0) w.local_size = w.size;
    w.job_id = env_str("SLURM_JOB_ID") + "." + env_str("SLURM_STEP_ID");
  }
  if (w.size < 1 || w.rank >= w.size || w.local_rank >= std::max(w.local_size, 1))
    throw RuntimeError(std::string("the ") + launcher_name(w.launcher) + " environment is inconsistent: rank " +
                       std::to_string(w.rank) + " of " + std::to_string(w.size) + ", local rank " +
                       std::to_string(w.local_rank) + " of " + std::to_string(w.local_size));
  if (w.job_id.empty() || w.job_id == ".") w.job_id = "job";
  return w;
}

int local_gpu(const World& world, int visible_gpus) {
  GENRELAB_CHECK(visible_gpus > 0, "no GPU visible to rank ", world.rank);
  return world.launcher == Launcher::spawn ? 0 : world.local_rank % visible_gpus;
}

std::string hash_hex(const std::string& s) {
  const uint64_t h = fnv1a64(s.data(), s.size());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Shard shard_of(int64_t n, int rank, int size) {
  GENRELAB_CHECK(size >= 1 && rank >= 0 && rank < size && n >= 0, "shard_of(", n, ", ", rank, ", ", size, ")");
  const int64_t base = n / size, extra = n % size;
  return {rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  int64_t len = rank() == root ? int64_t(s.size()) : 0;
  broadcast_host(&len, sizeof len, root);
  std::string out = rank() == root ? s : std::string(size_t(len), '\0');
  if (len > 0) broadcast_host(out.data(), len, root);
  return out;
}

double Communicator::sum(double v) {
  all_reduce_sum_host(&v, 1, DType::f64);
  return v;
}

int64_t Communicator::sum(int64_t v) {
  all_reduce_sum_host(&v, 1, DType::i64);
  return v;
}

bool built_with_mpi() { return GENRELAB_HAVE_MPI_V; }
bool built_with_nccl() { return GENRELAB_HAVE_NCCL_V; }

std::unique_ptr<Communicator> make_communicator(const World& world, Device device, const std::string& rendezvous_dir,
                                                double timeout_s) {
  if (!world.distributed()) return nullptr;
  if (device == Device::cpu) {
    if (world.launcher == Launcher::spawn)
      throw ConfigError("--gpus starts one process per GPU; on the CPU backend start the ranks with mpirun instead");
    if (!built_with_mpi())
      throw RuntimeError("this genrelab was built without MPI, so " + std::to_string(world.size) +
                         " CPU ranks cannot train together; install libopenmpi-dev and rebuild (tools/setup.sh), or "
                         "run one process");
    return make_mpi_communicator(world);
  }
  if (!built_with_nccl())
    throw RuntimeError("this genrelab was built without NCCL, so " + std::to_string(world.size) +
                       " GPU ranks cannot train together; build with NCCL (docs/scale-out.md) or run one process");
  return make_nccl_communicator(world, rendezvous_dir, timeout_s);
}

}  // namespace genrelab::dist
