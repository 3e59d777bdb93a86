// GPU augmentation: the ops/augment.h gather functors launched over (row, element) grids, cuFFT
// R2C/C2R for the phase vocoder's STFT and inverse, a Thrust segmented scan for its phase
// accumulation. Launchers sit below the kernels' functors; every launch is checked.
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/scan.h>

#include <algorithm>
#include <cmath>

#include "genrelab/cuda/augment.h"
#include "genrelab/cuda/launch.cuh"
#include "genrelab/cuda/stage_clock.h"
#include "genrelab/ops/augment.h"
#include "genrelab/ops/resample.h"
#include "genrelab/ops/stft.h"

namespace genrelab::cuda {

namespace {

struct NormalFillFunctor {
  PhiloxStream stream;
  float* y;  // y: (n,)
  GENRELAB_HD void operator()(int64_t i) const { y[i] = stream.normal(uint64_t(i)); }
};

// dst[r, j] = src[rows[r], j] (rows: (count,) device): compacts the rows a step applies to.
struct GatherRowsFunctor {
  const float* src;    // src: (batch, n)
  float* dst;          // dst: (count, n)
  const int32_t* rows;
  int64_t n;
  GENRELAB_HD void operator()(int64_t r, int64_t j) const { dst[r * n + j] = src[int64_t(rows[r]) * n + j]; }
};
// dst[rows[r], j] = src[r, j]
struct ScatterRowsFunctor {
  const float* src;    // src: (count, n)
  float* dst;          // dst: (batch, n)
  const int32_t* rows;
  int64_t n;
  GENRELAB_HD void operator()(int64_t r, int64_t j) const { dst[int64_t(rows[r]) * n + j] = src[r * n + j]; }
};

// Segment key of element i of a (segments, len) array.
struct RowOf {
  int64_t len;
  __host__ __device__ int64_t operator()(int64_t i) const { return i / len; }
};

// The passes' names: NVTX ranges, and the stages of set_stage_timing.
const std::string kCopyStage = "augment copy", kGatherStage = "augment gather rows",
                  kScatterStage = "augment scatter rows", kFrameStage = "pv frame", kStftStage = "pv stft (cuFFT R2C)",
                  kPolarStage = "pv polar", kAdvanceStage = "pv phase advance", kScanStage = "pv phase scan (Thrust)",
                  kSynthStage = "pv synthesis", kIstftStage = "pv istft (cuFFT C2R)",
                  kOverlapAddStage = "pv overlap-add", kFilterStage = "resample filters", kResampleStage = "resample",
                  kTimeShiftStage = "time shift", kGainStage = "gain", kNoiseStage = "noise",
                  kSpecMaskStage = "spec mask";

// cuFFT runs in pieces of at most kFftPiece transforms, the last rounded up to a multiple of
// kFftGrain, with a plan per piece size (at most kFftPiece / kFftGrain of them per direction,
// kept): the rows to transform (clips × frames; output frames ⌈frames / rate⌉) differ from one
// chunk of pitch-shifted rows to the next, and a plan for each exact size would cost host time and
// a workspace allocation at nearly every chunk. Buffers hold whole grains; the transforms past the
// real rows (fewer than kFftGrain) read and write rows that nothing uses.
constexpr int64_t kFftPiece = 2048, kFftGrain = 128;
int64_t whole_grains(int64_t rows) { return ceil_div(rows, kFftGrain) * kFftGrain; }

template <typename T>
void upload(DeviceBuffer<T>& dst, const std::vector<T>& src, cudaStream_t stream) {
  dst.resize(src.size());
  if (!src.empty())
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice, stream));
}

}  // namespace

// Grid: rows = the batch's rows, cols = their banks' (phases + 1) · taps entries.
void build_polyphase_banks(const ResampleFilterDesign& design, const float* table, const double* scale, int64_t batch,
                           int phases, int half, float* bank, cudaStream_t s) {
  launch_2d(batch, int64_t(phases + 1) * 2 * half, PolyphaseBankFunctor::of(design, table, scale, bank, phases, half),
            s);
}

// Grid: one thread per normal number.
void fill_normal(const PhiloxStream& stream, float* y, int64_t n, cudaStream_t s) {
  GENRELAB_CHECK(n >= 0, "fill_normal: negative count");
  launch_1d(n, NormalFillFunctor{stream, y}, s);
}

struct Augmenter::Impl {
  // STFT workspaces (see stretch()), resized on demand.
  DeviceBuffer<float> window, frames, spec, polar, stretched, audio, tmp, tmp2, bank, table;
  DeviceBuffer<double> incr, rate, step, scale;
  DeviceBuffer<int64_t> t_out, length, valid, shift;
  DeviceBuffer<float> factor, amplitude;
  DeviceBuffer<PhiloxStream> streams;
  DeviceBuffer<int32_t> rows;
  DeviceBuffer<uint8_t> applied;
  int window_n_fft = 0;
  const float* table_source = nullptr;            // the host table `table` holds (resample_table's, kept)
  FftPlanCache plans{2 * kFftPiece / kFftGrain};  // each direction's piece sizes
  // Host copies must outlive their asynchronous uploads: kept here until the next call.
  std::vector<double> h_rate, h_step, h_scale;
  std::vector<int64_t> h_t_out, h_length, h_valid, h_shift;
  std::vector<float> h_factor, h_amplitude;
  std::vector<PhiloxStream> h_streams;
  std::vector<int32_t> h_rows;
  std::vector<uint8_t> h_applied;
  // Stage timing: the clock, used while `timing`.
  StageClock clock;
  bool timing = false;

  // One pass of the work on `stream`: an NVTX range, and a timed stage moving `bytes` when timing.
  StageRange stage(const std::string& name, double bytes, cudaStream_t stream) {
    return StageRange(name, timing ? &clock : nullptr, stream, bytes);
  }

  void ensure_window(int n_fft, cudaStream_t stream) {
    if (window_n_fft == n_fft) return;
    const auto w = hann_window(n_fft, n_fft);
    window.resize(w.size());
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(window.data(), w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));  // `w` dies here
    window_n_fft = n_fft;
  }
  // exec(plan, first transform) for the `rows` transforms of n_fft points, piece by piece, on `stream`.
  template <typename Exec>
  void fft_pieces(bool forward, int n_fft, int64_t rows, cudaStream_t stream, Exec&& exec) {
    for (int64_t at = 0; at < rows; at += kFftPiece) {
      const int64_t count = std::min(kFftPiece, whole_grains(rows - at));
      exec(forward ? plans.r2c(n_fft, count, stream) : plans.c2r(n_fft, count, stream), at);
    }
  }
};

Augmenter::Augmenter() : impl_(std::make_unique<Impl>()) {}
Augmenter::~Augmenter() = default;

void Augmenter::set_stage_timing(bool on) { impl_->timing = on; }

std::vector<Augmenter::StageTime> Augmenter::take_stage_times() {
  Impl& m = *impl_;
  std::vector<StageTime> out;
  m.clock.read([&](const std::string& name, double ms, double bytes) {
    auto it = std::find_if(out.begin(), out.end(), [&](const StageTime& t) { return t.name == name; });
    if (it == out.end()) it = out.insert(out.end(), StageTime{name});
    it->ms += ms;
    it->bytes += bytes;
    ++it->passes;
  });
  m.clock.clear();
  return out;
}

// Stages: frame (rows = clip·frame, cols = n_fft) → cuFFT R2C → polar (rows = clip·frame, cols =
// bin) → phase increments (rows = clip·bin,
// cols = output frame) → segmented exclusive scan per (clip, bin) → synthesis (rows = clip·output
// frame, cols = bin) → cuFFT C2R → overlap-add (rows = clip, cols = output sample).
void Augmenter::stretch(const float* x, int64_t batch, int64_t n, const std::vector<double>& rate,
                        const std::vector<int64_t>& length, int64_t stride, int n_fft, int hop, float* y,
                        cudaStream_t stream) {
  GENRELAB_CHECK(batch >= 1 && n >= 1 && n_fft >= 2 && hop >= 1, "stretch: bad geometry batch=", batch, " n=", n);
  GENRELAB_CHECK(int64_t(rate.size()) == batch && int64_t(length.size()) == batch, "stretch: one rate and length per row");
  Impl& m = *impl_;
  m.ensure_window(n_fft, stream);
  const int bins = n_fft / 2 + 1;
  const int64_t n_frames = stft_frame_count(n, n_fft, hop, true);
  m.h_t_out.assign(size_t(batch), 0);
  int64_t t_out_max = 1;
  for (int64_t b = 0; b < batch; ++b) {
    GENRELAB_CHECK(rate[size_t(b)] > 0 && std::isfinite(rate[size_t(b)]), "time-stretch rate must be positive");
    m.h_t_out[size_t(b)] = int64_t(std::ceil(double(n_frames) / rate[size_t(b)]));
    t_out_max = std::max(t_out_max, m.h_t_out[size_t(b)]);
  }
  m.h_rate = rate;
  m.h_length = length;
  upload(m.rate, m.h_rate, stream);
  upload(m.t_out, m.h_t_out, stream);
  upload(m.length, m.h_length, stream);

  // Bytes of the passes' buffers (stage timing): input frames, output frames, their spectra and
  // polar forms (float pairs), the phase increments (doubles).
  const double in_frames = double(batch * n_frames), out_frames = double(batch * t_out_max);
  const double f4 = sizeof(float), f8 = sizeof(double);

  // frames: (batch, n_frames, n_fft); spec: (batch, n_frames, bins, 2); both in whole FFT grains
  m.frames.resize(size_t(whole_grains(batch * std::max(n_frames, t_out_max)) * n_fft));
  m.spec.resize(size_t(whole_grains(batch * n_frames) * bins * 2));
  {
    const StageRange r = m.stage(kFrameStage, double(batch * n) * f4 + in_frames * n_fft * f4, stream);
    launch_2d(
        batch * n_frames, n_fft,
        FrameFunctor{x, m.window.data(), m.frames.data(), n, n_frames, n_fft, hop, n_fft, true, PadMode::constant},
        stream);
  }
  {
    const StageRange r = m.stage(kStftStage, in_frames * (n_fft * f4 + bins * 2 * f4), stream);
    m.fft_pieces(true, n_fft, batch * n_frames, stream, [&](cufftHandle plan, int64_t at) {
      GENRELAB_CUDA_CHECK(
          cufftExecR2C(plan, m.frames.data() + at * n_fft, reinterpret_cast<cufftComplex*>(m.spec.data()) + at * bins));
    });
  }

  const PvGeometry g{n_fft, hop, bins, n_frames, t_out_max, t_out_max, 1};  // bin-major: one scan segment per bin
  // polar: (batch, n_frames, bins, 2); incr: (batch, bins, t_out_max) → exclusive prefix sums in place
  m.polar.resize(size_t(batch * n_frames * bins * 2));
  {
    const StageRange r = m.stage(kPolarStage, in_frames * bins * 4 * f4, stream);
    launch_2d(batch * n_frames, bins, PolarFunctor{m.spec.data(), m.polar.data(), bins}, stream);
  }
  m.incr.resize(size_t(batch * bins * t_out_max));
  {
    // reads the angles, which share their 16 bytes with the magnitudes
    const StageRange r = m.stage(kAdvanceStage, in_frames * bins * 2 * f4 + out_frames * bins * f8, stream);
    launch_2d(batch * bins, t_out_max,
              PhaseAdvanceFunctor{m.polar.data(), m.incr.data(), m.rate.data(), m.t_out.data(), g}, stream);
  }
  {
    const StageRange r = m.stage(kScanStage, 2 * out_frames * bins * f8, stream);
    const auto keys = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), RowOf{t_out_max});
    const int64_t total = batch * bins * t_out_max;
    thrust::exclusive_scan_by_key(thrust::cuda::par.on(stream), keys, keys + total, m.incr.data(), m.incr.data());
    GENRELAB_CUDA_CHECK(cudaGetLastError());
  }

  // stretched: (batch, t_out_max, bins, 2) in whole FFT grains; frames reused as (batch, t_out_max, n_fft)
  m.stretched.resize(size_t(whole_grains(batch * t_out_max) * bins * 2));
  {
    const StageRange r = m.stage(kSynthStage, in_frames * bins * 2 * f4 + out_frames * bins * (f8 + 2 * f4), stream);
    launch_2d(batch * t_out_max, bins,
              PvSynthFunctor{m.polar.data(), m.incr.data(), m.stretched.data(), m.rate.data(), m.t_out.data(), g},
              stream);
  }
  {
    const StageRange r = m.stage(kIstftStage, out_frames * (bins * 2 * f4 + n_fft * f4), stream);
    m.fft_pieces(false, n_fft, batch * t_out_max, stream, [&](cufftHandle plan, int64_t at) {
      GENRELAB_CUDA_CHECK(cufftExecC2R(plan, reinterpret_cast<cufftComplex*>(m.stretched.data()) + at * bins,
                                       m.frames.data() + at * n_fft));
    });
  }
  {
    const StageRange r = m.stage(kOverlapAddStage, out_frames * n_fft * f4 + double(batch * stride) * f4, stream);
    launch_2d(batch, stride,
              OverlapAddFunctor{m.frames.data(), m.window.data(), y, m.t_out.data(), m.length.data(), t_out_max, stride,
                                n_fft, hop},
              stream);
  }
}

// Grid of the resampling: rows = clips, cols = output samples (n).
void Augmenter::pitch_shift(const float* x, int64_t batch, int64_t n, const std::vector<double>& semitones, int n_fft,
                            int hop, float* y, cudaStream_t stream) {
  GENRELAB_CHECK(int64_t(semitones.size()) == batch, "pitch_shift: one semitone value per row");
  Impl& m = *impl_;
  const ResampleFilterDesign design{};
  std::vector<double> rate(static_cast<size_t>(batch));
  std::vector<int64_t> len(static_cast<size_t>(batch));
  int64_t len_max = 1;
  for (int64_t b = 0; b < batch; ++b) {
    rate[size_t(b)] = std::pow(2.0, -semitones[size_t(b)] / 12.0);
    len[size_t(b)] = std::max<int64_t>(1, int64_t(std::nearbyint(double(n) / rate[size_t(b)])));
    len_max = std::max(len_max, len[size_t(b)]);
  }
  m.audio.resize(size_t(batch * len_max));  // audio: (batch, len_max)
  stretch(x, batch, n, rate, len, len_max, n_fft, hop, m.audio.data(), stream);
  m.h_step.assign(size_t(batch), 0);
  m.h_scale.assign(size_t(batch), 0);
  m.h_valid.assign(size_t(batch), 0);
  for (int64_t b = 0; b < batch; ++b) {
    m.h_valid[size_t(b)] = int64_t(std::ceil(double(len[size_t(b)]) * rate[size_t(b)]));
    m.h_step[size_t(b)] = 1.0 / rate[size_t(b)];
    m.h_scale[size_t(b)] = design.rolloff * std::min(1.0, rate[size_t(b)]);
  }
  // The rows' filters, built here from the windowed-sinc table (uploaded once) and their scales.
  const PolyphaseBank geo = pitch_shift_bank_geometry(m.h_scale);
  upload(m.step, m.h_step, stream);
  upload(m.valid, m.h_valid, stream);
  upload(m.scale, m.h_scale, stream);
  const std::vector<float>& table = resample_table(design);
  if (m.table_source != table.data()) {  // once per design; a blocking copy, seen by every stream
    m.table.resize(table.size());
    copy_to_device(m.table.data(), table.data(), table.size());
    m.table_source = table.data();
  }
  const int64_t bank_row = int64_t(geo.phases + 1) * geo.taps;
  m.bank.resize(size_t(batch * bank_row));  // bank: (batch, phases + 1, taps)
  const double bank_bytes = double(batch * bank_row) * sizeof(float);
  {
    const StageRange r = m.stage(kFilterStage, bank_bytes, stream);
    build_polyphase_banks(design, m.table.data(), m.scale.data(), batch, geo.phases, geo.half, m.bank.data(), stream);
  }
  // m.length already holds `len` (the istft lengths uploaded by stretch()), the rows' n_in here
  const StageRange r = m.stage(kResampleStage, double(batch * (len_max + n)) * sizeof(float) + bank_bytes, stream);
  launch_2d(batch, n,
            ResampleRowsFunctor{m.audio.data(), y, m.bank.data(), m.length.data(), m.valid.data(), m.step.data(),
                                len_max, n, geo},
            stream);
}

// Chain order as on the CPU. Pitch shift and time stretch run on the compacted rows that carry
// the step; the element-wise steps run over all rows with identity parameters where they do not apply.
void Augmenter::apply(const std::vector<AugmentedExample>& examples, const AugmentSettings& s, const float* x,
                      float* y, int64_t n, cudaStream_t stream) {
  const int64_t batch = int64_t(examples.size());
  GENRELAB_CHECK(x != y, "Augmenter::apply: x and y must be distinct buffers");
  if (batch == 0 || n == 0) return;
  Impl& m = *impl_;
  const double clip_bytes = double(n) * sizeof(float);  // one row
  {
    const StageRange r = m.stage(kCopyStage, 2 * double(batch) * clip_bytes, stream);
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(y, x, size_t(batch * n) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  }
  m.tmp.resize(size_t(batch * n));
  m.tmp2.resize(size_t(batch * n));
  for (int k = 0; k < kAugmentKinds; ++k) {
    const AugmentKind kind = AugmentKind(k);
    std::vector<int32_t> rows;
    std::vector<double> values;
    for (int64_t b = 0; b < batch; ++b)
      for (const auto& st : examples[size_t(b)].steps)
        if (st.kind == kind) { rows.push_back(int32_t(b)); values.push_back(st.value); }
    if (rows.empty() || kind == AugmentKind::spec_mask) continue;
    const int64_t count = int64_t(rows.size());
    if (kind == AugmentKind::pitch_shift || kind == AugmentKind::time_stretch) {
      GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));  // host staging vectors are reused below
      m.h_rows = rows;
      upload(m.rows, m.h_rows, stream);
      {
        const StageRange r = m.stage(kGatherStage, 2 * double(count) * clip_bytes, stream);
        launch_2d(count, n, GatherRowsFunctor{y, m.tmp.data(), m.rows.data(), n}, stream);
      }
      if (kind == AugmentKind::pitch_shift) {
        pitch_shift(m.tmp.data(), count, n, values, s.pitch_shift.n_fft, s.pitch_shift.hop_length, m.tmp2.data(), stream);
      } else {
        std::vector<int64_t> len(static_cast<size_t>(count));
        for (int64_t r = 0; r < count; ++r)
          len[size_t(r)] = std::max<int64_t>(1, int64_t(std::nearbyint(double(n) / values[size_t(r)])));
        stretch(m.tmp.data(), count, n, values, len, n, s.pitch_shift.n_fft, s.pitch_shift.hop_length, m.tmp2.data(),
                stream);
      }
      GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));
      m.h_rows = rows;
      upload(m.rows, m.h_rows, stream);
      const StageRange r = m.stage(kScatterStage, 2 * double(count) * clip_bytes, stream);
      launch_2d(count, n, ScatterRowsFunctor{m.tmp2.data(), y, m.rows.data(), n}, stream);
      continue;
    }
    // element-wise steps: per-row parameters over the whole batch
    GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (kind == AugmentKind::time_shift) {
      m.h_shift.assign(size_t(batch), 0);
      for (int64_t r = 0; r < count; ++r) m.h_shift[size_t(rows[size_t(r)])] = shift_samples(values[size_t(r)], n);
      upload(m.shift, m.h_shift, stream);
      const StageRange r = m.stage(kTimeShiftStage, 4 * double(batch) * clip_bytes, stream);
      launch_2d(batch, n, ShiftFunctor{y, m.tmp.data(), m.shift.data(), n, s.time_shift.rollover}, stream);
      GENRELAB_CUDA_CHECK(cudaMemcpyAsync(y, m.tmp.data(), size_t(batch * n) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    } else if (kind == AugmentKind::gain) {
      m.h_factor.assign(size_t(batch), 1.0f);
      for (int64_t r = 0; r < count; ++r) m.h_factor[size_t(rows[size_t(r)])] = gain_factor(values[size_t(r)]);
      upload(m.factor, m.h_factor, stream);
      const StageRange r = m.stage(kGainStage, 2 * double(batch) * clip_bytes, stream);
      launch_2d(batch, n, GainFunctor{y, y, m.factor.data(), n}, stream);
    } else if (kind == AugmentKind::noise) {
      m.h_amplitude.assign(size_t(batch), 0.0f);
      m.h_streams.assign(size_t(batch), PhiloxStream{});
      for (int64_t b = 0; b < batch; ++b) m.h_streams[size_t(b)] = examples[size_t(b)].noise_stream(s.seed);
      for (int64_t r = 0; r < count; ++r) m.h_amplitude[size_t(rows[size_t(r)])] = float(values[size_t(r)]);
      upload(m.amplitude, m.h_amplitude, stream);
      upload(m.streams, m.h_streams, stream);
      const StageRange r = m.stage(kNoiseStage, 2 * double(batch) * clip_bytes, stream);
      launch_2d(batch, NoiseFunctor::cols(n), NoiseFunctor{y, y, m.amplitude.data(), m.streams.data(), n}, stream);
    }
  }
}

// Grid: rows = clip·mel band, cols = frames; in place.
void Augmenter::spec_mask(const std::vector<AugmentedExample>& examples, const AugmentSettings& s, float* mel,
                          int64_t n_mels, int64_t n_frames, cudaStream_t stream) {
  const int64_t batch = int64_t(examples.size());
  if (batch == 0) return;
  Impl& m = *impl_;
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));
  m.h_applied.assign(size_t(batch), 0);
  m.h_streams.assign(size_t(batch), PhiloxStream{});
  for (int64_t b = 0; b < batch; ++b) {
    m.h_applied[size_t(b)] = examples[size_t(b)].has(AugmentKind::spec_mask);
    m.h_streams[size_t(b)] = examples[size_t(b)].spec_mask_stream(s.seed);
  }
  upload(m.applied, m.h_applied, stream);
  upload(m.streams, m.h_streams, stream);
  const SpecMaskGeometry geo{s.spec_mask.time_masks, s.spec_mask.max_time_width, s.spec_mask.freq_masks,
                             s.spec_mask.max_freq_width};
  const StageRange r = m.stage(kSpecMaskStage, 2 * double(batch * n_mels * n_frames) * sizeof(float), stream);
  launch_2d(batch * n_mels, n_frames,
            SpecMaskFunctor{mel, m.applied.data(), m.streams.data(), geo, n_mels, n_frames, 0.0f}, stream);
}

}  // namespace genrelab::cuda
