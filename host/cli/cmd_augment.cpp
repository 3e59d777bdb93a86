// `genrelab augment FILE --out OUT.wav [--pitch-shift N] ...`: applies the augmentations named on
// the command line (each with p = 1 and the given value) to one file and writes float WAV, to
// listen to what training sees.
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "genrelab/audio.h"
#include "genrelab/augment.h"
#include "genrelab/cli.h"
#include "genrelab/config.h"
#include "genrelab/device.h"

#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/augment.h"
#endif

namespace genrelab::cli {
namespace {

double number_option(const Args& args, const std::string& name, double lo, double hi, const std::string& what) {
  const std::string text = *args.get(name);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(v)) args.usage_error(name + " needs a number, got '" + text + "'");
  if (!(v >= lo && v <= hi)) args.usage_error(name + " " + text + " is outside " + what);
  return v;
}

int run_augment(const Args& args) {
  if (args.positional().size() != 1) args.usage_error("needs exactly one input FILE");
  if (!args.has("--out")) args.usage_error("needs --out OUT.wav");
  {
    // It writes float WAV, which only a .wav name says (a .flac or .mp3 name would mislabel it).
    std::string ext = std::filesystem::path(*args.get("--out")).extension().string();
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (ext != ".wav")
      args.usage_error("--out names a " + (ext.empty() ? std::string("file without extension") : ext + " file") +
                       "; augment writes float WAV: give OUT.wav");
  }
  const Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  AugmentSettings s = AugmentSettings::from_config(config);
  if (args.has("--seed")) s.seed = uint32_t(args.get_int("--seed", 0, 0, 4294967295));

  // The chain, in the library's order: pitch shift, time stretch, time shift, gain, noise.
  AugmentedExample e;
  if (args.has("--pitch-shift"))
    e.steps.push_back({AugmentKind::pitch_shift, number_option(args, "--pitch-shift", -48, 48, "[-48, 48] semitones")});
  if (args.has("--time-stretch"))
    e.steps.push_back({AugmentKind::time_stretch, number_option(args, "--time-stretch", 0.05, 20, "[0.05, 20]")});
  if (args.has("--time-shift"))
    e.steps.push_back({AugmentKind::time_shift, number_option(args, "--time-shift", -1, 1, "[-1, 1] of the length")});
  if (args.has("--gain")) e.steps.push_back({AugmentKind::gain, number_option(args, "--gain", -120, 120, "[-120, 120] dB")});
  if (args.has("--noise")) e.steps.push_back({AugmentKind::noise, number_option(args, "--noise", 0, 1e6, "[0, 1e6]")});
  if (e.steps.empty())
    args.usage_error("name at least one augmentation: --pitch-shift, --time-stretch, --time-shift, --gain, --noise");

  const Device device = resolve_device(args.get_or("--device", ""));
  DecodeOptions opt;
  opt.sample_rate = int(config.get_int("dataset.sample_rate"));
  opt.length = config.get_optional_int("dataset.clip_samples");
  const Audio audio = decode_audio(args.positional()[0], opt);
  const int64_t n = int64_t(audio.samples.size());

  std::vector<float> y;
  if (device == Device::cpu) {
    y = apply_augment_cpu(e, s, audio.samples.data(), n, opt.sample_rate);
  } else {
#if GENRELAB_HAVE_CUDA
    cuda::Stream stream;
    cuda::DeviceBuffer<float> dx(static_cast<size_t>(n)), dy(static_cast<size_t>(n));  // dx, dy: (1, n)
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dx.data(), audio.samples.data(), dx.bytes(), cudaMemcpyHostToDevice, stream));
    cuda::Augmenter aug;
    aug.apply({e}, s, dx.data(), dy.data(), n, stream);
    y.resize(size_t(n));
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(y.data(), dy.data(), dy.bytes(), cudaMemcpyDeviceToHost, stream));
    stream.synchronize();
#else
    throw RuntimeError("this build has no CUDA backend; use --device cpu");
#endif
  }
  const std::string out = *args.get("--out");
  write_wav(out, y, opt.sample_rate, WavEncoding::float32);
  std::cerr << "augment: wrote " << out << " (" << n << " samples at " << opt.sample_rate << " Hz, " << device_name(device)
            << "):";
  for (const auto& st : e.steps) std::cerr << " " << augment_name(st.kind) << " " << st.value;
  std::cerr << "\n";
  return 0;
}

CommandRegistrar reg{
    {"augment", "apply augmentations to one audio file and write float WAV (to listen to them)",
     "usage: genrelab augment FILE --out OUT.wav [--pitch-shift SEMITONES] [--time-stretch RATE]\n"
     "                        [--time-shift FRACTION] [--gain DB] [--noise AMPLITUDE] [--seed K]\n"
     "                        [--device cuda|cpu] [--config EXPERIMENT.json] [--set key=value ...]\n\n"
     "Decodes FILE at dataset.sample_rate (cut to dataset.clip_samples when set), applies only the\n"
     "augmentations named, each with p = 1 and the given value, in this order: pitch shift (librosa\n"
     "phase vocoder + resampling), time stretch (length kept), time shift (fraction of the length;\n"
     "augment.time_shift.rollover), gain, Gaussian noise (amplitude x N(0,1) from the Philox stream of\n"
     "--seed, default augment.seed). Writes 32-bit float WAV: values beyond +-1 are kept, not clipped.\n"
     "The STFT size and hop are augment.pitch_shift.n_fft and hop_length.\n",
     {{"--out", true, false, "output WAV file"},
      {"--pitch-shift", true, false, "semitones (may be fractional)"},
      {"--time-stretch", true, false, "rate (> 1 faster); the length is kept"},
      {"--time-shift", true, false, "fraction of the length (positive = later)"},
      {"--gain", true, false, "gain in dB"},
      {"--noise", true, false, "Gaussian noise amplitude"},
      {"--seed", true, false, "random seed for the noise (default augment.seed)"},
      device_option(), config_option(), set_option()},
     run_augment}};

}  // namespace
}  // namespace genrelab::cli
