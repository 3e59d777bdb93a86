// `genrelab train EXPERIMENT.json [--set k=v ...] [--device cuda|cpu] [--out DIR] [--gpus 0,1,...]`
// and `genrelab train --resume RUN_DIR`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/device.h"
#include "genrelab/train.h"

namespace genrelab::cli {
namespace {

// `--gpus 0,1,...`: one worker process per listed GPU (each sees only its GPU), the data-parallel
// world of `genrelab train` without an MPI launcher. The workers rerun this command without
// --gpus, with GENRELAB_RANK / _WORLD_SIZE / _LOCAL_RANK / _JOB_ID set; the first one to fail
// stops the others (SIGTERM, then SIGKILL after 10 s), and SIGINT/SIGTERM reach all of them.
std::atomic<int> g_forward_signal{0};
extern "C" void forward_signal(int sig) { g_forward_signal = sig; }

int spawn_workers(const std::vector<int>& gpus, const std::vector<std::string>& worker_args) {
  if (!built_with_cuda()) throw ConfigError("--gpus needs the CUDA backend; this genrelab was built without it");
  const std::string job = "spawn-" + std::to_string(::getpid()) + "-" + std::to_string(::time(nullptr));
  std::vector<pid_t> pids;
  for (size_t r = 0; r < gpus.size(); ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw RuntimeError("--gpus: cannot start worker " + std::to_string(r) + ": " + std::strerror(errno));
    if (pid == 0) {
      ::setenv("GENRELAB_RANK", std::to_string(r).c_str(), 1);
      ::setenv("GENRELAB_WORLD_SIZE", std::to_string(gpus.size()).c_str(), 1);
      ::setenv("GENRELAB_LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("GENRELAB_JOB_ID", job.c_str(), 1);
      ::setenv("CUDA_VISIBLE_DEVICES", std::to_string(gpus[r]).c_str(), 1);
      std::vector<char*> argv{const_cast<char*>("genrelab")};
      for (const auto& a : worker_args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::perror("genrelab --gpus: exec");
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  int result = 0;
  size_t running = pids.size();
  bool stopping = false;
  auto stop_at = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (const int sig = g_forward_signal.exchange(0))
      for (pid_t p : pids)
        if (p > 0) ::kill(p, sig);
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      size_t rank = 0;
      for (size_t r = 0; r < pids.size(); ++r)
        if (pids[r] == done) { pids[r] = -1; --running; rank = r; }
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && result == 0) result = code;
      if (code != 0 && !stopping) {  // one worker failed: the others cannot finish without it
        std::cerr << "genrelab: --gpus: worker " << rank << " (GPU " << gpus[rank] << ") "
                  << (WIFEXITED(status) ? "exited with code " + std::to_string(code)
                                        : std::string("was killed by signal ") + std::to_string(WTERMSIG(status)))
                  << (running > 0 ? "; stopping the other workers" : "") << "\n";
        stopping = true;
        stop_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGTERM);
      }
      continue;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_at)
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

int run_train(const Args& args) {
  TrainRequest req;
  if (args.positional().size() > 1) args.usage_error("expects one EXPERIMENT.json");
  if (!args.positional().empty()) req.experiment = args.positional()[0];
  req.overrides = args.all("--set");
  req.device = args.get_or("--device", "");
  req.out = args.get_or("--out", "");
  req.resume = args.get_or("--resume", "");
  req.quiet = args.has("--quiet");
  req.profile_steps = int(args.get_int("--profile", 0, 1, 1 << 30));
  if (req.experiment.empty() && req.resume.empty()) args.usage_error("expects EXPERIMENT.json or --resume RUN_DIR");
  if (args.has("--gpus")) {
    if (req.device == "cpu") args.usage_error("--gpus starts one process per GPU; it cannot go with --device cpu");
    if (std::getenv("GENRELAB_RANK") || std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("SLURM_PROCID"))
      args.usage_error("--gpus starts its own processes; under mpirun or srun leave it out");
    const std::vector<int> gpus = args.get_gpu_list("--gpus");
    std::vector<std::string> worker{"train"};
    if (!req.experiment.empty()) worker.push_back(req.experiment);
    for (const auto& o : req.overrides) worker.insert(worker.end(), {"--set", o});
    worker.insert(worker.end(), {"--device", "cuda"});
    if (!req.out.empty()) worker.insert(worker.end(), {"--out", req.out});
    if (!req.resume.empty()) worker.insert(worker.end(), {"--resume", req.resume});
    if (req.profile_steps > 0) worker.insert(worker.end(), {"--profile", std::to_string(req.profile_steps)});
    if (req.quiet) worker.push_back("--quiet");
    return spawn_workers(gpus, worker);
  }
  return run_training(req);
}

CommandRegistrar reg{
    {"train",
     "train an experiment; the run directory tells the whole story",
     "usage: genrelab train EXPERIMENT.json [--set key=value ...] [--device cuda|cpu] [--out DIR]\n"
     "       genrelab train --resume RUN_DIR\n\n"
     "Decodes the collection, splits it, augments the training clips, computes mel features and\n"
     "trains, evaluating on the test (and valid) clips after every epoch. The run directory\n"
     "DIR/<name>-<UTC timestamp>/ holds config.json, run.json, split.json, metrics.jsonl,\n"
     "checkpoint.bin, curves.svg, confusion.svg, feature_stats.json (with features.standardize)\n"
     "and, at the end, summary.json; its path is printed on stdout as soon as it exists. Ctrl-C or\n"
     "SIGTERM stops at the next step with a checkpoint (exit code 128 + the signal: 130, 143);\n"
     "--resume continues to the result an uninterrupted run gives.\n\n"
     "Data parallel: `mpirun -np N genrelab train ...`, `srun genrelab train ...` or\n"
     "`genrelab train ... --gpus 0,1,2,3` run one rank per GPU (CPU ranks under mpirun);\n"
     "train.batch_size stays the global batch, rank 0 writes the run directory.\n",
     {set_option(),
      device_option(),
      {"--out", true, false, "parent folder of the run directory (default: output.dir)"},
      {"--resume", true, false, "continue the run in RUN_DIR from its last checkpoint"},
      {"--profile", true, false, "run N steps after 3 warm-up steps inside cudaProfilerStart/Stop, then stop"},
      {"--gpus", true, false, "data parallel on these GPUs of this machine, one process each (e.g. 0,1,2,3)"},
      {"--quiet", false, false, "no progress bars"}},
     run_train}};

}  // namespace
}  // namespace genrelab::cli
