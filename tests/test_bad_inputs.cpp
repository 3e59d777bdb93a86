// The bad-input corpus (tests/data/bad, made by tools/fixtures/make_bad_audio.py) through the real
// commands: every file and config gets its documented outcome (docs/reliability.md, "Bad inputs"):
// exit code plus a message naming the file or key; the good files still load; a 2-hour WAV is
// decoded with a clip length quickly and without reading the rest.
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "genrelab/audio.h"
#include "genrelab/io.h"
#include "genrelab/npy.h"
#include "genrelab/run.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;

namespace {

struct Result {
  int rc;
  std::string out, err;
};
Result run_genrelab(const std::string& args) {
  static int counter = 0;
  const auto err_file = test::temp_dir("bad-cli") / ("err" + std::to_string(counter++));
  Result r;
  r.rc = test::run_command(test::genrelab_binary() + " " + args + " 2>" + err_file.string(), &r.out);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

std::string corpus(const std::string& sub) { return test::source_dir() + "/tests/data/bad/" + sub; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One audio file of the corpus and what every command makes of it.
struct AudioCase {
  const char* file;
  bool loads;
  const char* reason;  // bad: the reason fragment; good: the data check's "rates channels" columns
  int64_t frames;      // good: mel frames of `genrelab features` at 22050 Hz (n_fft 1024, hop 512, centred)
};

// The good files all hold 0.1 s (2205 samples at 22050 Hz, also after resampling): 1 + 2205 / 512 = 5 frames.
const AudioCase kAudio[] = {
    {"pcm8.wav", true, "22050          1", 5},
    {"pcm24.wav", true, "22050          1", 5},
    {"float32.wav", true, "22050          1", 5},
    {"stereo44k.wav", true, "44100          2", 5},
    {"stereo48k.wav", true, "48000          2", 5},
    {"flac_named.wav", true, "22050          1", 5},
    {"one_sample.wav", true, "22050          1", 1},
    {"truncated.wav", false, "truncated: the header declares 2205 frames but the file holds only 1000", 0},
    {"empty.wav", false, "is empty (0 bytes)", 0},
    {"garbage.wav", false, "not a readable audio file (Format not recognised.)", 0},
    {"garbage.mp3", false, "not a readable audio file", 0},
    {"garbage.au", false, "not a readable audio file (no audio header)", 0},
    {"text_named.flac", false, "not a readable audio file", 0},
    {"nan.wav", false, "contains a NaN or infinite sample (at frame 100)", 0},
    {"huge.wav", false, "has a sample of magnitude 3e+18 at frame 100, beyond 1e10 (full scale is 1)", 0},
    {"header_only.wav", false, "holds no audio samples (header only)", 0},
};

// A config of the corpus (trained against a valid collection) and the error it gets.
struct ConfigCase {
  const char* file;
  const char* fragments[3];  // every one must appear on stderr
};

const ConfigCase kConfigs[] = {
    {"unknown_key.json", {"unknown_key.json", "train.epoch", "did you mean 'train.epochs'"}},
    {"wrong_type.json", {"wrong_type.json", "train.batch_size", "\"eight\""}},
    {"bad_enum.json", {"bad_enum.json", "split.kind", "random"}},
    {"cycle_a.json", {"\"extends\" cycle", "cycle_a.json", "cycle_b.json"}},
    {"missing_extends.json", {"missing_extends.json", "no_such_parent.json", ""}},
    {"invalid_json.json", {"invalid_json.json:3:", "", ""}},
    {"fmax_above_nyquist.json", {"features.fmax", "Nyquist", "11025"}},
    {"min_above_max.json", {"augment.gain.min_db", "augment.gain.max_db", ""}},
    {"manifest_without_lists.json", {"split.kind", "no split.train_list", ""}},
    {"bad_layer_key.json", {"model.layers[0]", "kernal", ""}},
    {"model_does_not_fit.json", {"model.layers[1]", "maxpool2d", ""}},
    {"bad_name.json", {"bad_name.json", "name: expected a folder name", "\"../escape\""}},
    {"duplicate_section.json", {"duplicate_section.json:3: train: duplicate key (also on line 2)", "", ""}},
    {"duplicate_in_parent.json", {"duplicate_parent.json:3: features.n_mels: duplicate key (also on line 2)", "", ""}},
};

// A collection of one class folder holding one corpus file.
fs::path collection_of(const fs::path& dir, const std::string& file) {
  const fs::path root = dir / file;
  fs::create_directories(root / "a");
  fs::copy_file(corpus("audio/" + file), root / "a" / file);
  return root;
}

}  // namespace

TEST_CASE("bad audio files get their documented outcome in data check and features", "[bad_inputs]") {
  const auto dir = test::temp_dir("bad-audio");
  for (const AudioCase& c : kAudio) {
    INFO(c.file);
    const fs::path root = collection_of(dir, c.file);
    const std::string path = (root / "a" / c.file).string();
    // data check: one row per class, the bad files listed with their reason; exit 1 when no clip is usable.
    const Result check = run_genrelab("data check " + root.string());
    INFO(check.out << check.err);
    const std::string npy = (dir / (std::string(c.file) + ".npy")).string();
    const Result feat = run_genrelab("features " + path + " --out " + npy + " --device cpu");
    INFO(feat.err);
    if (c.loads) {
      CHECK(check.rc == 0);
      CHECK(contains(check.out, "total                 1     0"));
      CHECK(contains(check.out, c.reason));
      CHECK(feat.rc == 0);
      const NpyArray a = read_npy(npy);
      CHECK(a.shape == std::vector<int64_t>{128, c.frames});
      for (float v : a.data) CHECK(std::isfinite(v));
    } else {
      CHECK(check.rc == 1);
      CHECK(contains(check.out, "total                 0     1"));
      CHECK(contains(check.out, path + ": " + c.reason));
      CHECK(feat.rc == 1);
      CHECK(contains(feat.err, path));
      CHECK(contains(feat.err, c.reason));
      // Only our own words where libsndfile's would mislead (garbage.mp3: "File does not exist").
      CHECK_FALSE(contains(check.out + feat.err, "does not exist"));
      CHECK_FALSE(fs::exists(npy));
    }
  }
  // All of them in one collection: the good ones are used, each bad one is listed.
  const fs::path all = dir / "all";
  fs::create_directories(all / "a");
  int good = 0, bad = 0;
  for (const AudioCase& c : kAudio) {
    fs::copy_file(corpus("audio/" + std::string(c.file)), all / "a" / c.file);
    (c.loads ? good : bad) += 1;
  }
  const Result check = run_genrelab("data check " + all.string());
  INFO(check.out);
  CHECK(check.rc == 0);
  char row[64];
  std::snprintf(row, sizeof row, "total            %6d %5d", good, bad);
  CHECK(contains(check.out, row));
}

TEST_CASE("a 2-hour WAV decodes a clip length quickly without reading the rest", "[bad_inputs]") {
  const auto dir = test::temp_dir("bad-long");
  // 2 hours of 16-bit mono at 22050 Hz (317.5 MB of data): a 44-byte header, a one-second tone,
  // and the rest a sparse hole (silence that takes no disk space).
  const uint32_t frames = 2u * 3600u * 22050u, data_bytes = frames * 2u;
  const std::string path = (dir / "two_hours.wav").string();
  {
    std::ofstream f(path, std::ios::binary);
    auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
    auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
    f.write("RIFF", 4);
    u32(36 + data_bytes);
    f.write("WAVEfmt ", 8);
    u32(16);
    u16(1);          // PCM
    u16(1);          // mono
    u32(22050);      // rate
    u32(22050 * 2);  // bytes per second
    u16(2);          // block align
    u16(16);         // bits
    f.write("data", 4);
    u32(data_bytes);
    for (int i = 0; i < 22050; ++i) u16(uint16_t(int16_t(std::lround(8000.0 * std::sin(2 * M_PI * 440.0 * i / 22050.0)))));
  }
  fs::resize_file(path, 44 + uint64_t(data_bytes));
  REQUIRE(probe_audio(path).frames == int64_t(frames));

  DecodeOptions opt;
  opt.length = 22050;
  const auto t0 = std::chrono::steady_clock::now();
  const Audio a = decode_audio(path, opt);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(a.samples.size() == 22050);
  // The tone, sample for sample (16-bit → float is v / 32768).
  for (int i = 0; i < 22050; i += 997)
    CHECK(a.samples[size_t(i)] == float(std::lround(8000.0 * std::sin(2 * M_PI * 440.0 * i / 22050.0))) / 32768.0f);
  CHECK(a.samples.capacity() < size_t(2 * 22050));
  WARN("1 s of a 2-hour WAV decoded in " << seconds * 1e3 << " ms");

  // Through the command: features of the first second; the child's peak memory stays well below
  // the 635 MB that the whole file would take as float32 (the bound leaves room for the CUDA
  // libraries a CUDA build maps at start-up, about 200 MB, even under --device cpu).
  const std::string npy = (dir / "long.npy").string();
  const auto t1 = std::chrono::steady_clock::now();
  const Result feat = run_genrelab("features " + path + " --out " + npy + " --set dataset.clip_samples=22050 --device cpu");
  const double cmd_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  INFO(feat.err);
  REQUIRE(feat.rc == 0);
  CHECK(read_npy(npy).shape == std::vector<int64_t>{128, 44});
  struct rusage ru {};
  getrusage(RUSAGE_CHILDREN, &ru);  // the largest child so far (kilobytes)
  WARN("genrelab features on the 2-hour file: " << cmd_seconds << " s, largest child peak RSS " << ru.ru_maxrss / 1024 << " MiB");
  CHECK(ru.ru_maxrss < 400 * 1024);
}

TEST_CASE("bad configs are refused with the file and key named before anything is created", "[bad_inputs]") {
  const auto dir = test::temp_dir("bad-configs");
  // A valid collection for the configs whose error shows only against data (the model's fit).
  fs::create_directories(dir / "data");
  REQUIRE(test::run_command(test::genrelab_binary() + " data synth " + (dir / "data" / "demo").string() +
                            " --clips-per-genre 2 --seconds 1 2>/dev/null") == 0);
  const std::string root = (dir / "data" / "demo").string();
  for (const ConfigCase& c : kConfigs) {
    INFO(c.file);
    const Result r = run_genrelab("train " + corpus("configs/" + std::string(c.file)) + " --set dataset.root=" + root +
                                  " --device cpu --quiet --out " + (dir / "runs").string());
    INFO(r.err);
    CHECK(r.rc == 2);
    for (const char* f : c.fragments)
      if (*f) CHECK(contains(r.err, f));
    CHECK_FALSE(fs::exists(dir / "runs"));
  }
  // The base they all extend is valid: the same command trains it.
  const Result ok = run_genrelab("train " + corpus("configs/base.json") + " --set dataset.root=" + root +
                                 " --device cpu --quiet --out " + (dir / "runs").string());
  INFO(ok.err);
  CHECK(ok.rc == 0);
}

TEST_CASE("a pipe named like an audio file is reported, never read", "[bad_inputs]") {
  // Reading a pipe would block until something writes to it: data check, features and train
  // would hang. It is refused as not a regular file, beside a clip that loads.
  const auto dir = test::temp_dir("bad-fifo");
  const fs::path root = collection_of(dir, "float32.wav");
  const std::string fifo = (root / "a" / "pipe.wav").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  const Result check = run_genrelab("data check " + root.string());
  INFO(check.out << check.err);
  CHECK(check.rc == 0);
  CHECK(contains(check.out, fifo + ": is not a regular file (a pipe, socket or device)"));
  CHECK(contains(check.out, "total                 1     1"));
  const Result feat = run_genrelab("features " + fifo + " --out " + (dir / "x.npy").string() + " --device cpu");
  CHECK(feat.rc == 1);
  CHECK(contains(feat.err, fifo + ": is not a regular file"));
}

TEST_CASE("damaged run-directory files are named with what is wrong and what to do", "[bad_inputs]") {
  const auto dir = test::temp_dir("damaged-run");
  const std::string data = (dir / "demo").string();
  REQUIRE(test::run_command(test::genrelab_binary() + " data synth " + data +
                            " --clips-per-genre 2 --seconds 1 2>/dev/null") == 0);
  // features.standardize: the run has a feature_stats.json (32 bands, base.json's n_mels).
  const Result trained =
      run_genrelab("train " + corpus("configs/base.json") + " --set dataset.root=" + data +
                   " --set features.standardize=true --device cpu --quiet --out " + (dir / "runs").string());
  INFO(trained.err);
  REQUIRE(trained.rc == 0);
  const fs::path run = trained.out.substr(0, trained.out.find('\n'));
  const json split = json::parse(read_file((run / "split.json").string()));
  const json stats = json::parse(read_file((run / "feature_stats.json").string()));
  REQUIRE(stats["mean"].size() == 32);

  // A copy of the run with one file replaced; `unfinished` drops summary.json so --resume works.
  int copies = 0;
  auto damaged_copy = [&](const std::string& file, const std::string& text, bool unfinished = false) {
    const fs::path copy = dir / ("copy" + std::to_string(copies++));
    fs::copy(run, copy, fs::copy_options::recursive);
    write_file_atomic((copy / file).string(), text);
    if (unfinished) fs::remove(copy / "summary.json");
    return copy;
  };
  json wrong_class = split, short_mean = stats, negative_std = stats, null_mean = stats, huge_std = stats;
  wrong_class["test"].push_back("polka/polka.00000.wav");
  short_mean["mean"] = {0.0, 1.0, 2.0};
  negative_std["std"][5] = -1.0;
  null_mean["mean"][0] = nullptr;  // how json writes a NaN
  huge_std["std"][0] = 1e39;       // beyond float
  std::string checkpoint = read_file((run / "checkpoint.bin").string());
  for (int i = 20; i < 24; ++i) checkpoint[size_t(i)] = char(~checkpoint[size_t(i)]);  // the header length's high bytes

  struct Case {
    std::string file, text, command, fragment;
    bool unfinished = false;
  };
  const std::vector<Case> cases = {
      {"split.json", "[]", "eval", "expected a JSON object, found array"},
      {"split.json", "{\"classes\": \"blues\"}", "eval", "'classes' is missing or not a list of strings"},
      {"split.json", wrong_class.dump(), "eval",
       "'test' lists polka/polka.00000.wav, not a CLASS/FILE of one of 'classes'"},
      {"split.json", "{\"train\": [", "eval", "not valid JSON"},
      {"config.json", "[]", "eval", "expected a JSON object, found array"},
      {"feature_stats.json", short_mean.dump(), "eval", "'mean' is not a list of 32 numbers"},
      {"feature_stats.json", negative_std.dump(), "eval", "'std' holds -1.0, a negative spread"},
      {"feature_stats.json", null_mean.dump(), "train --resume", "'mean' holds null, not a finite number", true},
      {"feature_stats.json", huge_std.dump(), "train --resume", "'std' holds 1e+39, not a finite number", true},
      {"run.json", "[]", "train --resume", "expected a JSON object, found array", true},
      {"summary.json", "[]", "report", "expected a JSON object, found array"},
  };
  for (const Case& c : cases) {
    const fs::path copy = damaged_copy(c.file, c.text, c.unfinished);
    // report takes the folder above the runs.
    const std::string target = c.command == "report" ? (copy.parent_path() / "report-root").string() : copy.string();
    if (c.command == "report") {
      fs::create_directories(target);
      fs::rename(copy, fs::path(target) / "run");
    }
    const std::string file = c.command == "report" ? target + "/run/" + c.file : (copy / c.file).string();
    const Result r = run_genrelab(c.command + " " + target + (c.command == "report" ? "" : " --device cpu"));
    INFO(c.command << " with " << c.file << " = " << c.text.substr(0, 80) << "\n" << r.err);
    CHECK(r.rc == 1);
    CHECK(contains(r.err, file + ": " + c.fragment));
    CHECK(contains(r.err, "the run directory is damaged: restore " + c.file + " from a copy or train the run again"));
    CHECK_FALSE(contains(r.err, "json.exception"));
  }

  // A zero spread is what training writes for a band without variation: it is only centred.
  json zero_std = stats;
  zero_std["std"][0] = 0.0;
  const Result zero =
      run_genrelab("eval " + damaged_copy("feature_stats.json", zero_std.dump()).string() + " --device cpu");
  INFO(zero.err);
  CHECK(zero.rc == 0);

  // The checkpoint's header length with its high bytes flipped: damage, not a truncated copy.
  const fs::path ck = damaged_copy("checkpoint.bin", checkpoint);
  const Result r = run_genrelab("eval " + ck.string() + " --device cpu");
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(contains(r.err, (ck / "checkpoint.bin").string() + ": corrupt checkpoint: its header length field reads "));
  CHECK(contains(r.err, "the file is damaged"));
}
