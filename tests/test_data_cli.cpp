// `genrelab data check|synth|split` and `bench --what decode` through the built binary: exit codes,
// stdout carrying only data, stderr warnings, and results compared with independent references.
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "codec_fixtures.h"
#include "genrelab/audio.h"
#include "genrelab/io.h"
#include "genrelab/split.h"
#include "genrelab/synth.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Result {
  int rc;
  std::string out, err;
};

// Runs `genrelab ARGS`, capturing stdout and stderr.
Result run_genrelab(const std::string& args, const fs::path& tmp) {
  const std::string err_file = (tmp / "stderr.txt").string();
  Result r;
  r.rc = test::run_command("'" + test::genrelab_binary() + "' " + args + " 2>'" + err_file + "'", &r.out);
  r.err = read_file(err_file);
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

// A small synthetic collection shared by the tests below (2 clips per genre, 0.5 s).
fs::path small_synth(const fs::path& tmp) {
  const fs::path out = tmp / "synth";
  const Result r = run_genrelab("data synth '" + out.string() + "' --clips-per-genre 2 --seconds 0.5 --seed 3", tmp);
  REQUIRE(r.rc == 0);
  CHECK(r.out.empty());
  return out;
}

}  // namespace

TEST_CASE("data synth writes the GTZAN Kaggle layout deterministically", "[data][cli]") {
  const auto tmp = test::temp_dir("cli-synth");
  const fs::path a = small_synth(tmp);
  const std::vector<std::string>& genres = gtzan_genres();
  REQUIRE(genres.size() == 10);
  int files = 0;
  for (const auto& g : genres)
    for (int i = 0; i < 2; ++i) {
      const fs::path p = a / "genres_original" / g / (g + ".0000" + std::to_string(i) + ".wav");
      REQUIRE(fs::exists(p));
      const AudioInfo info = probe_audio(p.string());
      CHECK(info.sample_rate == 22050);
      CHECK(info.channels == 1);
      CHECK(info.frames == 11025);
      CHECK(info.format == "WAV (Microsoft) Signed 16 bit PCM");
      ++files;
    }
  CHECK(files == 20);
  // Same options → byte-identical files; another seed → different audio.
  REQUIRE(run_genrelab("data synth '" + (tmp / "again").string() + "' --clips-per-genre 2 --seconds 0.5 --seed 3", tmp)
              .rc == 0);
  REQUIRE(run_genrelab("data synth '" + (tmp / "other").string() + "' --clips-per-genre 2 --seconds 0.5 --seed 4", tmp)
              .rc == 0);
  const std::string rel = "genres_original/jazz/jazz.00001.wav";
  CHECK(read_file((a / rel).string()) == read_file((tmp / "again" / rel).string()));
  CHECK(read_file((a / rel).string()) != read_file((tmp / "other" / rel).string()));
  // The library function gives what the command wrote (within one 16-bit step).
  SynthOptions o;
  o.clips_per_genre = 2;
  o.seconds = 0.5;
  o.seed = 3;
  test::require_close(decode_audio((a / rel).string()).samples, synth_clip(5, 1, o), 1.0 / 32768 + 1e-7, 0, "jazz 1");

  CHECK(run_genrelab("data synth '" + (tmp / "bad").string() + " ' --seconds -1", tmp).rc == 2);
  CHECK(run_genrelab("data synth", tmp).rc == 2);
}

TEST_CASE("synthetic genres differ in tempo and timbre as documented", "[data]") {
  // Independent measures on the rendered audio. Timbre: the share of energy in sample-to-sample
  // differences (a high-frequency measure) is small for classical's sine tones and large for
  // metal's distorted chords. Tempo: disco's kick falls on every beat at 118-126 BPM, so the
  // autocorrelation of the low-band envelope peaks at one beat.
  SynthOptions o;
  auto hf_share = [](const std::vector<float>& x) {
    double d = 0, e = 0;
    for (size_t i = 1; i < x.size(); ++i) {
      d += double(x[i] - x[i - 1]) * (x[i] - x[i - 1]);
      e += double(x[i]) * x[i];
    }
    return d / e;
  };
  auto tempo_bpm = [](const std::vector<float>& x) {
    const int hop = 220;  // 10 ms envelope frames
    std::vector<double> env;
    double lp = 0, acc = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      lp += (x[i] - lp) * 0.03;  // one-pole low-pass, ~100 Hz
      acc += lp * lp;
      if ((i + 1) % hop == 0) env.push_back(acc), acc = 0;
    }
    double mean = 0;
    for (double v : env) mean += v / double(env.size());
    for (double& v : env) v -= mean;
    int best = 0;
    double best_r = -1e300;
    for (int lag = 40; lag <= 100; ++lag) {  // 60-150 BPM
      double r = 0;
      for (size_t i = 0; i + size_t(lag) < env.size(); ++i) r += env[i] * env[i + size_t(lag)];
      r /= double(env.size() - size_t(lag));
      if (r > best_r) best_r = r, best = lag;
    }
    return 60.0 / (best * hop / 22050.0);
  };
  double classical_max = 0, metal_min = 1e9;
  for (int i = 0; i < 5; ++i) {
    classical_max = std::max(classical_max, hf_share(synth_clip(1, i, o)));
    metal_min = std::min(metal_min, hf_share(synth_clip(6, i, o)));
    const double bpm = tempo_bpm(synth_clip(3, i, o));
    INFO("disco clip " << i << ": " << bpm << " BPM");
    CHECK(bpm >= 115);
    CHECK(bpm <= 129);
  }
  INFO("classical max " << classical_max << ", metal min " << metal_min);
  CHECK(metal_min > 2 * classical_max);
}

TEST_CASE("synthetic collection is learnable from spectral statistics", "[data][python]") {
  const std::string py = test::python_with_or_skip("numpy, soundfile");
  if (py.empty()) return;
  const auto tmp = test::temp_dir("cli-learn");
  REQUIRE(run_genrelab("data synth '" + (tmp / "d").string() + "' --clips-per-genre 8 --seconds 2", tmp).rc == 0);
  // A nearest-centroid classifier on per-band log-power mean/std (40 log-spaced bands of a
  // 1024-point STFT), 4-fold cross-validation: an independent learner standing in for the CNN.
  // The genres must be separable (measured 0.96; the default 30 x 3 s set: 0.99), and loudness
  // alone must not separate them (measured 0.28).
  const std::string script = R"(
import glob, sys, numpy as np, soundfile as sf
X, R, Y = [], [], []
edges = np.unique(np.geomspace(2, 513, 41).astype(int))
for gi, g in enumerate(sorted(glob.glob(sys.argv[1] + '/genres_original/*'))):
    for f in sorted(glob.glob(g + '/*.wav')):
        y, sr = sf.read(f, dtype='float32')
        fr = np.lib.stride_tricks.sliding_window_view(y, 1024)[::512] * np.hanning(1024)
        p = np.abs(np.fft.rfft(fr, axis=1)) ** 2
        b = np.log(np.stack([p[:, a:c].sum(1) for a, c in zip(edges[:-1], edges[1:])], 1) + 1e-8)
        X.append(np.concatenate([b.mean(0), b.std(0)])); R.append([np.log(np.mean(y ** 2))]); Y.append(gi)
def cv(F, Y, k=4):
    F, Y = np.array(F), np.array(Y); idx = np.arange(len(Y)); acc = []
    for fold in range(k):
        te = idx % k == fold; tr = ~te
        mu, sd = F[tr].mean(0), F[tr].std(0) + 1e-9
        A, B = (F[tr] - mu) / sd, (F[te] - mu) / sd
        cent = np.stack([A[Y[tr] == c].mean(0) for c in range(10)])
        acc.append((np.argmin(((B[:, None, :] - cent[None]) ** 2).sum(2), 1) == Y[te]).mean())
    return np.mean(acc)
print('%.4f %.4f' % (cv(X, Y), cv(R, Y)))
)";
  std::ofstream(tmp / "learn.py") << script;
  std::string out;
  REQUIRE(test::run_command("'" + py + "' '" + (tmp / "learn.py").string() + "' '" + (tmp / "d").string() + "'",
                            &out) == 0);
  double spectral = 0, loudness = 0;
  std::istringstream(out) >> spectral >> loudness;
  INFO("spectral accuracy " << spectral << ", loudness-only accuracy " << loudness);
  CHECK(spectral >= 0.9);
  CHECK(loudness < 0.5);
}

TEST_CASE("data check prints a per-class table and the bad files", "[data][cli]") {
  const auto tmp = test::temp_dir("cli-check");
  const fs::path root = small_synth(tmp);
  std::ofstream(root / "genres_original" / "jazz" / "jazz.00054.wav") << "";
  std::ofstream(root / "genres_original" / "rock" / "rock.00099.wav") << "plain text, not audio";
  std::vector<float> stereo_src(44100 * 2, 0.1f);
  write_wav((root / "genres_original" / "pop" / "pop.00005.wav").string(), std::vector<float>(1000, 0.2f), 44100);
  const Result r = run_genrelab("data check '" + root.string() + "'", tmp);
  CHECK(r.rc == 0);
  const auto out = lines(r.out);
  INFO(r.out);
  REQUIRE(out.size() >= 14);
  CHECK(out[0] == "collection: " + (root / "genres_original").string() + " (layout gtzan-kaggle)");
  // class clips bad minutes rates channels shortest
  std::map<std::string, std::vector<std::string>> row;
  for (const auto& l : out) {
    std::istringstream in(l);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    if (!w.empty()) row[w[0]] = w;
  }
  CHECK(row["blues"][1] == "2");
  CHECK(row["blues"][2] == "0");
  CHECK(row["blues"][3] == "0.0");  // 1 s = 0.017 min
  CHECK(row["blues"][4] == "22050");
  CHECK(row["blues"][6] == "0.50");
  CHECK(row["jazz"][2] == "1");
  CHECK(row["pop"][1] == "3");
  CHECK(row["pop"][4] == "22050,44100");
  CHECK(row["pop"][6] == "0.02");  // 1000 / 44100 s
  CHECK(row["total"][1] == "21");
  CHECK(row["total"][2] == "2");
  CHECK(r.out.find("bad files (2, skipped by every command):") != std::string::npos);
  CHECK(r.out.find((root / "genres_original" / "jazz" / "jazz.00054.wav").string() + ": is empty (0 bytes)") !=
        std::string::npos);
  CHECK(r.out.find("rock.00099.wav: not a readable audio file") != std::string::npos);

  // No usable clip: exit 1. Missing root: exit 1 with a clear message. No argument: usage, exit 2.
  fs::create_directories(tmp / "allbad" / "blues");
  std::ofstream(tmp / "allbad" / "blues" / "x.wav") << "";
  const Result bad = run_genrelab("data check '" + (tmp / "allbad").string() + "'", tmp);
  CHECK(bad.rc == 1);
  CHECK(bad.out.find("x.wav: is empty (0 bytes)") != std::string::npos);
  CHECK(bad.err.find("no usable clip") != std::string::npos);
  const Result missing = run_genrelab("data check '" + (tmp / "nope").string() + "'", tmp);
  CHECK(missing.rc == 1);
  CHECK(missing.out.empty());
  CHECK(missing.err.find("does not exist") != std::string::npos);
  CHECK(run_genrelab("data check", tmp).rc == 2);
}

TEST_CASE("data check counts OGG Vorbis and MP3 clips", "[data][cli]") {
  // Two class folders, each with a 1 s 44.1 kHz stereo .ogg and .mp3: all four found and decoded.
  const auto tmp = test::temp_dir("cli-check-lossy");
  const fs::path root = tmp / "lossy";
  for (const char* genre : {"blues", "jazz"}) {
    fs::create_directories(root / genre);
    for (const test::LossyFormat& fmt : test::kLossyFormats)
      test::write_tone_pair((root / genre / (std::string(genre) + ".00000" + fmt.ext)).string(), fmt.format);
  }
  const Result r = run_genrelab("data check '" + root.string() + "'", tmp);
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  // class clips bad minutes rates channels shortest
  std::map<std::string, std::vector<std::string>> row;
  for (const auto& l : lines(r.out)) {
    std::istringstream in(l);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    if (!w.empty()) row[w[0]] = w;
  }
  for (const char* name : {"blues", "jazz"}) {
    INFO(name);
    REQUIRE(row[name].size() == 8);
    CHECK(row[name][1] == "2");
    CHECK(row[name][2] == "0");
    CHECK(row[name][4] == "44100");
    CHECK(row[name][5] == "2");
    CHECK(row[name][6] + row[name][7] == "1.00s");  // 44100 frames at 44100 Hz
  }
  REQUIRE(row["total"].size() >= 3);
  CHECK(row["total"][1] == "4");
  CHECK(row["total"][2] == "0");
  CHECK(r.out.find("bad files") == std::string::npos);
}

TEST_CASE("data split prints only split lines and equals sklearn over the usable clips", "[data][cli]") {
  const auto tmp = test::temp_dir("cli-split");
  const fs::path root = small_synth(tmp);
  std::ofstream(root / "genres_original" / "jazz" / "jazz.00054.wav") << "";  // skipped, not counted
  const std::string exp = (tmp / "exp.json").string();
  std::ofstream(exp)
      << R"({"dataset": {"root": "synth"}, "split": {"kind": "sklearn", "test_fraction": 0.2, "seed": 6}})";
  const Result r = run_genrelab("data split '" + exp + "'", tmp);
  REQUIRE(r.rc == 0);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 20);
  const std::regex line_re("(train|valid|test)\t[a-z]+/[a-z]+\\.000[0-9]{2}\\.wav");
  for (const auto& l : out) CHECK(std::regex_match(l, line_re));
  CHECK(r.err.find("jazz.00054.wav: is empty (0 bytes) (skipped)") != std::string::npos);
  // Reference: the usable clips sorted by genre then name, split by the sklearn rule (n = 20:
  // 4 test, 16 train), the permutation checked bit-exact against sklearn in test_split.cpp.
  std::vector<std::string> names;
  for (const auto& g : gtzan_genres())
    for (int i = 0; i < 2; ++i) names.push_back(g + "/" + g + ".0000" + std::to_string(i) + ".wav");
  const TrainTest ref = sklearn_train_test_split(20, 4, 6);
  std::vector<std::string> want;
  for (int64_t i : ref.train) want.push_back("train\t" + names[size_t(i)]);
  for (int64_t i : ref.test) want.push_back("test\t" + names[size_t(i)]);
  CHECK(out == want);

  // --set reaches the split; a bad key is a usage error naming it.
  const Result v =
      run_genrelab("data split '" + exp + "' --set split.valid_fraction=0.1 --set split.kind=stratified", tmp);
  REQUIRE(v.rc == 0);
  std::map<std::string, int> count;
  for (const auto& l : lines(v.out)) ++count[l.substr(0, l.find('\t'))];
  CHECK(count["test"] == 10);  // ceil(0.2 * 2) = 1 per genre
  CHECK(count["valid"] == 0);  // a genre of 2 keeps one clip for training
  CHECK(count["train"] == 10);
  const Result bad = run_genrelab("data split '" + exp + "' --set split.sed=3", tmp);
  CHECK(bad.rc == 2);
  CHECK(bad.out.empty());
  CHECK(bad.err.find("split.sed") != std::string::npos);
}

TEST_CASE("data split with the filtered manifest lists on gtzan-mini", "[data][cli]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const fs::path lists = fs::path(dir).parent_path() / "gtzan-splits";
  if (!fs::exists(lists / "train_filtered.txt")) {
    WARN("SKIPPED: " << lists.string() << " has no split lists");
    return;
  }
  const auto tmp = test::temp_dir("cli-manifest");
  const std::string exp = (tmp / "exp.json").string();
  std::ofstream(exp) << json{{"dataset", {{"root", dir}}},
                             {"split",
                              {{"kind", "manifest"},
                               {"train_list", (lists / "train_filtered.txt").string()},
                               {"valid_list", (lists / "valid_filtered.txt").string()},
                               {"test_list", (lists / "test_filtered.txt").string()}}}}
                            .dump();
  const Result r = run_genrelab("data split '" + exp + "'", tmp);
  REQUIRE(r.rc == 0);
  // Reference: the list lines whose clip is on disk (any extension), in list order.
  std::set<std::string> on_disk;
  for (const auto& g : fs::directory_iterator(fs::path(dir) / "genres"))
    for (const auto& f : fs::directory_iterator(g.path()))
      on_disk.insert(g.path().filename().string() + "/" + f.path().stem().string());
  std::vector<std::string> want;
  size_t listed = 0;
  for (const char* which : {"train", "valid", "test"}) {
    std::ifstream in(lists / (std::string(which) + "_filtered.txt"));
    for (std::string l; std::getline(in, l);) {
      if (l.empty()) continue;
      ++listed;
      const std::string stem = l.substr(0, l.rfind('.'));
      if (on_disk.count(stem)) want.push_back(std::string(which) + "\t" + stem + ".flac");
    }
  }
  CHECK(lines(r.out) == want);
  CHECK(!want.empty());
  CHECK(r.err.find("not on disk (left out)") != std::string::npos);
  CHECK(r.err.find("more listed clips not on disk") != std::string::npos);
  INFO(r.err);
  CHECK(listed == 930);
}

TEST_CASE("bench decode reports throughput for each thread count", "[data][cli]") {
  const auto tmp = test::temp_dir("cli-bench");
  const fs::path root = small_synth(tmp);
  const Result r = run_genrelab(
      "bench --what decode '" + root.string() + "' --threads 2 --json '" + (tmp / "b.json").string() + "'", tmp);
  REQUIRE(r.rc == 0);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 3);
  CHECK(out[0].find("MB/s") != std::string::npos);
  CHECK(out[1].rfind("1 ", 0) == 0);
  CHECK(out[2].rfind("2 ", 0) == 0);
  const json doc = json::parse(read_file((tmp / "b.json").string()));
  CHECK(doc.at("clips") == 20);
  // 20 clips x 11025 samples x 4 bytes.
  CHECK(doc.at("megabytes").get<double>() == Approx(20 * 11025 * 4 / 1e6));
  CHECK(doc.at("results").size() == 2);
  CHECK(r.err.find("threaded result equals serial") != std::string::npos);
}
