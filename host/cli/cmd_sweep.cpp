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
#include <optional>
#include <regex>
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

// An option's value that goes into an #SBATCH line unquoted, checked against what Slurm accepts
// there (`pattern`, described by `what`): a usage error otherwise, instead of a script that fails
// on the cluster.
std::optional<std::string> slurm_word(const Args& args, const std::string& name, const char* pattern,
                                      const char* what) {
  const auto v = args.get(name);
  if (v && !std::regex_match(*v, std::regex(pattern)))
    args.usage_error(name + " expects " + what + ", not '" + *v + "'");
  return v;
}

// What the #SBATCH lines say besides the array: the task's shape, device and Slurm options.
struct SlurmJob {
  int nodes = 1, gpus_per_node = 1;  // of a data-parallel task; 1 and 1 (no srun) when neither is given
  bool data_parallel = false;        // --nodes / --gpus-per-node: srun, one rank per GPU
  bool gpu = true;                   // --device cuda (the default): GPUs requested with --gres
  int64_t cpus_per_task = 8;
  std::string job_name;
  std::optional<std::string> time, partition;
};

SlurmJob slurm_job(const Args& args) {
  SlurmJob job;
  if (!args.has("--slurm")) {
    for (const char* name : {"--nodes", "--gpus-per-node", "--time", "--partition", "--job-name", "--cpus-per-task"})
      if (args.has(name))
        args.usage_error(std::string(name) + " is an option of the Slurm script (--slurm OUT.sbatch)");
    return job;
  }
  if (args.has("--gpus"))
    args.usage_error("--gpus picks local GPUs; under --slurm, Slurm assigns them (--gpus-per-node)");
  job.nodes = int(args.get_int("--nodes", 1, 1, 1 << 20));
  job.gpus_per_node = int(args.get_int("--gpus-per-node", 1, 1, 1 << 10));
  job.data_parallel = args.has("--nodes") || args.has("--gpus-per-node");
  job.gpu = args.get_or("--device", "cuda") == "cuda";
  if (!job.gpu && job.data_parallel)
    args.usage_error("--nodes and --gpus-per-node place data-parallel ranks on GPUs; they need --device cuda");
  job.cpus_per_task = args.get_int("--cpus-per-task", 8, 1, 1 << 16);
  job.job_name = slurm_word(args, "--job-name", "[A-Za-z0-9._-]+", "a name of letters, digits, '.', '_' and '-'")
                     .value_or("genrelab-sweep");
  job.time = slurm_word(args, "--time", "[0-9]+(-[0-9]+)?(:[0-9]{1,2}){0,2}",
                        "a Slurm time: MINUTES, HH:MM:SS, D-HH or D-HH:MM:SS");
  job.partition = slurm_word(args, "--partition", "[A-Za-z0-9._,-]+", "partition names separated by commas");
  return job;
}

std::string slurm_script(const std::vector<std::string>& files, const std::vector<std::string>& sets,
                         const std::string& out_dir, const SlurmJob& job) {
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# GenreLab sweep: one Slurm array task per experiment file (written by genrelab sweep --slurm).\n";
  if (job.data_parallel)
    s << "# Each task trains data-parallel on " << job.nodes << " node(s) x " << job.gpus_per_node
      << " GPU(s): one rank per GPU, from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID.\n";
  s << "#SBATCH --job-name=" << job.job_name << "\n"
    << "#SBATCH --array=0-" << files.size() - 1 << "\n";
  if (job.data_parallel) {
    s << "#SBATCH --nodes=" << job.nodes << "\n"
      << "#SBATCH --ntasks-per-node=" << job.gpus_per_node << "\n"
      << "#SBATCH --gres=gpu:" << job.gpus_per_node << "\n";
  } else {
    if (job.gpu) s << "#SBATCH --gres=gpu:1\n";
    s << "#SBATCH --ntasks=1\n";
  }
  s << "#SBATCH --cpus-per-task=" << job.cpus_per_task << "\n"
    << "#SBATCH --output=" << out_dir << "/slurm-%A_%a.log\n";
  if (job.time) s << "#SBATCH --time=" << *job.time << "\n";
  if (job.partition) s << "#SBATCH --partition=" << *job.partition << "\n";
  s << "set -euo pipefail\n\nexperiments=(\n";
  for (size_t i = 0; i < files.size(); ++i) s << "  " << shell_quote(files[i]) << "  # " << i << "\n";
  s << ")\noverrides=(";
  for (const auto& o : sets) s << " --set " << shell_quote(o);
  s << " )\n\n"
    << "experiment=${experiments[$SLURM_ARRAY_TASK_ID]}\n"
    << "echo \"genrelab sweep: array task $SLURM_ARRAY_TASK_ID runs $experiment on $(hostname)\" >&2\n"
    // srun --kill-on-bad-exit: one failing rank ends the step instead of leaving the others waiting
    << "exec " << (job.data_parallel ? "srun --kill-on-bad-exit=1 " : "") << shell_quote(self_path())
    << " train \"$experiment\" \"${overrides[@]}\" --device " << (job.gpu ? "cuda" : "cpu") << " --out "
    << shell_quote(out_dir) << "\n";
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

// Creates `dir` (and its parents) or says which folder could not be made.
void make_folder(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw RuntimeError("genrelab sweep: cannot create the folder " + dir + ": " + ec.message());
}

int run_sweep(const Args& args) {
  const auto& files = args.positional();
  if (files.empty()) args.usage_error("expects one or more EXPERIMENT.json files");
  const std::vector<std::string> sets = args.all("--set");
  if (const auto d = args.get("--device"); d && *d != "cuda" && *d != "cpu")
    args.usage_error("--device must be cuda or cpu, not '" + *d + "'");
  const SlurmJob job = slurm_job(args);
  // Validate every experiment before starting anything. The runs go to --out, else to the
  // experiments' output.dir (read only then: a ${VAR} in it is not needed otherwise), which must
  // be one folder: the sweep's logs and its report are there.
  std::string out_dir;
  if (const auto out = args.get("--out")) out_dir = fs::absolute(*out).lexically_normal().string();
  for (const auto& f : files) {
    const Config c = Config::load(f, sets);
    if (args.has("--out")) continue;
    const std::string dir = fs::absolute(c.get_path("output.dir")).lexically_normal().string();
    if (out_dir.empty()) out_dir = dir;
    if (dir != out_dir)
      throw ConfigError("genrelab sweep: the experiments' output.dir differ (" + files[0] + ": " + out_dir + ", " + f +
                        ": " + dir + "); give the sweep one folder with --out DIR");
  }
  std::vector<std::string> abs_files;
  for (const auto& f : files) abs_files.push_back(fs::absolute(f).lexically_normal().string());

  if (const auto slurm = args.get("--slurm")) {
    // Slurm writes each task's log in this folder and does not create it.
    make_folder(out_dir);
    write_file_atomic(*slurm, slurm_script(abs_files, sets, out_dir, job));
    fs::permissions(*slurm, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    std::cerr << "genrelab sweep: wrote " << *slurm << " (" << files.size() << " array tasks"
              << (job.data_parallel ? ", each on " + std::to_string(job.nodes) + " node(s) x " +
                                          std::to_string(job.gpus_per_node) + " GPU(s)"
                                    : std::string())
              << "); submit with: sbatch " << *slurm << "\n";
    return 0;
  }

  const std::vector<int> gpus = args.get_gpu_list("--gpus");
  std::string device = args.get_or("--device", "");
  if (!gpus.empty()) {
    if (device == "cpu") throw ConfigError("genrelab sweep: --gpus and --device cpu contradict each other");
    device = "cuda";
  } else if (device.empty()) {
    device = "cpu";
    std::cerr << "genrelab sweep: no --gpus given; running the experiments one after another on the CPU\n";
  }
  const fs::path logs = fs::path(out_dir) / "sweep-logs";
  make_folder(logs.string());
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
      std::cerr << "genrelab sweep: started " << files[next]
                << (gpu >= 0          ? " on GPU " + std::to_string(gpu)
                    : device == "cpu" ? " on the CPU"
                                      : " on the GPU")
                << "\n";
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

CommandRegistrar reg{
    {"sweep",
     "run several experiments (one per GPU) or write a Slurm job array",
     "usage: genrelab sweep EXPERIMENT.json... [--set key=value ...] [--gpus 0,1,...] [--out DIR]\n"
     "       genrelab sweep EXPERIMENT.json... --slurm OUT.sbatch [--nodes N --gpus-per-node K]\n"
     "                      [--time HH:MM:SS] [--partition P] [--job-name NAME] [--cpus-per-task N]\n\n"
     "Every experiment is validated first. With --gpus, one experiment runs per listed GPU at a time;\n"
     "without it they run one after another (on the CPU backend unless --device cuda). The runs go\n"
     "to --out DIR, else to the experiments' output.dir (one folder for all); logs to DIR/sweep-logs/.\n"
     "--slurm writes a job-array script: one array task per experiment file, one GPU each (none with\n"
     "--device cpu), its logs in DIR; with --nodes/--gpus-per-node each task trains data-parallel\n"
     "through srun, one rank per GPU. Nothing runs.\n",
     {set_option(),
      device_option(),
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
