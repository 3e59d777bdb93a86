// The experiment schema: every key an experiment file may set, with its type, default and doc.
// This table is the single source of defaults; experiments/README.md documents the same keys.
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>

#include "genrelab/config.h"

namespace genrelab {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

json baseline_layers() {
  return json::parse(R"([
    {"type": "conv2d", "filters": 64, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.1},
    {"type": "conv2d", "filters": 128, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.1},
    {"type": "conv2d", "filters": 256, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 4},
    {"type": "dropout", "rate": 0.1},
    {"type": "conv2d", "filters": 512, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 6},
    {"type": "dropout", "rate": 0.1},
    {"type": "flatten"},
    {"type": "dense", "units": 2048, "activation": "relu"},
    {"type": "dense", "units": 1024, "activation": "relu"},
    {"type": "dense", "units": 256, "activation": "relu"},
    {"type": "dense", "units": "classes", "activation": "softmax"}
  ])");
}

KeySpec key(std::string path, KeyType type, json def, std::string doc) {
  KeySpec k;
  k.path = std::move(path);
  k.type = type;
  k.default_value = std::move(def);
  k.doc = std::move(doc);
  return k;
}
KeySpec range(KeySpec k, double lo, double hi) { k.min = lo; k.max = hi; return k; }
KeySpec nullable(KeySpec k) { k.nullable = true; return k; }
KeySpec choices(KeySpec k, std::vector<std::string> c) { k.choices = std::move(c); return k; }
KeySpec folder_name(KeySpec k) {
  k.folder_name = true;
  return k;
}

std::vector<KeySpec> make_schema() {
  using T = KeyType;
  std::vector<KeySpec> s;
  s.push_back(folder_name(
      key("name", T::string, "experiment", "Run name; the run directory is <output.dir>/<name>-<UTC timestamp>.")));
  s.push_back(key("description", T::string, "", "Free text saved with the run."));

  // dataset
  s.push_back(key("dataset.root", T::path, "", "Collection root: GTZAN (genres_original/ or genres/) or any <root>/<class>/<audio> folder. ${VAR} allowed."));
  s.push_back(choices(key("dataset.layout", T::string, "auto", "auto | gtzan-kaggle (genres_original/) | gtzan (genres/) | folders (<root>/<class>/)."),
                      {"auto", "gtzan-kaggle", "gtzan", "folders"}));
  s.push_back(key("dataset.classes", T::string_list, json::array(), "Class names in label order; empty = the class folders, sorted."));
  s.push_back(range(key("dataset.sample_rate", T::integer, 22050, "Decode rate in Hz; files at other rates are resampled."), 1000, 384000));
  s.push_back(range(nullable(key("dataset.clip_samples", T::integer, nullptr, "Cut or zero-pad every clip to this many samples (baseline 617400 = 28 s); null = whole file.")), 1, kInf));
  s.push_back(range(nullable(key("dataset.window_samples", T::integer, nullptr, "Train on windows of this many samples cut from each clip; evaluation averages window probabilities per clip. null = one window = the clip.")), 1, kInf));
  s.push_back(range(nullable(key("dataset.window_hop", T::integer, nullptr, "Hop between windows in samples; null = window_samples (no overlap).")), 1, kInf));
  s.push_back(range(nullable(key("dataset.max_clips_per_class", T::integer, nullptr, "Use at most this many clips per class (sorted order); null = all.")), 1, kInf));
  s.push_back(key("dataset.streaming", T::boolean, false, "true: decode each step's clips from disk during training (a few steps ahead, on host threads) instead of holding the decoded collection and its features in memory; memory then grows with the batch, not the collection. Needs dataset.clip_samples. Same results as false."));

  // split
  s.push_back(choices(key("split.kind", T::string, "sklearn", "sklearn (train_test_split, bit-exact) | stratified (per-class fractions) | manifest (list files)."),
                      {"sklearn", "stratified", "manifest"}));
  s.push_back(range(key("split.test_fraction", T::number, 0.2, "Fraction of clips in the test set (test = first ceil(f*n) of the permutation)."), 0.0, 1.0));
  s.push_back(range(key("split.valid_fraction", T::number, 0.0, "Fraction of all clips held out from training for validation (selects the best epoch)."), 0.0, 1.0));
  s.push_back(range(key("split.seed", T::integer, 6, "random_state of the split."), 0, 4294967295.0));
  s.push_back(key("split.train_list", T::path, "", "manifest: file of genre/genre.000NN.wav lines for training."));
  s.push_back(key("split.valid_list", T::path, "", "manifest: validation list (optional)."));
  s.push_back(key("split.test_list", T::path, "", "manifest: test list."));

  // augment
  s.push_back(choices(key("augment.mode", T::string, "offline", "offline: fixed copies made once (original + one copy per enabled augmentation, like the baseline); online: fresh draws every epoch, chained."),
                      {"offline", "online"}));
  s.push_back(range(key("augment.seed", T::integer, 0, "Seed of every augmentation draw (Philox keyed by seed, epoch, clip, augmentation)."), 0, 4294967295.0));
  s.push_back(range(key("augment.noise.p", T::number, 0.0, "Probability of AddGaussianNoise."), 0, 1));
  s.push_back(range(key("augment.noise.min_amplitude", T::number, 0.001, "Noise amplitude ~ U(min, max); adds amplitude*N(0,1)."), 0, kInf));
  s.push_back(range(key("augment.noise.max_amplitude", T::number, 0.015, "Upper end of the noise amplitude."), 0, kInf));
  s.push_back(range(key("augment.pitch_shift.p", T::number, 0.0, "Probability of a pitch shift (librosa.effects.pitch_shift)."), 0, 1));
  s.push_back(range(key("augment.pitch_shift.min_semitones", T::number, -4.0, "Semitones ~ U(min, max)."), -48, 48));
  s.push_back(range(key("augment.pitch_shift.max_semitones", T::number, 12.0, "Upper end of the semitone range."), -48, 48));
  s.push_back(range(key("augment.pitch_shift.n_fft", T::integer, 2048, "Phase-vocoder STFT size."), 16, 65536));
  s.push_back(range(key("augment.pitch_shift.hop_length", T::integer, 512, "Phase-vocoder hop."), 1, 65536));
  s.push_back(range(key("augment.time_stretch.p", T::number, 0.0, "Probability of a time stretch (length kept)."), 0, 1));
  s.push_back(range(key("augment.time_stretch.min_rate", T::number, 0.8, "Rate ~ U(min, max); > 1 is faster."), 0.05, 20));
  s.push_back(range(key("augment.time_stretch.max_rate", T::number, 1.25, "Upper end of the rate range."), 0.05, 20));
  s.push_back(range(key("augment.time_shift.p", T::number, 0.0, "Probability of a time shift."), 0, 1));
  s.push_back(range(key("augment.time_shift.min_fraction", T::number, -0.5, "Shift ~ U(min, max) times the clip length."), -1, 1));
  s.push_back(range(key("augment.time_shift.max_fraction", T::number, 0.5, "Upper end of the shift fraction."), -1, 1));
  s.push_back(key("augment.time_shift.rollover", T::boolean, true, "true: roll around; false: fill with zeros."));
  s.push_back(range(key("augment.gain.p", T::number, 0.0, "Probability of a gain change."), 0, 1));
  s.push_back(range(key("augment.gain.min_db", T::number, -12.0, "Gain ~ U(min, max) dB."), -120, 120));
  s.push_back(range(key("augment.gain.max_db", T::number, 12.0, "Upper end of the gain range."), -120, 120));
  s.push_back(range(key("augment.spec_mask.p", T::number, 0.0,
                        "Probability of SpecAugment masking on the mel spectrogram. Masked cells are set to 0: silence "
                        "in a power mel, the band mean with features.standardize, but a loud level in unstandardised "
                        "dB features (train warns)."),
                    0, 1));
  s.push_back(range(key("augment.spec_mask.time_masks", T::integer, 2, "Number of time masks."), 0, 1000));
  s.push_back(range(key("augment.spec_mask.max_time_width", T::integer, 40, "Maximum frames per time mask."), 0, kInf));
  s.push_back(range(key("augment.spec_mask.freq_masks", T::integer, 2, "Number of frequency masks."), 0, 1000));
  s.push_back(range(key("augment.spec_mask.max_freq_width", T::integer, 16, "Maximum mel bands per frequency mask."), 0, kInf));

  // features (names as librosa names them)
  s.push_back(range(key("features.n_fft", T::integer, 1024, "FFT size."), 2, 1 << 20));
  s.push_back(range(key("features.hop_length", T::integer, 512, "Hop between frames in samples."), 1, 1 << 20));
  s.push_back(range(nullable(key("features.win_length", T::integer, nullptr, "Hann window length (≤ n_fft, centred); null = n_fft.")), 1, 1 << 20));
  s.push_back(range(key("features.n_mels", T::integer, 128, "Mel bands."), 1, 4096));
  s.push_back(range(key("features.power", T::number, 2.0, "Exponent of the magnitude: 1 (amplitude) or 2 (power)."), 1, 2));
  s.push_back(key("features.center", T::boolean, true, "Centre frames (pad n_fft/2 on both sides)."));
  s.push_back(choices(key("features.pad_mode", T::string, "reflect", "Centre padding: reflect | constant (zeros)."), {"reflect", "constant"}));
  s.push_back(key("features.htk", T::boolean, false, "HTK mel scale instead of Slaney."));
  s.push_back(choices(key("features.norm", T::string, "slaney", "Mel filter normalisation: slaney (area) | none."), {"slaney", "none"}));
  s.push_back(range(key("features.fmin", T::number, 0.0, "Lowest mel frequency in Hz."), 0, kInf));
  s.push_back(range(nullable(key("features.fmax", T::number, nullptr, "Highest mel frequency in Hz; null = sample_rate / 2.")), 0, kInf));
  s.push_back(key("features.db", T::boolean, false, "Convert to dB with power_to_db (ref, amin, top_db)."));
  s.push_back(choices(range(key("features.ref", T::number, 1.0, "power_to_db reference: a number or \"max\" (per clip)."), 0, kInf), {"max"}));
  s.push_back(range(key("features.amin", T::number, 1e-10, "power_to_db floor."), 0, kInf));
  s.push_back(range(nullable(key("features.top_db", T::number, 80.0, "power_to_db dynamic range below the peak; null = none.")), 0, kInf));
  s.push_back(key("features.standardize", T::boolean, false, "Standardise each mel band with mean/std from the training set."));

  // model
  s.push_back(key("model.layers", T::layers, baseline_layers(), "Layer list; see experiments/README.md for each layer type's keys."));

  // train
  s.push_back(choices(key("train.optimizer", T::string, "adam", "adam | adamw | sgd."), {"adam", "adamw", "sgd"}));
  s.push_back(range(key("train.lr", T::number, 1e-3, "Learning rate."), 0, kInf));
  s.push_back(range(key("train.beta1", T::number, 0.9, "Adam β1."), 0, 1));
  s.push_back(range(key("train.beta2", T::number, 0.999, "Adam β2."), 0, 1));
  s.push_back(range(key("train.epsilon", T::number, 1e-7, "Adam ε (Keras default 1e-7)."), 0, kInf));
  s.push_back(range(key("train.momentum", T::number, 0.0, "SGD momentum."), 0, 1));
  s.push_back(key("train.nesterov", T::boolean, false, "SGD Nesterov momentum."));
  s.push_back(range(key("train.weight_decay", T::number, 0.0, "Decoupled weight decay (AdamW, SGD)."), 0, kInf));
  s.push_back(range(key("train.l2", T::number, 0.0, "L2 penalty added to the loss (l2 * sum w^2 over kernels)."), 0, kInf));
  s.push_back(range(nullable(key("train.clip_norm", T::number, nullptr, "Clip the global gradient norm to this value; null = off.")), 0, kInf));
  s.push_back(choices(key("train.schedule", T::string, "constant", "Learning-rate schedule: constant | step | cosine."), {"constant", "step", "cosine"}));
  s.push_back(range(key("train.step_epochs", T::integer, 10, "step schedule: multiply lr by step_gamma every this many epochs."), 1, kInf));
  s.push_back(range(key("train.step_gamma", T::number, 0.1, "step schedule factor."), 0, 1));
  s.push_back(range(key("train.warmup_epochs", T::number, 0.0, "Linear warm-up length in epochs (fractional allowed)."), 0, kInf));
  s.push_back(choices(key("train.init", T::string, "glorot_uniform", "Kernel initialiser: glorot_uniform (Keras default) | he_uniform | he_normal."),
                      {"glorot_uniform", "he_uniform", "he_normal"}));
  s.push_back(range(key("train.label_smoothing", T::number, 0.0, "Label smoothing of the cross-entropy."), 0, 1));
  s.push_back(range(key("train.batch_size", T::integer, 32, "Global batch size."), 1, 1 << 20));
  s.push_back(range(key("train.epochs", T::integer, 50, "Epochs."), 1, 1 << 20));
  s.push_back(range(key("train.seed", T::integer, 0, "Seed of initialisation, shuffling and dropout."), 0, 4294967295.0));
  s.push_back(choices(key("train.precision", T::string, "fp32", "fp32 | tf32 | bf16 | fp16 (mixed precision keeps fp32 master weights)."),
                      {"fp32", "tf32", "bf16", "fp16"}));
  s.push_back(range(key("train.loss_scale_init", T::number, 65536.0, "fp16: initial dynamic loss scale (PyTorch GradScaler's 2^16)."), 1.0 / 16384, 1e30));
  s.push_back(range(key("train.loss_scale_growth_interval", T::integer, 2000, "fp16: double the loss scale after this many consecutive steps without overflow (an overflow halves it and skips the step)."), 1, 1 << 30));
  s.push_back(key("train.deterministic", T::boolean, false, "Deterministic cuDNN algorithms: identical metrics run to run."));
  s.push_back(choices(key("train.conv_engine", T::string, "auto", "cuda: who runs each conv2d pass (forward, input gradient, kernel gradient). auto: cuDNN's fastest algorithm or im2col + one cuBLAS matrix product (on the 16-bit copies under bf16/fp16), whichever the first batch of each shape measures faster (cuDNN under train.deterministic); cudnn: cuDNN only; gemm: im2col + cuBLAS wherever its column matrix fits (at most 4 GiB and a quarter of the free memory; under bf16/fp16 not for layers whose input needs asymmetric \"same\" padding). The cpu backend always runs im2col + GEMM. Same results up to summation order; see docs/network-gpu.md."),
                      {"auto", "cudnn", "gemm"}));
  s.push_back(choices(
      key("train.cudnn_search", T::string, "probe",
          "cuda, unless train.deterministic: how the benchmark of each convolution pass finds cuDNN's fastest "
          "algorithm on the layer's real data. probe: each candidate cuDNN's heuristics list (the algorithms Find "
          "would run) first runs on an eighth of the batch, and those within 4x of the fastest there are timed on the "
          "whole batch (once untimed, then twice); a hopeless candidate such as backward-data algo_0, 30-167 ms a run "
          "in the baseline's fp32 convolutions, costs an eighth of one run instead of whole runs. find: cudnnFind "
          "times every algorithm on the whole batch (PyTorch's benchmark mode). See docs/network-gpu.md."),
      {"probe", "find"}));
  s.push_back(range(key("train.cudnn_benchmark_limit", T::integer, 0,
                        "cuda, train.cudnn_search=probe, unless train.deterministic: how many of cuDNN's candidates "
                        "the benchmark of each convolution pass considers. 0: every one; N: the first N that cuDNN's "
                        "heuristics rank (torch.backends.cudnn.benchmark_limit). A small N may miss cuDNN's fastest "
                        "algorithm; see docs/network-gpu.md."),
                    0, 1000));
  s.push_back(key("train.cuda_graph", T::boolean, true, "cuda: capture each batch shape's training step in a CUDA graph and replay it (less host launch overhead, same results bit for bit); not for recurrent layers or data parallel, which run eagerly. false gives eager steps with per-layer NVTX ranges for profiling; see docs/network-gpu.md."));
  s.push_back(range(key("train.checkpoint_every", T::integer, 1, "Save a checkpoint every this many epochs (and at the end), written in the background while training goes on; when the previous one is still being written the save moves to the next epoch end."), 1, kInf));
  s.push_back(key("train.fuse_conv_pool", T::boolean, true, "When the model starts with conv2d → maxpool2d (kernel volume kh·kw·channels ≤ 16, as the baseline's first layer), run the two as one fused layer that never stores the conv output (about 12 GB less memory traffic a baseline step), with the dropout after the pool when there is one (the same masks as the dropout layer's); same results up to float32 summation order (and TF32 rounding under train.precision tf32, which the fused layer does not apply). On by default: with the other fusions and conv engines in place, a baseline training step on an H200 is 1.09x faster with it in fp32, 1.13x in tf32 and 1.06x in bf16 (docs/benchmarks.md); the cpu backend runs the same model at about the same speed. Models that cannot fuse run layer by layer without a note unless the experiment sets the key; see docs/network-gpu.md."));
  s.push_back(key("train.fuse_conv_epilogue", T::boolean, true, "Where a conv2d is followed by a maxpool2d whose windows tile its output (stride = pool size, padding valid; the baseline's second to fourth convolutions), and optionally by a dropout, run the conv's bias + activation, the pooling and the dropout as one pass over the conv output, forward and backward, instead of four (about 5 GB less memory traffic a baseline step at batch 32). Same results as the layers one by one (bit for bit on the cpu backend; on the GPU the bias gradient adds the same values in another order). On by default on both backends; false runs the layers one by one. See docs/network-gpu.md."));
  s.push_back(range(key("train.sync_every_steps", T::integer, 0, "Steps between the host's reads of the training steps' losses, the NaN/Inf guard and (data parallel) the agreement on stops; in between the host queues batches and steps without waiting for the GPU. 0 = 16 on cuda, 1 on cpu; 1 finds a non-finite weight at the very step (see docs/network-gpu.md)."), 0, 1000000));
  s.push_back(range(key("train.comm_timeout_s", T::number, 300.0, "Data parallel (NCCL): give up when a collective makes no progress this long (a rank died or hangs)."), 1, kInf));
  s.push_back(key("train.sync_batchnorm", T::boolean, false, "Data parallel: batch-norm training statistics (mean, biased variance) and backward sums over the global batch of all ranks, so a world of N trains the model a world of one trains (two small all-reduces per batch-norm layer and step); false: each rank normalises with its own shard. No effect in a world of one or without batch norm."));

  // output
  KeySpec out = key("output.dir", T::path, "runs", "Parent folder of run directories (--out overrides); relative to the working directory.");
  out.relative_to_cwd = true;
  s.push_back(out);
  return s;
}

}  // namespace

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> schema = make_schema();
  return schema;
}

const KeySpec* find_key_spec(const std::string& path) {
  for (const KeySpec& k : config_schema())
    if (k.path == path) return &k;
  return nullptr;
}

std::string describe_type(const KeySpec& k) {
  std::ostringstream os;
  // Bounds as written in a file: whole numbers in full (4294967295, not 4.29497e+09), others in
  // the shortest form that reads back exactly.
  auto bound = [](double x) {
    if (x == std::floor(x) && std::abs(x) < 1e15) return std::to_string(int64_t(x));
    std::string text;
    for (int digits = 1; digits <= 17; ++digits) {  // 17 significant digits always read back exactly
      std::ostringstream b;
      b << std::setprecision(digits) << x;
      text = b.str();
      if (std::stod(text) == x) break;
    }
    return text;
  };
  auto bounds = [&] {
    if (std::isfinite(k.min) && std::isfinite(k.max)) os << " in [" << bound(k.min) << ", " << bound(k.max) << "]";
    else if (std::isfinite(k.min)) os << " >= " << bound(k.min);
    else if (std::isfinite(k.max)) os << " <= " << bound(k.max);
  };
  switch (k.type) {
    case KeyType::boolean: os << "true or false"; break;
    case KeyType::integer: os << "an integer"; bounds(); break;
    case KeyType::number:
      os << "a number"; bounds();
      for (const auto& c : k.choices) os << " or \"" << c << "\"";
      break;
    case KeyType::string:
      if (k.folder_name)
        os << "a folder name (not empty, \".\" or \"..\"; no '/' or NUL; at most " << kMaxFolderName << " bytes)";
      else if (k.choices.empty())
        os << "a string";
      else {
        os << "one of ";
        for (size_t i = 0; i < k.choices.size(); ++i) os << (i ? " | " : "") << k.choices[i];
      }
      break;
    case KeyType::path: os << "a path (string, ${VAR} allowed)"; break;
    case KeyType::string_list: os << "a list of strings"; break;
    case KeyType::layers: os << "a list of layer objects"; break;
  }
  if (k.nullable) os << ", or null";
  return os.str();
}

}  // namespace genrelab
