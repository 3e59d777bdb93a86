// Training end to end on the CPU backend: the run directory's files, resume to the identical
// result, a SIGKILL mid-run, predict and eval on clips of any length, config errors, and a local
// sweep of several experiments.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "genrelab/audio.h"
#include "genrelab/common.h"
#include "genrelab/io.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/ops/gather.h"
#include "genrelab/parallel_for.h"
#include "genrelab/run.h"
#include "genrelab/train.h"
#include "test_util.h"
#include "train_fixtures.h"

using namespace genrelab;
using namespace genrelab::test;
namespace fs = std::filesystem;


TEST_CASE("train writes a complete run directory", "[train]") {
  const auto dir = test::temp_dir("train-files");
  const Result r = run_genrelab("train " + tiny_experiment(dir, 3) + " --device cpu --quiet --out " + (dir / "runs").string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const std::string run_dir = trim(r.out);  // stdout: the run directory, nothing else
  CHECK(run_dir.find((dir / "runs" / "tiny-").string()) == 0);
  for (const char* f : {"config.json", "run.json", "split.json", "metrics.jsonl", "summary.json", "checkpoint.bin",
                        "curves.svg", "confusion.svg"})
    CHECK(fs::exists(fs::path(run_dir) / f));
  for (const auto& e : fs::directory_iterator(run_dir)) CHECK(e.path().extension() != ".tmp");
  const RunDir run = RunDir::open(run_dir);
  const auto metrics = run.read_metrics();
  REQUIRE(metrics.size() == 3);
  const json s = run.read_json("summary.json");
  CHECK(s["final_test_accuracy"].get<double>() == metrics.back().test_accuracy);
  double best = 0;
  for (const auto& m : metrics) best = std::max(best, m.test_accuracy);
  CHECK(s["best_test_accuracy"].get<double>() == best);
  REQUIRE(s["classes"].size() == 10);
  // The confusion matrix (rows: true class) holds every test clip of the run's split, each row
  // the clips of its class; its trace over its total is the final accuracy, and each diagonal
  // cell over its row the class's accuracy.
  const json split = run.read_json("split.json");
  CHECK(split["classes"] == s["classes"]);
  const auto classes = s["classes"].get<std::vector<std::string>>();
  std::vector<int64_t> test_per_class(classes.size(), 0);
  for (const auto& name : split["test"]) {
    const std::string n = name.get<std::string>();
    const auto k = std::find(classes.begin(), classes.end(), n.substr(0, n.find('/'))) - classes.begin();
    REQUIRE(size_t(k) < classes.size());
    ++test_per_class[size_t(k)];
  }
  const auto cm = s["confusion_matrix"].get<std::vector<std::vector<int64_t>>>();
  REQUIRE(cm.size() == classes.size());
  int64_t total = 0, trace = 0;
  for (size_t k = 0; k < cm.size(); ++k) {
    INFO(classes[k]);
    REQUIRE(cm[k].size() == classes.size());
    int64_t row = 0;
    for (int64_t c : cm[k]) row += c;
    CHECK(row == test_per_class[k]);
    REQUIRE(row > 0);  // the stratified split keeps every class
    CHECK(s["per_class_accuracy"][classes[k]].get<double>() == double(cm[k][k]) / double(row));
    total += row;
    trace += cm[k][k];
  }
  CHECK(total == int64_t(split["test"].size()));
  CHECK(s["final_test_accuracy"].get<double>() == double(trace) / double(total));
  // The training set: the experiment's one offline augmentation (noise) gives every training
  // clip a copy, so an epoch trains 2 examples per clip (one window each), in batches of 8.
  const int64_t train_examples = 2 * int64_t(split["train"].size());
  for (const auto& m : metrics) {
    INFO("epoch " << m.epoch);
    CHECK(m.samples_per_second * m.seconds == Approx(double(train_examples)).epsilon(1e-9));
  }
  CHECK(nn::load_checkpoint(run_dir + "/checkpoint.bin").meta.step == 3 * ceil_div(train_examples, int64_t(8)));
  // Where the wall time went: the epochs' training and evaluation seconds are the metrics' own,
  // and the parts account for the wall time (what is left: the epoch lines and the summary).
  const json& t = s["time_seconds"];
  double training = 0, evaluation = 0, parts = 0;
  for (const auto& m : metrics) training += m.seconds, evaluation += m.evaluate_seconds;
  for (const char* k : {"before_training", "preparing", "training", "evaluation", "saving", "last_checkpoint"}) {
    INFO(k);
    REQUIRE(t.contains(k));
    CHECK(t[k].get<double>() >= 0);
    parts += t[k].get<double>();
  }
  // Parts of before_training (data, examples, the network's set-up) and of training and
  // evaluation (algorithm choices: none on the CPU).
  REQUIRE(t.contains("parts"));
  const json& p = t["parts"];
  double before_parts = 0;
  for (const char* k : {"data", "examples", "network"}) {
    INFO(k);
    REQUIRE(p.contains(k));
    CHECK(p[k].get<double>() >= 0);
    before_parts += p[k].get<double>();
  }
  CHECK(p["data"].get<double>() > 0);
  CHECK(p["examples"].get<double>() > 0);
  CHECK(before_parts <= t["before_training"].get<double>());
  CHECK(p["tuning"].get<double>() == 0.0);
  CHECK(t["training"].get<double>() == Approx(training).epsilon(1e-9));
  CHECK(t["evaluation"].get<double>() == Approx(evaluation).epsilon(1e-9));
  CHECK(evaluation > 0);
  const double wall = s["wall_seconds"].get<double>();
  CHECK(parts <= wall);
  CHECK(parts >= 0.8 * wall);
  CHECK(r.err.find("wall time") != std::string::npos);
}

// On the GPU the network is set up beside the data, and a fresh process chooses its convolutions'
// algorithms (cuDNN's search, the GEMM engine's timing) in its first steps: summary.json says how
// long each took, within the parts they belong to.
TEST_CASE("gpu train reports the network's set-up and its algorithm choices within the wall time", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const auto dir = test::temp_dir("train-gpu-parts");
  const std::string exp = tiny_experiment(dir, 2);
  const Result r = run_genrelab("train " + exp + " --device cuda --quiet --out " + (dir / "runs").string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const RunDir run = RunDir::open(trim(r.out));
  const json t = run.read_json("summary.json")["time_seconds"];
  const json& p = t["parts"];
  CHECK(p["tuning"].get<double>() > 0);
  CHECK(p["tuning"].get<double>() <= t["training"].get<double>() + t["evaluation"].get<double>());
  CHECK(p["network"].get<double>() >= 0);
  CHECK(p["data"].get<double>() + p["examples"].get<double>() + p["network"].get<double>() <=
        t["before_training"].get<double>());
}

// The tuning cache (nn/tuning_cache.h) between processes: the first run of an experiment times its
// choices (cuDNN's search, the GEMM engine's time) and stores them; a second run of the same
// experiment takes every one from the file, searches nothing and stores nothing new.
TEST_CASE("gpu train takes its timed choices from the tuning cache an earlier run filled", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const auto dir = test::temp_dir("train-gpu-tuning-cache");
  const std::string exp = tiny_experiment(dir, 1);
  const fs::path cache = dir / "tuning.json";
  const std::string run = "GENRELAB_TUNING_CACHE=" + cache.string() + " GENRELAB_LOG_CONV_ALGOS=1 " +
                          genrelab_binary() + " train " + exp + " --device cuda --quiet --out " +
                          (dir / "runs").string();
  auto count = [](const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  const Result first = run_shell(run);
  INFO(first.err);
  REQUIRE(first.rc == 0);
  const int searched = count(first.err, "(benchmarked");
  CHECK(searched >= 3);  // the second conv's three passes (the first is fused with its pool)
  CHECK(count(first.err, "(tuning cache)") == 0);
  REQUIRE(fs::exists(cache));
  const json stored = json::parse(read_file(cache.string()));
  REQUIRE(stored["contexts"].size() == 1);
  const json& entries = stored["contexts"].begin().value();
  int cudnn_entries = 0, engine_entries = 0;
  for (const auto& [key, value] : entries.items()) {
    cudnn_entries += key.rfind("cudnn ", 0) == 0;
    engine_entries += key.rfind("conv engine ", 0) == 0;
  }
  CHECK(cudnn_entries == searched);
  CHECK(engine_entries == count(first.err, " vs cuDNN "));  // each pass the engine was timed on

  const Result second = run_shell(run);
  INFO(second.err);
  REQUIRE(second.rc == 0);
  CHECK(count(second.err, "(benchmarked") == 0);
  CHECK(count(second.err, "cudnn ") >= searched);
  CHECK(count(second.err, "(tuning cache)") >= searched);
  CHECK(count(second.err, ", tuning cache vs cuDNN ") == engine_entries);
  CHECK(second.err.find("taken from the tuning cache " + cache.string()) != std::string::npos);
  CHECK(json::parse(read_file(cache.string())) == stored);  // nothing new to store
}

TEST_CASE("resume gives the identical result as an uninterrupted run", "[train]") {
  const auto dir = test::temp_dir("train-resume");
  const std::string exp = tiny_experiment(dir, 4);
  const Result straight = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "a").string());
  REQUIRE(straight.rc == 0);
  // Two epochs, then continue the same run directory to four.
  const Result first = run_genrelab("train " + exp + " --set train.epochs=2 --device cpu --quiet --out " + (dir / "b").string());
  REQUIRE(first.rc == 0);
  const std::string run_b = trim(first.out);
  // The finished 2-epoch run says so; widen it to 4 epochs by editing its config, as a user
  // extending a run would, then resume.
  json cfg = RunDir::open(run_b).read_json("config.json");
  cfg["train"]["epochs"] = 4;
  RunDir::open(run_b).write_json("config.json", cfg);
  fs::remove(fs::path(run_b) / "summary.json");
  const Result resumed = run_genrelab("train --resume " + run_b + " --device cpu --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  const auto a = RunDir::open(trim(straight.out)).read_metrics();
  const auto b = RunDir::open(run_b).read_metrics();
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(a[i].train_loss == b[i].train_loss);
    CHECK(a[i].test_accuracy == b[i].test_accuracy);
    CHECK(a[i].test_loss == b[i].test_loss);
  }
  CHECK(read_file(trim(straight.out) + "/checkpoint.bin").size() > 0);
  const Result again = run_genrelab("train --resume " + run_b + " --device cpu --quiet");
  CHECK(again.rc == 0);
  CHECK(again.err.find("already finished") != std::string::npos);
}

TEST_CASE("a checkpoint still being written defers the next and the run ends with the last epoch's", "[train]") {
  // Each background write sleeps 3 s first (a slow disk), longer than the tiny model's epochs:
  // epoch 1's write is still running when epochs 2 and 3 end, so their saves move on, and the end
  // of the run waits for the writer before saving epoch 4 synchronously.
  const auto dir = test::temp_dir("train-slow-disk");
  const std::string exp = tiny_experiment(dir, 4);
  const Result slow = run_shell("GENRELAB_TEST_CHECKPOINT_DELAY_MS=3000 " + test::genrelab_binary() + " train " + exp +
                                " --device cpu --quiet --out " + (dir / "slow").string());
  INFO(slow.err);
  REQUIRE(slow.rc == 0);
  CHECK(slow.err.find("epoch 2's checkpoint deferred: the previous one is still being written") != std::string::npos);
  const std::string run_dir = trim(slow.out);
  const nn::Checkpoint ck = nn::load_checkpoint(run_dir + "/checkpoint.bin");
  CHECK(ck.header.at("epoch").get<int>() == 4);
  for (const auto& e : fs::directory_iterator(run_dir)) CHECK(e.path().extension() != ".tmp");
  // The deferral changes no number the run computes.
  const Result plain = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "plain").string());
  REQUIRE(plain.rc == 0);
  REQUIRE(RunDir::open(run_dir).read_metrics().size() == 4);
  require_same_metrics(trim(plain.out), run_dir);
  require_same_weights(trim(plain.out), run_dir);
}

TEST_CASE("a SIGKILL mid-run leaves only complete files and resume finishes", "[train]") {
  const auto dir = test::temp_dir("train-kill");
  const std::string exp = tiny_experiment(dir, 6);
  const Result ref = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "ref").string());
  REQUIRE(ref.rc == 0);
  // Kill once the first epoch's metrics exist.
  const Child child = start_train_and_wait_for(exp, dir / "killed", "metrics.jsonl");
  kill(child.pid, SIGKILL);
  waitpid(child.pid, nullptr, 0);
  const std::string run_dir = child.run_dir;
  REQUIRE_FALSE(run_dir.empty());
  for (const auto& e : fs::directory_iterator(run_dir)) {
    if (e.path().extension() == ".json") CHECK_NOTHROW(json::parse(read_file(e.path().string())));
  }
  CHECK_NOTHROW(RunDir::open(run_dir).read_metrics());
  const Result resumed = run_genrelab("train --resume " + run_dir + " --device cpu --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  const auto a = RunDir::open(trim(ref.out)).read_metrics();
  const auto b = RunDir::open(run_dir).read_metrics();
  REQUIRE(b.size() == a.size());
  CHECK(a.back().test_accuracy == b.back().test_accuracy);
  CHECK(a.back().train_loss == b.back().train_loss);
}

TEST_CASE("predict and eval classify clips of any length", "[train]") {
  const auto dir = test::temp_dir("train-predict");
  const Result r = run_genrelab("train " + tiny_experiment(dir, 2) + " --device cpu --quiet --out " + (dir / "runs").string());
  REQUIRE(r.rc == 0);
  const std::string run_dir = trim(r.out);
  // A 10-minute file and a 1-second file, made from a training clip.
  const Audio clip = decode_audio(tiny_data() + "/genres_original/blues/blues.00000.wav");
  std::vector<float> long_audio;
  while (long_audio.size() < size_t(600 * 22050)) long_audio.insert(long_audio.end(), clip.samples.begin(), clip.samples.end());
  write_wav((dir / "long.wav").string(), long_audio, 22050);
  write_wav((dir / "short.wav").string(), std::vector<float>(clip.samples.begin(), clip.samples.begin() + 22050), 22050);
  const Result p = run_genrelab("predict " + run_dir + " " + (dir / "long.wav").string() + " " + (dir / "short.wav").string() +
                            " --json --device cpu");
  INFO(p.err);
  REQUIRE(p.rc == 0);
  const json doc = json::parse(p.out);  // exactly one JSON object
  REQUIRE(doc["files"].size() == 2);
  CHECK(doc["files"][0]["windows"] == 600);
  CHECK(doc["files"][1]["windows"] == 1);
  for (const auto& f : doc["files"]) {
    double sum = 0;
    for (const auto& kv : f["probabilities"].items()) sum += kv.value().get<double>();
    CHECK(sum == Approx(1.0).epsilon(1e-4));
    CHECK(f["top"].size() == 3);
  }
  // Two clips of one window each (22 050 samples) and the two end to end: the long file's
  // probabilities are the mean of the two windows' (each window is featurized alone), through
  // predict and through eval --data, which takes the file whole (its loss is −log of the mean's
  // probability of the label; the label is the class whose probability differs most between the
  // two windows, so a cut file would give another loss).
  const Audio rock = decode_audio(tiny_data() + "/genres_original/rock/rock.00000.wav");
  REQUIRE(clip.samples.size() == 22050);  // the tiny collection's clips are one window each
  REQUIRE(rock.samples.size() == 22050);
  const std::vector<float>& a = clip.samples;
  std::vector<float> b = rock.samples, ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  write_wav((dir / "a.wav").string(), a, 22050);
  write_wav((dir / "b.wav").string(), b, 22050);
  write_wav((dir / "ab.wav").string(), ab, 22050);
  const Result pab = run_genrelab("predict " + run_dir + " " + (dir / "a.wav").string() + " " +
                                  (dir / "b.wav").string() + " " + (dir / "ab.wav").string() + " --json --device cpu");
  INFO(pab.err);
  REQUIRE(pab.rc == 0);
  const json fab = json::parse(pab.out)["files"];
  REQUIRE(fab.size() == 3);
  CHECK(fab[2]["windows"] == 2);
  std::string label;
  double pa_label = 0, pb_label = 0;
  for (const auto& kv : fab[2]["probabilities"].items()) {
    const double pa = fab[0]["probabilities"][kv.key()].get<double>(),
                 pb = fab[1]["probabilities"][kv.key()].get<double>();
    CHECK(kv.value().get<double>() == Approx(0.5 * (pa + pb)).margin(1e-6));
    if (label.empty() || std::abs(pa - pb) > std::abs(pa_label - pb_label))
      label = kv.key(), pa_label = pa, pb_label = pb;
  }
  REQUIRE(std::abs(pa_label - pb_label) > 1e-3 * (pa_label + pb_label));
  const fs::path joined = dir / "joined";
  fs::create_directories(joined / label);
  fs::copy_file(dir / "ab.wav", joined / label / "ab.wav");
  const Result eab = run_genrelab("eval " + run_dir + " --data " + joined.string() + " --json --device cpu");
  INFO(eab.err);
  REQUIRE(eab.rc == 0);
  CHECK(json::parse(eab.out)["loss"].get<double>() == Approx(-std::log(0.5 * (pa_label + pb_label))).epsilon(1e-5));
  // eval --data on a folder with a bad clip: warned, skipped, the rest scored.
  const fs::path data = dir / "evaldata";
  fs::create_directories(data / "blues");
  fs::create_directories(data / "rock");
  fs::copy_file(tiny_data() + "/genres_original/blues/blues.00001.wav", data / "blues" / "a.wav");
  fs::copy_file(tiny_data() + "/genres_original/rock/rock.00001.wav", data / "rock" / "b.wav");
  std::ofstream(data / "rock" / "broken.wav") << "not audio at all";
  const Result e = run_genrelab("eval " + run_dir + " --data " + data.string() + " --json --device cpu");
  INFO(e.err);
  REQUIRE(e.rc == 0);
  const json ev = json::parse(e.out);
  CHECK(ev["clips"] == 2);
  CHECK(ev["skipped"].size() == 1);
  CHECK(e.err.find("broken.wav") != std::string::npos);
  // eval of its own test split agrees with the run's final accuracy.
  const Result own = run_genrelab("eval " + run_dir + " --json --device cpu");
  REQUIRE(own.rc == 0);
  CHECK(json::parse(own.out)["accuracy"].get<double>() ==
        Approx(RunDir::open(run_dir).read_json("summary.json")["final_test_accuracy"].get<double>()));
}

TEST_CASE("train config errors name the file and the key", "[train]") {
  const auto dir = test::temp_dir("train-errors");
  const std::string exp = tiny_experiment(dir, 1);
  Result r = run_genrelab("train " + exp + " --set train.batch_sise=3 --device cpu");
  CHECK(r.rc == 2);
  CHECK(r.err.find("train.batch_sise") != std::string::npos);
  CHECK(r.err.find("did you mean 'train.batch_size'") != std::string::npos);
  r = run_genrelab("train " + exp + " --set dataset.root=/nonexistent/folder --device cpu");
  CHECK(r.rc != 0);
  CHECK(r.err.find("/nonexistent/folder") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "runs"));  // nothing is created before the request is valid
  // A split the settings make impossible is refused before the run directory exists too (after
  // the warning that a SpecAugment mask as wide as the 44-frame spectrogram can blank an example).
  r = run_genrelab("train " + exp + " --set split.test_fraction=0 --set augment.spec_mask.p=0.5 " +
                   "--set augment.spec_mask.max_time_width=44 --device cpu --out " + (dir / "runs").string());
  CHECK(r.rc == 2);
  CHECK(r.err.find("the split leaves") != std::string::npos);
  CHECK(r.err.find("warning: augment.spec_mask.max_time_width = 44 is not below the spectrogram's 44 frames") !=
        std::string::npos);
  CHECK(r.err.find("max_freq_width") == std::string::npos);  // 16 of 32 bands
  // The tiny experiment's features are dB without standardisation: a mask's 0 is not silence there.
  CHECK(r.err.find("warning: augment.spec_mask fills masked cells with 0, which in dB features") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "runs"));
  // A model that does not fit its input shape is rejected before training, naming the layer.
  r = run_genrelab("train " + exp + " --set model.layers[1].size=64 --device cpu --out " + (dir / "runs").string());
  CHECK(r.rc == 2);
  CHECK(r.err.find("model.layers[") != std::string::npos);
  // Streaming decodes clip by clip, so every clip needs the one length the batch holds.
  r = run_genrelab("train " + exp + " --set dataset.streaming=true --set dataset.clip_samples=null "
                   "--set dataset.window_samples=8000 --device cpu --out " + (dir / "runs").string());
  CHECK(r.rc == 2);
  CHECK(r.err.find("dataset.streaming: needs dataset.clip_samples") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("a local sweep trains each experiment with the overrides and reports the failed ones", "[train]") {
  const auto dir = test::temp_dir("sweep-local");
  tiny_experiment(dir, 3);  // dir/tiny.json, 3 epochs: the sweep's --set makes it 1
  auto variant = [&](const std::string& name, const std::string& extra) {
    const std::string path = (dir / (name + ".json")).string();
    std::ofstream(path) << R"({"extends": "tiny.json", "name": ")" << name << R"(", )" << extra << "}";
    return path;
  };
  const std::string narrow = variant("narrow", R"("train": {"lr": 0.001, "seed": 11})");
  const std::string wide = variant("wide", R"("train": {"lr": 0.004, "seed": 12})");
  const fs::path out = dir / "runs";
  Result r = run_genrelab("sweep " + narrow + " " + wide + " --set train.epochs=1 --device cpu --out " + out.string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.empty());  // stdout carries data only: a sweep has none
  CHECK(r.err.find("all 2 experiments finished") != std::string::npos);
  // One run directory per experiment, holding its own file's values and the override.
  std::vector<std::string> runs;
  for (const std::string& d : run_dirs(out))
    if (fs::path(d).filename() != "sweep-logs") runs.push_back(d);
  REQUIRE(runs.size() == 2);
  const std::map<std::string, std::pair<double, int>> own = {{"narrow", {0.001, 11}}, {"wide", {0.004, 12}}};
  std::set<std::string> names;
  for (const std::string& run_dir : runs) {
    const RunDir run = RunDir::open(run_dir);
    const json cfg = run.read_json("config.json");
    const std::string name = cfg["name"].get<std::string>();
    INFO(run_dir << ": " << name);
    names.insert(name);
    CHECK(fs::path(run_dir).filename().string().rfind(name + "-", 0) == 0);
    REQUIRE(own.count(name) == 1);
    CHECK(cfg["train"]["lr"].get<double>() == own.at(name).first);
    CHECK(cfg["train"]["seed"].get<int>() == own.at(name).second);
    CHECK(cfg["train"]["epochs"].get<int>() == 1);
    CHECK(cfg["features"]["n_mels"].get<int>() == 32);  // from tiny.json, through "extends"
    CHECK(run.read_metrics().size() == 1);              // trained the overridden epoch count
    CHECK(run.has("summary.json"));
    // Its log, DIR/sweep-logs/<file stem>-<index>.log, holds the train's output: the run directory.
    const fs::path log = out / "sweep-logs" / (name + (name == "narrow" ? "-0.log" : "-1.log"));
    REQUIRE(fs::exists(log));
    CHECK(read_file(log.string()).find(run_dir) != std::string::npos);
  }
  CHECK(names == std::set<std::string>{"narrow", "wide"});
  size_t logs = 0;
  for (const auto& e : fs::directory_iterator(out / "sweep-logs")) logs += e.path().extension() == ".log";
  CHECK(logs == 2);

  // An experiment that fails at run time (its collection holds no decodable clip): exit 1, the
  // file named on stderr, and the experiment after it still trains.
  for (const char* genre : {"blues", "jazz"}) {
    fs::create_directories(dir / "bad-data" / genre);
    for (int i = 0; i < 3; ++i) std::ofstream(dir / "bad-data" / genre / (std::to_string(i) + ".wav")) << "not audio";
  }
  const std::string broken = variant("broken", R"("dataset": {"root": ")" + (dir / "bad-data").string() + R"("})");
  const fs::path out2 = dir / "runs2";
  r = run_genrelab("sweep " + broken + " " + wide + " --set train.epochs=1 --device cpu --out " + out2.string());
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(r.err.find("1 of 2 experiments failed: " + broken) != std::string::npos);
  CHECK(r.err.find(broken + " FAILED") != std::string::npos);
  CHECK(r.err.find(wide + " finished") != std::string::npos);
  CHECK(read_file((out2 / "sweep-logs" / "broken-0.log").string()).find("no usable clip") != std::string::npos);
  std::vector<std::string> finished;
  for (const std::string& d : run_dirs(out2))
    if (fs::exists(fs::path(d) / "summary.json")) finished.push_back(d);
  REQUIRE(finished.size() == 1);
  CHECK(RunDir::open(finished[0]).read_json("config.json")["name"] == "wide");

  // --gpus takes GPU indices: anything else is a usage error, before anything is created.
  r = run_genrelab("sweep " + narrow + " --gpus abc --out " + (dir / "runs3").string());
  CHECK(r.rc == 2);
  CHECK(r.err.find("--gpus expects GPU indices like 0,1,2, not 'abc'") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "runs3"));
}

TEST_CASE("SIGTERM stops at a step with a checkpoint and resume matches", "[train]") {
  const auto dir = test::temp_dir("train-term");
  const std::string exp = tiny_experiment(dir, 5);
  const Result ref = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "ref").string());
  REQUIRE(ref.rc == 0);
  const Child child = start_train_and_wait_for(exp, dir / "term", "metrics.jsonl", "", (dir / "stdout").string());
  kill(child.pid, SIGTERM);
  int status = 0;
  waitpid(child.pid, &status, 0);
  const std::string run_dir = child.run_dir;
  REQUIRE_FALSE(run_dir.empty());
  // stdout named the run directory when it was made, whether the run finished or not.
  CHECK(trim(read_file((dir / "stdout").string())) == run_dir);
  // Either it stopped cleanly (143, checkpoint written) or it had already finished (0).
  REQUIRE(WIFEXITED(status));
  const int rc = WEXITSTATUS(status);
  CHECK((rc == 143 || rc == 0));
  if (rc == 143) {
    CHECK(fs::exists(fs::path(run_dir) / "checkpoint.bin"));  // stopped after the first epoch
    CHECK_FALSE(fs::exists(fs::path(run_dir) / "summary.json"));
    const Result resumed = run_genrelab("train --resume " + run_dir + " --device cpu --quiet");
    INFO(resumed.err);
    REQUIRE(resumed.rc == 0);
  }
  const auto a = RunDir::open(trim(ref.out)).read_metrics();
  const auto b = RunDir::open(run_dir).read_metrics();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].train_loss == b[i].train_loss);
    CHECK(a[i].test_accuracy == b[i].test_accuracy);
  }
}

// Trains the tiny experiment (3 epochs of 8 steps) with `settings` three ways: the step stats
// read after every step; read as `late` says; and stopped by the test hook after global step 6,
// between two reads, then resumed in a new process (which reads the steps since the last read and
// writes the checkpoint there). The same per-step sums in the same order: the same metrics and
// weights bit for bit.
void require_late_reads_change_nothing(const std::string& name, const std::string& device, const std::string& settings,
                                       const std::string& late) {
  const auto dir = test::temp_dir(name);
  const std::string exp = tiny_experiment(dir, 3);
  auto train = [&](const std::string& out, const std::string& extra, const std::string& env = "", int rc = 0) {
    const Result r = run_shell(env + test::genrelab_binary() + " train " + exp + " --device " + device + settings + extra +
                               " --quiet --out " + (dir / out).string());
    INFO(r.err);
    REQUIRE(r.rc == rc);
    return r;
  };
  const std::string every = trim(train("every", " --set train.sync_every_steps=1").out);
  const std::string later = trim(train("late", late).out);
  const Result stopped = train("stopped", late, "GENRELAB_TEST_STOP_AFTER_STEPS=6 ", 143);
  CHECK(stopped.err.find("at epoch 1, step 6;") != std::string::npos);
  const auto stopped_dirs = run_dirs(dir / "stopped");
  REQUIRE(stopped_dirs.size() == 1);
  CHECK(nn::load_checkpoint(stopped_dirs[0] + "/checkpoint.bin").meta.step == 6);
  const Result resumed = run_genrelab("train --resume " + stopped_dirs[0] + " --device " + device + " --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  for (const std::string& other : {later, stopped_dirs[0]}) {
    require_same_metrics(every, other);
    require_same_weights(every, other);
  }
}

TEST_CASE("reading the step stats every 4 steps changes nothing the run computes", "[train]") {
  require_late_reads_change_nothing("train-sync-every", "cpu", "", " --set train.sync_every_steps=4");
}

// The same on the GPU, where it matters: steps queued up to 16 ahead of the host (the cuda
// default: here the epoch's 8 steps, read at its end), eager and graphed (the short last batch has
// its own graph); train.deterministic fixes cuDNN's algorithms.
TEST_CASE("gpu training queued between reads computes what step-by-step training computes", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  for (const std::string graph : {"false", "true"}) {
    INFO("train.cuda_graph=" << graph);
    require_late_reads_change_nothing("train-gpu-queued-" + graph, "cuda",
                                      " --set train.deterministic=true --set train.cuda_graph=" + graph, "");
  }
}

TEST_CASE("dataset.streaming trains what the in-memory collection trains", "[train][slow]") {
  const auto dir = test::temp_dir("train-streaming");
  const std::string exp = tiny_experiment(dir, 3);
  // Three overlapping windows per clip, every waveform augmentation kind that changes the clip,
  // SpecAugment masks, standardised features and a validation set: the streamed steps decode,
  // augment and featurise each example on its own, the in-memory run all of them at once.
  const std::string recipe = " --set dataset.window_samples=8000 --set dataset.window_hop=5000"
                             " --set augment.pitch_shift.p=0.5 --set augment.time_shift.p=0.5"
                             " --set augment.spec_mask.p=0.5 --set features.standardize=true"
                             " --set split.valid_fraction=0.2 --device cpu --quiet";
  auto train = [&](const std::string& name, const std::string& extra, int expected_rc = 0) {
    const Result r = run_genrelab("train " + exp + recipe + extra + " --out " + (dir / name).string());
    INFO(r.err);
    REQUIRE(r.rc == expected_rc);
    return trim(r.out);
  };
  auto require_same_run = [](const std::string& a, const std::string& b) {
    require_same_metrics(a, b);
    require_same_weights(a, b);
  };
  for (const std::string mode : {"offline", "online"}) {
    INFO("augment.mode " << mode);
    const std::string held = train("held-" + mode, " --set augment.mode=" + mode);
    const std::string streamed = train("streamed-" + mode, " --set augment.mode=" + mode + " --set dataset.streaming=true");
    require_same_run(held, streamed);
  }
  // A stop inside an epoch (after global step 6: the second of epoch 2's 4 steps) resumes
  // mid-epoch, decoding from that step on.
  const Result stopped = run_shell("GENRELAB_TEST_STOP_AFTER_STEPS=6 " + test::genrelab_binary() + " train " + exp +
                                   recipe + " --set augment.mode=online --set dataset.streaming=true --out " +
                                   (dir / "stopped").string());
  INFO(stopped.err);
  REQUIRE(stopped.rc == 143);
  const auto stopped_dirs = run_dirs(dir / "stopped");
  REQUIRE(stopped_dirs.size() == 1);
  const Result resumed = run_genrelab("train --resume " + stopped_dirs[0] + " --device cpu --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  require_same_run(run_dirs(dir / "held-online")[0], stopped_dirs[0]);
}

// The same on the GPU, eager and graphed: streamed features are made a step's shard at a time
// instead of 16 clips at a time, so batched cuFFT and filterbank work may round differently;
// losses and weights within 1e-3.
TEST_CASE("gpu dataset.streaming trains what the in-memory collection trains", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const auto dir = test::temp_dir("train-gpu-streaming");
  const std::string exp = tiny_experiment(dir, 3);
  for (const std::string graph : {"false", "true"}) {
    INFO("train.cuda_graph=" << graph);
    auto train = [&](const std::string& name, const std::string& extra) {
      const Result r = run_genrelab("train " + exp + " --device cuda --quiet --set train.deterministic=true" +
                                    " --set train.cuda_graph=" + graph + " --set dataset.window_samples=8000" +
                                    " --set dataset.window_hop=5000 --set augment.pitch_shift.p=0.5" +
                                    " --set augment.spec_mask.p=0.5 --set augment.mode=online" + extra + " --out " +
                                    (dir / (name + graph)).string());
      INFO(r.err);
      REQUIRE(r.rc == 0);
      return trim(r.out);
    };
    test::require_close_runs(train("held-", ""), train("streamed-", " --set dataset.streaming=true"), 1e-3, false);
  }
}

TEST_CASE("a clip that stops decoding during a streamed run stops it with the file named", "[train][slow]") {
  const auto dir = test::temp_dir("train-streaming-broken");
  // A private copy of the collection, whose files the test breaks and mends.
  const fs::path data = dir / "data";
  fs::copy(tiny_data(), data, fs::copy_options::recursive);
  std::string exp = tiny_experiment(dir, 16);
  {
    std::ifstream in(exp);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text.replace(text.find(tiny_data()), tiny_data().size(), data.string());
    text.replace(text.find("\"clip_samples\""), 0, "\"streaming\": true, ");
    std::ofstream(exp) << text;
  }
  const std::string err_file = (dir / "stderr").string();
  const Child child = start_train_and_wait_for(exp, dir / "runs", "checkpoint.bin", err_file);
  REQUIRE_FALSE(child.run_dir.empty());
  // Every clip cut to a 44-byte WAV header after the run has checked them all.
  std::vector<std::pair<fs::path, std::string>> saved;
  for (const auto& e : fs::recursive_directory_iterator(data))
    if (e.is_regular_file()) {
      std::ifstream in(e.path(), std::ios::binary);
      saved.emplace_back(e.path(), std::string((std::istreambuf_iterator<char>(in)), {}));
      fs::resize_file(e.path(), 44);
    }
  int status = 0;
  REQUIRE(waitpid(child.pid, &status, 0) == child.pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  const std::string err = [&] {
    std::ifstream in(err_file);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }();
  INFO(err);
  CHECK(err.find(data.string()) != std::string::npos);  // the file, by its path
  CHECK(err.find("it decoded when training started") != std::string::npos);
  for (const auto& [path, bytes] : saved) std::ofstream(path, std::ios::binary) << bytes;
  // The run stopped on the error with a checkpoint of every step before it; its files are
  // complete and --resume finishes it with what an uninterrupted run computes.
  require_checkpoint_where_stopped(err, child.run_dir);
  const Result resumed = run_genrelab("train --resume " + child.run_dir + " --device cpu --quiet");
  INFO(resumed.err);
  REQUIRE(resumed.rc == 0);
  CHECK(RunDir::open(child.run_dir).read_metrics().size() == 16);
  const Result reference = run_genrelab("train " + exp + " --device cpu --quiet --out " + (dir / "reference").string());
  INFO(reference.err);
  REQUIRE(reference.rc == 0);
  require_same_metrics(trim(reference.out), child.run_dir);
  require_same_weights(trim(reference.out), child.run_dir);
}

TEST_CASE("train --profile runs the warm-up and the profiled steps, then stops", "[train]") {
  // Tiny set: 30 training clips, 2 examples each (offline noise copies), batch 8 → 8 steps an
  // epoch; 3 warm-up + 6 profiled steps stop at the first step of epoch 2, after epoch 1's metrics
  // (the CPU backend runs the same steps; only cuda brackets them with cudaProfilerStart/Stop).
  const auto dir = test::temp_dir("train-profile");
  const Result r = run_genrelab("train " + tiny_experiment(dir, 5) + " --device cpu --profile 6 --out " +
                                (dir / "runs").string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.err.find("profiled 6 steps after 3 warm-up steps") != std::string::npos);
  const auto runs = test::run_dirs(dir / "runs");
  REQUIRE(runs.size() == 1);
  CHECK(RunDir::open(runs[0]).read_metrics().size() == 1);
  CHECK_FALSE(fs::exists(fs::path(runs[0]) / "summary.json"));  // a profile is not a finished run
  CHECK(run_genrelab("train " + tiny_experiment(dir, 5) + " --device cpu --profile 0").rc == 2);
}

TEST_CASE("train --resume --profile counts the warm-up and the profiled steps from the checkpoint", "[train]") {
  // Stopped after step 8 (the end of epoch 1 of 8 steps), resumed with --profile 6: 3 warm-up +
  // 6 profiled steps are global steps 9-17, so the profile stops at the first step of epoch 3,
  // after epoch 2's metrics (counting from step 0 instead would stop at once, after step 9).
  const auto dir = test::temp_dir("train-resume-profile");
  const std::string exp = tiny_experiment(dir, 5);
  const Result stopped = run_shell("GENRELAB_TEST_STOP_AFTER_STEPS=8 " + test::genrelab_binary() + " train " + exp +
                                   " --device cpu --quiet --out " + (dir / "runs").string());
  INFO(stopped.err);
  REQUIRE(stopped.rc == 143);
  const auto runs = test::run_dirs(dir / "runs");
  REQUIRE(runs.size() == 1);
  REQUIRE(nn::load_checkpoint(runs[0] + "/checkpoint.bin").meta.step == 8);
  const Result r = run_genrelab("train --resume " + runs[0] + " --device cpu --profile 6");
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.err.find("profiled 6 steps after 3 warm-up steps (they span the end of epoch 2") != std::string::npos);
  CHECK(RunDir::open(runs[0]).read_metrics().size() == 2);
}

TEST_CASE("gpu train --profile reports the GPU idle time of the profiled steps", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  // The idle fraction is a timing (not checked here); the line must name the profiled steps and
  // a fraction in [0, 100) %, or say why it was not measured (a profiler attached, no CUPTI).
  // Streamed (dataset.streaming), each batch comes through host-to-device copies, which the run
  // counts and sets beside the kernels.
  const auto dir = test::temp_dir("train-profile-idle");
  int traced = 0;
  for (const std::string mode : {"train.cuda_graph=false", "train.cuda_graph=true", "dataset.streaming=true"}) {
    INFO(mode);
    const Result r = run_genrelab("train " + tiny_experiment(dir, 5) + " --device cuda --profile 6 --set " + mode +
                                  " --out " + (dir / "runs").string());
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const std::string tag = "GPU idle over the 6 profiled steps: ";
    const size_t at = r.err.find(tag);
    if (at == std::string::npos) {
      CHECK(r.err.find("GPU idle time of the profiled steps is not measured") != std::string::npos);
      WARN("not traced in this mode (the run's message is above)");
      continue;
    }
    ++traced;
    const double percent = std::stod(r.err.substr(at + tag.size()));
    CHECK(percent >= 0.0);
    CHECK(percent < 100.0);
    if (mode != "dataset.streaming=true") continue;
    const std::string copies = "host-to-device copies in the profiled steps: ";
    const size_t c = r.err.find(copies);
    REQUIRE(c != std::string::npos);
    CHECK(std::stol(r.err.substr(c + copies.size())) >= 6);  // at least a batch a step
    const size_t share = r.err.find(" ms, ", c);
    REQUIRE(share != std::string::npos);
    const double beside = std::stod(r.err.substr(share + 5));
    CHECK(beside >= 0.0);
    CHECK(beside <= 100.0);
  }
  if (traced == 0) WARN("SKIPPED: no run could trace the GPU (their messages are above)");
}

TEST_CASE("the batch gather picks the permuted rows", "[train]") {
  // A 5 × 3 table whose entries encode (row, column), gathered in a hand-picked order.
  std::vector<float> table(15);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 3; ++c) table[size_t(r * 3 + c)] = float(10 * r + c);
  const std::vector<int64_t> rows = {4, 0, 3, 3};
  std::vector<float> out(12, -1.0f);
  cpu_for_2d(4, 3, ops::GatherRows<float>{table.data(), rows.data(), 3, out.data()});
  CHECK(out == std::vector<float>{40, 41, 42, 0, 1, 2, 30, 31, 32, 30, 31, 32});
}

TEST_CASE("quickstart reaches 90 percent test accuracy on the demo data", "[train][slow]") {
  const auto dir = test::temp_dir("quickstart");
  REQUIRE(test::run_command(test::genrelab_binary() + " data synth " + (dir / "demo").string() + " 2>/dev/null") == 0);
  const Result r = run_genrelab("train " + test::source_dir() + "/experiments/quickstart.json --set dataset.root=" +
                                (dir / "demo").string() + " --device cpu --quiet --out " + (dir / "runs").string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const json s = RunDir::open(trim(r.out)).read_json("summary.json");
  WARN("quickstart final test accuracy " << s["final_test_accuracy"].get<double>() << " in " << s["wall_seconds"].get<double>() << " s");
  CHECK(s["final_test_accuracy"].get<double>() >= 0.90);
}

TEST_CASE("gtzan-mini experiment beats chance on held-out real clips", "[train][slow]") {
  GENRELAB_REQUIRE_TEST_AUDIO(audio);
  const auto dir = test::temp_dir("gtzan-mini");
  const Result r = run_genrelab("train " + test::source_dir() + "/experiments/gtzan-mini.json --set dataset.root=" + audio +
                                " --device cpu --quiet --out " + (dir / "runs").string());
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const json s = RunDir::open(trim(r.out)).read_json("summary.json");
  const json split = RunDir::open(trim(r.out)).read_json("split.json");
  WARN("gtzan-mini: final test accuracy " << s["final_test_accuracy"].get<double>() << " on " << split["test"].size()
                                          << " held-out clips (chance 0.10)");
  CHECK(split["test"].size() == 20);
  CHECK(s["final_test_accuracy"].get<double>() >= 0.30);
}
