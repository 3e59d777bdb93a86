// Audio augmentation, host API: settings from the `augment.*` config keys, the plan of which
// augmentation each training example gets (offline copies or online per-epoch chains, every draw
// from a Philox stream keyed by seed, epoch, clip and augmentation), and the CPU execution of a
// plan. The GPU executes the same plans on device batches (genrelab/cuda/augment.h).
#pragma once

#include <complex>
#include <cstdint>
#include <string>
#include <vector>

#include "genrelab/ops/philox.h"

namespace genrelab {

class Config;
struct PolyphaseBank;

// Chain order: waveform augmentations of one example are applied in this order (pitch shift,
// time stretch, time shift, gain, noise); spec_mask acts on the mel spectrogram afterwards.
enum class AugmentKind : uint32_t { pitch_shift = 0, time_stretch = 1, time_shift = 2, gain = 3, noise = 4, spec_mask = 5 };
constexpr int kAugmentKinds = 6;
const char* augment_name(AugmentKind kind);

struct AugmentSettings {
  enum class Mode { offline, online };
  Mode mode = Mode::offline;
  uint32_t seed = 0;
  struct Noise { double p = 0, min_amplitude = 0.001, max_amplitude = 0.015; } noise;
  struct PitchShift { double p = 0, min_semitones = -4, max_semitones = 12; int n_fft = 2048, hop_length = 512; } pitch_shift;
  struct TimeStretch { double p = 0, min_rate = 0.8, max_rate = 1.25; } time_stretch;  // STFT as pitch_shift
  struct TimeShift { double p = 0, min_fraction = -0.5, max_fraction = 0.5; bool rollover = true; } time_shift;
  struct Gain { double p = 0, min_db = -12, max_db = 12; } gain;
  struct SpecMask { double p = 0; int time_masks = 2, max_time_width = 40, freq_masks = 2, max_freq_width = 16; } spec_mask;

  // Reads augment.*; a min above its max is a ConfigError naming the keys.
  static AugmentSettings from_config(const Config& config);
  double probability(AugmentKind kind) const;
  // (min, max) of the kind's drawn parameter.
  void range(AugmentKind kind, double* lo, double* hi) const;
  // Kinds with p > 0, in chain order.
  std::vector<AugmentKind> enabled() const;
};

// One applied augmentation and its drawn parameter: noise amplitude, pitch semitones, stretch
// rate, shift fraction of the length, gain dB (unused for spec_mask).
struct AugmentStep {
  AugmentKind kind;
  double value = 0;
};

// One training example: a source clip and the augmentations that fired for it, in chain order.
struct AugmentedExample {
  int64_t source = 0;     // index into the caller's clip list
  uint32_t clip_key = 0;  // the clip's key in the Philox streams (e.g. its dataset index)
  uint32_t epoch = 0;     // 0 for offline copies
  int copy_of = -1;       // offline: the AugmentKind this copy was made for; -1 = the original
  std::vector<AugmentStep> steps;
  bool has(AugmentKind kind) const;
  // Noise stream of this example: (seed, noise, clip_key, epoch·8 + copy kind + 1).
  PhiloxStream noise_stream(uint32_t seed) const;
  PhiloxStream spec_mask_stream(uint32_t seed) const;
};

// Draws for one (clip, epoch, copy): whether `kind` applies (uniform < p) and its parameter
// (uniform in [min, max)), from PhiloxStream(seed, augment_choice, clip_key, epoch·8 + copy + 1),
// words 4·kind and 4·kind + 2. Returns false when it does not apply.
bool draw_augment(const AugmentSettings& s, AugmentKind kind, uint32_t clip_key, uint32_t epoch, int copy_of, double* value);

// Offline mode (the baseline): per clip the original, then one copy per enabled augmentation
// through that augmentation alone (applied with its p, so a copy may equal the original).
// 799 clips with noise and pitch shift enabled → 2397 examples.
std::vector<AugmentedExample> plan_offline(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys);
// Online mode: one example per clip for this epoch, every enabled augmentation chained with its p.
std::vector<AugmentedExample> plan_online(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys, uint32_t epoch);
// plan_offline or plan_online by s.mode (epoch ignored offline).
std::vector<AugmentedExample> plan_augment(const AugmentSettings& s, const std::vector<uint32_t>& clip_keys, uint32_t epoch);

// ---- CPU execution (the reference backend; same functors as the GPU kernels) ----

// Applies the example's waveform steps to x (n samples at sample_rate); the result has n samples.
std::vector<float> apply_augment_cpu(const AugmentedExample& example, const AugmentSettings& s, const float* x,
                                     int64_t n, int sample_rate);
// Applies SpecAugment masks in place to the examples that carry a spec_mask step.
// mel: (batch, n_mels, n_frames); examples: (batch,)
void apply_spec_mask_cpu(float* mel, int64_t batch, int64_t n_mels, int64_t n_frames, const AugmentSettings& s,
                         const std::vector<const AugmentedExample*>& examples);

// librosa.phase_vocoder on one clip's STFT. spec: (n_frames, n_fft/2+1) complex, frames first
// (the transpose of librosa's layout); returns (⌈n_frames/rate⌉, n_fft/2+1).
std::vector<std::complex<float>> phase_vocoder(const std::vector<std::complex<float>>& spec, int64_t n_frames,
                                               int n_fft, int hop, double rate);
// librosa.effects.time_stretch (Hann, centred, zero padding): round(n/rate) samples.
std::vector<float> time_stretch(const std::vector<float>& x, double rate, int n_fft = 2048, int hop = 512);
// librosa.effects.pitch_shift with a windowed-sinc resampler: n samples.
std::vector<float> pitch_shift(const std::vector<float>& x, int sample_rate, double semitones, int n_fft = 2048,
                               int hop = 512);
// The shape of a pitch-shift batch's per-row polyphase resampling filters (scale[b] =
// rolloff·min(1, rate[b]) of the default ResampleFilterDesign): 512 phases, every row with the
// widest row's taps. Each backend builds the banks (batch, phases + 1, taps) with
// PolyphaseBankFunctor (ops/resample.h).
PolyphaseBank pitch_shift_bank_geometry(const std::vector<double>& scale);

// The augmentation's gain factor 10^(dB/20) and the shift in samples round(fraction·n) (half to even).
float gain_factor(double db);
int64_t shift_samples(double fraction, int64_t n);

}  // namespace genrelab
