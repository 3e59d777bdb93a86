// `genrelab bench --what allreduce`: in-place float32 sum all-reduce over every rank of the job
// (mpirun, srun) for messages of 8 B up to --max-bytes, timed and reported as nccl-tests does
// (time, algbw, busbw): host buffers through MPI on the CPU, device buffers through NCCL on the GPU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

#include "../dist/dist_impl.h"
#include "genrelab/bench.h"
#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/device.h"
#include "genrelab/dist.h"
#include "genrelab/io.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWarmup = 2;                                // untimed calls per size; the first is checked
constexpr int64_t kDefaultMaxBytes = int64_t(256) << 20;  // 256 MiB, nccl-tests' usual top size

// Rank r contributes (r + 1) · (i mod 7) at element i, so the sum over n ranks is
// n(n + 1)/2 · (i mod 7): small integers, exact in float32 whatever the reduction order.
float rank_value(int rank, int64_t i) { return float(int64_t(rank + 1) * (i % 7)); }
float expected_sum(int ranks, int64_t i) { return float(int64_t(ranks) * (ranks + 1) / 2 * (i % 7)); }

// This rank's message in the communicator's memory: refilled with its own values before every
// call (an in-place all-reduce overwrites them), timed one call at a time.
class Message {
 public:
  virtual ~Message() = default;
  virtual void refill(int64_t count) = 0;
  virtual double all_reduce_seconds(dist::Communicator& comm, int64_t count) = 0;
  virtual const float* result(int64_t count) = 0;  // the reduced message, readable on the host
};

class HostMessage final : public Message {
 public:
  explicit HostMessage(std::vector<float> values) : values_(std::move(values)), work_(values_.size()) {}
  void refill(int64_t count) override { std::copy_n(values_.begin(), count, work_.begin()); }
  double all_reduce_seconds(dist::Communicator& comm, int64_t count) override {
    const auto t0 = Clock::now();
    comm.all_reduce_sum(work_.data(), count, dist::DType::f32);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  const float* result(int64_t) override { return work_.data(); }

 private:
  std::vector<float> values_;  // values_: (max_count,) this rank's contribution
  std::vector<float> work_;    // work_: (max_count,) reduced in place
};

#if GENRELAB_HAVE_CUDA
// Device buffers on one stream; each call is timed by CUDA events around it on that stream.
class DeviceMessage final : public Message {
 public:
  explicit DeviceMessage(const std::vector<float>& values)
      : values_(values.size()), work_(values.size()), start_(true), stop_(true) {
    cuda::copy_to_device(values_.data(), values.data(), values.size());
  }
  void refill(int64_t count) override {
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(work_.data(), values_.data(), size_t(count) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
    stream_.synchronize();
  }
  double all_reduce_seconds(dist::Communicator& comm, int64_t count) override {
    start_.record(stream_);
    comm.all_reduce_sum(work_.data(), count, dist::DType::f32, stream_.get());
    stop_.record(stream_);
    comm.wait(stream_.get());  // gives up after the communicator's timeout when a rank is gone
    return double(stop_.ms_since(start_)) * 1e-3;
  }
  const float* result(int64_t count) override {
    host_.resize(size_t(count));
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(host_.data(), work_.data(), size_t(count) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    stream_.synchronize();
    return host_.data();
  }

 private:
  cuda::Stream stream_;
  cuda::DeviceBuffer<float> values_;  // values_: (max_count,) this rank's contribution
  cuda::DeviceBuffer<float> work_;    // work_: (max_count,) reduced in place
  cuda::Event start_, stop_;
  std::vector<float> host_;  // host_: (count,) the last result read back
};
#endif

std::unique_ptr<Message> make_message(Device device, std::vector<float> values) {
#if GENRELAB_HAVE_CUDA
  if (device == Device::cuda) return std::make_unique<DeviceMessage>(values);
#endif
  (void)device;
  return std::make_unique<HostMessage>(std::move(values));
}

// Elements of the reduced message that differ from the hand-computed sum, over all ranks; every
// rank throws together, so the job ends with exit 1 on all of them.
void check_result(dist::Communicator& comm, Message& msg, int64_t count, const char* when) {
  const float* got = msg.result(count);  // got: (count,)
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i) wrong += got[i] != expected_sum(comm.size(), i);
  wrong = comm.sum(wrong);
  if (wrong > 0)
    throw RuntimeError("bench allreduce: " + std::to_string(wrong) + " of " + std::to_string(count * comm.size()) +
                       " elements of the " + std::to_string(count * 4) +
                       "-byte message differ from n(n+1)/2 · (i mod 7) " + when + " (communicator " + comm.name() +
                       ", " + std::to_string(comm.size()) + " ranks)");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// The communicator of the job; in a world of one (no launcher) the single-rank one, so that the
// path through it is still timed.
std::unique_ptr<dist::Communicator> job_communicator(const dist::World& world, Device device, const std::string& dir,
                                                     double timeout_s) {
  if (world.distributed()) return dist::make_communicator(world, device, dir, timeout_s);
  std::cerr << "bench allreduce: a world of 1 (started without mpirun or srun) measures only the local copy through "
               "the communicator; start N ranks (mpirun -np N genrelab bench --what allreduce) for the bandwidth "
               "between them\n";
  if (device == Device::cuda) return dist::make_nccl_communicator(world, dir, timeout_s);
  return dist::make_mpi_communicator(world);  // MPI singleton: no mpirun needed
}

int run_allreduce_bench(const cli::Args& args) {
  if (!args.positional().empty()) args.usage_error("bench --what allreduce takes no arguments");
  const int64_t max_bytes = args.get_int("--max-bytes", kDefaultMaxBytes, 8, int64_t(1) << 40);
  const int iterations = int(args.get_int("--iterations", 20, 1, 1 << 20));
  const Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  const dist::World world = dist::World::from_environment();
  const Device device = resolve_device(args.get_or("--device", ""));
  if (device == Device::cuda && world.distributed()) use_gpu(dist::local_gpu(world, int(query_cuda().gpus.size())));
  const std::string dir =
      args.get_or("--out", (std::filesystem::temp_directory_path() / "genrelab-bench-allreduce").string());
  auto comm = job_communicator(world, device, dir, config.get_number("train.comm_timeout_s"));
  const int n = comm->size();
  const bool root = comm->rank() == 0;

  // Message sizes: 8 B, 16 B, ... doubling up to --max-bytes (float32 elements).
  std::vector<int64_t> sizes;
  for (int64_t b = 8; b <= max_bytes; b *= 2) sizes.push_back(b);
  const int64_t max_count = sizes.back() / 4;
  std::vector<float> values(static_cast<size_t>(max_count));  // values: (max_count,)
  for (int64_t i = 0; i < max_count; ++i) values[size_t(i)] = rank_value(comm->rank(), i);
  // The tests check that a wrong sum is caught: the last rank then adds 1 to its element 1.
  if (std::getenv("GENRELAB_TEST_ALLREDUCE_WRONG") && comm->rank() == comm->size() - 1) values[1] += 1;
  auto msg = make_message(device, std::move(values));

  const double bus_factor = 2.0 * double(n - 1) / double(n);
  if (root) {
    std::fprintf(stderr,
                 "bench allreduce: %d rank%s (%s), communicator %s, %s buffers, in place, float32 sum; %d warm-up + %d "
                 "timed calls per size, median time averaged over ranks\n",
                 n, n == 1 ? "" : "s", dist::launcher_name(world.launcher), comm->name().c_str(),
                 device == Device::cuda ? "device" : "host", kWarmup, iterations);
    std::printf("%12s %12s %12s %12s %12s\n", "size(B)", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
    std::fflush(stdout);
  }
  json results = json::array();
  double busbw_sum = 0;
  for (const int64_t bytes : sizes) {
    const int64_t count = bytes / 4;
    for (int w = 0; w < kWarmup; ++w) {
      msg->refill(count);
      comm->barrier();
      msg->all_reduce_seconds(*comm, count);
      if (w == 0) check_result(*comm, *msg, count, "after the first call");
    }
    std::vector<double> seconds;
    for (int it = 0; it < iterations; ++it) {
      msg->refill(count);
      comm->barrier();  // every rank starts the timed call together
      seconds.push_back(msg->all_reduce_seconds(*comm, count));
    }
    check_result(*comm, *msg, count, "after the timed calls");
    const double t = comm->sum(median(seconds)) / double(n);
    const double algbw = double(bytes) / t / 1e9;
    const double busbw = algbw * bus_factor;
    busbw_sum += busbw;
    if (root) {
      std::printf("%12lld %12lld %12.2f %12.4f %12.4f\n", (long long)bytes, (long long)count, t * 1e6, algbw, busbw);
      std::fflush(stdout);
    }
    results.push_back({{"work", "allreduce-" + std::to_string(bytes)},
                       {"device", device_name(device)},
                       {"ranks", n},
                       {"bytes", bytes},
                       {"count", count},
                       {"items", bytes},
                       {"unit", "bytes"},
                       {"seconds", t},
                       {"items_per_s", double(bytes) / t},
                       {"time_us", t * 1e6},
                       {"algbw_gbps", algbw},
                       {"busbw_gbps", busbw}});
  }
  const double avg_busbw = busbw_sum / double(sizes.size());
  if (!root) return 0;
  std::fprintf(stderr, "bench allreduce: average bus bandwidth %.4f GB/s over %zu sizes; every result equals the sum\n",
               avg_busbw, sizes.size());
  if (const auto out = args.get("--json")) {
    const std::string library =
        comm->name() == "mpi" ? dist::mpi_version() : "NCCL " + std::to_string(query_cuda().nccl_version);
    const json doc = {{"bench", "allreduce"},
                      {"device", device_name(device)},
                      {"ranks", n},
                      {"launcher", dist::launcher_name(world.launcher)},
                      {"communicator", comm->name()},
                      {"library", library},
                      {"dtype", "float32"},
                      {"op", "sum"},
                      {"in_place", true},
                      {"warmup", kWarmup},
                      {"iterations", iterations},
                      {"bus_factor", bus_factor},
                      {"busbw_gbps", results.back()["busbw_gbps"]},
                      {"avg_busbw_gbps", avg_busbw},
                      {"results", results}};
    write_file_atomic(*out, doc.dump(2) + "\n");
  }
  return 0;
}

BenchRegistrar reg{{"allreduce",
                    "in-place float32 sum all-reduce over the job's ranks (mpirun/srun), 8 B to --max-bytes: time, "
                    "algbw, busbw (MPI on cpu, NCCL on cuda)",
                    run_allreduce_bench}};

}  // namespace
}  // namespace genrelab
