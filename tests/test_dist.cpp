// Data-parallel training on the CPU backend under `mpirun -np 2` against one process (losses,
// weights, accuracy and confusion counts), a world-of-2 checkpoint resumed by one process, a rank
// killed mid-epoch, ranks whose configs differ; and the launcher environment, shards and hashes.
// The mpirun tests skip (with the reason) when the binary was built without MPI or mpirun is absent.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include "../host/dist/dist_impl.h"
#include "genrelab/dist.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/run.h"
#include "mpi_fixtures.h"
#include "train_fixtures.h"

#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {
namespace {

namespace fs = std::filesystem;

using test::mpirun;
using test::run_dirs;

TEST_CASE("world environment of mpirun srun and the gpus spawner", "[dist]") {
  auto with_env = [](std::vector<std::pair<const char*, const char*>> vars) {
    for (const char* v : {"GENRELAB_RANK", "GENRELAB_WORLD_SIZE", "GENRELAB_LOCAL_RANK", "GENRELAB_JOB_ID",
                          "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_MCA_ess_base_jobid", "SLURM_PROCID", "SLURM_NTASKS",
                          "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_ID", "SLURM_STEP_ID", "PMIX_NAMESPACE"})
      unsetenv(v);
    for (const auto& [k, v] : vars) setenv(k, v, 1);
    return dist::World::from_environment();
  };
  dist::World w = with_env({});
  CHECK((w.size == 1 && w.rank == 0 && w.launcher == dist::Launcher::none && !w.distributed()));
  w = with_env({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"OMPI_MCA_ess_base_jobid", "77"}});
  CHECK((w.rank == 3 && w.size == 8 && w.local_rank == 1 && w.local_size == 2 && w.launcher == dist::Launcher::mpirun &&
         w.job_id == "77"));
  CHECK(dist::local_gpu(w, 4) == 1);
  w = with_env({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS_PER_NODE", "4"},
                {"SLURM_JOB_ID", "123"}, {"SLURM_STEP_ID", "0"}});
  CHECK((w.rank == 5 && w.size == 8 && w.local_rank == 1 && w.local_size == 4 && w.launcher == dist::Launcher::slurm &&
         w.job_id == "123.0"));
  w = with_env({{"GENRELAB_RANK", "1"}, {"GENRELAB_WORLD_SIZE", "2"}, {"GENRELAB_JOB_ID", "spawn-9"}});
  CHECK((w.rank == 1 && w.size == 2 && w.launcher == dist::Launcher::spawn && w.job_id == "spawn-9"));
  CHECK(dist::local_gpu(w, 1) == 0);  // the spawner leaves each worker one visible GPU
  CHECK_THROWS_WITH(with_env({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}}),
                    Catch::Contains("inconsistent"));
  CHECK_THROWS_WITH(with_env({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}}), Catch::Contains("SLURM_PROCID"));
  with_env({});
}

TEST_CASE("shards split a global batch evenly and in order", "[dist]") {
  // 29 examples over 4 ranks: 8, 7, 7, 7, contiguous.
  int64_t next = 0;
  for (int r = 0; r < 4; ++r) {
    const dist::Shard s = dist::shard_of(29, r, 4);
    CHECK(s.first == next);
    CHECK(s.count == (r == 0 ? 8 : 7));
    next += s.count;
  }
  CHECK(next == 29);
  CHECK(dist::shard_of(1, 1, 2).count == 0);  // a rank may get an empty shard
  CHECK(dist::shard_of(32, 1, 2).first == 16);
  // FNV-1a 64 of "a" is af63dc4c8601ec8c (published test vector).
  CHECK(dist::hash_hex("a") == "af63dc4c8601ec8c");
  CHECK(dist::hash_hex("{\"train\":1}") != dist::hash_hex("{\"train\":2}"));
}

TEST_CASE("two MPI ranks train what one process trains", "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-equal");
  const std::string exp = test::tiny_experiment(dir, 2);
  const std::string common = "train " + exp + " --device cpu --quiet --set train.deterministic=true --out ";
  const auto one = test::run_genrelab(common + (dir / "w1").string());
  REQUIRE(one.rc == 0);
  const auto two = test::run_shell(mpirun(2, common + (dir / "w2").string()));
  INFO(two.err);
  REQUIRE(two.rc == 0);
  CHECK(two.err.find("data parallel over 2 ranks") != std::string::npos);
  // Exactly one run directory, named once on stdout (rank 0 alone writes and prints).
  REQUIRE(run_dirs(dir / "w2").size() == 1);
  CHECK(test::trim(two.out) == run_dirs(dir / "w2")[0]);
  const json world = RunDir::open(run_dirs(dir / "w2")[0]).read_json("run.json")["world"];
  CHECK(world["ranks"] == 2);
  // The node's cores are shared by its two ranks (unless OMP_NUM_THREADS says otherwise; a
  // launcher's binding may give a rank fewer).
  const int threads = world["threads_per_rank"].get<int>();
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) {
    CHECK(threads == std::atoi(omp));
  } else {
    CHECK(threads >= 1);
    CHECK(threads <= std::max(1, int(std::thread::hardware_concurrency()) / 2));
  }
  test::require_close_runs(run_dirs(dir / "w1")[0], run_dirs(dir / "w2")[0], 1e-4);
}

// Starts `cmd` as its own process group (the pid is mpirun's: `exec`), output to `log`.
pid_t start_job(const std::string& cmd, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >" + log + " 2>&1").c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

// The first run directory under `out` that holds a checkpoint ("" after 30 s).
std::string wait_for_checkpoint(const fs::path& out) {
  for (int i = 0; i < 3000; ++i) {
    for (const auto& d : run_dirs(out))
      if (fs::exists(fs::path(d) / "checkpoint.bin")) return d;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST_CASE("three MPI ranks with an empty shard train what one process trains", "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-three");
  const std::string exp = test::tiny_experiment(dir, 2);
  // 60 training examples in global batches of 29: the last batch has 2, so rank 2's shard is empty
  // and it still joins the gradient sum and applies the same update.
  const std::string common = "train " + exp +
                             " --device cpu --quiet --set train.deterministic=true --set train.batch_size=29 --out ";
  REQUIRE(test::run_genrelab(common + (dir / "w1").string()).rc == 0);
  // The ranks read their step stats every 2 steps (train.sync_every_steps; the one process every
  // step): windows that hold the empty shard's step, synchronisation points where the three ranks
  // agree, the same global sums.
  const auto three =
      test::run_shell(mpirun(3, common + (dir / "w3").string() + " --set train.sync_every_steps=2"));
  INFO(three.err);
  REQUIRE(three.rc == 0);
  REQUIRE(run_dirs(dir / "w3").size() == 1);
  CHECK(RunDir::open(run_dirs(dir / "w1")[0]).read_metrics()[0].samples_per_second *
            RunDir::open(run_dirs(dir / "w1")[0]).read_metrics()[0].seconds ==
        Approx(60).margin(0.5));
  test::require_close_runs(run_dirs(dir / "w1")[0], run_dirs(dir / "w3")[0], 1e-4);
}

TEST_CASE("three MPI ranks streaming their shards from disk train what one process holding the data trains",
          "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-streaming");
  // A private copy of the collection with two broken files: rank 0's shard of the start-up check
  // holds the first, rank 2's the second; every rank must skip both.
  const fs::path data = dir / "data";
  fs::copy(test::tiny_data(), data, fs::copy_options::recursive);
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(data))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  fs::resize_file(files.front(), 30);
  fs::resize_file(files.back(), 0);
  const std::string exp = test::tiny_experiment(dir, 2);
  // Each rank decodes and featurises only its shard of every global batch (rank 2's last one is
  // empty) and its shard of the test clips; the one process holds the whole collection in memory.
  const std::string common = "train " + exp + " --device cpu --quiet --set train.deterministic=true" +
                             " --set dataset.root=" + data.string() +
                             " --set train.batch_size=29 --set features.standardize=true --out ";
  const auto one = test::run_genrelab(common + (dir / "w1").string());
  INFO(one.err);
  REQUIRE(one.rc == 0);
  const auto three = test::run_shell(mpirun(3, common + (dir / "w3").string() + " --set dataset.streaming=true"));
  INFO(three.err);
  REQUIRE(three.rc == 0);
  REQUIRE(run_dirs(dir / "w3").size() == 1);
  const RunDir w1 = RunDir::open(run_dirs(dir / "w1")[0]), w3 = RunDir::open(run_dirs(dir / "w3")[0]);
  CHECK(w1.read_json("split.json")["skipped"].size() == 2);
  CHECK(w3.read_json("split.json") == w1.read_json("split.json"));
  for (const fs::path& f : {files.front(), files.back()}) {  // one warning each, from rank 0
    const std::string line = "warning: " + f.string() + ": ";
    CHECK(three.err.find(line) != std::string::npos);
    CHECK(three.err.find(line) == three.err.rfind(line));
  }
  test::require_close_runs(run_dirs(dir / "w1")[0], run_dirs(dir / "w3")[0], 1e-4);
}

TEST_CASE("two MPI ranks streaming stop together at a clip that no longer decodes and resume to the same result",
          "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-streaming-broken");
  const fs::path data = dir / "data";  // a private copy, whose file the test breaks and mends
  fs::copy(test::tiny_data(), data, fs::copy_options::recursive);
  const std::string exp = test::tiny_experiment(dir, 20);
  const std::string common = "train " + exp + " --device cpu --quiet --set train.deterministic=true" +
                             " --set dataset.streaming=true --set dataset.root=" + data.string() + " --out ";
  const std::string log = (dir / "job.log").string();
  const pid_t pid = start_job(mpirun(2, common + (dir / "out").string()), log);
  const std::string run = wait_for_checkpoint(dir / "out");
  REQUIRE(!run.empty());
  // One training clip cut to its header after the first epoch: whichever rank's shard of a step
  // holds it, both ranks stop before that step.
  const json split = RunDir::open(run).read_json("split.json");
  const fs::path broken = fs::path(split["class_root"].get<std::string>()) / split["train"][0].get<std::string>();
  const std::string bytes = read_text(broken.string());
  fs::resize_file(broken, 44);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  const std::string err = read_text(log);
  INFO(err);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 1));
  CHECK(err.find(broken.string()) != std::string::npos);  // reported by rank 0, whichever rank read it
  CHECK(run_dirs(dir / "out").size() == 1);
  test::require_checkpoint_where_stopped(err, run);
  std::ofstream(broken, std::ios::binary) << bytes;
  const auto resumed = test::run_shell(mpirun(2, "train --resume " + run + " --quiet"));
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  const auto reference = test::run_shell(mpirun(2, common + (dir / "reference").string()));
  INFO(reference.err);
  REQUIRE(reference.rc == 0);
  test::require_close_runs(run_dirs(dir / "reference")[0], run, 1e-6);
}

TEST_CASE("a world-of-2 checkpoint resumes as one process", "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-resume");
  const std::string exp = test::tiny_experiment(dir, 2);
  const std::string common = "train " + exp + " --device cpu --quiet --set train.deterministic=true --out ";
  REQUIRE(test::run_genrelab(common + (dir / "w1").string()).rc == 0);
  // A world of 2 stops after step 8, inside an epoch, as after a SIGTERM (both ranks agree on the
  // step; rank 0 writes a mid-epoch checkpoint); then one process finishes the run.
  const auto two = test::run_shell("GENRELAB_TEST_STOP_AFTER_STEPS=8 " +
                                   mpirun(2, common + (dir / "w2").string(), "-x GENRELAB_TEST_STOP_AFTER_STEPS"));
  INFO(two.err);
  CHECK(two.rc == 128 + SIGTERM);
  REQUIRE(two.err.find("stopped by SIGTERM at epoch 1, step 8") != std::string::npos);
  REQUIRE(run_dirs(dir / "w2").size() == 1);
  const std::string run = run_dirs(dir / "w2")[0];
  CHECK(!fs::exists(fs::path(run) / "summary.json"));
  const auto resumed = test::run_genrelab("train --resume " + run + " --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  CHECK(resumed.err.find("resuming at epoch 1 after its first 8 steps") != std::string::npos);
  test::require_close_runs(run_dirs(dir / "w1")[0], run, 1e-4);
}

TEST_CASE("a rank killed mid-epoch ends the job and the run resumes", "[dist][mpi][train][slow]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-kill");
  const std::string exp = test::tiny_experiment(dir, 30, 16, 16);
  const std::string log = (dir / "job.log").string();
  const pid_t pid = start_job(mpirun(2, "train " + exp + " --device cpu --quiet --out " + (dir / "out").string()), log);
  const std::string run = wait_for_checkpoint(dir / "out");
  REQUIRE(!run.empty());
  // Rank 1 is the genrelab process whose environment says so.
  std::string pids;
  test::run_command("for p in $(pgrep -f 'genrelab train .*dist-kill'); do tr '\\0' '\\n' </proc/$p/environ 2>/dev/null | "
                    "grep -qx OMPI_COMM_WORLD_RANK=1 && echo $p; done",
                    &pids);
  REQUIRE(!test::trim(pids).empty());
  const pid_t rank1 = pid_t(std::stol(test::trim(pids)));
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(rank1, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(read_text(log));
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) != 0));
  CHECK(seconds < 60);
  // Only complete files (a killed write leaves NAME.tmp beside the intact NAME, which resume
  // removes): every JSON parses, the checkpoint loads.
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().extension() == ".json") CHECK_NOTHROW(RunDir::open(run).read_json(e.path().filename().string()));
  CHECK_NOTHROW(nn::load_checkpoint(run + "/checkpoint.bin"));
  const auto resumed = test::run_genrelab("train --resume " + run + " --quiet");
  INFO(resumed.err);
  CHECK(resumed.rc == 0);
  CHECK(RunDir::open(run).read_metrics().size() == 30);
}

TEST_CASE("ranks with different configs are refused with both hashes", "[dist][mpi]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("dist-config");
  const std::string exp = test::tiny_experiment(dir, 1);
  const std::string base = "train " + exp + " --device cpu --quiet --out " + (dir / "out").string();
  // MPMD: rank 0 and rank 1 get different learning rates.
  const std::string cmd = mpirun(1, base + " --set train.lr=0.003") + " : -np 1 " + test::genrelab_binary() + " " +
                          base + " --set train.lr=0.004";
  const auto r = test::run_shell(cmd);
  INFO(r.err);
  CHECK(r.rc != 0);
  CHECK(r.err.find("differs from rank 0's") != std::string::npos);
  // Both hashes are shown: rank 1's own and rank 0's.
  const size_t at = r.err.find("(hash ");
  REQUIRE(at != std::string::npos);
  CHECK(r.err.find("rank 0's (hash ", at) != std::string::npos);
  CHECK(run_dirs(dir / "out").empty());  // refused before any run directory exists
}

TEST_CASE("train --gpus starts one worker per GPU and reports their failure", "[dist]") {
  const auto dir = test::temp_dir("dist-spawn");
  const std::string exp = test::tiny_experiment(dir, 1);
  const std::string out = " --quiet --out " + (dir / "out").string();
  CHECK(test::run_genrelab("train " + exp + " --gpus 0,0" + out).rc == 2);     // listed twice
  CHECK(test::run_genrelab("train " + exp + " --gpus 0,x" + out).rc == 2);     // not an index
  CHECK(test::run_genrelab("train " + exp + " --gpus 0 --device cpu" + out).rc == 2);
  if (built_with_cuda() && query_cuda().usable) {
    WARN("SKIPPED: a GPU is present; the --gpus failure path is checked on GPU-less machines");
    return;
  }
  const auto r = test::run_genrelab("train " + exp + " --gpus 0,1" + out);
  INFO(r.err);
  if (!built_with_cuda()) {
    CHECK(r.rc == 2);
    CHECK(r.err.find("--gpus needs the CUDA backend") != std::string::npos);
  } else {
    // Both workers start and find no GPU; the first to exit makes the spawner name it and stop the
    // other (which may or may not have printed its own error by then): the job exits with its code.
    CHECK(r.rc == 1);
    CHECK(r.err.find("no usable GPU") != std::string::npos);
    CHECK(r.err.find("--gpus: worker ") != std::string::npos);
    CHECK(r.err.find("exited with code 1") != std::string::npos);
  }
  CHECK(run_dirs(dir / "out").empty());
}

#if GENRELAB_HAVE_CUDA
TEST_CASE("NCCL all-reduce and broadcast on this GPU equal the CPU results", "[dist][gpu]") {
  GENRELAB_REQUIRE_GPU();
  if (!dist::built_with_nccl()) {
    WARN("SKIPPED: this genrelab was built without NCCL");
    return;
  }
  // A world of one on the current GPU (the multi-GPU form runs under mpirun or --gpus).
  const auto dir = test::temp_dir("nccl-one");
  auto comm = dist::make_nccl_communicator(dist::World{}, dir.string(), 60);
  REQUIRE(comm->size() == 1);
  const int64_t n = 1000003;  // odd, over one NCCL chunk
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(i % 97) * 0.25f - 3.0f;
  cuda::Stream stream;
  cuda::DeviceBuffer<float> d(x.size());
  cuda::copy_to_device(d.data(), x.data(), x.size());
  comm->all_reduce_sum(d.data(), n, dist::DType::f32, stream.get());
  comm->wait(stream.get());
  std::vector<float> got(x.size());
  cuda::copy_to_host(got.data(), d.data(), got.size());
  test::require_close(got, x, 0, 0, "all-reduce over one rank");  // the sum of one term is exact
  // Two all-reduces in one group (how a layer's kernel and bias gradients go): the same sums.
  cuda::DeviceBuffer<double> d2(3);
  const std::vector<double> y = {0.5, -7.25, 3e-300};
  cuda::copy_to_device(d2.data(), y.data(), y.size());
  comm->group_start();
  comm->all_reduce_sum(d.data(), n, dist::DType::f32, stream.get());
  comm->all_reduce_sum(d2.data(), 3, dist::DType::f64, stream.get());
  comm->group_end();
  comm->wait(stream.get());
  cuda::copy_to_host(got.data(), d.data(), got.size());
  test::require_close(got, x, 0, 0, "grouped all-reduce over one rank");
  std::vector<double> got2(3);
  cuda::copy_to_host(got2.data(), d2.data(), got2.size());
  CHECK(got2 == y);
  double host[3] = {1.5, -2.0, 1e300};
  comm->all_reduce_sum_host(host, 3, dist::DType::f64);
  CHECK((host[0] == 1.5 && host[1] == -2.0 && host[2] == 1e300));
  CHECK(comm->broadcast_string("run-dir-name", 0) == "run-dir-name");
  CHECK(comm->sum(int64_t(41)) == 41);
  comm->barrier();
}
#endif

}  // namespace
}  // namespace genrelab
