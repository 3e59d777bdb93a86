// Dataset scanning (layouts, auto detection, class order, limits) and the parallel loader (every
// clip equals its own decode, OGG Vorbis and MP3 clips too, bad files skipped with their reasons,
// clear errors).
#include <fstream>

#include "codec_fixtures.h"
#include "genrelab/config.h"
#include "genrelab/dataset.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;

namespace {

// A short distinct tone per (class, index) so each clip's samples identify it.
std::vector<float> tone(int label, int index, size_t n = 2205) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 0.1f * float(label + 1) * float(std::sin(0.01 * double(i) * (index + 1)));
  return x;
}

// Writes <dir>/<class>/<class>.000NN.<ext> for each class and count.
void make_tree(const fs::path& dir, const std::vector<std::string>& classes, int per_class,
               const std::string& ext = ".wav") {
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(dir / classes[c]);
    for (int i = 0; i < per_class; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "%s.%05d%s", classes[c].c_str(), i, ext.c_str());
      write_wav((dir / classes[c] / name).string(), tone(int(c), i), 22050, WavEncoding::pcm16);
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::string> names(const Dataset& d) {
  std::vector<std::string> v;
  for (const auto& c : d.clips) v.push_back(c.name);
  return v;
}

}  // namespace

TEST_CASE("dataset layouts are found and clips sorted by class then name", "[dataset]") {
  const auto tmp = test::temp_dir("dataset-layouts");
  make_tree(tmp / "kaggle" / "genres_original", {"rock", "blues", "jazz"}, 3);
  make_tree(tmp / "orig" / "genres", {"pop", "disco"}, 2, ".au");
  make_tree(tmp / "plain", {"b", "a"}, 2);
  std::ofstream(tmp / "plain" / "a" / "notes.txt") << "not audio";  // ignored: no audio extension
  std::ofstream(tmp / "plain" / "a" / ".hidden.wav") << "x";        // ignored: hidden
  fs::create_directories(tmp / "plain" / ".cache");                 // ignored: hidden folder

  DatasetOptions o;
  o.root = (tmp / "kaggle").string();
  Dataset d = scan_dataset(o);
  CHECK(d.layout == "gtzan-kaggle");
  CHECK(d.classes == std::vector<std::string>{"blues", "jazz", "rock"});
  REQUIRE(d.clips.size() == 9);
  CHECK(names(d).front() == "blues/blues.00000.wav");
  CHECK(names(d)[4] == "jazz/jazz.00001.wav");
  CHECK(d.clips[4].label == 1);
  CHECK(d.clips[4].path == (tmp / "kaggle" / "genres_original" / "jazz" / "jazz.00001.wav").string());
  CHECK(fs::path(d.clips[4].path).is_absolute());

  o.root = (tmp / "orig").string();
  d = scan_dataset(o);
  CHECK(d.layout == "gtzan");
  CHECK(names(d) == std::vector<std::string>{"disco/disco.00000.au", "disco/disco.00001.au", "pop/pop.00000.au",
                                             "pop/pop.00001.au"});

  // The genres folder itself as the root, and the plain layout.
  o.root = (tmp / "orig" / "genres").string();
  CHECK(scan_dataset(o).clips.size() == 4);
  o.root = (tmp / "plain").string();
  d = scan_dataset(o);
  CHECK(d.layout == "folders");
  CHECK(names(d) == std::vector<std::string>{"a/a.00000.wav", "a/a.00001.wav", "b/b.00000.wav", "b/b.00001.wav"});

  // Explicit layouts.
  o.root = (tmp / "kaggle").string();
  o.layout = "gtzan-kaggle";
  CHECK(scan_dataset(o).clips.size() == 9);
  o.layout = "gtzan";
  CHECK_THROWS_AS(scan_dataset(o), ConfigError);
  o.root = (tmp / "plain").string();
  o.layout = "folders";
  CHECK(scan_dataset(o).clips.size() == 4);
}

TEST_CASE("dataset classes follow the config order and max_clips_per_class", "[dataset]") {
  const auto tmp = test::temp_dir("dataset-classes");
  make_tree(tmp / "genres_original", {"rock", "blues", "jazz"}, 4);
  const std::string cfg = (tmp / "exp.json").string();
  std::ofstream(cfg) << R"({"dataset": {"root": ".", "classes": ["rock", "blues"], "max_clips_per_class": 2}})";
  const Config config = Config::load(cfg);
  const Dataset d = scan_dataset(dataset_options_from_config(config));
  CHECK(d.classes == std::vector<std::string>{"rock", "blues"});
  CHECK(names(d) == std::vector<std::string>{"rock/rock.00000.wav", "rock/rock.00001.wav", "blues/blues.00000.wav",
                                             "blues/blues.00001.wav"});
  CHECK(d.clips[2].label == 1);

  DatasetOptions o;
  o.root = tmp.string();
  o.classes = {"rock", "metal"};
  const std::string e = error_of([&] { scan_dataset(o); });
  CHECK(e.find("'metal' has no folder") != std::string::npos);
  CHECK(e.find("folders found: blues, jazz, rock") != std::string::npos);
  CHECK_THROWS_AS(scan_dataset(o), ConfigError);
}

TEST_CASE("dataset root errors are clear", "[dataset]") {
  const auto tmp = test::temp_dir("dataset-errors");
  DatasetOptions o;
  o.root = (tmp / "nope").string();
  CHECK(error_of([&] { scan_dataset(o); }).find("does not exist") != std::string::npos);
  fs::create_directories(tmp / "empty");
  o.root = (tmp / "empty").string();
  CHECK(error_of([&] { scan_dataset(o); }).find("holds no class folders") != std::string::npos);
  fs::create_directories(tmp / "no-audio" / "blues");
  std::ofstream(tmp / "no-audio" / "blues" / "readme.txt") << "x";
  o.root = (tmp / "no-audio").string();
  CHECK(error_of([&] { scan_dataset(o); }).find("hold no audio files") != std::string::npos);
  Config c;
  CHECK(error_of([&] { dataset_options_from_config(c); }).find("dataset.root") != std::string::npos);
}

TEST_CASE("loader decodes every clip like decode_audio and skips bad files", "[dataset]") {
  const auto tmp = test::temp_dir("dataset-loader");
  make_tree(tmp, {"blues", "jazz"}, 5);
  std::ofstream(tmp / "jazz" / "jazz.00054.wav") << "";                       // empty
  std::ofstream(tmp / "blues" / "blues.00009.wav") << "RIFF this is no wav";  // not audio
  DatasetOptions o;
  o.root = tmp.string();
  const Dataset d = scan_dataset(o);
  REQUIRE(d.clips.size() == 12);
  for (int threads : {1, 3}) {
    LoadOptions lo;
    lo.decode.length = 3000;
    lo.threads = threads;
    lo.warn = false;
    lo.progress = false;
    const LoadedDataset l = load_dataset(d, lo);
    REQUIRE(l.clips.size() == 10);
    REQUIRE(l.skipped.size() == 2);
    CHECK(l.skipped[0].name == "blues/blues.00009.wav");
    CHECK(l.skipped[0].reason.rfind("not a readable audio file", 0) == 0);
    CHECK(l.skipped[1].name == "jazz/jazz.00054.wav");
    CHECK(l.skipped[1].reason == "is empty (0 bytes)");
    for (size_t i = 0; i < l.clips.size(); ++i) {
      const auto& c = l.clips[i];
      CHECK(c.clip.label == int(i / 5));
      const int index = int(i % 5);
      CHECK(c.clip.name == d.classes[size_t(c.clip.label)] + "/" + d.classes[size_t(c.clip.label)] + ".0000" +
                               std::to_string(index) + ".wav");
      REQUIRE(c.samples.size() == 3000);
      // The written tone (within one 16-bit step) then zero padding from 2205 to 3000.
      std::vector<float> want = tone(c.clip.label, index);
      want.resize(3000, 0.0f);
      test::require_close(c.samples, want, 1.0 / 32768 + 1e-7, 0, c.clip.name);
      CHECK(std::all_of(c.samples.begin() + 2205, c.samples.end(), [](float v) { return v == 0.0f; }));
      CHECK(c.source.sample_rate == 22050);
      CHECK(c.source.frames == 2205);
    }
    CHECK(clip_records(l).size() == 10);
  }
  // keep_samples = false keeps the source info only.
  LoadOptions lo;
  lo.keep_samples = false;
  lo.warn = false;
  lo.progress = false;
  const LoadedDataset info = load_dataset(d, lo);
  CHECK(info.clips[0].samples.empty());
  CHECK(info.clips[0].source.frames == 2205);
}

TEST_CASE("OGG Vorbis and MP3 clips are found and loaded", "[dataset]") {
  // genres/<genre>/ (the original GTZAN layout) holding a .ogg and a .mp3 each, beside a WAV.
  const auto tmp = test::temp_dir("dataset-lossy");
  for (const char* genre : {"blues", "jazz"}) {
    fs::create_directories(tmp / "genres" / genre);
    for (const test::LossyFormat& fmt : test::kLossyFormats)
      test::write_tone_pair((tmp / "genres" / genre / (std::string(genre) + ".00000" + fmt.ext)).string(), fmt.format);
  }
  write_wav((tmp / "genres" / "jazz" / "jazz.00001.wav").string(), tone(1, 1), 22050);
  DatasetOptions o;
  o.root = tmp.string();
  const Dataset d = scan_dataset(o);
  CHECK(d.layout == "gtzan");
  CHECK(names(d) == std::vector<std::string>{"blues/blues.00000.mp3", "blues/blues.00000.ogg", "jazz/jazz.00000.mp3",
                                             "jazz/jazz.00000.ogg", "jazz/jazz.00001.wav"});
  LoadOptions lo;
  lo.decode.length = 22050;
  lo.threads = 2;
  lo.warn = false;
  lo.progress = false;
  const LoadedDataset l = load_dataset(d, lo);
  CHECK(l.skipped.empty());
  REQUIRE(l.clips.size() == 5);
  for (const LoadedClip& c : l.clips) {
    INFO(c.clip.name);
    if (c.clip.name.find(".wav") != std::string::npos) continue;
    CHECK(c.source.channels == 2);
    CHECK(c.source.sample_rate == 44100);
    CHECK(c.source.frames == test::kTonePairFrames);
    CHECK(c.source.format ==
          (c.clip.name.find(".ogg") != std::string::npos ? test::kLossyFormats[0].name : test::kLossyFormats[1].name));
    // The loader's threads decode what decode_audio does, bit for bit (its tones are checked
    // against the encoded amplitudes in test_audio.cpp).
    CHECK(c.samples == decode_audio(c.clip.path, lo.decode).samples);
    double err = 0, ref = 0;
    for (size_t i = 0; i < c.samples.size(); ++i) {
      const double want = test::tone_pair_mono(int64_t(i), 22050);
      err += (c.samples[i] - want) * (c.samples[i] - want);
      ref += want * want;
    }
    CHECK(std::sqrt(err / ref) < 0.02);  // the encoded tones, as in test_audio.cpp
  }
}

TEST_CASE("loader errors when no clip is usable", "[dataset]") {
  const auto tmp = test::temp_dir("dataset-none");
  fs::create_directories(tmp / "blues");
  std::ofstream(tmp / "blues" / "a.wav") << "";
  std::ofstream(tmp / "blues" / "b.wav") << "text";
  DatasetOptions o;
  o.root = tmp.string();
  LoadOptions lo;
  lo.warn = false;
  lo.progress = false;
  const std::string e = error_of([&] { load_dataset(scan_dataset(o), lo); });
  CHECK(e.find("no usable clip") != std::string::npos);
  CHECK(e.find("all 2 audio files failed to decode") != std::string::npos);
  lo.require_usable = false;
  CHECK(load_dataset(scan_dataset(o), lo).skipped.size() == 2);
}

TEST_CASE("loader reads gtzan-mini with the baseline length", "[dataset]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  DatasetOptions o;
  o.root = dir;
  const Dataset d = scan_dataset(o);
  CHECK(d.layout == "gtzan");
  CHECK(d.classes.size() == 10);
  REQUIRE(d.clips.size() == 50);
  CHECK(d.clips[0].name == "blues/blues.00000.flac");
  LoadOptions lo;
  lo.decode.length = 617400;
  lo.progress = false;
  const LoadedDataset l = load_dataset(d, lo);
  REQUIRE(l.clips.size() == 50);
  CHECK(l.skipped.empty());
  for (const auto& c : l.clips) CHECK(c.samples.size() == 617400);
  // Same samples as a direct decode.
  CHECK(l.clips[17].samples == decode_audio(l.clips[17].clip.path, lo.decode).samples);
}
