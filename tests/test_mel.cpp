// Mel spectrogram parity with librosa: the filterbank, synthetic and awkward signals, real clip
// excerpts (goldens from tools/golden/make_mel_golden.py), a live librosa run, power_to_db,
// band standardisation, .npy I/O, the `features` command, and GPU-vs-CPU checks under [gpu].
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "genrelab/audio.h"
#include "genrelab/config.h"
#include "genrelab/features.h"
#include "genrelab/npy.h"
#include "genrelab/parallel_for.h"
#include "test_util.h"

using namespace genrelab;
using nlohmann::json;

namespace {

constexpr int kSr = 22050;

std::string golden_dir() { return test::source_dir() + "/tests/data/golden/mel"; }

const json& golden() {
  static const json doc = json::parse(std::ifstream(golden_dir() + "/cases.json"));
  return doc;
}

MelParams params_from(const json& p) {
  MelParams m;
  m.sample_rate = kSr;
  m.n_fft = p.at("n_fft");
  m.hop_length = p.at("hop_length");
  m.win_length = p.at("win_length").is_null() ? m.n_fft : int(p.at("win_length"));
  m.n_mels = p.at("n_mels");
  m.power = p.at("power");
  m.center = p.at("center");
  m.pad_mode = p.at("pad_mode") == "constant" ? PadMode::constant : PadMode::reflect;
  m.htk = p.at("htk");
  m.norm = p.at("norm") == "slaney" ? MelNorm::slaney : MelNorm::none;
  m.fmin = p.at("fmin");
  m.fmax = p.at("fmax").is_null() ? kSr / 2.0 : double(p.at("fmax"));
  m.db = p.at("db");
  m.db_params.ref_is_max = p.at("ref").is_string();
  if (!m.db_params.ref_is_max) m.db_params.ref = p.at("ref");
  m.db_params.amin = p.at("amin");
  m.db_params.use_top_db = !p.at("top_db").is_null();
  if (m.db_params.use_top_db) m.db_params.top_db = p.at("top_db");
  return m;
}

// The signal recipes of make_mel_golden.py's synth(), in the same operation order.
std::vector<float> synth(const json& components, int64_t n) {
  std::vector<double> y(size_t(n), 0.0);
  for (const auto& c : components) {
    const std::string kind = c.at("type");
    for (int64_t i = 0; i < n; ++i) {
      const double t = double(i);
      double v = 0;
      if (kind == "sine") {
        v = double(c.at("amp")) * std::sin(2.0 * M_PI * double(c.at("freq")) * t / kSr + c.value("phase", 0.0));
      } else if (kind == "chirp") {
        const double dur = double(n) / kSr, s = t / kSr, f0 = c.at("f0"), f1 = c.at("f1");
        v = double(c.at("amp")) * std::sin(2.0 * M_PI * (f0 * s + (f1 - f0) / (2.0 * dur) * s * s));
      } else if (kind == "square") {
        const int64_t half = c.at("half");
        v = (i / half) % 2 == 0 ? double(c.at("amp")) : -double(c.at("amp"));
      } else if (kind == "dc") {
        v = c.at("value");
      } else if (kind == "noise") {
        break;  // sequential: below
      }
      y[size_t(i)] += v;
    }
    if (kind == "noise") {
      uint32_t state = uint32_t(int64_t(c.at("seed")));
      for (int64_t i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        y[size_t(i)] += double(c.at("amp")) * ((state >> 8) / 16777216.0 * 2.0 - 1.0);
      }
    }
  }
  return std::vector<float>(y.begin(), y.end());
}

double checksum(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += v;
  return s;
}

struct Errors {
  double rel = 0;       // max |ours - ref| / max |ref| (linear outputs)
  double db_above = 0;  // max |ours - ref| in dB where ref is above its top_db floor + 1e-3 dB
  double db_all = 0;    // max |ours - ref| in dB everywhere
};

// Compares one clip's (n_mels, n_frames) output with librosa's. For dB outputs the floor of the
// clip is the reference's minimum when top_db clamps it (values at the floor are excluded from
// `db_above`, where rounding can put one side just above it).
Errors compare(const float* ours, const std::vector<float>& ref, const MelParams& p) {
  Errors e;
  if (!p.db) {
    double ref_max = 0, err = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      ref_max = std::max(ref_max, std::fabs(double(ref[i])));
      err = std::max(err, std::fabs(double(ours[i]) - double(ref[i])));
      if (std::isnan(ours[i])) err = INFINITY;
    }
    e.rel = ref_max > 0 ? err / ref_max : err;
    return e;
  }
  const double floor = p.db_params.use_top_db ? *std::min_element(ref.begin(), ref.end()) : -INFINITY;
  for (size_t i = 0; i < ref.size(); ++i) {
    double d = std::fabs(double(ours[i]) - double(ref[i]));
    if (std::isnan(ours[i])) d = INFINITY;
    e.db_all = std::max(e.db_all, d);
    if (ref[i] > floor + 1e-3) e.db_above = std::max(e.db_above, d);
  }
  return e;
}

// dB tolerance: the CPU reference transforms in double precision like librosa; the GPU uses
// float32 cuFFT, whose round-off (about 1e-7 of a frame's peak amplitude) reaches ~1e-3 dB for
// mel bands 75-80 dB below their frame's peak (measured with float32 FFTW: 0.95e-3 dB on a
// full-scale square wave), hence a looser bound there.
double db_tolerance(Device d) { return d == Device::cuda ? 3e-3 : 1e-3; }

void require_parity(const std::string& name, const Errors& e, const MelParams& p, Device device = Device::cpu) {
  if (p.db) {
    std::cout << "mel parity " << name << ": max |ours - librosa| = " << e.db_above << " dB above the floor ("
              << e.db_all << " dB everywhere)\n";
    INFO(name << ": dB error " << e.db_above);
    CHECK(e.db_above <= db_tolerance(device));
  } else {
    std::cout << "mel parity " << name << ": max |ours - librosa| / max |librosa| = " << e.rel << "\n";
    INFO(name << ": relative error " << e.rel);
    CHECK(e.rel <= 1e-4);
  }
}

// Runs every golden case of one kind through `device` and checks parity.
void check_synthetic_cases(Device device) {
  int n_cases = 0;
  for (const auto& c : golden().at("cases")) {
    if (!c.contains("signal")) continue;
    const MelParams p = params_from(c.at("params"));
    const int64_t n = c.at("length");
    const std::vector<float> y = synth(c.at("signal"), n);
    REQUIRE(checksum(y) == Approx(double(c.at("checksum"))).margin(1e-6 * double(n)));
    const NpyArray ref = read_npy(golden_dir() + "/" + std::string(c.at("file")));
    MelExtractor ex(p, device);
    const std::vector<float> mel = ex.compute_host(y, 1, n);
    REQUIRE(ref.shape == std::vector<int64_t>{p.n_mels, ex.n_frames(n)});
    REQUIRE(mel.size() == ref.data.size());
    require_parity(std::string(c.at("name")) + " (" + device_name(device) + ")", compare(mel.data(), ref.data, p), p,
                   device);
    ++n_cases;
  }
  CHECK(n_cases >= 10);
}

// Decodes a clip and cuts the excerpt a golden case describes.
std::vector<float> excerpt(const std::string& audio_dir, const json& c) {
  const Audio a = decode_audio(audio_dir + "/genres/" + std::string(c.at("clip")));
  const int64_t start = c.at("start"), len = c.at("length");
  REQUIRE(int64_t(a.samples.size()) >= start + len);
  std::vector<float> y(a.samples.begin() + start, a.samples.begin() + start + len);
  REQUIRE(checksum(y) == Approx(double(c.at("checksum"))).margin(1e-9));
  return y;
}

}  // namespace

TEST_CASE("mel scale conversions equal librosa", "[mel]") {
  // Values printed by librosa 0.11 (hz_to_mel, mel_to_hz).
  CHECK(hz_to_mel(1000.0, false) == Approx(14.999999999999998).epsilon(1e-15));
  CHECK(hz_to_mel(440.0, false) == Approx(6.6).epsilon(1e-15));
  CHECK(hz_to_mel(5000.0, false) == Approx(38.40940078654161).epsilon(1e-14));
  CHECK(hz_to_mel(1000.0, true) == Approx(999.9855371396244).epsilon(1e-14));
  CHECK(mel_to_hz(30.0, false) == Approx(2804.6441307389214).epsilon(1e-14));
  CHECK(mel_to_hz(1500.0, true) == Approx(1949.3096543148406).epsilon(1e-14));
  for (double hz : {0.0, 55.5, 999.0, 1000.0, 4321.0, 11025.0})
    for (bool htk : {false, true}) CHECK(mel_to_hz(hz_to_mel(hz, htk), htk) == Approx(hz).margin(1e-9));
}

TEST_CASE("mel filterbank equals librosa.filters.mel", "[mel]") {
  for (const auto& g : golden().at("filterbanks")) {
    MelFilterbankSpec s;
    s.sample_rate = g.at("sr");
    s.n_fft = g.at("n_fft");
    s.n_mels = g.at("n_mels");
    s.fmin = g.at("fmin");
    s.fmax = g.at("fmax").is_null() ? -1.0 : double(g.at("fmax"));
    s.htk = g.at("htk");
    s.norm = g.at("norm") == "slaney" ? MelNorm::slaney : MelNorm::none;
    const MelFilterbank fb = make_mel_filterbank(s);
    REQUIRE(fb.n_mels == int(g.at("shape")[0]));
    REQUIRE(fb.n_bins == int(g.at("shape")[1]));
    // librosa's matrix from its non-zero entries (mel, bin, weight).
    const NpyArray sparse = read_npy(golden_dir() + "/" + std::string(g.at("file")));
    std::vector<float> want(size_t(fb.n_mels) * size_t(fb.n_bins), 0.0f);
    float wmax = 0;
    for (int64_t r = 0; r < sparse.shape[0]; ++r) {
      const int m = int(sparse.data[size_t(3 * r)]), k = int(sparse.data[size_t(3 * r + 1)]);
      want[size_t(m) * size_t(fb.n_bins) + size_t(k)] = sparse.data[size_t(3 * r + 2)];
      wmax = std::max(wmax, sparse.data[size_t(3 * r + 2)]);
    }
    const std::vector<float> got = fb.dense();
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(double(got[i]) - double(want[i])));
    std::cout << "mel filterbank " << std::string(g.at("name")) << ": max |ours - librosa| = " << err << " (max weight "
              << wmax << ")\n";
    test::require_close(got, want, 1e-7 * wmax, 2e-6, g.at("name"));
    // Same support: weights that are not negligible sit on the same bins (a 1e-15 rounding
    // residue where a triangle touches zero may be zero on one side and not the other).
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i)
      differ += (std::fabs(got[i]) > 1e-9f * wmax) != (std::fabs(want[i]) > 1e-9f * wmax);
    CHECK(differ == 0);
    // Each band is one contiguous run: weights outside [start, start + count) are zero.
    size_t outside = 0;
    for (int m = 0; m < fb.n_mels; ++m)
      for (int k = 0; k < fb.n_bins; ++k)
        if (k < fb.start[size_t(m)] || k >= fb.start[size_t(m)] + fb.count[size_t(m)])
          outside += want[size_t(m) * size_t(fb.n_bins) + size_t(k)] > 1e-9f * wmax;
    CHECK(outside == 0);
  }
}

TEST_CASE("frame functor pads like numpy.pad and windows with the periodic Hann", "[mel]") {
  // np.pad([1, 2, 3], 5, 'reflect') and np.pad([1, 2, 3, 4], 6, 'reflect').
  const std::vector<int> want3{2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2};
  for (int i = 0; i < 13; ++i) CHECK(reflect_index(i - 5, 3) + 1 == want3[size_t(i)]);
  const std::vector<int> want4{1, 2, 3, 4, 3, 2, 1, 2, 3, 4, 3, 2, 1, 2, 3, 4};
  for (int i = 0; i < 16; ++i) CHECK(reflect_index(i - 6, 4) + 1 == want4[size_t(i)]);
  // scipy.signal.get_window('hann', 8, fftbins=True).
  const std::vector<float> hann8{0.0f, 0.14644661f, 0.5f, 0.85355339f, 1.0f, 0.85355339f, 0.5f, 0.14644661f};
  test::require_close(hann_window(8, 8), hann8, 1e-7, 0, "hann 8");
  // win_length 4 in n_fft 8: librosa.util.pad_center puts hann(4) at offset 2.
  const std::vector<float> hann4in8{0, 0, 0.0f, 0.5f, 1.0f, 0.5f, 0, 0};
  test::require_close(hann_window(8, 4), hann4in8, 1e-7, 0, "hann 4 in 8");
  // Frames of [1..3] with n_fft 4, hop 2, centred, constant vs reflect: hand-written padded signals.
  const std::vector<float> x{1, 2, 3}, ones(4, 1.0f);
  const int64_t nf = stft_frame_count(3, 4, 2, true);
  REQUIRE(nf == 2);
  std::vector<float> frames(size_t(nf) * 4);
  cpu_for_2d(nf, 4, FrameFunctor{x.data(), ones.data(), frames.data(), 3, nf, 4, 2, 4, true, PadMode::reflect});
  CHECK(frames == std::vector<float>{3, 2, 1, 2, 1, 2, 3, 2});  // reflect-padded: 3 2 [1 2 3] 2 1
  cpu_for_2d(nf, 4, FrameFunctor{x.data(), ones.data(), frames.data(), 3, nf, 4, 2, 4, true, PadMode::constant});
  CHECK(frames == std::vector<float>{0, 0, 1, 2, 1, 2, 3, 0});
}

TEST_CASE("baseline settings give 128 x 1206 for 617400 samples", "[mel]") {
  const MelParams p = MelParams::from_config(Config());
  CHECK(p.n_fft == 1024);
  CHECK(p.hop_length == 512);
  CHECK(p.n_mels == 128);
  CHECK(p.pad_mode == PadMode::reflect);
  CHECK(p.fmax == 11025.0);
  CHECK_FALSE(p.db);
  CHECK(p.n_frames(617400) == 1206);  // 1 + 617400 // 512
  CHECK(p.n_frames(700) == 2);
  CHECK(stft_frame_count(1000, 1024, 512, false) == 0);
  Config c;
  c.apply_override("features.ref=\"max\"");
  c.apply_override("features.top_db=null");
  const MelParams q = MelParams::from_config(c);
  CHECK(q.db_params.ref_is_max);
  CHECK_FALSE(q.db_params.use_top_db);
}

TEST_CASE("mel of synthetic and awkward signals equals librosa", "[mel]") { check_synthetic_cases(Device::cpu); }

TEST_CASE("mel of a batch equals per-clip librosa", "[mel]") {
  // batch_a/b/c share their length and parameters: one compute() call, one FFTW plan.
  std::vector<float> audio;
  std::vector<const json*> cases;
  for (const auto& c : golden().at("cases"))
    if (std::string(c.at("name")).rfind("batch_", 0) == 0) cases.push_back(&c);
  REQUIRE(cases.size() == 3);
  const int64_t n = cases[0]->at("length");
  for (const json* c : cases) {
    const std::vector<float> y = synth(c->at("signal"), n);
    audio.insert(audio.end(), y.begin(), y.end());
  }
  const MelParams p = params_from(cases[0]->at("params"));
  MelExtractor ex(p, Device::cpu);
  const std::vector<float> mel = ex.compute_host(audio, 3, n);
  const int64_t per = int64_t(p.n_mels) * ex.n_frames(n);
  for (size_t b = 0; b < 3; ++b) {
    const NpyArray ref = read_npy(golden_dir() + "/" + std::string(cases[b]->at("file")));
    require_parity("batch[" + std::to_string(b) + "] " + std::string(cases[b]->at("name")),
                   compare(mel.data() + int64_t(b) * per, ref.data, p), p);
  }
}

TEST_CASE("mel of real clip excerpts equals librosa", "[mel]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  for (const auto& c : golden().at("cases")) {
    if (!c.contains("clip")) continue;
    const MelParams p = params_from(c.at("params"));
    const std::vector<float> y = excerpt(dir, c);
    const NpyArray ref = read_npy(golden_dir() + "/" + std::string(c.at("file")));
    MelExtractor ex(p, Device::cpu);
    const std::vector<float> mel = ex.compute_host(y, 1, int64_t(y.size()));
    REQUIRE(ref.shape == std::vector<int64_t>{p.n_mels, ex.n_frames(int64_t(y.size()))});
    require_parity(c.at("name"), compare(mel.data(), ref.data, p), p);
  }
}

TEST_CASE("live librosa parity on a whole clip", "[mel][live][python]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const std::string py = test::python_with_or_skip("librosa");
  if (py.empty()) return;
  const auto tmp = test::temp_dir("mel-live");
  const std::string clip = dir + "/genres/jazz/jazz.00004.flac";
  const Audio a = decode_audio(clip);
  struct Variant {
    std::string name, json_params;
    MelParams p;
  };
  MelParams base = MelParams::from_config(Config());
  MelParams db = base;
  db.db = true;
  db.db_params.ref_is_max = true;
  std::vector<Variant> variants{{"baseline", "{}", base},
                                {"db_refmax_top80", R"({"db": true, "ref": "max", "top_db": 80.0})", db}};
  for (const auto& v : variants) {
    const std::string out = (tmp / (v.name + ".npy")).string();
    const std::string cmd = "'" + py + "' '" + test::source_dir() + "/tools/golden/make_mel_golden.py' --live '" +
                            clip + "' '" + out + "' --params '" + v.json_params + "' 2>&1";
    std::string log;
    REQUIRE(test::run_command(cmd, &log) == 0);
    const NpyArray ref = read_npy(out);
    MelExtractor ex(v.p, Device::cpu);
    const std::vector<float> mel = ex.compute_host(a.samples, 1, int64_t(a.samples.size()));
    REQUIRE(ref.shape == std::vector<int64_t>{v.p.n_mels, ex.n_frames(int64_t(a.samples.size()))});
    require_parity("live jazz.00004 " + v.name, compare(mel.data(), ref.data, v.p), v.p);
  }
  std::filesystem::remove_all(tmp);
}

TEST_CASE("power_to_db functors equal librosa.power_to_db", "[mel]") {
  // librosa.power_to_db([[1e-12, 1e-3, 0.5, 2.0]], ref=np.max, top_db=30) and
  // (ref=1.0, top_db=None, amin=1e-6), printed by librosa 0.11.
  auto run = [](DbParams p, std::vector<float> x) {
    float clip_max = *std::max_element(x.begin(), x.end()), ref_db = 0, floor_db = 0;
    DbClipFunctor{&clip_max, &ref_db, &floor_db, p}(0);
    cpu_for_2d(1, int64_t(x.size()), PowerToDbFunctor{x.data(), &ref_db, &floor_db, int64_t(x.size()), p.amin});
    return x;
  };
  DbParams a;
  a.ref_is_max = true;
  a.top_db = 30;
  test::require_close(run(a, {1e-12f, 1e-3f, 0.5f, 2.0f}), std::vector<float>{-30.f, -30.f, -6.02059991f, 0.f}, 1e-5, 0,
                      "ref max top 30");
  DbParams b;
  b.use_top_db = false;
  b.amin = 1e-6f;
  test::require_close(run(b, {1e-12f, 1e-3f, 0.5f, 2.0f}), std::vector<float>{-60.f, -30.f, -3.01029996f, 3.01029996f},
                      1e-5, 0, "ref 1 no top");
  // Silence with ref=max: librosa gives 0 dB everywhere (amin/amin).
  test::require_close(run(a, {0.f, 0.f}), std::vector<float>{0.f, 0.f}, 0, 0, "silence");
}

TEST_CASE("band statistics and standardisation equal two-pass double sums", "[mel]") {
  // Two batches of (batch, n_mels=3, n_frames=5) values; statistics over all clips and frames.
  const int n_mels = 3, n_frames = 5;
  std::vector<float> b1(2 * n_mels * n_frames), b2(1 * n_mels * n_frames);
  for (size_t i = 0; i < b1.size(); ++i) b1[i] = float(1000.0 + std::sin(double(i)) * 10.0 + double(i % 7));
  for (size_t i = 0; i < b2.size(); ++i) b2[i] = float(1000.0 + std::cos(double(i)) * 3.0 - double(i % 4));
  MelBandStatsAccumulator acc(n_mels);
  acc.add(b1.data(), 2, n_frames);
  acc.add(b2.data(), 1, n_frames);
  const auto r = acc.finish();
  for (int m = 0; m < n_mels; ++m) {
    std::vector<double> v;
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < n_frames; ++t) v.push_back(b1[size_t((b * n_mels + m) * n_frames + t)]);
    for (int t = 0; t < n_frames; ++t) v.push_back(b2[size_t(m * n_frames + t)]);
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    for (double x : v) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / double(v.size()));  // numpy's np.std (ddof 0)
    CHECK(r.mean[size_t(m)] == Approx(mean).epsilon(1e-7));
    CHECK(r.std[size_t(m)] == Approx(sd).epsilon(1e-6));
    CHECK(acc.count(m) == 15);
  }
  // A non-finite feature (an overflowing clip) makes statistics that would turn every example into
  // NaNs: refused, naming the band.
  MelBandStatsAccumulator broken(n_mels);
  std::vector<float> b3 = b2;
  b3[size_t(1 * n_frames + 2)] = std::numeric_limits<float>::infinity();  // band 1
  broken.add(b3.data(), 1, n_frames);
  CHECK_THROWS_WITH(broken.finish(), Catch::Contains("not finite (band 1)"));
  // Order independence: the same rows added in another grouping give the same statistics.
  MelBandStatsAccumulator acc2(n_mels);
  acc2.add(b2.data(), 1, n_frames);
  acc2.add(b1.data(), 2, n_frames);
  const auto r2 = acc2.finish();
  for (int m = 0; m < n_mels; ++m) {
    CHECK(r2.mean[size_t(m)] == Approx(r.mean[size_t(m)]).epsilon(1e-12));
    CHECK(r2.std[size_t(m)] == Approx(r.std[size_t(m)]).epsilon(1e-9));
  }
  // The functor applies (x - mean) / std; a zero-spread band is only centred.
  std::vector<float> x = b2;
  const std::vector<float> mean{r.mean[0], r.mean[1], 5.0f}, inv = inverse_std({r.std[0], r.std[1], 0.0f});
  cpu_for_2d(n_mels, n_frames, StandardizeFunctor{x.data(), mean.data(), inv.data(), n_frames, n_mels});
  for (int m = 0; m < n_mels; ++m)
    for (int t = 0; t < n_frames; ++t) {
      const double raw = b2[size_t(m * n_frames + t)];
      const double want = m < 2 ? (raw - r.mean[size_t(m)]) / r.std[size_t(m)] : raw - 5.0;
      CHECK(x[size_t(m * n_frames + t)] == Approx(want).epsilon(1e-5));
    }
}

TEST_CASE("MelExtractor standardises with training statistics", "[mel]") {
  // Statistics from a "training set" of two noise clips, applied to a third clip.
  MelParams p = MelParams::from_config(Config());
  p.n_mels = 40;
  p.db = true;
  p.standardize = true;
  const int64_t n = 4000;
  json noise = json::array({{{"type", "noise"}, {"seed", 1}, {"amp", 0.3}}});
  std::vector<float> train = synth(noise, n);
  noise[0]["seed"] = 2;
  const std::vector<float> train2 = synth(noise, n);
  train.insert(train.end(), train2.begin(), train2.end());
  MelExtractor ex(p, Device::cpu);
  const int64_t nf = ex.n_frames(n);
  CHECK_THROWS_WITH(ex.compute_host(train, 2, n), Catch::Contains("band statistics"));
  std::vector<float> raw(size_t(2 * p.n_mels * nf));
  ex.compute_unstandardized(train.data(), 2, n, raw.data());
  MelBandStatsAccumulator acc(p.n_mels);
  ex.accumulate_band_stats(raw.data(), 2, nf, acc);
  const auto r = acc.finish();
  ex.set_band_stats({r.mean, r.std});
  const std::vector<float> z = ex.compute_host(train, 2, n);
  // Standardised training features: each band has mean 0 and std 1 over both clips.
  for (int m = 0; m < p.n_mels; ++m) {
    double s = 0, s2 = 0;
    for (int b = 0; b < 2; ++b)
      for (int64_t t = 0; t < nf; ++t) {
        const double v = z[size_t((b * p.n_mels + m) * nf + t)];
        s += v;
        s2 += v * v;
      }
    const double cnt = 2.0 * double(nf);
    CHECK(s / cnt == Approx(0.0).margin(1e-4));
    CHECK(std::sqrt(s2 / cnt - (s / cnt) * (s / cnt)) == Approx(1.0).epsilon(1e-4));
  }
}

TEST_CASE("npy files round-trip and read numpy-written files", "[mel][npy][python]") {
  const std::vector<float> data{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, 7.0f};
  const std::string bytes = npy_encode(data.data(), {2, 3});
  CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
  CHECK((bytes.size() - data.size() * 4) % 64 == 0);  // header padded to 64 bytes like numpy
  CHECK(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") != std::string::npos);
  CHECK(bytes[bytes.size() - data.size() * 4 - 1] == '\n');
  const NpyArray back = npy_decode(bytes, "mem");
  CHECK(back.shape == std::vector<int64_t>{2, 3});
  CHECK(back.data == data);
  CHECK(npy_encode(data.data(), {6}).find("'shape': (6,)") != std::string::npos);
  // A file numpy wrote (the golden filterbank) reads back with its shape.
  const NpyArray fb = read_npy(golden_dir() + "/fb_baseline.npy");
  CHECK(fb.shape.size() == 2);
  CHECK(fb.shape[1] == 3);
  CHECK_THROWS_WITH(npy_decode("not numpy at all", "x.npy"), Catch::Contains("x.npy"));
  CHECK_THROWS_WITH(npy_decode(bytes.substr(0, bytes.size() - 4), "cut.npy"), Catch::Contains("bytes"));
  // numpy itself reads what we write.
  const std::string py = test::python();
  if (py.empty()) {
    WARN("SKIPPED (numpy part): GENRELAB_PYTHON is not set");
    return;
  }
  const auto tmp = test::temp_dir("npy");
  write_npy((tmp / "a.npy").string(), data.data(), {2, 3});
  std::string out;
  REQUIRE(test::run_command("'" + py + "' -c \"import numpy as np; a = np.load('" + (tmp / "a.npy").string() +
                                "'); print(a.dtype, a.shape, repr(float(a[1, 0])), repr(float(a.sum())))\"",
                            &out) == 0);
  CHECK(out == "float32 (2, 3) 0.0 9.75\n");
  std::filesystem::remove_all(tmp);
}

TEST_CASE("features command writes librosa-equal mels for one and several files", "[mel][cli]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const auto tmp = test::temp_dir("features-cli");
  const std::string bin = test::genrelab_binary();
  const std::string a = dir + "/genres/classical/classical.00001.flac", b = dir + "/genres/metal/metal.00002.flac";
  // Several files with a configured length: (N, n_mels, frames), equal to the in-process CPU path.
  std::string log;
  const std::string out2 = (tmp / "two.npy").string();
  REQUIRE(test::run_command("'" + bin + "' features '" + a + "' '" + b + "' --out '" + out2 +
                                "' --device cpu --set dataset.clip_samples=66150 --set features.n_mels=64 2>&1",
                            &log) == 0);
  const NpyArray two = read_npy(out2);
  REQUIRE(two.shape == std::vector<int64_t>{2, 64, 130});
  MelParams p = MelParams::from_config(Config());
  p.n_mels = 64;
  MelExtractor ex(p, Device::cpu);
  DecodeOptions opt;
  opt.length = 66150;
  for (int i = 0; i < 2; ++i) {
    const Audio clip = decode_audio(i == 0 ? a : b, opt);
    const std::vector<float> want = ex.compute_host(clip.samples, 1, 66150);
    test::require_close(std::vector<float>(two.data.begin() + i * 64 * 130, two.data.begin() + (i + 1) * 64 * 130),
                        want, 0, 0, "cli clip " + std::to_string(i));
  }
  // One whole file: (n_mels, frames), frames from the file's full length.
  const std::string out1 = (tmp / "one.npy").string();
  REQUIRE(test::run_command("'" + bin + "' features '" + a + "' --out '" + out1 + "' --device cpu 2>&1", &log) == 0);
  const Audio whole = decode_audio(a);
  const NpyArray one = read_npy(out1);
  CHECK(one.shape == std::vector<int64_t>{128, stft_frame_count(int64_t(whole.samples.size()), 1024, 512, true)});
  // Different lengths without dataset.clip_samples: usage error (2) that says what to set.
  CHECK(test::run_command("'" + bin + "' features '" + a + "' '" + b + "' --out '" + out2 + "' --device cpu 2>&1",
                          &log) == (whole.samples.size() == decode_audio(b).samples.size() ? 0 : 2));
  if (whole.samples.size() != decode_audio(b).samples.size()) CHECK_THAT(log, Catch::Contains("dataset.clip_samples"));
  // A missing file: runtime error (1) naming it; --out missing: usage error (2).
  CHECK(test::run_command("'" + bin + "' features /nonexistent/x.wav --out '" + out1 + "' --device cpu 2>&1", &log) ==
        1);
  CHECK_THAT(log, Catch::Contains("/nonexistent/x.wav"));
  CHECK(test::run_command("'" + bin + "' features '" + a + "' --device cpu 2>&1", &log) == 2);
  CHECK(test::run_command(
            "'" + bin + "' features '" + a + "' --out '" + out1 + "' --device cpu --set features.n_melz=3 2>&1",
            &log) == 2);
  CHECK_THAT(log, Catch::Contains("n_mels"));
  // --device cpu never initialises CUDA: the device is not even queried (no "no usable GPU"
  // notice, which every query on a GPU-less machine prints), and no process opens a
  // /dev/nvidia* device file (what cuInit does on a GPU machine).
  REQUIRE(test::run_command("'" + bin + "' features '" + a + "' --out '" + out1 + "' --device cpu 2>&1", &log) == 0);
  CHECK(log.find("no usable GPU") == std::string::npos);
  if (test::run_command("command -v strace >/dev/null 2>&1") == 0) {
    if (test::run_command(
            "strace -f -e trace=open,openat '" + bin + "' features '" + a + "' --out '" + out1 + "' --device cpu 2>&1",
            &log) == 0)
      CHECK(log.find("/dev/nvidia") == std::string::npos);
    else
      WARN("strace cannot trace here (ptrace not permitted?): the /dev/nvidia check is skipped");
  } else {
    WARN("strace not installed: the /dev/nvidia check is skipped");
  }
  std::filesystem::remove_all(tmp);
}

// ---- GPU: the CUDA backend equals the CPU backend --------------------------------------------

TEST_CASE("GPU mel equals librosa on synthetic and awkward signals", "[mel][gpu]") {
  GENRELAB_REQUIRE_GPU();
  check_synthetic_cases(Device::cuda);
}

TEST_CASE("GPU mel equals CPU mel on real clips in one batch", "[mel][gpu]") {
  GENRELAB_REQUIRE_GPU();
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  // Four whole clips cut to the baseline length, for the baseline and a dB + 80-mel variant.
  const std::vector<std::string> clips{"blues/blues.00000.flac", "disco/disco.00001.flac", "jazz/jazz.00002.flac",
                                       "rock/rock.00004.flac"};
  DecodeOptions opt;
  opt.length = 617400;
  std::vector<float> audio;
  for (const auto& c : clips) {
    const Audio a = decode_audio(dir + "/genres/" + c, opt);
    audio.insert(audio.end(), a.samples.begin(), a.samples.end());
  }
  MelParams base = MelParams::from_config(Config());
  MelParams db = base;
  db.n_mels = 80;
  db.n_fft = 2048;
  db.db = true;
  db.db_params.ref_is_max = true;
  for (const MelParams& p : {base, db}) {
    MelExtractor cpu(p, Device::cpu), gpu(p, Device::cuda);
    const std::vector<float> want = cpu.compute_host(audio, 4, 617400);
    const std::vector<float> got = gpu.compute_host(audio, 4, 617400);
    REQUIRE(got.size() == size_t(4) * size_t(p.n_mels) * 1206);
    const int64_t per = int64_t(p.n_mels) * 1206;
    for (int b = 0; b < 4; ++b) {
      const std::vector<float> ref(want.begin() + b * per, want.begin() + (b + 1) * per);
      require_parity("gpu vs cpu " + clips[size_t(b)] + (p.db ? " dB" : ""), compare(got.data() + b * per, ref, p), p,
                     Device::cuda);
    }
  }
}

TEST_CASE("GPU band statistics equal CPU band statistics", "[mel][gpu]") {
  GENRELAB_REQUIRE_GPU();
  MelParams p = MelParams::from_config(Config());
  p.n_mels = 80;
  p.db = true;
  const int64_t n = 20000;
  std::vector<float> audio;
  for (int s = 1; s <= 3; ++s) {
    const std::vector<float> y = synth(json::array({{{"type", "noise"}, {"seed", s}, {"amp", 0.1 * s}},
                                                    {{"type", "sine"}, {"freq", 300.0 * s}, {"amp", 0.5}}}),
                                       n);
    audio.insert(audio.end(), y.begin(), y.end());
  }
  MelExtractor cpu(p, Device::cpu), gpu(p, Device::cuda);
  MelBandStatsAccumulator a_cpu(p.n_mels), a_gpu(p.n_mels);
  cpu.accumulate_band_stats_host(audio, 3, n, a_cpu);
  gpu.accumulate_band_stats_host(audio, 3, n, a_gpu);  // CUB row reductions on the device
  const auto r_cpu = a_cpu.finish(), r_gpu = a_gpu.finish();
  test::require_close(r_gpu.mean, r_cpu.mean, 1e-3, 1e-5, "band means (dB)");
  test::require_close(r_gpu.std, r_cpu.std, 1e-3, 1e-4, "band stds (dB)");
  // Standardised on the GPU with those statistics equals the CPU.
  p.standardize = true;
  MelExtractor cpu_z(p, Device::cpu), gpu_z(p, Device::cuda);
  cpu_z.set_band_stats({r_cpu.mean, r_cpu.std});
  gpu_z.set_band_stats({r_cpu.mean, r_cpu.std});
  test::require_close(gpu_z.compute_host(audio, 3, n), cpu_z.compute_host(audio, 3, n), 2e-4, 0, "standardised");
}

TEST_CASE("features warns once of empty mel filters, as librosa does", "[mel][cli]") {
  const auto tmp = test::temp_dir("features-empty-bands");
  const std::string wav = (tmp / "tone.wav").string(), npy = (tmp / "x.npy").string();
  std::vector<float> tone(22050);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * std::sin(2.0f * 3.14159265f * 440.0f * float(i) / 22050.0f);
  write_wav(wav, tone, 22050);
  // librosa.filters.mel(sr=22050, n_fft=1024, n_mels=600) has 117 all-zero rows (and warns
  // "Empty filters detected"); n_mels=128 has none.
  MelParams p = MelParams::from_config(Config());
  p.n_mels = 600;
  const MelFilterbank fb = make_mel_filterbank(p.filterbank_spec());
  CHECK(std::count(fb.count.begin(), fb.count.end(), 0) == 117);
  std::string log;
  REQUIRE(test::run_command("'" + test::genrelab_binary() + "' features '" + wav + "' --out '" + npy +
                                "' --device cpu --set features.n_mels=600 2>&1",
                            &log) == 0);
  CHECK(log.find("warning: features: 117 of the 600 mel bands (n_fft 1024, 22050 Hz) have empty filters") !=
        std::string::npos);
  REQUIRE(test::run_command(
              "'" + test::genrelab_binary() + "' features '" + wav + "' --out '" + npy + "' --device cpu 2>&1", &log) ==
          0);
  CHECK(log.find("empty filters") == std::string::npos);
}
