// Augmentation: Philox normals (exact host/device Box–Muller), plans and their keyed draws, each
// augmentation against hand-computed values or librosa (committed goldens from
// tools/golden/augment_golden.py, plus a live run of tools/golden/augment_parity.py on a real clip),
// edge cases, the `augment` command, and GPU-vs-CPU equality under [gpu].
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <tuple>

#include "genrelab/audio.h"
#include "genrelab/augment.h"
#include "genrelab/config.h"
#include "genrelab/ops/augment.h"
#include "genrelab/ops/philox.h"
#include "genrelab/ops/resample.h"
#include "genrelab/ops/stft.h"
#include "test_util.h"

#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/augment.h"
#endif

using namespace genrelab;

namespace {

std::string golden_dir() { return test::source_dir() + "/tests/data/golden/augment"; }

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  f.seekg(0, std::ios::end);
  const auto bytes = size_t(f.tellg());
  f.seekg(0);
  std::vector<float> v(bytes / sizeof(float));
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

json golden_meta() {
  std::ifstream f(golden_dir() + "/meta.json");
  REQUIRE(f.good());
  return json::parse(f);
}

// A simple log-mel reference (librosa.feature.melspectrogram defaults of 0.11: Hann, centred,
// zero padding, power 2, Slaney mel scale and area norm), independent of the project's features.
struct MelRef {
  int sr = 22050, n_fft = 2048, hop = 512, n_mels = 128;
  std::vector<double> fb;  // (n_mels, bins)

  static double hz_to_mel(double f) {
    return f < 1000.0 ? 3.0 * f / 200.0 : 15.0 + 27.0 * std::log(f / 1000.0) / std::log(6.4);
  }
  static double mel_to_hz(double m) {
    return m < 15.0 ? 200.0 * m / 3.0 : 1000.0 * std::exp((m - 15.0) * std::log(6.4) / 27.0);
  }
  MelRef() {
    const int bins = n_fft / 2 + 1;
    fb.assign(size_t(n_mels * bins), 0.0);
    std::vector<double> pts(static_cast<size_t>(n_mels + 2));
    const double top = hz_to_mel(sr / 2.0);
    for (int i = 0; i < n_mels + 2; ++i) pts[size_t(i)] = mel_to_hz(top * i / (n_mels + 1));
    for (int m = 0; m < n_mels; ++m)
      for (int k = 0; k < bins; ++k) {
        const double f = double(k) * sr / n_fft;
        const double lo = (f - pts[size_t(m)]) / (pts[size_t(m + 1)] - pts[size_t(m)]);
        const double hi = (pts[size_t(m + 2)] - f) / (pts[size_t(m + 2)] - pts[size_t(m + 1)]);
        fb[size_t(m * bins + k)] = std::max(0.0, std::min(lo, hi)) * 2.0 / (pts[size_t(m + 2)] - pts[size_t(m)]);
      }
  }
  // power mel: (n_mels, frames)
  std::vector<double> power(const std::vector<float>& x, int64_t* frames_out) const {
    const int bins = n_fft / 2 + 1;
    const int64_t frames = stft_frame_count(int64_t(x.size()), n_fft, hop, true);
    const auto w = hann_window(n_fft, n_fft);
    std::vector<float> fr(static_cast<size_t>(frames * n_fft));
    const FrameFunctor f{x.data(), w.data(), fr.data(), int64_t(x.size()), frames, n_fft, hop, n_fft, true,
                         PadMode::constant};
    for (int64_t r = 0; r < frames; ++r)
      for (int k = 0; k < n_fft; ++k) f(r, k);
    std::vector<std::complex<float>> spec(static_cast<size_t>(frames * bins));
    CpuRealFft(n_fft, frames, n_fft).forward(fr.data(), spec.data());
    std::vector<double> mel(static_cast<size_t>(n_mels * frames), 0.0);
    for (int64_t t = 0; t < frames; ++t)
      for (int m = 0; m < n_mels; ++m) {
        double acc = 0;
        for (int k = 0; k < bins; ++k) acc += fb[size_t(m * bins + k)] * std::norm(std::complex<double>(spec[size_t(t * bins + k)]));
        mel[size_t(m * frames + t)] = acc;
      }
    *frames_out = frames;
    return mel;
  }
};

// Mean |dB(ours) − dB(ref)| over the cells of ref above (max − 60 dB); both in dB re ref's max.
double mean_abs_db(const std::vector<float>& ours, const std::vector<float>& ref) {
  static const MelRef mel;
  int64_t f1 = 0, f2 = 0;
  const auto a = mel.power(ours, &f1), b = mel.power(ref, &f2);
  REQUIRE(f1 == f2);
  const double mx = *std::max_element(b.begin(), b.end());
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double db_ref = 10 * std::log10(std::max(b[i], 1e-10) / mx);
    if (db_ref <= -60) continue;
    const double db_our = 10 * std::log10(std::max(a[i], 1e-10) / mx);
    sum += std::fabs(db_our - db_ref);
    ++count;
  }
  REQUIRE(count > 0);
  return sum / double(count);
}

// The lag in [−max_lag, max_lag] samples at which `ours` best matches `ref`: the argmax over lag of
// Σ ours[i + lag]·ref[i] (0 for aligned waveforms).
int64_t best_lag(const std::vector<float>& ours, const std::vector<float>& ref, int64_t max_lag) {
  REQUIRE(ours.size() == ref.size());
  const int64_t n = int64_t(ref.size());
  int64_t best = 0;
  double best_c = -INFINITY;
  for (int64_t lag = -max_lag; lag <= max_lag; ++lag) {
    double c = 0;
    for (int64_t i = std::max<int64_t>(0, -lag); i < std::min(n, n - lag); ++i)
      c += double(ours[size_t(i + lag)]) * ref[size_t(i)];
    if (c > best_c) best = lag, best_c = c;
  }
  return best;
}

double ulp_of(double v) {
  const float f = float(std::fabs(v));
  return double(std::nextafter(f, INFINITY)) - double(f);
}

double rms(const std::vector<float>& x, size_t from = 0, size_t to = SIZE_MAX) {
  to = std::min(to, x.size());
  double s = 0;
  for (size_t i = from; i < to; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s / double(std::max<size_t>(1, to - from)));
}

AugmentedExample example_with(AugmentKind kind, double value, uint32_t clip = 7) {
  AugmentedExample e;
  e.clip_key = clip;
  e.steps.push_back({kind, value});
  return e;
}

}  // namespace

// ---- Philox normals ------------------------------------------------------------------------------

TEST_CASE("philox normal matches a double-precision Box-Muller within a few ulp", "[augment][philox]") {
  const PhiloxStream s(1234, RngPurpose::noise, 5, 9);
  double worst_ulps = 0;
  for (uint64_t i = 0; i < 200000; ++i) {
    const auto blk = s.block(i >> 2);
    const unsigned pair = unsigned(i >> 1) & 1u;
    const double u1 = double((blk.v[2 * pair] >> 8) + 1u) / 16777216.0;
    const double u2 = double(blk.v[2 * pair + 1] >> 8) / 16777216.0;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double want = (i & 1) ? r * std::sin(2 * M_PI * u2) : r * std::cos(2 * M_PI * u2);
    const double got = s.normal(i);
    const double err = std::fabs(got - want) / std::max(ulp_of(want), 1e-30);
    if (std::fabs(want) > 1e-30) worst_ulps = std::max(worst_ulps, err);
  }
  // edge words: u1 = 1 (r = 0), the smallest u1 (r = 5.77), every octant boundary of the angle
  for (uint32_t k = 0; k < 8; ++k) {
    float z0, z1;
    exact::box_muller(0xffffff00u, (k << 29), &z0, &z1);
    CHECK(z0 == 0.0f);
    exact::box_muller(0u, (k << 29), &z0, &z1);
    const double r = std::sqrt(-2.0 * std::log(1.0 / 16777216.0));
    CHECK(std::fabs(z0 - r * std::cos(k * M_PI / 4)) <= 4 * ulp_of(r) + 1e-6);
    CHECK(std::fabs(z1 - r * std::sin(k * M_PI / 4)) <= 4 * ulp_of(r) + 1e-6);
  }
  for (float u : {1.0f, 0.5f, 0.75f, 1e-7f, 0.999999f, 0.70710677f, 0.70710683f})
    CHECK(std::fabs(exact::log(u) - std::log(double(u))) <= 2 * ulp_of(std::log(double(u))) + 1e-12);
  WARN("philox normal: worst error vs double Box-Muller " << worst_ulps << " ulp over 200000 draws");
  CHECK(worst_ulps <= 4.0);
}

TEST_CASE("philox normal has standard normal statistics", "[augment][philox]") {
  const PhiloxStream s(0, RngPurpose::noise, 0, 0);
  const int64_t n = 1000000;
  std::vector<double> z(static_cast<size_t>(n));
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    z[size_t(i)] = s.normal(uint64_t(i));
    mean += z[size_t(i)];
  }
  mean /= double(n);
  double var = 0;
  for (double v : z) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / double(n - 1));
  std::sort(z.begin(), z.end());
  double ks = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double cdf = 0.5 * std::erfc(-z[size_t(i)] / std::sqrt(2.0));
    ks = std::max({ks, std::fabs(cdf - double(i) / n), std::fabs(cdf - double(i + 1) / n)});
  }
  // chi-square over 50 equiprobable bins (boundaries from the normal quantiles by bisection)
  const int bins = 50;
  std::vector<double> edges;
  for (int b = 1; b < bins; ++b) {
    double lo = -10, hi = 10;
    for (int it = 0; it < 100; ++it) {
      const double mid = 0.5 * (lo + hi);
      (0.5 * std::erfc(-mid / std::sqrt(2.0)) < double(b) / bins ? lo : hi) = mid;
    }
    edges.push_back(lo);
  }
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  for (double v : z) counts[size_t(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin())]++;
  double chi2 = 0;
  const double expect = double(n) / bins;
  for (auto c : counts) chi2 += (double(c) - expect) * (double(c) - expect) / expect;
  WARN("philox normal, 1e6 draws: mean " << mean << ", std " << sd << ", KS D " << ks << " (sqrt(n) D = "
                                         << ks * std::sqrt(double(n)) << "), chi2(49 dof) " << chi2);
  CHECK(std::fabs(mean) < 5.0 / std::sqrt(double(n)));
  CHECK(std::fabs(sd - 1.0) < 0.005);
  CHECK(ks * std::sqrt(double(n)) < 1.95);  // Kolmogorov p = 0.001
  CHECK(chi2 < 85.4);                        // chi-square 49 dof, p = 0.001
}

#if GENRELAB_HAVE_CUDA
TEST_CASE("philox normal is bit-identical on GPU and CPU", "[augment][philox][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const PhiloxStream s(77, RngPurpose::noise, 3, 1);
  const int64_t n = 1 << 20;
  cuda::Stream stream;
  cuda::DeviceBuffer<float> d(static_cast<size_t>(n));
  cuda::fill_normal(s, d.data(), n, stream);
  std::vector<float> got(static_cast<size_t>(n));
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(got.data(), d.data(), d.bytes(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float c = s.normal(uint64_t(i));
    if (std::memcmp(&got[size_t(i)], &c, sizeof c) != 0) ++differ;
  }
  CHECK(differ == 0);
}
#endif

#if GENRELAB_HAVE_CUDA
// The pitch shift's filters built on the device (cuda::build_polyphase_banks) against
// make_polyphase_bank on the host, row by row, bit for bit (ops::exact keeps the device's
// rounding the host's).
TEST_CASE("polyphase banks built on the GPU equal the CPU's bit for bit", "[augment][resample][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const ResampleFilterDesign d{};
  const std::vector<double> scale = {d.rolloff, d.rolloff * std::pow(2.0, -3.3 / 12), d.rolloff * 0.5};
  const PolyphaseBank geo = pitch_shift_bank_geometry(scale);
  const int64_t row = int64_t(geo.phases + 1) * geo.taps;
  const std::vector<float>& table = resample_table(d);
  cuda::Stream stream;
  cuda::DeviceBuffer<float> table_d(table.size()), bank_d(scale.size() * size_t(row));
  cuda::DeviceBuffer<double> scale_d(scale.size());
  cuda::copy_to_device(table_d.data(), table.data(), table.size());
  cuda::copy_to_device(scale_d.data(), scale.data(), scale.size());
  cuda::build_polyphase_banks(d, table_d.data(), scale_d.data(), int64_t(scale.size()), geo.phases, geo.half,
                              bank_d.data(), stream);
  std::vector<float> got(bank_d.size());
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(got.data(), bank_d.data(), bank_d.bytes(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  for (size_t b = 0; b < scale.size(); ++b) {
    const std::vector<float> want = make_polyphase_bank(d, scale[b], geo.phases, geo.half);
    int64_t differ = 0;
    for (int64_t i = 0; i < row; ++i)
      if (std::memcmp(&got[b * size_t(row) + size_t(i)], &want[size_t(i)], sizeof(float)) != 0) ++differ;
    INFO("row " << b);
    CHECK(differ == 0);
  }
}
#endif

// ---- plans and draws -----------------------------------------------------------------------------

TEST_CASE("augment offline plan makes the baseline 2397 examples", "[augment]") {
  Config c;
  c.apply_override("augment.noise.p=0.7");
  c.apply_override("augment.pitch_shift.p=0.5");
  const AugmentSettings s = AugmentSettings::from_config(c);
  std::vector<uint32_t> keys(799);
  std::iota(keys.begin(), keys.end(), 0u);
  const auto plan = plan_offline(s, keys);
  REQUIRE(plan.size() == 2397);
  int noise_applied = 0, pitch_applied = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& e = plan[i];
    CHECK(e.source == int64_t(i / 3));
    CHECK(e.steps.size() <= 1);
    if (i % 3 == 0) { CHECK(e.copy_of == -1); CHECK(e.steps.empty()); }
    for (const auto& st : e.steps) {
      CHECK(int(st.kind) == e.copy_of);
      if (st.kind == AugmentKind::noise) {
        ++noise_applied;
        CHECK(st.value >= 0.001);
        CHECK(st.value < 0.015);
      } else {
        ++pitch_applied;
        CHECK(st.value >= -4);
        CHECK(st.value < 12);
      }
    }
  }
  // binomial: 799·0.7 = 559.3 (sd 13), 799·0.5 = 399.5 (sd 14)
  CHECK(std::abs(noise_applied - 559) < 55);
  CHECK(std::abs(pitch_applied - 400) < 60);
  // same seed → same plan; the plan is a pure function of the keys
  const auto again = plan_offline(s, keys);
  for (size_t i = 0; i < plan.size(); ++i) {
    REQUIRE(again[i].steps.size() == plan[i].steps.size());
    for (size_t j = 0; j < plan[i].steps.size(); ++j) CHECK(again[i].steps[j].value == plan[i].steps[j].value);
  }
}

TEST_CASE("augment online plan chains augmentations fresh per epoch", "[augment]") {
  AugmentSettings s;
  s.mode = AugmentSettings::Mode::online;
  s.noise.p = 0.5;
  s.gain.p = 1.0;
  s.time_shift.p = 0.25;
  std::vector<uint32_t> keys(400);
  std::iota(keys.begin(), keys.end(), 100u);
  const auto e0 = plan_augment(s, keys, 0), e1 = plan_augment(s, keys, 1);
  REQUIRE(e0.size() == 400);
  int gain = 0, noise = 0, shift = 0, same_gain = 0;
  for (size_t i = 0; i < e0.size(); ++i) {
    // chain order: time_shift, gain, noise
    for (size_t j = 1; j < e0[i].steps.size(); ++j) CHECK(int(e0[i].steps[j - 1].kind) < int(e0[i].steps[j].kind));
    for (const auto& st : e0[i].steps) {
      gain += st.kind == AugmentKind::gain;
      noise += st.kind == AugmentKind::noise;
      shift += st.kind == AugmentKind::time_shift;
    }
    double g0 = 0, g1 = 0;
    for (const auto& st : e0[i].steps) if (st.kind == AugmentKind::gain) g0 = st.value;
    for (const auto& st : e1[i].steps) if (st.kind == AugmentKind::gain) g1 = st.value;
    same_gain += g0 == g1;
  }
  CHECK(gain == 400);
  CHECK(std::abs(noise - 200) < 40);
  CHECK(std::abs(shift - 100) < 35);
  CHECK(same_gain == 0);  // fresh draws each epoch
  // the draw of one clip does not depend on which other clips are planned
  const auto single = plan_online(s, {keys[17]}, 0);
  REQUIRE(single[0].steps.size() == e0[17].steps.size());
  for (size_t j = 0; j < single[0].steps.size(); ++j) CHECK(single[0].steps[j].value == e0[17].steps[j].value);
}

TEST_CASE("augment settings reject a minimum above its maximum", "[augment]") {
  Config c;
  c.apply_override("augment.gain.min_db=6");
  c.apply_override("augment.gain.max_db=-6");
  try {
    AugmentSettings::from_config(c);
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()).find("augment.gain.min_db") != std::string::npos);
  }
}

// ---- element-wise augmentations ------------------------------------------------------------------

TEST_CASE("noise adds amplitude times a standard normal", "[augment]") {
  AugmentSettings s;
  s.seed = 42;
  const int64_t n = 200000;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = 0.3f * float(std::sin(0.01 * double(i)));
  for (double amp : {0.001, 0.015, 0.5}) {
    const auto e = example_with(AugmentKind::noise, amp);
    const auto y = apply_augment_cpu(e, s, x.data(), n, 22050);
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = double(y[size_t(i)]) - x[size_t(i)];
      mean += d;
      sq += d * d;
    }
    mean /= double(n);
    const double sd = std::sqrt(sq / double(n) - mean * mean);
    INFO("amplitude " << amp << ": mean " << mean << " std " << sd);
    CHECK(std::fabs(mean) < 5 * amp / std::sqrt(double(n)));
    CHECK(std::fabs(sd / amp - 1.0) < 0.01);
    // exactly x + a·z with the example's stream, one fma
    const PhiloxStream rng = e.noise_stream(s.seed);
    for (int64_t i = 0; i < n; i += 997) CHECK(y[size_t(i)] == std::fma(float(amp), rng.normal(uint64_t(i)), x[size_t(i)]));
  }
  // another clip or seed gives other noise
  const auto a = apply_augment_cpu(example_with(AugmentKind::noise, 0.01, 1), s, x.data(), 1000, 22050);
  const auto b = apply_augment_cpu(example_with(AugmentKind::noise, 0.01, 2), s, x.data(), 1000, 22050);
  CHECK(a != b);
}

TEST_CASE("gain and time shift match hand-computed values", "[augment]") {
  AugmentSettings s;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto g = apply_augment_cpu(example_with(AugmentKind::gain, -6.0), s, x.data(), 10, 22050);
  for (size_t i = 0; i < x.size(); ++i) CHECK(g[i] == Approx(x[i] * 0.5011872336).epsilon(1e-6));
  const auto g2 = apply_augment_cpu(example_with(AugmentKind::gain, 20.0), s, x.data(), 10, 22050);
  CHECK(g2[3] == Approx(40.0));
  // np.roll(x, round(0.3·10) = 3) → [8 9 10 1 2 ...]
  s.time_shift.rollover = true;
  auto r = apply_augment_cpu(example_with(AugmentKind::time_shift, 0.3), s, x.data(), 10, 22050);
  CHECK(r == std::vector<float>{8, 9, 10, 1, 2, 3, 4, 5, 6, 7});
  r = apply_augment_cpu(example_with(AugmentKind::time_shift, -0.2), s, x.data(), 10, 22050);
  CHECK(r == std::vector<float>{3, 4, 5, 6, 7, 8, 9, 10, 1, 2});
  s.time_shift.rollover = false;
  r = apply_augment_cpu(example_with(AugmentKind::time_shift, 0.3), s, x.data(), 10, 22050);
  CHECK(r == std::vector<float>{0, 0, 0, 1, 2, 3, 4, 5, 6, 7});
  r = apply_augment_cpu(example_with(AugmentKind::time_shift, -0.2), s, x.data(), 10, 22050);
  CHECK(r == std::vector<float>{3, 4, 5, 6, 7, 8, 9, 10, 0, 0});
  // round half to even like Python's round(): 0.25·10 = 2.5 → 2, 0.35·10 = 3.5 → 4
  CHECK(shift_samples(0.25, 10) == 2);
  CHECK(shift_samples(0.35, 10) == 4);
  r = apply_augment_cpu(example_with(AugmentKind::time_shift, 1.0), s, x.data(), 10, 22050);
  CHECK(r == std::vector<float>(10, 0.0f));
}

TEST_CASE("round_half_even is std::nearbyint bit for bit", "[augment]") {
  std::vector<double> xs = {0.0,
                            -0.0,
                            0.5,
                            -0.5,
                            1.5,
                            -1.5,
                            2.5,
                            -2.5,
                            0.49999999999999994,
                            -0.3,
                            3.7,
                            -1e-300,
                            4503599627370495.5,
                            -4503599627370495.5,
                            4503599627370496.0,
                            9007199254740993.0,
                            1e300,
                            -1e300,
                            INFINITY,
                            -INFINITY};
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1e6, 1e6);
  for (int i = 0; i < 10000; ++i) xs.push_back(std::ldexp(u(rng), -(i % 40)));  // down to 2^-39 of the range
  for (const double x : xs) {
    const double a = round_half_even(x), b = std::nearbyint(x);
    INFO("x = " << x);
    CHECK(std::memcmp(&a, &b, sizeof a) == 0);
  }
  CHECK(std::isnan(round_half_even(NAN)));
}

TEST_CASE("chained steps read the previous step's output", "[augment]") {
  AugmentSettings s;
  s.time_shift.rollover = false;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  AugmentedExample e;
  e.steps = {
      {AugmentKind::time_shift, 0.3}, {AugmentKind::gain, 20.0 * std::log10(2.0)}, {AugmentKind::time_shift, -0.1}};
  const auto y = apply_augment_cpu(e, s, x.data(), 10, 22050);
  const float f = gain_factor(20.0 * std::log10(2.0));
  std::vector<float> want = {0, 0, 1, 2, 3, 4, 5, 6, 7, 0};
  for (float& v : want) v *= f;
  CHECK(y == want);
  CHECK(x == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});  // the source is left alone
}

TEST_CASE("spec_mask masks the drawn intervals with zeros", "[augment]") {
  AugmentSettings s;
  s.seed = 3;
  s.spec_mask = {1.0, 2, 40, 2, 16};
  for (auto shape : {std::pair<int64_t, int64_t>{128, 1206}, {80, 33}, {128, 7}}) {
    const int64_t n_mels = shape.first, n_frames = shape.second, batch = 4;
    std::vector<float> mel(static_cast<size_t>(batch * n_mels * n_frames), 1.0f);
    std::vector<AugmentedExample> ex(static_cast<size_t>(batch));
    std::vector<const AugmentedExample*> ptrs;
    for (int64_t b = 0; b < batch; ++b) {
      ex[size_t(b)].clip_key = uint32_t(b);
      if (b != 2) ex[size_t(b)].steps.push_back({AugmentKind::spec_mask, 0});
      ptrs.push_back(&ex[size_t(b)]);
    }
    apply_spec_mask_cpu(mel.data(), batch, n_mels, n_frames, s, ptrs);
    for (int64_t b = 0; b < batch; ++b) {
      // expected geometry, drawn independently here from the documented recipe
      const PhiloxStream rng = ex[size_t(b)].spec_mask_stream(s.seed);
      std::vector<bool> tmask(static_cast<size_t>(n_frames), false), fmask(size_t(n_mels), false);
      for (int m = 0; m < 4; ++m) {
        const bool time = m < 2;
        const int64_t extent = time ? n_frames : n_mels;
        int64_t w = int64_t(std::floor(rng.uniform_double(2 * uint64_t(m)) * ((time ? 40 : 16) + 1)));
        w = std::min(w, extent);
        const int64_t a = int64_t(std::floor(rng.uniform_double(2 * uint64_t(m) + 1) * double(extent - w + 1)));
        CHECK(a >= 0);
        CHECK(a + w <= extent);
        for (int64_t i = a; i < a + w; ++i) (time ? tmask : fmask)[size_t(i)] = true;
      }
      int64_t wrong = 0;
      for (int64_t m = 0; m < n_mels; ++m)
        for (int64_t t = 0; t < n_frames; ++t) {
          const float v = mel[size_t((b * n_mels + m) * n_frames + t)];
          const float want = (b != 2 && (tmask[size_t(t)] || fmask[size_t(m)])) ? 0.0f : 1.0f;
          wrong += v != want;
        }
      CHECK(wrong == 0);
    }
  }
}

// ---- phase vocoder, time stretch, pitch shift vs librosa -----------------------------------------

TEST_CASE("phase vocoder matches librosa.phase_vocoder on complex STFT values", "[augment]") {
  const json meta = golden_meta();
  const int n_fft = meta["pv"]["n_fft"], hop = meta["pv"]["hop"];
  const int64_t frames = meta["pv_frames"];
  const int bins = n_fft / 2 + 1;
  const auto raw = read_f32(golden_dir() + "/pv_in.f32");
  REQUIRE(int64_t(raw.size()) == frames * bins * 2);
  std::vector<std::complex<float>> spec(static_cast<size_t>(frames * bins));
  std::memcpy(static_cast<void*>(spec.data()), raw.data(), raw.size() * sizeof(float));
  for (double rate : meta["pv_rates"].get<std::vector<double>>()) {
    std::ostringstream name;
    name << "pv_rate" << rate;
    const auto want = read_f32(golden_dir() + "/" + name.str() + ".f32");
    const auto got = phase_vocoder(spec, frames, n_fft, hop, rate);
    REQUIRE(int64_t(got.size()) == int64_t(meta[name.str() + "_frames"]) * bins);
    std::vector<float> g(got.size() * 2);
    std::memcpy(g.data(), got.data(), g.size() * sizeof(float));
    float peak = 0;
    for (float v : want) peak = std::max(peak, std::fabs(v));
    test::require_close(g, want, 2e-5 * peak, 1e-4, name.str());
  }
}

TEST_CASE("time stretch matches librosa.effects.time_stretch", "[augment]") {
  const json meta = golden_meta();
  const auto x = read_f32(golden_dir() + "/signal.f32");
  for (double rate : meta["stretch_rates"].get<std::vector<double>>()) {
    std::ostringstream name;
    name << "stretch_rate" << rate;
    const auto want = read_f32(golden_dir() + "/" + name.str() + ".f32");
    const auto got = time_stretch(x, rate);
    REQUIRE(got.size() == want.size());
    test::require_close(got, want, 2e-5, 1e-4, name.str());
  }
}

// Mean |log-mel difference| from librosa (dB) that a pitch shift or time stretch may have. Measured:
// 0.052-0.073 dB on the golden signal (-4, 3, 12 semitones), 0.010-0.069 dB on a real clip (pitch
// -4 to 12, stretch 0.8 and 1.25); the same output 64 samples late is 0.43-0.59 dB away. A clip
// shorter than n_fft: 0.066-0.131 dB (-24, 7, 24 semitones).
constexpr double kLibrosaLogMelDb = 0.15;
constexpr double kLibrosaShortClipLogMelDb = 0.25;

TEST_CASE("pitch shift matches librosa.effects.pitch_shift on log-mel", "[augment]") {
  const json meta = golden_meta();
  const auto x = read_f32(golden_dir() + "/signal.f32");
  for (int steps : meta["pitch_steps"].get<std::vector<int>>()) {
    const auto want = read_f32(golden_dir() + "/pitch_" + std::to_string(steps) + ".f32");
    const auto got = pitch_shift(x, 22050, steps);
    REQUIRE(got.size() == x.size());
    const double err = mean_abs_db(got, want);
    WARN("pitch shift " << steps << " semitones, synthetic signal: mean |log-mel difference| vs librosa " << err << " dB");
    CHECK(err < kLibrosaLogMelDb);
    CHECK(best_lag(got, want, 256) == 0);
    // The bound tells misalignment apart: the same output 64 samples late fails it.
    std::vector<float> late(got.size(), 0.0f);
    std::copy(got.begin(), got.end() - 64, late.begin() + 64);
    CHECK(best_lag(late, want, 256) == 64);
    CHECK(mean_abs_db(late, want) > kLibrosaLogMelDb);
  }
}

TEST_CASE("pitch shift and time stretch edge cases", "[augment]") {
  // silence stays silence
  const std::vector<float> zeros(30000, 0.0f);
  for (double n : {-24.0, -4.0, 12.0, 24.0}) CHECK(pitch_shift(zeros, 22050, n) == zeros);
  CHECK(time_stretch(zeros, 1.3) == std::vector<float>(23077, 0.0f));
  // DC: librosa 0.11 keeps a constant 0.25 away from the edges only for some rates; it gives
  // 0.25 for −4 semitones, 0.227263 for +3 and 0.218201 for +12 (the vocoder re-phases the
  // window's leakage into bin 1), and 0.2272627 for time_stretch rate 0.8. So must we.
  const std::vector<float> dc(30000, 0.25f);
  for (const auto& [n, want] : std::map<double, double>{{-4.0, 0.25}, {3.0, 0.227263}, {12.0, 0.218201}}) {
    const auto y = pitch_shift(dc, 22050, n);
    for (size_t i = 4096; i < 20000; i += 101) CHECK(y[i] == Approx(want).margin(1e-5));
  }
  const auto ts = time_stretch(dc, 0.8);
  for (size_t i = 2048; i + 2048 < ts.size(); i += 101) CHECK(ts[i] == Approx(0.2272627).margin(1e-5));
  // range ends and extremes keep the length, stay finite and keep librosa's level for a 440 Hz
  // tone (rms ratio out/in over samples 8192..30000 from librosa.effects.pitch_shift: −24: 0.9954,
  // −4: 1.0000, 12: 0.8722, 24: 0.3374)
  std::vector<float> tone(44100);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * float(std::sin(2 * M_PI * 440.0 * double(i) / 22050));
  const std::map<double, double> librosa_level = {{-24.0, 0.9954}, {-4.0, 1.0000}, {12.0, 0.8722}, {24.0, 0.3374}};
  for (const auto& [n, want] : librosa_level) {
    const auto y = pitch_shift(tone, 22050, n);
    REQUIRE(y.size() == tone.size());
    for (float v : y) REQUIRE(std::isfinite(v));
    const double level = rms(y, 8192, 30000) / rms(tone, 8192, 30000);
    INFO(n << " semitones: rms ratio " << level << ", librosa " << want);
    CHECK(level == Approx(want).epsilon(0.03));
  }
  // clips shorter than n_fft
  for (size_t len : {1u, 100u, 1000u, 2047u}) {
    std::vector<float> s(len, 0.1f);
    for (double n : {-24.0, 7.0, 24.0}) {
      const auto y = pitch_shift(s, 22050, n);
      REQUIRE(y.size() == len);
      for (float v : y) CHECK(std::isfinite(v));
    }
    const auto t = time_stretch(s, 1.25);
    CHECK(t.size() == size_t(std::max<int64_t>(1, int64_t(std::nearbyint(double(len) / 1.25)))));
  }
  // a clip shorter than n_fft against librosa (committed goldens)
  {
    const json meta = golden_meta();
    const auto sig = read_f32(golden_dir() + "/signal.f32");
    const std::vector<float> shortx(sig.begin(), sig.begin() + int64_t(meta["short_n"]));
    const auto want = read_f32(golden_dir() + "/short_stretch.f32");
    test::require_close(time_stretch(shortx, 1.25), want, 2e-5, 1e-4, "short time stretch");
    for (int steps : meta["short_steps"].get<std::vector<int>>()) {
      const auto ref = read_f32(golden_dir() + "/short_pitch_" + std::to_string(steps) + ".f32");
      const auto got = pitch_shift(shortx, 22050, steps);
      const double err = mean_abs_db(got, ref);
      INFO("short clip, " << steps << " semitones: " << err << " dB");
      CHECK(err < kLibrosaShortClipLogMelDb);
      CHECK(best_lag(got, ref, 256) == 0);
    }
  }
  // an augmented example keeps the clip length for time stretch (fix_length)
  AugmentSettings st;
  const auto y = apply_augment_cpu(example_with(AugmentKind::time_stretch, 1.25), st, tone.data(), int64_t(tone.size()), 22050);
  REQUIRE(y.size() == tone.size());
  const auto direct = time_stretch(tone, 1.25);
  for (size_t i = 0; i < direct.size(); i += 37) CHECK(y[i] == direct[i]);
  for (size_t i = direct.size(); i < y.size(); ++i) CHECK(y[i] == 0.0f);
}

TEST_CASE("pitch shift and time stretch match librosa on a real clip", "[augment][live][python]") {
  GENRELAB_REQUIRE_TEST_AUDIO(audio_dir);
  const std::string py = test::python_with_or_skip("librosa");
  if (py.empty()) return;
  std::string clip;
  for (const auto& e : std::filesystem::recursive_directory_iterator(audio_dir))
    if (e.is_regular_file() && e.path().extension() == ".flac")
      if (clip.empty() || e.path().string() < clip) clip = e.path().string();
  REQUIRE(!clip.empty());
  DecodeOptions opt;
  opt.sample_rate = 22050;
  Audio a = decode_audio(clip, opt);
  REQUIRE(a.samples.size() > 22050 * 15);
  // a 5 s excerpt from 10 s in
  const std::vector<float> x(a.samples.begin() + 220500, a.samples.begin() + 220500 + 110250);
  const auto dir = test::temp_dir("augment-live");
  write_wav((dir / "in.wav").string(), x, 22050);
  std::string args;
  for (double n : {-4.0, -1.5, 3.0, 7.0, 12.0}) {
    std::ostringstream name;
    name << "pitch_" << n << ".wav";
    write_wav((dir / name.str()).string(), pitch_shift(x, 22050, n), 22050);
    args += " pitch_shift:" + std::to_string(n) + ":" + (dir / name.str()).string();
  }
  for (double r : {0.8, 1.25}) {
    std::ostringstream name;
    name << "stretch_" << r << ".wav";
    write_wav((dir / name.str()).string(), time_stretch(x, r), 22050);
    args += " time_stretch:" + std::to_string(r) + ":" + (dir / name.str()).string();
  }
  std::string out;
  const int rc = test::run_command(py + " " + test::source_dir() + "/tools/golden/augment_parity.py " +
                                       (dir / "in.wav").string() + args,
                                   &out);
  REQUIRE(rc == 0);
  std::istringstream lines(out);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    WARN(clip << " (5 s excerpt): " << j["kind"].get<std::string>() << " " << j["value"].get<double>()
              << ": mean |log-mel difference| vs librosa " << j["mean_abs_db"].get<double>() << " dB over "
              << j["cells"].get<int64_t>() << " cells above -60 dB");
    CHECK(j["mean_abs_db"].get<double>() < kLibrosaLogMelDb);
    CHECK(j["lag"].get<int64_t>() == 0);
    ++checked;
  }
  CHECK(checked == 7);
}

// ---- stability of the phase vocoder ------------------------------------------------------------

// Largest relative L2 change of a pitch-shifted or time-stretched clip that a float-ulp change of
// its input may cause: the accumulated phase of a weak bin (angle of a near-zero value) moves
// freely, and a later strong frame of that bin inherits the move. librosa behaves the same way;
// the CPU path moves by up to 1.4e-3 for a 1e-7 input change (next test), the GPU path (cuFFT
// rounding instead of FFTW's) differs from the CPU path by as much.
namespace {

constexpr double kPhaseVocoderStability = 5e-3;

double relative_l2(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double se = 0, sr = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = double(got[i]) - double(want[i]);
    se += d * d;
    sr += double(want[i]) * double(want[i]);
  }
  return std::sqrt(se / std::max(sr, 1e-300));
}

}  // namespace

TEST_CASE("phase vocoder output is stable under ulp-level input changes", "[augment]") {
  AugmentSettings s;
  s.seed = 11;
  const int64_t n = 50000;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& [kind, value, b] : std::vector<std::tuple<AugmentKind, double, int>>{
           {AugmentKind::pitch_shift, -4, 3}, {AugmentKind::pitch_shift, 12, 4},
           {AugmentKind::time_stretch, 0.8, 5}, {AugmentKind::time_stretch, 1.25, 6}}) {
    std::vector<float> x(static_cast<size_t>(n)), nudged(x.size());
    for (int64_t i = 0; i < n; ++i) {
      x[size_t(i)] = 0.4f * float(std::sin(2 * M_PI * (200.0 + 50 * b) * double(i) / 22050)) +
                     0.1f * float(std::sin(0.37 * double(i * (b + 1))));
      nudged[size_t(i)] = x[size_t(i)] * (1.0f + 1e-7f * normal(rng));
    }
    const auto e = example_with(kind, value, uint32_t(b));
    const auto a = apply_augment_cpu(e, s, x.data(), n, 22050);
    const auto c = apply_augment_cpu(e, s, nudged.data(), n, 22050);
    const double err = relative_l2(c, a);
    INFO(augment_name(kind) << " " << value << ": relative L2 change " << err << " for a 1e-7 input change");
    CHECK(err < kPhaseVocoderStability);
  }
}

// ---- the command ---------------------------------------------------------------------------------

TEST_CASE("augment command writes the augmented float WAV", "[augment][cli]") {
  const auto dir = test::temp_dir("augment-cli");
  std::vector<float> x(22050);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.8f * float(std::sin(2 * M_PI * 330.0 * double(i) / 22050));
  write_wav((dir / "in.wav").string(), x, 22050);
  const std::string bin = test::genrelab_binary();
  const std::string out = (dir / "out.wav").string();
  REQUIRE(test::run_command(bin + " augment " + (dir / "in.wav").string() + " --out " + out +
                            " --pitch-shift 3 --gain 6 --noise 0.01 --seed 5 --device cpu 2>/dev/null") == 0);
  DecodeOptions opt;
  const Audio got = decode_audio(out, opt);
  REQUIRE(got.samples.size() == x.size());
  // the same chain through the library: pitch shift → gain → noise, clip key 0, seed 5
  AugmentSettings s;
  s.seed = 5;
  AugmentedExample e;
  e.steps = {{AugmentKind::pitch_shift, 3}, {AugmentKind::gain, 6}, {AugmentKind::noise, 0.01}};
  const auto want = apply_augment_cpu(e, s, x.data(), int64_t(x.size()), 22050);
  test::require_close(got.samples, want, 0, 0, "augment command output");
  float peak = 0;
  for (float v : got.samples) peak = std::max(peak, std::fabs(v));
  CHECK(peak > 1.0f);  // 0.8 · 2 is kept: float WAV, no clipping
  // usage errors: exit 2
  CHECK(test::run_command(bin + " augment " + (dir / "in.wav").string() + " --out " + out + " 2>/dev/null") == 2);
  CHECK(test::run_command(bin + " augment " + (dir / "in.wav").string() + " --out " + out +
                          " --time-stretch -1 2>/dev/null") == 2);
  CHECK(test::run_command(bin + " augment " + (dir / "missing.wav").string() + " --out " + out +
                          " --gain 1 2>/dev/null") == 1);
  // It writes float WAV: another extension is a usage error; an --out that is a folder a runtime
  // error naming it, with no temporary file left beside it.
  std::string err;
  CHECK(test::run_command(bin + " augment " + (dir / "in.wav").string() + " --out " + (dir / "out.flac").string() +
                              " --gain 1 2>&1 >/dev/null",
                          &err) == 2);
  CHECK(err.find("give OUT.wav") != std::string::npos);
  std::filesystem::create_directories(dir / "folder.wav");
  CHECK(test::run_command(bin + " augment " + (dir / "in.wav").string() + " --out " + (dir / "folder.wav").string() +
                              " --gain 1 --device cpu 2>&1 >/dev/null",
                          &err) == 1);
  CHECK(err.find((dir / "folder.wav").string()) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "folder.wav.tmp"));
}

// ---- GPU equals CPU --------------------------------------------------------------------------------

#if GENRELAB_HAVE_CUDA
namespace {

// Eight rows of 50 000 samples that exercise every waveform step on the GPU: one row each of
// noise, gain and time shift, two pitch shifts, two time stretches, and a chain of four steps.
struct GpuAugmentCase {
  AugmentSettings s;
  int64_t n = 50000;
  std::vector<AugmentedExample> ex;
  std::vector<float> x;  // x: (ex.size(), n)
};
GpuAugmentCase gpu_augment_case() {
  GpuAugmentCase c;
  AugmentSettings& s = c.s;
  s.seed = 11;
  s.time_shift.rollover = false;
  s.spec_mask = {1.0, 2, 40, 2, 16};
  const int64_t n = c.n;
  std::vector<AugmentedExample>& ex = c.ex;
  ex = {
      example_with(AugmentKind::noise, 0.01, 0),        example_with(AugmentKind::gain, -3.5, 1),
      example_with(AugmentKind::time_shift, -0.31, 2),  example_with(AugmentKind::pitch_shift, -4, 3),
      example_with(AugmentKind::pitch_shift, 12, 4),    example_with(AugmentKind::time_stretch, 0.8, 5),
      example_with(AugmentKind::time_stretch, 1.25, 6), AugmentedExample{},
  };
  ex[7].clip_key = 7;
  ex[7].steps = {{AugmentKind::pitch_shift, 7}, {AugmentKind::time_shift, 0.2}, {AugmentKind::gain, 2},
                 {AugmentKind::noise, 0.005}};
  const int64_t batch = int64_t(ex.size());
  c.x.resize(size_t(batch * n));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      c.x[size_t(b * n + i)] = 0.4f * float(std::sin(2 * M_PI * (200.0 + 50 * b) * double(i) / 22050)) +
                               0.1f * float(std::sin(0.37 * double(i * (b + 1))));
  return c;
}

// The rows of `c` augmented on the GPU by `aug`: (ex.size(), n).
std::vector<float> augment_on_gpu(cuda::Augmenter& aug, const GpuAugmentCase& c) {
  cuda::Stream stream;
  cuda::DeviceBuffer<float> dx(c.x.size()), dy(c.x.size());
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dx.data(), c.x.data(), dx.bytes(), cudaMemcpyHostToDevice, stream));
  aug.apply(c.ex, c.s, dx.data(), dy.data(), c.n, stream);
  std::vector<float> got(c.x.size());
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(got.data(), dy.data(), dy.bytes(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  return got;
}

}  // namespace

TEST_CASE("augment kernels on the GPU equal the CPU reference", "[augment][gpu]") {
  GENRELAB_REQUIRE_GPU();
  GpuAugmentCase c = gpu_augment_case();
  const AugmentSettings& s = c.s;
  const int64_t n = c.n, batch = int64_t(c.ex.size());
  std::vector<AugmentedExample>& ex = c.ex;
  const std::vector<float>& x = c.x;
  cuda::Augmenter aug;
  const std::vector<float> got = augment_on_gpu(aug, c);
  cuda::Stream stream;
  for (int64_t b = 0; b < batch; ++b) {
    const auto want = apply_augment_cpu(ex[size_t(b)], s, x.data() + b * n, n, 22050);
    const std::vector<float> g(got.begin() + b * n, got.begin() + (b + 1) * n);
    const bool elementwise = ex[size_t(b)].steps.size() == 1 && (ex[size_t(b)].steps[0].kind == AugmentKind::noise ||
                                                                  ex[size_t(b)].steps[0].kind == AugmentKind::gain ||
                                                                  ex[size_t(b)].steps[0].kind == AugmentKind::time_shift);
    const std::string what =
        "row " + std::to_string(b) + " " +
        augment_name(ex[size_t(b)].steps.empty() ? AugmentKind::noise : ex[size_t(b)].steps[0].kind);
    if (elementwise) {
      test::require_close(g, want, 0.0, 0.0, what);  // element-wise kernels are bit-identical
    } else {
      // The STFT paths start from cuFFT vs FFTW rounding, which the phase vocoder's accumulated
      // phase amplifies in weak bins (see "phase vocoder output is stable under ulp-level input
      // changes"): compared in relative L2, with the bar that test holds the CPU path to.
      const double e = relative_l2(g, want);
      INFO(what << ": relative L2 GPU vs CPU " << e);
      CHECK(e < kPhaseVocoderStability);
    }
  }
  // SpecAugment masks: identical
  const int64_t n_mels = 128, n_frames = 97;
  std::vector<float> mel(static_cast<size_t>(batch * n_mels * n_frames));
  for (size_t i = 0; i < mel.size(); ++i) mel[i] = float(i % 101) + 1.0f;
  for (auto& e : ex) e.steps.push_back({AugmentKind::spec_mask, 0});
  ex[1].steps.pop_back();
  cuda::DeviceBuffer<float> dm(mel.size());
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dm.data(), mel.data(), dm.bytes(), cudaMemcpyHostToDevice, stream));
  aug.spec_mask(ex, s, dm.data(), n_mels, n_frames, stream);
  std::vector<float> mg(mel.size());
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(mg.data(), dm.data(), dm.bytes(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  std::vector<const AugmentedExample*> ptrs;
  for (const auto& e : ex) ptrs.push_back(&e);
  apply_spec_mask_cpu(mel.data(), batch, n_mels, n_frames, s, ptrs);
  test::require_close(mg, mel, 0, 0, "spec_mask");
}

TEST_CASE("augment stage timing times each pass with its bytes and leaves the output unchanged", "[augment][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const GpuAugmentCase c = gpu_augment_case();
  cuda::Augmenter aug;
  const std::vector<float> plain = augment_on_gpu(aug, c);
  CHECK(aug.take_stage_times().empty());  // timing is off by default
  aug.set_stage_timing(true);
  const std::vector<float> timed = augment_on_gpu(aug, c);
  CHECK(timed == plain);
  const auto stages = aug.take_stage_times();
  // In order of first appearance: the copy, the pitch shifts (rows 3, 4, 7) through the phase
  // vocoder and the resampler, the time stretches (rows 5, 6) through the same passes, then the
  // element-wise steps; passes count the calls.
  const std::vector<std::pair<std::string, int64_t>> want = {{"augment copy", 1},
                                                             {"augment gather rows", 2},
                                                             {"pv frame", 2},
                                                             {"pv stft (cuFFT R2C)", 2},
                                                             {"pv polar", 2},
                                                             {"pv phase advance", 2},
                                                             {"pv phase scan (Thrust)", 2},
                                                             {"pv synthesis", 2},
                                                             {"pv istft (cuFFT C2R)", 2},
                                                             {"pv overlap-add", 2},
                                                             {"resample filters", 1},
                                                             {"resample", 1},
                                                             {"augment scatter rows", 2},
                                                             {"time shift", 1},
                                                             {"gain", 1},
                                                             {"noise", 1}};
  REQUIRE(stages.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(stages[i].name);
    CHECK(stages[i].name == want[i].first);
    CHECK(stages[i].passes == want[i].second);
    CHECK(stages[i].ms > 0);
  }
  // Bytes by hand: 50 000-sample rows have 1 + 50 000 / 512 = 98 frames of 2 048 samples; framing
  // reads the rows and writes the frames, for 3 + 2 rows; the copy reads and writes all 8 rows.
  CHECK(stages[0].bytes == 2.0 * 8 * 50000 * 4);
  CHECK(stages[2].bytes == 5.0 * (50000 * 4 + 98 * 2048 * 4));
  CHECK(stages[1].bytes == 2.0 * 5 * 50000 * 4);
  CHECK(aug.take_stage_times().empty());  // taken
  aug.set_stage_timing(false);
  CHECK(augment_on_gpu(aug, c) == plain);
  CHECK(aug.take_stage_times().empty());
}
#endif
