// Faults during training on the CPU backend: SIGKILL at random moments, a file-size limit hit
// while writing a checkpoint, an output folder too small for one checkpoint, clips that vanish
// between scan and decode, two trainings sharing an output folder, and the NaN/Inf guard.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>
#include <thread>

#include "genrelab/config.h"
#include "genrelab/dataset.h"
#include "genrelab/io.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/nn/network.h"
#include "genrelab/run.h"
#include "test_util.h"
#include "train_fixtures.h"

using namespace genrelab;
using namespace genrelab::test;
namespace fs = std::filesystem;

namespace {

// Every file a run directory holds is complete: .json parses, metrics.jsonl lines parse, the
// checkpoint (when present) loads with its checksum.
void require_complete_files(const std::string& run_dir) {
  for (const auto& e : fs::directory_iterator(run_dir)) {
    INFO(e.path());
    if (e.path().extension() == ".json") CHECK_NOTHROW(json::parse(read_file(e.path().string())));
    if (e.path().filename() == "metrics.jsonl") {
      std::istringstream lines(read_file(e.path().string()));
      for (std::string line; std::getline(lines, line);)
        if (!line.empty()) CHECK_NOTHROW(json::parse(line));
    }
    if (e.path().filename() == "checkpoint.bin") CHECK_NOTHROW(nn::load_checkpoint(e.path().string()));
  }
}


// Finishes a run with `epochs` epochs, then widens its config (as a user extending a run would)
// so that `--resume` trains more; returns the run directory.
std::string finished_run_to_extend(const std::string& exp, const fs::path& out, int epochs, const json& edits) {
  const Result r = run_genrelab("train " + exp + " --set train.epochs=" + std::to_string(epochs) +
                                " --device cpu --quiet --out " + out.string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const std::string run_dir = trim(r.out);
  json cfg = RunDir::open(run_dir).read_json("config.json");
  cfg.merge_patch(edits);
  RunDir::open(run_dir).write_json("config.json", cfg);
  fs::remove(fs::path(run_dir) / "summary.json");
  return run_dir;
}

}  // namespace

TEST_CASE("SIGKILL at random moments leaves complete files and resume matches", "[faults][train]") {
  const auto dir = test::temp_dir("faults-kill");
  const std::string exp = tiny_experiment(dir, 3);
  const auto t0 = std::chrono::steady_clock::now();
  const Result ref = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "ref").string());
  REQUIRE(ref.rc == 0);
  const double ref_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int resumed_identically = 0, killed_before_config = 0;
  std::string points;
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    const double delay = std::uniform_real_distribution<double>(0.05, 0.95)(rng) * ref_seconds;
    const fs::path out = dir / ("killed" + std::to_string(seed));
    const pid_t pid = start_train(exp, out);
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    const auto dirs = run_dirs(out);
    INFO("seed " << seed << ", killed after " << delay << " s of a " << ref_seconds << " s run");
    REQUIRE(dirs.size() <= 1);
    if (dirs.empty() || !fs::exists(fs::path(dirs[0]) / "config.json")) {
      // Killed before the run directory had its config: nothing to resume, nothing half-written.
      if (!dirs.empty())
        for (const auto& e : fs::directory_iterator(dirs[0])) CHECK(e.path().extension() == ".tmp");
      ++killed_before_config;
      points += "\n  seed " + std::to_string(seed) + ": killed after " + std::to_string(delay) + " s, before config.json";
      continue;
    }
    require_complete_files(dirs[0]);
    points += "\n  seed " + std::to_string(seed) + ": killed after " + std::to_string(delay) + " s with " +
              std::to_string(RunDir::open(dirs[0]).read_metrics().size()) + " epochs logged, checkpoint " +
              (fs::exists(fs::path(dirs[0]) / "checkpoint.bin") ? "present" : "absent");
    const Result resumed = run_genrelab("train --resume " + dirs[0] + " --device cpu --quiet");
    INFO(resumed.err);
    REQUIRE(resumed.rc == 0);
    require_complete_files(dirs[0]);
    require_same_metrics(trim(ref.out), dirs[0]);
    const auto a = RunDir::open(trim(ref.out)).read_metrics();
    const auto b = RunDir::open(dirs[0]).read_metrics();
    bool same = a.size() == b.size();
    for (size_t i = 0; same && i < a.size(); ++i) same = a[i].train_loss == b[i].train_loss && a[i].test_loss == b[i].test_loss;
    resumed_identically += same;
  }
  WARN("kill points: 3, resumed identically: " << resumed_identically << ", killed before config.json: " << killed_before_config
                    << " (reference run " << ref_seconds << " s)" << points);
  CHECK(resumed_identically + killed_before_config == 3);
}

TEST_CASE("a file-size limit during a checkpoint write fails clearly and keeps the previous checkpoint",
          "[faults][train]") {
  const auto dir = test::temp_dir("faults-efbig");
  // conv filters 16 and 32: about 5k parameters, a checkpoint of about 62 KB (weights + Adam moments).
  const std::string exp = tiny_experiment(dir, 2, 16, 32);
  const std::string run_dir = finished_run_to_extend(exp, dir / "runs", 1, {{"train", {{"epochs", 2}}}});
  const std::string ckpt = run_dir + "/checkpoint.bin";
  const auto size_before = fs::file_size(ckpt);
  REQUIRE(size_before > 48 * 1024);
  // RLIMIT_FSIZE of 32 KiB with SIGXFSZ ignored: write() fails with EFBIG past the limit, as on
  // a full disk; the smaller files of the epoch (metrics, plots of at most 16 KB) still fit.
  const Result r = run_shell("bash -c 'trap \"\" XFSZ; ulimit -f 32; exec " + test::genrelab_binary() +
                             " train --resume " + run_dir + " --device cpu --quiet'");
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(r.err.find("cannot write " + ckpt) != std::string::npos);
  CHECK(r.err.find("File too large") != std::string::npos);
  CHECK(r.err.find("the previous file is intact") != std::string::npos);
  CHECK_FALSE(fs::exists(ckpt + ".tmp"));
  const nn::Checkpoint c = nn::load_checkpoint(ckpt);
  CHECK(c.meta.epoch == 1);
  CHECK(fs::file_size(ckpt) == size_before);
  CHECK_FALSE(fs::exists(run_dir + "/summary.json"));
  // With the limit lifted the run resumes from that checkpoint and finishes.
  const Result again = run_genrelab("train --resume " + run_dir + " --device cpu --quiet");
  INFO(again.err);
  CHECK(again.rc == 0);
  CHECK(nn::load_checkpoint(ckpt).meta.epoch == 2);
}

TEST_CASE("train refuses an output folder without room for one checkpoint", "[faults]") {
  if (test::run_command("unshare -rm true 2>/dev/null") != 0) {
    WARN("SKIPPED: cannot mount a small tmpfs here (unshare -rm is not permitted)");
    return;
  }
  const auto dir = test::temp_dir("faults-nospace");
  const std::string exp = tiny_experiment(dir, 1);
  fs::create_directories(dir / "small");
  // A 256 KiB tmpfs in a private mount namespace; one checkpoint of the tiny model needs
  // 754 parameters × 12 bytes + 1 MiB of headroom.
  const Result r = run_shell("unshare -rm sh -c 'mount -t tmpfs -o size=256k tmpfs " + (dir / "small").string() +
                             " && exec " + test::genrelab_binary() + " train " + exp + " --device cpu --quiet --out " +
                             (dir / "small" / "runs").string() + "'");
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(r.err.find("has less free space than one checkpoint needs (1 MiB)") != std::string::npos);
  CHECK(r.err.find((dir / "small" / "runs").string()) != std::string::npos);
  // The same command with room trains.
  const Result ok = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "big").string());
  CHECK(ok.rc == 0);
}

TEST_CASE("clips deleted or truncated between scan and decode are warned and skipped", "[faults]") {
  const auto dir = test::temp_dir("faults-vanish");
  for (const char* cls : {"blues", "rock"}) {
    fs::create_directories(dir / "data" / cls);
    for (int i = 0; i < 3; ++i) {
      const std::string f = std::string(cls) + ".0000" + std::to_string(i) + ".wav";
      fs::copy_file(tiny_data() + "/genres_original/" + cls + "/" + f, dir / "data" / cls / f);
    }
  }
  DatasetOptions opt;
  opt.root = (dir / "data").string();
  const Dataset ds = scan_dataset(opt);
  REQUIRE(ds.clips.size() == 6);
  // After the scan: one file removed, one cut inside its data chunk.
  fs::remove(dir / "data" / "blues" / "blues.00001.wav");
  const fs::path cut = dir / "data" / "rock" / "rock.00002.wav";
  fs::resize_file(cut, fs::file_size(cut) / 2);
  LoadOptions lo;
  lo.progress = false;
  lo.threads = 2;
  std::ostringstream captured;
  std::streambuf* old = std::cerr.rdbuf(captured.rdbuf());
  LoadedDataset loaded;
  try {
    loaded = load_dataset(ds, lo);
  } catch (...) {
    std::cerr.rdbuf(old);
    throw;
  }
  std::cerr.rdbuf(old);
  INFO(captured.str());
  CHECK(loaded.clips.size() == 4);
  REQUIRE(loaded.skipped.size() == 2);
  CHECK(loaded.skipped[0].name == "blues/blues.00001.wav");
  CHECK(loaded.skipped[0].reason == "no such file");
  CHECK(loaded.skipped[1].name == "rock/rock.00002.wav");
  CHECK(loaded.skipped[1].reason.find("truncated") == 0);
  CHECK(captured.str().find("blues.00001.wav: no such file (skipped)") != std::string::npos);
  CHECK(captured.str().find("rock.00002.wav: truncated") != std::string::npos);
  for (const auto& c : loaded.clips) CHECK(c.samples.size() == 22050);
}

TEST_CASE("two trainings into the same output folder get distinct run directories", "[faults][train]") {
  const auto dir = test::temp_dir("faults-twin");
  const std::string exp = tiny_experiment(dir, 1);
  const pid_t a = start_train(exp, dir / "runs");
  const pid_t b = start_train(exp, dir / "runs");
  int sa = 0, sb = 0;
  waitpid(a, &sa, 0);
  waitpid(b, &sb, 0);
  CHECK((WIFEXITED(sa) && WEXITSTATUS(sa) == 0));
  CHECK((WIFEXITED(sb) && WEXITSTATUS(sb) == 0));
  const auto dirs = run_dirs(dir / "runs");
  REQUIRE(dirs.size() == 2);
  for (const auto& d : dirs) {
    require_complete_files(d);
    CHECK(fs::exists(fs::path(d) / "summary.json"));
    CHECK(RunDir::open(d).read_metrics().size() == 1);
  }
  // Same experiment, same seeds: nothing of one leaked into the other, so the results agree.
  require_same_metrics(dirs[0], dirs[1]);
}

TEST_CASE("an infinite learning rate stops training naming the layer and keeps the last good checkpoint",
          "[faults][train]") {
  const auto dir = test::temp_dir("faults-nan");
  const std::string exp = tiny_experiment(dir, 2);
  // One good epoch, then the run continues with lr 1e39 (infinite in float32): the first update
  // makes the weights non-finite while that step's loss is still finite.
  const std::string run_dir = finished_run_to_extend(exp, dir / "runs", 1, {{"train", {{"epochs", 2}, {"lr", 1e39}}}});
  const Result r = run_genrelab("train --resume " + run_dir + " --device cpu --quiet");
  INFO(r.err);
  CHECK(r.rc == 1);
  // Searched from the output back: the dense layer (index 5) is the first whose weights broke.
  CHECK(r.err.find("non-finite weights in layer 5 (dense_1)") != std::string::npos);
  CHECK(r.err.find("at epoch 2, step ") != std::string::npos);
  CHECK(r.err.find("the last good checkpoint is kept in " + run_dir + "/checkpoint.bin") != std::string::npos);
  const nn::Checkpoint c = nn::load_checkpoint(run_dir + "/checkpoint.bin");
  CHECK(c.meta.epoch == 1);
  for (const auto& t : c.tensors)
    for (float v : t.data) REQUIRE(std::isfinite(v));
  CHECK_FALSE(fs::exists(run_dir + "/summary.json"));
}

TEST_CASE("a run that breaks in its first epoch says that no checkpoint was kept", "[faults][train]") {
  const auto dir = test::temp_dir("faults-nan-first");
  const std::string exp = tiny_experiment(dir, 2);
  const Result r =
      run_genrelab("train " + exp + " --set train.lr=1e39 --device cpu --quiet --out " + (dir / "runs").string());
  INFO(r.err);
  CHECK(r.rc == 1);
  const std::string run_dir = trim(r.out);  // printed when it was made
  REQUIRE(fs::is_directory(run_dir));
  CHECK(r.err.find("no checkpoint had been written") != std::string::npos);
  CHECK(r.err.find("last good checkpoint") == std::string::npos);
  CHECK_FALSE(fs::exists(run_dir + "/checkpoint.bin"));
}

TEST_CASE("with checks every 4 steps a broken run still stops before any checkpoint takes its weights",
          "[faults][train]") {
  const auto dir = test::temp_dir("faults-nan-deferred");
  const std::string exp = tiny_experiment(dir, 2);
  // As above, but the host reads the steps' stats only every 4 steps: the first update of epoch 2
  // breaks the weights, the next step's loss is NaN, and the check that covers both names that step.
  const std::string run_dir = finished_run_to_extend(exp, dir / "runs", 1,
                                                     {{"train", {{"epochs", 2}, {"lr", 1e39}, {"sync_every_steps", 4}}}});
  const nn::Checkpoint before = nn::load_checkpoint(run_dir + "/checkpoint.bin");
  const int64_t first_step = before.meta.step;  // epoch 2's first step: its update breaks the weights
  const Result r = run_genrelab("train --resume " + run_dir + " --device cpu --quiet");
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(r.err.find("the loss became NaN at epoch 2, step " + std::to_string(first_step + 1) + ";") != std::string::npos);
  CHECK(r.err.find("the last good checkpoint is kept in " + run_dir + "/checkpoint.bin") != std::string::npos);
  const nn::Checkpoint c = nn::load_checkpoint(run_dir + "/checkpoint.bin");
  CHECK(c.meta.epoch == 1);
  CHECK(c.meta.step == first_step);
  for (const auto& t : c.tensors)
    for (float v : t.data) REQUIRE(std::isfinite(v));
  CHECK_FALSE(fs::exists(run_dir + "/summary.json"));
}

TEST_CASE("check_finite names the layer with a non-finite gradient or weight", "[faults]") {
  const auto dir = test::temp_dir("faults-finite");
  const Config config = Config::load(tiny_experiment(dir, 1));
  const nn::ModelPlan plan = nn::plan_model(config, nn::Shape3{32, 44, 1}, 10);
  const auto net = nn::make_cpu_network(plan, nn::TrainHyper::from_config(config));
  // x: (4, 32, 44, 1) of a fixed pattern; labels 0..3.
  std::vector<float> x(size_t(4 * 32 * 44));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 37) % 101) / 101.0f - 0.5f;
  const std::vector<int32_t> labels = {0, 1, 2, 3};
  net->train_step(x.data(), labels.data(), 4, 4, 1e-3f, nn::StepKey{5, 0, 0});
  std::string where = "untouched";
  CHECK(net->check_finite(&where));
  CHECK(where == "untouched");
  // A NaN in the second convolution's kernel gradient (layer 3), as backward through it would make.
  float* g = net->layer(3).grads()[0];
  const float saved = g[7];
  g[7] = std::nanf("");
  CHECK_FALSE(net->check_finite(&where));
  CHECK(where == "non-finite gradient in layer 3 (conv2d_2): 1 NaN or infinite value");
  g[7] = saved;
  // Two infinities in the first convolution's weights (layer 0).
  float* w = net->layer(0).params()[0];
  w[0] = INFINITY;
  w[1] = -INFINITY;
  CHECK_FALSE(net->check_finite(&where));
  CHECK(where == "non-finite weights in layer 0 (conv2d_1): 2 NaN or infinite values");
}
