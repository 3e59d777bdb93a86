// The synthetic demo collection: each genre is a small arrangement (drum pattern, bass, chords or
// melody) with its own tempo range, scale, register and timbre; each clip draws its tempo, key,
// start offset, notes, gain and noise level from a seeded generator.
#include "genrelab/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "genrelab/audio.h"
#include "genrelab/common.h"

namespace genrelab {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Draws from a std::mt19937_64 (whose raw output the standard fixes) without the library's
// distributions (whose algorithms differ between standard libraries), so clips are identical
// everywhere.
struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double uniform() { return double(g() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  int integer(int lo, int hi) { return lo + int(uniform() * (hi - lo + 1)) % (hi - lo + 1); }  // [lo, hi]
  bool chance(double p) { return uniform() < p; }
  double normal() {  // Box–Muller, both values used
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double u1 = 1.0 - uniform(), u2 = uniform();
    const double rad = std::sqrt(-2.0 * std::log(u1));
    spare = rad * std::sin(2 * kPi * u2);
    has_spare = true;
    return rad * std::cos(2 * kPi * u2);
  }
  double spare = 0;
  bool has_spare = false;
};

// sin(2π·cycles) from a table with linear interpolation (error < 1e-7, far below the 16-bit output).
double sin_cycles(double cycles) {
  constexpr int kSize = 8192;
  static const std::vector<double> table = [] {
    std::vector<double> t(kSize + 1);
    for (int i = 0; i <= kSize; ++i) t[size_t(i)] = std::sin(2 * kPi * i / kSize);
    return t;
  }();
  const double f = (cycles - std::floor(cycles)) * kSize;
  const int i = int(f);
  return table[size_t(i)] + (f - i) * (table[size_t(i) + 1] - table[size_t(i)]);
}

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

enum class Timbre { sine, saw, square, pluck, distorted, organ };

double midi_hz(double note) { return 440.0 * std::pow(2.0, (note - 69.0) / 12.0); }

// Renders sounds into one clip buffer.
struct Canvas {
  std::vector<double> x;  // x: (n,) the mix
  double sr;

  void tone(double t0, double dur, double hz, double amp, Timbre timbre) {
    const int64_t i0 = int64_t(t0 * sr), n = int64_t((dur + (timbre == Timbre::pluck ? 0.4 : 0.03)) * sr);
    const double nyq = 0.45 * sr;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = i0 + k;
      if (i < 0) continue;
      if (i >= int64_t(x.size())) break;
      const double t = double(k) / sr;
      double env;
      if (timbre == Timbre::pluck) {
        env = std::exp(-t * 5.0) * std::min(1.0, t / 0.002);
      } else {
        const double attack = timbre == Timbre::organ ? 0.03 : timbre == Timbre::sine ? 0.06 : 0.008;
        env = std::min(1.0, t / attack) * (t < dur ? 1.0 : std::max(0.0, 1.0 - (t - dur) / 0.03));
      }
      double s = 0;
      const double ph = hz * t;  // in cycles
      switch (timbre) {
        case Timbre::sine:
          s = sin_cycles(ph) + 0.15 * sin_cycles(2 * ph);
          break;
        case Timbre::organ:
          s = sin_cycles(ph) + 0.5 * sin_cycles(2 * ph) + 0.25 * sin_cycles(4 * ph);
          break;
        case Timbre::square:
          for (int h = 1; h <= 9 && h * hz < nyq; h += 2) s += sin_cycles(h * ph) / h;
          break;
        case Timbre::saw:
        case Timbre::distorted:
          for (int h = 1; h <= 10 && h * hz < nyq; ++h) s += sin_cycles(h * ph) / h;
          if (timbre == Timbre::distorted) s = std::tanh(3.5 * s);
          break;
        case Timbre::pluck: {
          const double e = std::exp(-t * 4.0);
          double eh = e;
          for (int h = 1; h <= 6 && h * hz < nyq; ++h, eh *= e) s += sin_cycles(h * ph) * eh / h;
          break;
        }
      }
      x[size_t(i)] += amp * env * s;
    }
  }
  void kick(double t0, double amp, double f_hi, double f_lo, double decay) {
    const int64_t i0 = int64_t(t0 * sr), n = int64_t(decay * 6 * sr);
    double phase = 0;  // in cycles
    double env = amp, sweep = f_hi - f_lo;
    const double env_step = std::exp(-1.0 / (decay * sr)), sweep_step = std::exp(-30.0 / sr);
    for (int64_t k = 0; k < n && i0 + k < int64_t(x.size()); ++k, env *= env_step, sweep *= sweep_step) {
      phase += (f_lo + sweep) / sr;
      if (i0 + k >= 0) x[size_t(i0 + k)] += env * sin_cycles(phase);
    }
  }
  // Noise burst; `bright` in (0, 1): 1 = white, smaller = more low-passed; `ring` adds metallic partials.
  void noise(Rng& rng, double t0, double amp, double decay, double bright, double body_hz, double ring) {
    const int64_t i0 = int64_t(t0 * sr), n = int64_t(decay * 5 * sr);
    double lp = 0, prev = 0, env = amp;
    const double env_step = std::exp(-1.0 / (decay * sr));
    for (int64_t k = 0; k < n && i0 + k < int64_t(x.size()); ++k, env *= env_step) {
      const double t = double(k) / sr;
      const double w = rng.normal();
      lp += (1 - bright) * (w - lp);
      double s = bright > 0.6 ? (w - lp) : lp * 2.0;  // bright: high-passed; dull: low-passed
      s = 0.7 * s + 0.3 * (w - prev) * 0.5;
      prev = w;
      if (body_hz > 0) s += 0.8 * sin_cycles(body_hz * t);
      if (ring > 0) s += ring * (sin_cycles(3150 * t) + sin_cycles(4720 * t) + sin_cycles(6830 * t));
      if (i0 + k >= 0) x[size_t(i0 + k)] += env * s;
    }
  }
};

// Scales as semitone offsets.
const std::vector<int> kMajor = {0, 2, 4, 5, 7, 9, 11}, kMinor = {0, 2, 3, 5, 7, 8, 10}, kBlues = {0, 3, 5, 6, 7, 10},
                       kPentaMajor = {0, 2, 4, 7, 9}, kPentaMinor = {0, 3, 5, 7, 10}, kDorian = {0, 2, 3, 5, 7, 9, 10},
                       kPhrygian = {0, 1, 3, 5, 7, 8, 10};

double scale_note(const std::vector<int>& scale, int root, int degree) {
  const int n = int(scale.size());
  const int oct = degree >= 0 ? degree / n : -((-degree + n - 1) / n);
  return root + 12 * oct + scale[size_t(degree - oct * n)];
}

void render_genre(int genre, Canvas& c, Rng& r, double seconds) {
  // Per-clip draws shared by every genre.
  const int key = r.integer(-3, 3);
  struct Style {
    double bpm_lo, bpm_hi, swing;
    const std::vector<int>* scale;
    int root;  // MIDI root of the melody/chord register
  };
  static const Style styles[10] = {
      {78, 95, 0.33, &kBlues, 52},        // blues
      {58, 72, 0.0, &kMajor, 67},         // classical
      {98, 115, 0.0, &kPentaMajor, 60},   // country
      {118, 126, 0.0, &kMinor, 67},       // disco
      {84, 94, 0.1, &kMinor, 55},         // hiphop
      {125, 150, 0.33, &kDorian, 60},     // jazz
      {150, 180, 0.0, &kPhrygian, 40},    // metal
      {108, 122, 0.0, &kMajor, 74},       // pop
      {68, 80, 0.0, &kMajor, 62},         // reggae
      {120, 140, 0.0, &kPentaMinor, 50},  // rock
  };
  const Style& st = styles[genre];
  const double bpm = r.uniform(st.bpm_lo, st.bpm_hi);
  const double beat = 60.0 / bpm, t_off = -r.uniform(0, 4) * beat;  // start somewhere in a bar
  const int root = st.root + key;
  const std::vector<int>& sc = *st.scale;
  // Time of eighth-note step k (swung: off-beats late by `swing` of an eighth).
  auto eighth = [&](int k) { return t_off + k * beat / 2 + (k % 2 ? st.swing * beat / 2 : 0.0); };
  const int n_beats = int(std::ceil((seconds - t_off) / beat)) + 1;

  for (int b = 0; b < n_beats; ++b) {
    const double t = t_off + b * beat;
    const int in_bar = b % 4;
    const int chord_deg = (b / 4) % 2 == 0 ? 0 : (genre == 0 ? 3 : 4);  // I or IV/V every bar
    switch (genre) {
      case 0:  // blues: swung saw riff, walking root bass, soft backbeat
        c.tone(t, beat * 0.9, midi_hz(scale_note(sc, root - 24, chord_deg + (in_bar % 2) * 2)), 0.35, Timbre::saw);
        for (int e = 0; e < 2; ++e)
          if (r.chance(0.7))
            c.tone(eighth(2 * b + e), beat * 0.45, midi_hz(scale_note(sc, root, r.integer(0, 7))), 0.22, Timbre::saw);
        if (in_bar == 0 || in_bar == 2) c.kick(t, 0.5, 110, 50, 0.08);
        if (in_bar == 1 || in_bar == 3) c.noise(r, t, 0.18, 0.06, 0.5, 190, 0);
        c.noise(r, eighth(2 * b + 1), 0.05, 0.02, 0.9, 0, 0.2);
        break;
      case 1:  // classical: no drums, slow sine triads and a legato melody
        if (in_bar == 0)
          for (int v = 0; v < 3; ++v)
            c.tone(t, beat * 4, midi_hz(scale_note(sc, root - 12, chord_deg + 2 * v)), 0.18, Timbre::sine);
        if (r.chance(0.8))
          c.tone(t, beat * (r.chance(0.5) ? 1.0 : 2.0), midi_hz(scale_note(sc, root, r.integer(0, 9))), 0.28,
                 Timbre::sine);
        break;
      case 2:  // country: plucked boom-chick, alternating bass, steady hats
        c.tone(t, beat, midi_hz(scale_note(sc, root - 24, chord_deg + (in_bar % 2 ? 3 : 0))), 0.4, Timbre::pluck);
        for (int e = 0; e < 2; ++e)
          c.tone(eighth(2 * b + e), beat * 0.5, midi_hz(scale_note(sc, root, r.integer(0, 7))), 0.25, Timbre::pluck);
        if (in_bar % 2 == 0)
          c.kick(t, 0.45, 100, 55, 0.07);
        else
          c.noise(r, t, 0.2, 0.07, 0.55, 200, 0);
        c.noise(r, eighth(2 * b + 1), 0.06, 0.015, 0.95, 0, 0);
        break;
      case 3:  // disco: four on the floor, open hats on off-beats, octave bass, square stabs
        c.kick(t, 0.6, 140, 50, 0.09);
        c.noise(r, eighth(2 * b + 1), 0.12, 0.09, 0.95, 0, 0.15);
        if (in_bar % 2 == 1) c.noise(r, t, 0.2, 0.08, 0.6, 220, 0);
        for (int e = 0; e < 2; ++e)
          c.tone(eighth(2 * b + e), beat * 0.35, midi_hz(scale_note(sc, root - 24, chord_deg) + 12 * e), 0.3,
                 Timbre::saw);
        if (r.chance(0.6))
          c.tone(eighth(2 * b + 1), beat * 0.3, midi_hz(scale_note(sc, root, r.integer(0, 7))), 0.2, Timbre::square);
        break;
      case 4:  // hiphop: long 808 kicks, loud backbeat, quiet sixteenth hats, sparse low keys
        if (in_bar == 0 || (in_bar == 2 && r.chance(0.5))) c.kick(t, 0.8, 90, 42, 0.25);
        if (in_bar == 1 && r.chance(0.6)) c.kick(t + beat / 2, 0.7, 90, 42, 0.2);
        if (in_bar % 2 == 1) c.noise(r, t, 0.35, 0.09, 0.5, 170, 0);
        for (int s = 0; s < 4; ++s) c.noise(r, t + s * beat / 4, 0.03, 0.012, 0.95, 0, 0);
        if (in_bar == 0) c.tone(t, beat * 3, midi_hz(scale_note(sc, root - 12, chord_deg)), 0.2, Timbre::organ);
        break;
      case 5:  // jazz: ride pattern, walking bass, organ comping off the beat
        c.noise(r, t, 0.09, 0.25, 0.95, 0, 0.35);
        if (in_bar % 2 == 1) c.noise(r, eighth(2 * b + 1), 0.06, 0.15, 0.95, 0, 0.35);
        c.tone(t, beat * 0.95, midi_hz(scale_note(sc, root - 24, chord_deg + r.integer(-2, 4))), 0.4, Timbre::sine);
        if (r.chance(0.45))
          for (int v = 0; v < 4; ++v)
            c.tone(eighth(2 * b + 1), beat * 0.4, midi_hz(scale_note(sc, root, chord_deg + 2 * v)), 0.08,
                   Timbre::organ);
        break;
      case 6:  // metal: distorted low sixteenth chugs (power chords), double kick, loud crash
        for (int s = 0; s < 4; ++s) {
          const double ts = t + s * beat / 4;
          const double n0 = scale_note(sc, root, chord_deg + (r.chance(0.2) ? 1 : 0));
          c.tone(ts, beat * 0.22, midi_hz(n0), 0.25, Timbre::distorted);
          c.tone(ts, beat * 0.22, midi_hz(n0 + 7), 0.18, Timbre::distorted);
          c.kick(ts, 0.35, 120, 60, 0.03);
        }
        if (in_bar % 2 == 1) c.noise(r, t, 0.3, 0.08, 0.6, 200, 0);
        if (in_bar == 0) c.noise(r, t, 0.18, 0.4, 0.95, 0, 0.3);
        break;
      case 7:  // pop: bright high square melody, pad, kick 1&3, snare 2&4, hats
        for (int e = 0; e < 2; ++e)
          if (r.chance(0.85))
            c.tone(eighth(2 * b + e), beat * 0.45, midi_hz(scale_note(sc, root, r.integer(0, 7))), 0.22,
                   Timbre::square);
        if (in_bar == 0)
          for (int v = 0; v < 3; ++v)
            c.tone(t, beat * 4, midi_hz(scale_note(sc, root - 12, chord_deg + 2 * v)), 0.08, Timbre::saw);
        if (in_bar % 2 == 0)
          c.kick(t, 0.55, 120, 50, 0.08);
        else
          c.noise(r, t, 0.25, 0.08, 0.6, 210, 0);
        c.noise(r, eighth(2 * b + 1), 0.06, 0.02, 0.95, 0, 0.1);
        break;
      case 8:  // reggae: off-beat organ skanks, deep syncopated bass, one drop on beat 3
        for (int v = 0; v < 3; ++v)
          c.tone(eighth(2 * b + 1), beat * 0.2, midi_hz(scale_note(sc, root, chord_deg + 2 * v)), 0.14, Timbre::organ);
        if (in_bar != 3)
          c.tone(t + (in_bar == 1 ? beat / 2 : 0), beat * 0.7,
                 midi_hz(scale_note(sc, root - 24, chord_deg + r.integer(0, 2))), 0.45, Timbre::sine);
        if (in_bar == 2) {
          c.kick(t, 0.6, 100, 48, 0.12);
          c.noise(r, t, 0.2, 0.04, 0.7, 330, 0);
        }
        c.noise(r, eighth(2 * b + 1), 0.04, 0.02, 0.95, 0, 0);
        break;
      case 9:  // rock: distorted eighth power chords, kick 1&3, snare 2&4, crash each bar
        for (int e = 0; e < 2; ++e) {
          const double n0 = scale_note(sc, root, chord_deg);
          c.tone(eighth(2 * b + e), beat * 0.45, midi_hz(n0), 0.2, Timbre::distorted);
          c.tone(eighth(2 * b + e), beat * 0.45, midi_hz(n0 + 7), 0.14, Timbre::distorted);
        }
        if (in_bar % 2 == 0)
          c.kick(t, 0.6, 120, 52, 0.08);
        else
          c.noise(r, t, 0.32, 0.1, 0.6, 200, 0);
        if (in_bar == 0) c.noise(r, t, 0.14, 0.35, 0.95, 0, 0.25);
        c.noise(r, eighth(2 * b + 1), 0.07, 0.02, 0.95, 0, 0);
        break;
      default:
        GENRELAB_CHECK(false, "genre index ", genre, " out of range");
    }
  }
}

}  // namespace

const std::vector<std::string>& gtzan_genres() {
  static const std::vector<std::string> g = {"blues", "classical", "country", "disco",  "hiphop",
                                             "jazz",  "metal",     "pop",     "reggae", "rock"};
  return g;
}

std::vector<float> synth_clip(int genre, int index, const SynthOptions& o) {
  GENRELAB_CHECK(genre >= 0 && genre < 10, "genre index out of range");
  GENRELAB_CHECK(o.seconds > 0 && o.sample_rate > 0, "bad synth options");
  Rng r(mix(mix(o.seed) ^ mix(uint64_t(genre) * 1000003ull + uint64_t(index))));
  Canvas c{std::vector<double>(size_t(std::llround(o.seconds * o.sample_rate)), 0.0), double(o.sample_rate)};
  render_genre(genre, c, r, o.seconds);
  // Background noise at a per-clip level, then a per-clip peak gain.
  const double noise = r.uniform(0.002, 0.02), gain = r.uniform(0.5, 0.9);
  for (double& v : c.x) v += noise * r.normal();
  double peak = 1e-9;
  for (double v : c.x) peak = std::max(peak, std::fabs(v));
  std::vector<float> out(c.x.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = float(c.x[i] * gain / peak);
  return out;
}

int64_t write_synth_collection(const std::string& out_dir, const SynthOptions& o, int threads) {
  namespace fs = std::filesystem;
  const fs::path base = fs::path(out_dir) / "genres_original";
  const auto& genres = gtzan_genres();
  for (const auto& g : genres) {
    std::error_code ec;
    fs::create_directories(base / g, ec);
    if (ec) throw RuntimeError("cannot create " + (base / g).string() + ": " + ec.message());
  }
  const int64_t total = int64_t(genres.size()) * o.clips_per_genre;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    for (int64_t k = next++; k < total; k = next++) {
      try {
        const int g = int(k / o.clips_per_genre), i = int(k % o.clips_per_genre);
        char name[64];
        std::snprintf(name, sizeof name, "%s.%05d.wav", genres[size_t(g)].c_str(), i);
        write_wav((base / genres[size_t(g)] / name).string(), synth_clip(g, i, o), o.sample_rate, WavEncoding::pcm16);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  int n = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return total;
}

}  // namespace genrelab
