// Shared fixtures of the training and fault tests: a tiny synthetic collection, a small
// experiment on it, and helpers that run `genrelab` (or a training child process) and capture output.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "genrelab/nn/checkpoint.h"
#include "genrelab/run.h"
#include "test_util.h"

namespace genrelab::test {

namespace fs = std::filesystem;

// A tiny synthetic collection (10 classes × 6 clips × 1 s), made once per test process.
inline std::string tiny_data() {
  static const std::string dir = [] {
    const auto d = temp_dir("tiny-data");
    REQUIRE(run_command(genrelab_binary() + " data synth " + (d / "demo").string() +
                              " --clips-per-genre 6 --seconds 1 --seed 3 2>/dev/null") == 0);
    return (d / "demo").string();
  }();
  return dir;
}

// A small experiment on the tiny collection: 1-second clips, 32 mels, a two-conv CNN
// (layers: 0 conv2d_1, 1 maxpool, 2 dropout, 3 conv2d_2, 4 global_avgpool, 5 dense).
inline std::string tiny_experiment(const fs::path& dir, int epochs, int filters1 = 8, int filters2 = 8) {
  const std::string path = (dir / "tiny.json").string();
  std::ofstream(path) << R"({
    "name": "tiny",
    "dataset": {"root": ")" << tiny_data() << R"(", "clip_samples": 22050},
    "split": {"kind": "stratified", "test_fraction": 0.34, "seed": 1},
    "features": {"n_mels": 32, "db": true, "top_db": 80},
    "augment": {"noise": {"p": 0.5}},
    "model": {"layers": [
      {"type": "conv2d", "filters": )" << filters1 << R"(, "kernel": 3, "activation": "relu"},
      {"type": "maxpool2d", "size": 2},
      {"type": "dropout", "rate": 0.1},
      {"type": "conv2d", "filters": )" << filters2 << R"(, "kernel": 3, "activation": "relu"},
      {"type": "global_avgpool"},
      {"type": "dense", "units": "classes", "activation": "softmax"}]},
    "train": {"epochs": )" << epochs << R"(, "batch_size": 8, "lr": 0.003, "seed": 5}
  })";
  return path;
}

struct Result {
  int rc;
  std::string out, err;
};
// Runs a shell command line (`cmd` may hold the genrelab binary anywhere), stderr captured.
inline Result run_shell(const std::string& cmd) {
  static int counter = 0;
  const auto err_file = temp_dir("cli-out") / ("err" + std::to_string(counter++));
  Result r;
  r.rc = run_command(cmd + " 2>" + err_file.string(), &r.out);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}
inline Result run_genrelab(const std::string& args) { return run_shell(genrelab_binary() + " " + args); }

inline std::string trim(const std::string& s) { return s.substr(0, s.find_last_not_of("\n") + 1); }

// `err_file`: where the child's stderr goes ("" = discarded).
inline pid_t start_train(const std::string& exp, const fs::path& out, const std::string& err_file = "",
                         const std::string& out_file = "") {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    const int err = err_file.empty() ? null : ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int std_out = out_file.empty() ? null : ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(std_out, 1);
    dup2(err, 2);
    execl(genrelab_binary().c_str(), "genrelab", "train", exp.c_str(), "--device", "cpu", "--quiet", "--out",
          out.string().c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

// Two runs logged the same epochs: identical losses and accuracies, bit for bit.
inline void require_same_metrics(const std::string& a_dir, const std::string& b_dir) {
  const auto a = RunDir::open(a_dir).read_metrics();
  const auto b = RunDir::open(b_dir).read_metrics();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].train_loss == b[i].train_loss);
    CHECK(a[i].train_accuracy == b[i].train_accuracy);
    CHECK(a[i].test_loss == b[i].test_loss);
    CHECK(a[i].test_accuracy == b[i].test_accuracy);
  }
}

// Two runs ended with the same checkpoint tensors, bit for bit.
inline void require_same_weights(const std::string& a_dir, const std::string& b_dir) {
  const nn::Checkpoint a = nn::load_checkpoint(a_dir + "/checkpoint.bin");
  const nn::Checkpoint b = nn::load_checkpoint(b_dir + "/checkpoint.bin");
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t t = 0; t < a.tensors.size(); ++t) {
    INFO(a.tensors[t].name);
    CHECK(a.tensors[t].data == b.tensors[t].data);
  }
}

// Two finished runs agree: per-epoch losses and every state tensor within `tol` relative (of
// the tensor's largest magnitude), and, unless `same_predictions` is false, the same accuracies
// and test confusion counts.
inline void require_close_runs(const fs::path& a, const fs::path& b, double tol, bool same_predictions = true) {
  const RunDir ra = RunDir::open(a.string()), rb = RunDir::open(b.string());
  const auto ma = ra.read_metrics(), mb = rb.read_metrics();
  REQUIRE(ma.size() == mb.size());
  for (size_t e = 0; e < ma.size(); ++e) {
    INFO("epoch " << e + 1);
    CHECK(mb[e].train_loss == Approx(ma[e].train_loss).epsilon(tol));
    CHECK(mb[e].test_loss == Approx(ma[e].test_loss).epsilon(tol));
    if (same_predictions) {
      CHECK(mb[e].train_accuracy == Approx(ma[e].train_accuracy).margin(1e-12));
      CHECK(mb[e].test_accuracy == Approx(ma[e].test_accuracy).margin(1e-12));
    }
  }
  if (same_predictions)
    CHECK(rb.read_json("summary.json")["confusion_matrix"] == ra.read_json("summary.json")["confusion_matrix"]);
  const nn::Checkpoint ca = nn::load_checkpoint((a / "checkpoint.bin").string());
  const nn::Checkpoint cb = nn::load_checkpoint((b / "checkpoint.bin").string());
  REQUIRE(ca.tensors.size() == cb.tensors.size());
  for (size_t t = 0; t < ca.tensors.size(); ++t) {
    const auto& va = ca.tensors[t].data;
    const auto& vb = cb.tensors[t].data;
    REQUIRE(cb.tensors[t].name == ca.tensors[t].name);
    REQUIRE(va.size() == vb.size());
    double scale = 0;
    for (float v : va) scale = std::max(scale, double(std::fabs(v)));
    require_close(vb, va, tol * (scale + 1e-6), tol, ca.tensors[t].name);
  }
}

// A streamed run stopped by a clip that no longer decodes: its message says where ("before step S
// of epoch E", or "while evaluating epoch E") and the run's checkpoint holds exactly the steps
// before that point.
inline void require_checkpoint_where_stopped(const std::string& err, const fs::path& run_dir) {
  const nn::Checkpoint ck = nn::load_checkpoint((run_dir / "checkpoint.bin").string());
  std::smatch m;
  if (std::regex_search(err, m, std::regex("stopped before step ([0-9]+) of epoch ([0-9]+)"))) {
    CHECK(ck.meta.epoch == std::stoi(m[2].str()) - 1);
    CHECK(ck.meta.extra.value("batches_done", int64_t(-1)) == std::stoi(m[1].str()) - 1);
  } else {
    REQUIRE(std::regex_search(err, m, std::regex("stopped while evaluating epoch ([0-9]+)")));
    CHECK(ck.meta.epoch == std::stoi(m[1].str()) - 1);
    CHECK(ck.meta.extra.value("batches_done", int64_t(0)) > 0);  // every step of the epoch
  }
  CHECK(err.find("the checkpoint in " + (run_dir / "checkpoint.bin").string()) != std::string::npos);
}

// The run directories under an output folder (its sub-folders), sorted.
inline std::vector<std::string> run_dirs(const fs::path& out) {
  std::vector<std::string> dirs;
  if (fs::exists(out))
    for (const auto& e : fs::directory_iterator(out))
      if (e.is_directory()) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// Starts `genrelab train EXP --out OUT` in a child process (stdout discarded) and returns its pid
// and, once it appears, the run directory holding `marker` (empty if it never does).
struct Child {
  pid_t pid;
  std::string run_dir;
};
inline Child start_train_and_wait_for(const std::string& exp, const fs::path& out, const std::string& marker,
                                      const std::string& err_file = "", const std::string& out_file = "") {
  Child c{start_train(exp, out, err_file, out_file), ""};
  for (int i = 0; i < 1500 && c.run_dir.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (fs::exists(out))
      for (const auto& e : fs::directory_iterator(out))
        if (fs::exists(e.path() / marker)) c.run_dir = e.path().string();
  }
  return c;
}

}  // namespace genrelab::test
