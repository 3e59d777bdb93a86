// `genrelab sweep EXPERIMENT.json...`: runs several experiments — one per GPU concurrently
// (--gpus 0,1,...), or one after another on the CPU — or writes a Slurm job-array script
// (--slurm OUT.sbatch, one array task per experiment file) for a cluster.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/io.h"

extern char** environ;

namespace fs = std::filesystem;

namespace genrelab::cli {
namespace {

std::string self_path() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw RuntimeError("cannot find the genrelab binary (/proc/self/exe)");
  buf[n] = 0;
  return buf;
}

// Single-quotes a word for bash.
std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

std::vector<int> parse_gpus(const std::string& list) {
  std::vector<int> gpus;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int g = std::stoi(item, &used);
      if (used != item.size() || g < 0) throw std::invalid_argument(item);
      gpus.push_back(g);
    } catch (const std::exception&) {
      throw ConfigError("genrelab sweep: --gpus expects GPU indices like 0,1,2, not '" + list + "'");
    }
  }
  if (gpus.empty()) throw ConfigError("genrelab sweep: --gpus is empty");
  return gpus;
}

// Nodes and GPUs per node of a data-parallel Slurm task (--nodes N --gpus-per-node K); both 1
// (one GPU, no srun) when neither is given.
struct SlurmShape {
  int nodes = 1, gpus_per_node = 1;
  bool data_parallel = false;
};

SlurmShape slurm_shape(const Args& args) {
  SlurmShape shape;
  for (const char* name : {"--nodes", "--gpus-per-node"})
    if (args.has(name) && !args.has("--slurm"))
      args.usage_error(std::string(name) + " sizes the Slurm job of --slurm OUT.sbatch; a local run takes --gpus");
  shape.nodes = int(args.get_int("--nodes", 1, 1, 1 << 20));
  shape.gpus_per_node = int(args.get_int("--gpus-per-node", 1, 1, 1 << 10));
  shape.data_parallel = args.has("--nodes") || args.has("--gpus-per-node");
  return shape;
}

std::string slurm_script(const std::vector<std::string>& files, const std::vector<std::string>& sets,
                         const std::string& out_dir, const SlurmShape& shape, const Args& args) {
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# GenreLab sweep: one Slurm array task per experiment file (written by genrelab sweep --slurm).\n";
  if (shape.data_parallel)
    s << "# Each task trains data-parallel on " << shape.nodes << " node(s) x " << shape.gpus_per_node
      << " GPU(s): one rank per GPU, from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID.\n";
  s << "#SBATCH --job-name=" << args.get_or("--job-name", "genrelab-sweep") << "\n"
    << "#SBATCH --array=0-" << files.size() - 1 << "\n";
  if (shape.data_parallel) {
    s << "#SBATCH --nodes=" << shape.nodes << "\n"
      << "#SBATCH --ntasks-per-node=" << shape.gpus_per_node << "\n"
      << "#SBATCH --gres=gpu:" << shape.gpus_per_node << "\n";
  } else {
    s << "#SBATCH --gres=gpu:1\n"
      << "#SBATCH --ntasks=1\n";
  }
  s << "#SBATCH --cpus-per-task=" << args.get_or("--cpus-per-task", "8") << "\n"
    << "#SBATCH --output=" << out_dir << "/slurm-%A_%a.log\n";
  if (const auto t = args.get("--time")) s << "#SBATCH --time=" << *t << "\n";
  if (const auto p = args.get("--partition")) s << "#SBATCH --partition=" << *p << "\n";
  s << "set -euo pipefail\n\nexperiments=(\n";
  for (size_t i = 0; i < files.size(); ++i) s << "  " << shell_quote(files[i]) << "  # " << i << "\n";
  s << ")\noverrides=(";
  for (const auto& o : sets) s << " --set " << shell_quote(o);
  s << " )\n\n"
    << "experiment=${experiments[$SLURM_ARRAY_TASK_ID]}\n"
    << "echo \"genrelab sweep: array task $SLURM_ARRAY_TASK_ID runs $experiment on $(hostname)\" >&2\n"
    // srun --kill-on-bad-exit: one failing rank ends the step instead of leaving the others waiting
    << "exec " << (shape.data_parallel ? "srun --kill-on-bad-exit=1 " : "") << shell_quote(self_path())
    << " train \"$experiment\" \"${overrides[@]}\" --device cuda --out " << shell_quote(out_dir) << "\n";
  return s.str();
}

struct Child {
  pid_t pid;
  std::string file, log;
  int gpu;
};

pid_t spawn_train(const std::string& file, const std::vector<std::string>& sets, const std::string& device,
                  const std::string& out_dir, int gpu, const std::string& log) {
  std::vector<std::string> argv = {self_path(), "train", file, "--device", device, "--out", out_dir};
  for (const auto& s : sets) { argv.push_back("--set"); argv.push_back(s); }
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("CUDA_VISIBLE_DEVICES=", 0) != 0) env.push_back(*e);
  if (gpu >= 0) env.push_back("CUDA_VISIBLE_DEVICES=" + std::to_string(gpu));
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw RuntimeError("cannot start genrelab train for " + file + ": " + std::strerror(rc));
  return pid;
}

int run_sweep(const Args& args) {
  const auto& files = args.positional();
  if (files.empty()) args.usage_error("expects one or more EXPERIMENT.json files");
  const std::vector<std::string> sets = args.all("--set");
  const SlurmShape shape = slurm_shape(args);
  // Validate every experiment before starting anything.
  std::string default_out;
  for (const auto& f : files) {
    const Config c = Config::load(f, sets);
    if (default_out.empty()) default_out = c.get_path("output.dir");
  }
  const std::string out_dir = fs::absolute(args.get_or("--out", default_out)).lexically_normal().string();
  std::vector<std::string> abs_files;
  for (const auto& f : files) abs_files.push_back(fs::absolute(f).lexically_normal().string());

  if (const auto slurm = args.get("--slurm")) {
    write_file_atomic(*slurm, slurm_script(abs_files, sets, out_dir, shape, args));
    fs::permissions(*slurm, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    std::cerr << "genrelab sweep: wrote " << *slurm << " (" << files.size() << " array tasks"
              << (shape.data_parallel ? ", each on " + std::to_string(shape.nodes) + " node(s) x " +
                                            std::to_string(shape.gpus_per_node) + " GPU(s)"
                                      : std::string())
              << "); submit with: sbatch " << *slurm << "\n";
    return 0;
  }

  std::vector<int> gpus;
  std::string device = args.get_or("--device", "");
  if (const auto g = args.get("--gpus")) {
    gpus = parse_gpus(*g);
    if (device == "cpu") throw ConfigError("genrelab sweep: --gpus and --device cpu contradict each other");
    device = "cuda";
  } else if (device.empty()) {
    device = "cpu";
    std::cerr << "genrelab sweep: no --gpus given; running the experiments one after another on the CPU\n";
  }
  const fs::path logs = fs::path(out_dir) / "sweep-logs";
  fs::create_directories(logs);
  const size_t slots = gpus.empty() ? 1 : gpus.size();
  std::vector<Child> running;
  std::vector<std::string> failed;
  size_t next = 0, done = 0;
  auto reap_one = [&] {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    for (size_t i = 0; i < running.size(); ++i) {
      if (running[i].pid != pid) continue;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      ++done;
      std::cerr << "genrelab sweep: [" << done << "/" << files.size() << "] " << running[i].file
                << (ok ? " finished" : " FAILED") << " (log " << running[i].log << ")\n";
      if (!ok) failed.push_back(running[i].file);
      running.erase(running.begin() + long(i));
      return;
    }
  };
  while (next < abs_files.size() || !running.empty()) {
    if (next < abs_files.size() && running.size() < slots) {
      std::vector<int> busy;
      for (const auto& c : running) busy.push_back(c.gpu);
      int gpu = -1;
      for (int g : gpus)
        if (std::find(busy.begin(), busy.end(), g) == busy.end()) { gpu = g; break; }
      const std::string log = (logs / (fs::path(abs_files[next]).stem().string() + "-" + std::to_string(next) + ".log")).string();
      const pid_t pid = spawn_train(abs_files[next], sets, device, out_dir, gpu, log);
      std::cerr << "genrelab sweep: started " << files[next] << (gpu >= 0 ? " on GPU " + std::to_string(gpu) : " on the CPU") << "\n";
      running.push_back({pid, files[next], log, gpu});
      ++next;
    } else {
      reap_one();
    }
  }
  if (!failed.empty()) {
    std::cerr << "genrelab sweep: " << failed.size() << " of " << files.size() << " experiments failed:";
    for (const auto& f : failed) std::cerr << " " << f;
    std::cerr << "\n";
    return 1;
  }
  std::cerr << "genrelab sweep: all " << files.size() << " experiments finished; summarise with: genrelab report " << out_dir << "\n";
  return 0;
}

CommandRegistrar reg{{"sweep", "run several experiments (one per GPU) or write a Slurm job array",
                      "usage: genrelab sweep EXPERIMENT.json... [--set key=value ...] [--gpus 0,1,...] [--out DIR]\n"
                      "       genrelab sweep EXPERIMENT.json... --slurm OUT.sbatch [--nodes N --gpus-per-node K]\n"
                      "                      [--time HH:MM:SS] [--partition P]\n\n"
                      "Every experiment is validated first. With --gpus, one experiment runs per listed GPU at a time;\n"
                      "without it they run one after another on the CPU backend. Logs go to DIR/sweep-logs/.\n"
                      "--slurm writes a job-array script: one array task per experiment file, one GPU each; with\n"
                      "--nodes/--gpus-per-node each task trains data-parallel through srun, one rank per GPU.\n",
                      {set_option(), device_option(),
                       {"--gpus", true, false, "GPU indices to run on, e.g. 0,1,2,3"},
                       {"--out", true, false, "parent folder of the run directories (default: output.dir)"},
                       {"--slurm", true, false, "write a Slurm job-array script instead of running"},
                       {"--time", true, false, "Slurm time limit per task"},
                       {"--partition", true, false, "Slurm partition"},
                       {"--job-name", true, false, "Slurm job name"},
                       {"--cpus-per-task", true, false, "Slurm CPUs per task (default 8)"},
                       {"--nodes", true, false, "Slurm nodes per experiment, data-parallel (with --slurm)"},
                       {"--gpus-per-node", true, false, "GPUs (ranks) per node, data-parallel (with --slurm)"}},
                      run_sweep}};

}  // namespace
}  // namespace genrelab::cli
