// Mel spectrogram extraction for a batch of equal-length clips, equal to librosa's
// feature.melspectrogram (+ optional power_to_db and per-band standardisation), on the CPU
// (FFTW + the functors of ops/stft.h and ops/mel.h) or the GPU (cuFFT + the same functors).
// Output layout (batch, n_mels, n_frames): the network reads it as NHWC (n, n_mels, n_frames, 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "genrelab/device.h"
#include "genrelab/ops/mel.h"
#include "genrelab/ops/stft.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; declared here so CPU code needs no CUDA header

namespace genrelab {

class Config;

// The `features` section (plus dataset.sample_rate), resolved: fmax and win_length filled in.
struct MelParams {
  int sample_rate = 22050;
  int n_fft = 1024;
  int hop_length = 512;
  int win_length = 1024;
  int n_mels = 128;
  float power = 2.0f;
  bool center = true;
  PadMode pad_mode = PadMode::reflect;
  bool htk = false;
  MelNorm norm = MelNorm::slaney;
  double fmin = 0.0;
  double fmax = 11025.0;
  bool db = false;
  DbParams db_params;
  bool standardize = false;

  // From an experiment config; errors name the key (ConfigError).
  static MelParams from_config(const Config& config);
  // Checks the combination (win_length <= n_fft, fmin < fmax <= sr/2 ...); ConfigError otherwise.
  void validate() const;
  MelFilterbankSpec filterbank_spec() const;
  // Frames for a clip of n_samples (librosa's count; 0 when the clip is too short uncentred).
  int64_t n_frames(int64_t n_samples) const { return stft_frame_count(n_samples, n_fft, hop_length, center); }
  int n_bins() const { return n_fft / 2 + 1; }
};

// Per-band statistics of the training set (features.standardize): what the network sees is
// (mel - mean[m]) / std[m].
struct MelBandStats {
  std::vector<float> mean;  // mean: (n_mels,)
  std::vector<float> std;   // std: (n_mels,)
};

class MelExtractor {
 public:
  MelExtractor(const MelParams& params, Device device);
  ~MelExtractor();
  MelExtractor(const MelExtractor&) = delete;
  MelExtractor& operator=(const MelExtractor&) = delete;

  const MelParams& params() const { return params_; }
  Device device() const { return device_; }
  const MelFilterbank& filterbank() const { return filterbank_; }
  int64_t n_frames(int64_t n_samples) const { return params_.n_frames(n_samples); }

  // audio: (batch, n_samples) -> mel: (batch, n_mels, n_frames), both in the backend's memory
  // (host memory for cpu, device memory for cuda). On cuda the work is enqueued on `stream`
  // (nullptr: an internal stream, synchronised before returning). Includes dB and
  // standardisation when the params ask for them (standardisation needs set_band_stats()).
  void compute(const float* audio, int64_t batch, int64_t n_samples, float* mel, CUstream_st* stream = nullptr);
  // Same, without the standardisation step: what band statistics are computed from.
  void compute_unstandardized(const float* audio, int64_t batch, int64_t n_samples, float* mel,
                              CUstream_st* stream = nullptr);
  // Host vectors in and out on either backend (uploads and downloads on cuda).
  // audio: (batch, n_samples) -> (batch, n_mels, n_frames)
  std::vector<float> compute_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples);

  // Training-set statistics for features.standardize (see MelBandStatsAccumulator).
  void set_band_stats(const MelBandStats& stats);
  bool has_band_stats() const { return has_stats_; }
  // Adds the rows of mel (backend memory, unstandardised) to `acc`; on cuda the row reductions
  // run on the GPU (CUB) and only (batch, n_mels) partial results come back.
  // mel: (batch, n_mels, n_frames)
  void accumulate_band_stats(const float* mel, int64_t batch, int64_t n_frames, MelBandStatsAccumulator& acc,
                             CUstream_st* stream = nullptr);
  // Computes the unstandardised mels of host audio (batch, n_samples) on the backend and adds
  // them to `acc`: the whole statistics pass for clips held in host memory.
  void accumulate_band_stats_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                                  MelBandStatsAccumulator& acc);

  // Backend interface (CPU in host/features.cpp, CUDA in cuda/features.cu).
  struct Backend {
    virtual ~Backend() = default;
    virtual void mel(const float* audio, int64_t batch, int64_t n_samples, float* mel, bool standardize,
                     CUstream_st* stream) = 0;
    virtual void set_band_stats(const std::vector<float>& mean, const std::vector<float>& inv_std) = 0;
    virtual void accumulate(const float* mel, int64_t batch, int64_t n_frames, MelBandStatsAccumulator& acc,
                            CUstream_st* stream) = 0;
    virtual std::vector<float> mel_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                                        bool standardize) = 0;
    virtual void accumulate_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                                 MelBandStatsAccumulator& acc) = 0;
  };

 private:
  MelParams params_;
  Device device_;
  MelFilterbank filterbank_;
  bool has_stats_ = false;
  std::unique_ptr<Backend> backend_;
};

// Backend factories. make_cuda_mel_backend throws RuntimeError in builds without CUDA.
std::unique_ptr<MelExtractor::Backend> make_cpu_mel_backend(const MelParams& params, const MelFilterbank& fb);
std::unique_ptr<MelExtractor::Backend> make_cuda_mel_backend(const MelParams& params, const MelFilterbank& fb);

// Bytes a batch moves through memory in the implementation (audio read, frames, spectrum,
// power and mel written and read back once each): the numerator of achieved bandwidth.
double mel_pipeline_bytes(const MelParams& params, int64_t batch, int64_t n_samples);

}  // namespace genrelab
