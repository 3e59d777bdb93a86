// Augmentation host API: settings, offline/online plans drawn from keyed Philox streams, and the
// CPU reference execution (the ops/augment.h functors looped with cpu_for_*, FFTW for the STFTs).
#include "genrelab/augment.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "genrelab/config.h"
#include "genrelab/ops/augment.h"
#include "genrelab/ops/resample.h"
#include "genrelab/ops/stft.h"
#include "genrelab/parallel_for.h"

namespace genrelab {

const char* augment_name(AugmentKind kind) {
  switch (kind) {
    case AugmentKind::pitch_shift: return "pitch_shift";
    case AugmentKind::time_stretch: return "time_stretch";
    case AugmentKind::time_shift: return "time_shift";
    case AugmentKind::gain: return "gain";
    case AugmentKind::noise: return "noise";
    case AugmentKind::spec_mask: return "spec_mask";
  }
  return "?";
}

namespace {
void check_range(const Config& c, const std::string& lo_key, const std::string& hi_key, double lo, double hi) {
  if (lo > hi)
    c.fail(lo_key, "is " + std::to_string(lo) + ", above " + hi_key + " = " + std::to_string(hi) +
                       "; make the minimum at most the maximum");
}
}  // namespace

AugmentSettings AugmentSettings::from_config(const Config& c) {
  AugmentSettings s;
  s.mode = c.get_string("augment.mode") == "online" ? Mode::online : Mode::offline;
  s.seed = uint32_t(c.get_int("augment.seed"));
  s.noise = {c.get_number("augment.noise.p"), c.get_number("augment.noise.min_amplitude"),
             c.get_number("augment.noise.max_amplitude")};
  s.pitch_shift = {c.get_number("augment.pitch_shift.p"), c.get_number("augment.pitch_shift.min_semitones"),
                   c.get_number("augment.pitch_shift.max_semitones"), int(c.get_int("augment.pitch_shift.n_fft")),
                   int(c.get_int("augment.pitch_shift.hop_length"))};
  s.time_stretch = {c.get_number("augment.time_stretch.p"), c.get_number("augment.time_stretch.min_rate"),
                    c.get_number("augment.time_stretch.max_rate")};
  s.time_shift = {c.get_number("augment.time_shift.p"), c.get_number("augment.time_shift.min_fraction"),
                  c.get_number("augment.time_shift.max_fraction"), c.get_bool("augment.time_shift.rollover")};
  s.gain = {c.get_number("augment.gain.p"), c.get_number("augment.gain.min_db"), c.get_number("augment.gain.max_db")};
  s.spec_mask = {c.get_number("augment.spec_mask.p"), int(c.get_int("augment.spec_mask.time_masks")),
                 int(c.get_int("augment.spec_mask.max_time_width")), int(c.get_int("augment.spec_mask.freq_masks")),
                 int(c.get_int("augment.spec_mask.max_freq_width"))};
  check_range(c, "augment.noise.min_amplitude", "augment.noise.max_amplitude", s.noise.min_amplitude,
              s.noise.max_amplitude);
  check_range(c, "augment.pitch_shift.min_semitones", "augment.pitch_shift.max_semitones",
              s.pitch_shift.min_semitones, s.pitch_shift.max_semitones);
  check_range(c, "augment.time_stretch.min_rate", "augment.time_stretch.max_rate", s.time_stretch.min_rate,
              s.time_stretch.max_rate);
  check_range(c, "augment.time_shift.min_fraction", "augment.time_shift.max_fraction", s.time_shift.min_fraction,
              s.time_shift.max_fraction);
  check_range(c, "augment.gain.min_db", "augment.gain.max_db", s.gain.min_db, s.gain.max_db);
  return s;
}

double AugmentSettings::probability(AugmentKind kind) const {
  switch (kind) {
    case AugmentKind::pitch_shift: return pitch_shift.p;
    case AugmentKind::time_stretch: return time_stretch.p;
    case AugmentKind::time_shift: return time_shift.p;
    case AugmentKind::gain: return gain.p;
    case AugmentKind::noise: return noise.p;
    case AugmentKind::spec_mask: return spec_mask.p;
  }
  return 0;
}

void AugmentSettings::range(AugmentKind kind, double* lo, double* hi) const {
  *lo = *hi = 0;
  switch (kind) {
    case AugmentKind::pitch_shift: *lo = pitch_shift.min_semitones; *hi = pitch_shift.max_semitones; break;
    case AugmentKind::time_stretch: *lo = time_stretch.min_rate; *hi = time_stretch.max_rate; break;
    case AugmentKind::time_shift: *lo = time_shift.min_fraction; *hi = time_shift.max_fraction; break;
    case AugmentKind::gain: *lo = gain.min_db; *hi = gain.max_db; break;
    case AugmentKind::noise: *lo = noise.min_amplitude; *hi = noise.max_amplitude; break;
    case AugmentKind::spec_mask: break;
  }
}

std::vector<AugmentKind> AugmentSettings::enabled() const {
  std::vector<AugmentKind> out;
  for (int k = 0; k < kAugmentKinds; ++k)
    if (probability(AugmentKind(k)) > 0) out.push_back(AugmentKind(k));
  return out;
}

bool AugmentedExample::has(AugmentKind kind) const {
  for (const auto& s : steps)
    if (s.kind == kind) return true;
  return false;
}

namespace {
uint32_t stream_word(uint32_t epoch, int copy_of) { return epoch * 8u + uint32_t(copy_of + 1); }
}  // namespace

PhiloxStream AugmentedExample::noise_stream(uint32_t seed) const {
  return PhiloxStream(seed, RngPurpose::noise, clip_key, stream_word(epoch, copy_of));
}
PhiloxStream AugmentedExample::spec_mask_stream(uint32_t seed) const {
  return PhiloxStream(seed, RngPurpose::spec_mask, clip_key, stream_word(epoch, copy_of));
}

bool draw_augment(const AugmentSettings& s, AugmentKind kind, uint32_t clip_key, uint32_t epoch, int copy_of,
                  double* value) {
  const PhiloxStream rng(s.seed, RngPurpose::augment_choice, clip_key, stream_word(epoch, copy_of));
  const uint64_t base = 4 * uint64_t(kind);
  if (!(rng.uniform_double(base / 2) < s.probability(kind))) return false;  // words 4k, 4k+1
  double lo, hi;
  s.range(kind, &lo, &hi);
  *value = rng.uniform_range(base / 2 + 1, lo, hi);  // words 4k+2, 4k+3
  return true;
}

std::vector<AugmentedExample> plan_offline(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys) {
  const auto kinds = s.enabled();
  std::vector<AugmentedExample> out;
  out.reserve(clip_keys.size() * (1 + kinds.size()));
  for (size_t i = 0; i < clip_keys.size(); ++i) {
    AugmentedExample original;
    original.source = int64_t(i);
    original.clip_key = clip_keys[i];
    out.push_back(original);
    for (const AugmentKind k : kinds) {
      AugmentedExample copy = original;
      copy.copy_of = int(k);
      double v = 0;
      if (draw_augment(s, k, copy.clip_key, 0, copy.copy_of, &v)) copy.steps.push_back({k, v});
      out.push_back(std::move(copy));
    }
  }
  return out;
}

std::vector<AugmentedExample> plan_online(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys,
                                          uint32_t epoch) {
  const auto kinds = s.enabled();
  std::vector<AugmentedExample> out(clip_keys.size());
  for (size_t i = 0; i < clip_keys.size(); ++i) {
    AugmentedExample& e = out[i];
    e.source = int64_t(i);
    e.clip_key = clip_keys[i];
    e.epoch = epoch;
    for (const AugmentKind k : kinds) {
      double v = 0;
      if (draw_augment(s, k, e.clip_key, epoch, -1, &v)) e.steps.push_back({k, v});
    }
  }
  return out;
}

std::vector<AugmentedExample> plan_augment(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys,
                                           uint32_t epoch) {
  return s.mode == AugmentSettings::Mode::online ? plan_online(s, clip_keys, epoch) : plan_offline(s, clip_keys);
}

PolyphaseBank pitch_shift_bank_geometry(const std::vector<double>& scale) {
  const ResampleFilterDesign design{};
  PolyphaseBank geo;
  geo.phases = 512;
  for (double sc : scale) geo.half = std::max(geo.half, polyphase_half(design, sc));
  geo.taps = 2 * geo.half;
  return geo;
}

float gain_factor(double db) { return float(std::pow(10.0, db / 20.0)); }
int64_t shift_samples(double fraction, int64_t n) { return int64_t(std::nearbyint(fraction * double(n))); }

// ---- CPU phase vocoder pipeline ----

namespace {

// Noise blocks [begin, end) of one row. NoiseFunctor's Box-Muller is written as exact fma calls;
// without hardware FMA in the build's baseline ISA each one is a libm call, so x86-64 also gets a
// clone compiled for FMA (flatten inlines the whole functor into it), picked at load time where
// the processor has it. fma is exactly rounded either way, so both clones give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("fma", "default"), flatten))
#endif
void noise_span(const NoiseFunctor& f, int64_t row, int64_t begin, int64_t end) {
  for (int64_t q = begin; q < end; ++q) f(row, q);
}

// FFTs of `count` frames split over the OpenMP threads (FFTW's execution is thread-safe; each part
// plans its own batch). in: (count, n_fft) real; out: (count, n_fft/2+1) complex.
void parallel_fft(int n_fft, int64_t count, bool forward, float* real, std::complex<float>* cplx) {
  const int bins = n_fft / 2 + 1;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), count / 64));
  const int64_t chunk = ceil_div<int64_t>(count, parts);
#pragma omp parallel for schedule(static, 1) if (parts > 1)
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t begin = p * chunk, c = std::min(chunk, count - begin);
    if (c <= 0) continue;
    const CpuRealFft fft(n_fft, c, n_fft);
    if (forward) fft.forward(real + begin * n_fft, cplx + begin * bins);
    else fft.inverse(cplx + begin * bins, real + begin * n_fft);
  }
}

// Large scratch arrays of the phase vocoder, kept per thread between calls (a 28 s clip needs
// ~100 MB; allocating and faulting them in afresh costs as much as a third of a pitch shift).
struct StretchWorkspace {
  std::vector<float> frames;                         // (batch, frames, n_fft)
  std::vector<std::complex<float>> spec, stretched;  // (batch, frames, bins)
  std::vector<float> polar;                          // (batch, frames, bins, 2)
  std::vector<double> incr;                          // (batch, t_out, bins)
  std::vector<float> time_stretched, bank;           // pitch shift: (batch, len_max), (batch, phases + 1, taps)
};
StretchWorkspace& workspace() {
  static thread_local StretchWorkspace ws;
  return ws;
}

// Sizes a workspace array to n values whose old contents are not needed (every caller writes all
// n before reading): growing frees the old block first instead of copying it into the new one.
template <typename T>
void resize_scratch(std::vector<T>& v, size_t n) {
  if (n > v.capacity()) std::vector<T>().swap(v);
  v.resize(n);
}

// One row's phase-vocoder result: spec (n_frames, bins) complex → out (t_out_max, bins).
// Phase increments and their prefix sum along t (a plain loop: the GPU uses a segmented scan),
// then synthesis.
void phase_vocoder_rows(const float* spec, float* out, int64_t batch, const PvGeometry& g, const double* rate,
                        const int64_t* t_out) {
  // polar: (batch, n_frames, bins, 2); incr, acc: (batch, t_out_max, bins) (g.stride_k = 1)
  std::vector<float>& polar = workspace().polar;
  resize_scratch(polar, static_cast<size_t>(batch * g.n_frames * g.bins * 2));
  cpu_for_rows(batch * g.n_frames, g.bins, PolarFunctor{spec, polar.data(), g.bins});
  std::vector<double>& incr = workspace().incr;
  resize_scratch(incr, static_cast<size_t>(batch * g.bins * g.t_out_max));
  const PhaseAdvanceFunctor advance{polar.data(), incr.data(), rate, t_out, g};
  // Per (clip, block of bins): the functor's increments frame by frame, each turned into the
  // exclusive prefix sum along t while it is still in cache (the same additions in the same order
  // as a separate scan). Two blocks per thread keep the cores busy on one clip; wide blocks keep
  // each frame's reads and writes contiguous.
  const int64_t blocks = std::min<int64_t>(g.bins, 2 * omp_get_max_threads());
  const int width = int(ceil_div<int64_t>(g.bins, blocks));
#pragma omp parallel for schedule(dynamic, 1) if (batch * blocks > 1)
  for (int64_t i = 0; i < batch * blocks; ++i) {
    const int64_t b = i / blocks;
    const int k0 = int(i % blocks) * width, k1 = std::min(g.bins, k0 + width);
    std::vector<double> run(size_t(std::max(0, k1 - k0)), 0.0);
    for (int64_t t = 0; t < g.t_out_max; ++t) {
      double* r = incr.data() + g.at(b, 0, t);
      for (int k = k0; k < k1; ++k) advance(b * g.bins + k, t);  // writes r[k]
      for (int k = k0; k < k1; ++k) {
        const double v = r[k];
        r[k] = run[size_t(k - k0)];
        run[size_t(k - k0)] += v;
      }
    }
  }
  cpu_for_rows(batch * g.t_out_max, g.bins, PvSynthFunctor{polar.data(), incr.data(), out, rate, t_out, g});
}

// x: (batch, n) → y: (batch, out_stride): librosa time_stretch of row b by rate[b] with istft
// length[b] (zeros after it).
void stretch_rows(const float* x, int64_t batch, int64_t n, const double* rate, const int64_t* length,
                  int64_t out_stride, int n_fft, int hop, float* y) {
  GENRELAB_CHECK(n >= 1 && n_fft >= 2 && hop >= 1, "time stretch needs samples, n_fft >= 2, hop >= 1");
  const int bins = n_fft / 2 + 1;
  const int64_t n_frames = stft_frame_count(n, n_fft, hop, true);
  const auto window = hann_window(n_fft, n_fft);
  // frames: (batch, n_frames, n_fft); spec: (batch, n_frames, bins) complex
  StretchWorkspace& ws = workspace();
  std::vector<float>& frames = ws.frames;
  resize_scratch(frames, static_cast<size_t>(batch * n_frames * n_fft));
  cpu_for_rows(batch * n_frames, n_fft,
               FrameFunctor{x, window.data(), frames.data(), n, n_frames, n_fft, hop, n_fft, true, PadMode::constant});
  std::vector<std::complex<float>>& spec = ws.spec;
  resize_scratch(spec, static_cast<size_t>(batch * n_frames * bins));
  parallel_fft(n_fft, batch * n_frames, true, frames.data(), spec.data());
  std::vector<int64_t> t_out(static_cast<size_t>(batch));
  int64_t t_out_max = 1;
  for (int64_t b = 0; b < batch; ++b) {
    GENRELAB_CHECK(rate[b] > 0 && std::isfinite(rate[b]), "time-stretch rate must be positive, got ", rate[b]);
    t_out[size_t(b)] = int64_t(std::ceil(double(n_frames) / rate[b]));
    t_out_max = std::max(t_out_max, t_out[size_t(b)]);
  }
  const PvGeometry g{n_fft, hop, bins, n_frames, t_out_max, 1, bins};
  // stretched: (batch, t_out_max, bins) complex; inv: (batch, t_out_max, n_fft)
  std::vector<std::complex<float>>& stretched = ws.stretched;
  resize_scratch(stretched, static_cast<size_t>(batch * t_out_max * bins));
  phase_vocoder_rows(reinterpret_cast<const float*>(spec.data()), reinterpret_cast<float*>(stretched.data()), batch,
                     g, rate, t_out.data());
  resize_scratch(frames, size_t(batch * t_out_max * n_fft));  // every value is written by the inverse FFT
  parallel_fft(n_fft, batch * t_out_max, false, frames.data(), stretched.data());
  cpu_for_rows(batch, out_stride,
             OverlapAddFunctor{frames.data(), window.data(), y, t_out.data(), length, t_out_max, out_stride, n_fft, hop});
}

// Pitch shift of the rows of x (batch, n) by semitones[b] into y (batch, n).
void pitch_shift_rows(const float* x, int64_t batch, int64_t n, const double* semitones, int n_fft, int hop,
                      float* y) {
  std::vector<double> rate(static_cast<size_t>(batch)), step(static_cast<size_t>(batch)), scale(static_cast<size_t>(batch));
  std::vector<int64_t> len(static_cast<size_t>(batch)), valid(static_cast<size_t>(batch));
  const ResampleFilterDesign design{};
  int64_t len_max = 1;
  for (int64_t b = 0; b < batch; ++b) {
    const double r = std::pow(2.0, -semitones[b] / 12.0);
    rate[size_t(b)] = r;
    len[size_t(b)] = std::max<int64_t>(1, int64_t(std::nearbyint(double(n) / r)));
    len_max = std::max(len_max, len[size_t(b)]);
    // resample from sr/rate to sr: librosa's length ⌈len·rate⌉, then fix_length to n
    valid[size_t(b)] = int64_t(std::ceil(double(len[size_t(b)]) * r));
    step[size_t(b)] = 1.0 / r;
    scale[size_t(b)] = design.rolloff * std::min(1.0, r);
  }
  // stretched: (batch, len_max), every value written by the overlap-add
  std::vector<float>& stretched = workspace().time_stretched;
  resize_scratch(stretched, static_cast<size_t>(batch * len_max));
  stretch_rows(x, batch, n, rate.data(), len.data(), len_max, n_fft, hop, stretched.data());
  const PolyphaseBank geo = pitch_shift_bank_geometry(scale);
  std::vector<float>& bank = workspace().bank;  // (batch, phases + 1, taps), every value written below
  resize_scratch(bank, size_t(batch) * size_t(geo.phases + 1) * size_t(geo.taps));
  cpu_for_rows(
      batch, int64_t(geo.phases + 1) * geo.taps,
      PolyphaseBankFunctor::of(design, resample_table(design).data(), scale.data(), bank.data(), geo.phases, geo.half));
  cpu_for_rows(batch, n,
               ResampleRowsFunctor{stretched.data(), y, bank.data(), len.data(), valid.data(), step.data(), len_max, n, geo});
}

}  // namespace

std::vector<std::complex<float>> phase_vocoder(const std::vector<std::complex<float>>& spec, int64_t n_frames,
                                               int n_fft, int hop, double rate) {
  const int bins = n_fft / 2 + 1;
  GENRELAB_CHECK(int64_t(spec.size()) == n_frames * bins, "spectrogram has ", spec.size(), " values, expected ",
                 n_frames, " frames x ", bins, " bins");
  GENRELAB_CHECK(rate > 0 && n_frames >= 1, "phase vocoder needs rate > 0 and at least one frame");
  const int64_t t_out = int64_t(std::ceil(double(n_frames) / rate));
  const PvGeometry g{n_fft, hop, bins, n_frames, t_out, 1, bins};
  std::vector<std::complex<float>> out(static_cast<size_t>(t_out * bins));
  phase_vocoder_rows(reinterpret_cast<const float*>(spec.data()), reinterpret_cast<float*>(out.data()), 1, g, &rate,
                     &t_out);
  return out;
}

std::vector<float> time_stretch(const std::vector<float>& x, double rate, int n_fft, int hop) {
  GENRELAB_CHECK(rate > 0, "time-stretch rate must be positive, got ", rate);
  const int64_t len = std::max<int64_t>(1, int64_t(std::nearbyint(double(x.size()) / rate)));
  std::vector<float> y(static_cast<size_t>(len));
  stretch_rows(x.data(), 1, int64_t(x.size()), &rate, &len, len, n_fft, hop, y.data());
  return y;
}

std::vector<float> pitch_shift(const std::vector<float>& x, int sample_rate, double semitones, int n_fft, int hop) {
  (void)sample_rate;  // the shift only depends on the rate ratio 2^(-n/12)
  std::vector<float> y(x.size());
  pitch_shift_rows(x.data(), 1, int64_t(x.size()), &semitones, n_fft, hop, y.data());
  return y;
}

std::vector<float> apply_augment_cpu(const AugmentedExample& e, const AugmentSettings& s, const float* x, int64_t n,
                                     int sample_rate) {
  // The steps read `in` (x until a step has written cur) and write cur, in place where the functor
  // allows it, else into next (then swapped): no copy of x, no buffer a step does not use.
  std::vector<float> cur, next;
  const float* in = x;
  auto to_next = [&]() {
    next.resize(static_cast<size_t>(n));
    return next.data();
  };
  auto in_place = [&]() {
    if (cur.empty()) cur.resize(static_cast<size_t>(n));
    return cur.data();
  };
  auto advance = [&]() {
    cur.swap(next);
    in = cur.data();
  };
  for (const AugmentStep& step : e.steps) {
    switch (step.kind) {
      case AugmentKind::pitch_shift:
        pitch_shift_rows(in, 1, n, &step.value, s.pitch_shift.n_fft, s.pitch_shift.hop_length, to_next());
        advance();
        break;
      case AugmentKind::time_stretch: {
        const int64_t len = std::max<int64_t>(1, int64_t(std::nearbyint(double(n) / step.value)));
        stretch_rows(in, 1, n, &step.value, &len, n, s.pitch_shift.n_fft, s.pitch_shift.hop_length, to_next());
        advance();
        break;
      }
      case AugmentKind::time_shift: {
        const int64_t shift = shift_samples(step.value, n);
        cpu_for_rows(1, n, ShiftFunctor{in, to_next(), &shift, n, s.time_shift.rollover});
        advance();
        break;
      }
      case AugmentKind::gain: {
        const float f = gain_factor(step.value);
        float* out = in_place();
        cpu_for_rows(1, n, GainFunctor{in, out, &f, n});
        in = out;
        break;
      }
      case AugmentKind::noise: {
        const float a = float(step.value);
        const PhiloxStream rng = e.noise_stream(s.seed);
        float* out = in_place();
        const NoiseFunctor f{in, out, &a, &rng, n};
        cpu_for_row_spans(1, NoiseFunctor::cols(n),
                          [&](int64_t row, int64_t begin, int64_t end) { noise_span(f, row, begin, end); });
        in = out;
        break;
      }
      case AugmentKind::spec_mask: break;  // acts on the mel spectrogram (apply_spec_mask_cpu)
    }
  }
  if (in == x) cur.assign(x, x + n);
  (void)sample_rate;
  return cur;
}

void apply_spec_mask_cpu(float* mel, int64_t batch, int64_t n_mels, int64_t n_frames, const AugmentSettings& s,
                         const std::vector<const AugmentedExample*>& examples) {
  GENRELAB_CHECK(int64_t(examples.size()) == batch, "spec_mask: ", examples.size(), " examples for a batch of ", batch);
  std::vector<uint8_t> applied(static_cast<size_t>(batch));
  std::vector<PhiloxStream> streams(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    applied[size_t(b)] = examples[size_t(b)]->has(AugmentKind::spec_mask);
    streams[size_t(b)] = examples[size_t(b)]->spec_mask_stream(s.seed);
  }
  const SpecMaskGeometry geo{s.spec_mask.time_masks, s.spec_mask.max_time_width, s.spec_mask.freq_masks,
                             s.spec_mask.max_freq_width};
  cpu_for_2d(batch * n_mels, n_frames,
             SpecMaskFunctor{mel, applied.data(), streams.data(), geo, n_mels, n_frames, 0.0f});
}

}  // namespace genrelab
