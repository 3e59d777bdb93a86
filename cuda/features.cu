// GPU mel spectrograms: the ops/stft.h + ops/mel.h functors launched with launch_2d, one cuFFT
// R2C plan per batch shape (cached), CUB segmented reductions for the per-clip maximum of
// power_to_db and for the per-band statistics. Everything is enqueued on the caller's stream.
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <cub/device/device_segmented_reduce.cuh>

#include <map>
#include <utility>

#include "genrelab/cuda/launch.cuh"
#include "genrelab/cuda/memory.h"
#include "genrelab/features.h"
#include "genrelab/nvtx.h"

namespace genrelab {

namespace {

using cuda::launch_1d;
using cuda::launch_2d;

// Segment i of equal-length segments starts at i * length (CUB offset iterator).
struct SegmentStart {
  int64_t length;
  GENRELAB_HD int64_t operator()(int64_t i) const { return i * length; }
};

struct ToDouble {
  GENRELAB_HD double operator()(float v) const { return double(v); }
};

// (x[i] - mean of its row)^2 in double, for the second pass of the per-row variance.
struct SquaredDeviation {
  const float* x;         // x: (rows, length)
  const double* row_sum;  // row_sum: (rows,)
  int64_t length;
  GENRELAB_HD double operator()(int64_t i) const {
    const int64_t r = i / length;
    const double d = double(x[i]) - row_sum[r] / double(length);
    return d * d;
  }
};

template <typename T>
void upload(cuda::DeviceBuffer<T>& dst, const std::vector<T>& src) {
  dst.resize(src.size());
  cuda::copy_to_device(dst.data(), src.data(), src.size());
}

// Workspace budget of one pass (frames + spectrum + power); bigger batches run in several passes.
constexpr double kPassBytes = 1024.0 * 1024.0 * 1024.0;

class CudaMelBackend final : public MelExtractor::Backend {
 public:
  CudaMelBackend(const MelParams& p, const MelFilterbank& fb) : p_(p) {
    upload(window_, hann_window(p.n_fft, p.win_length));
    upload(start_, fb.start);
    upload(count_, fb.count);
    upload(offset_, fb.offset);
    upload(weights_, fb.weights.empty() ? std::vector<float>{0.0f} : fb.weights);
  }

  void mel(const float* audio, int64_t batch, int64_t n_samples, float* mel, bool standardize,
           CUstream_st* user_stream) override {
    const int64_t n_frames = p_.n_frames(n_samples);
    if (batch == 0 || n_frames == 0) return;
    const cudaStream_t s = user_stream ? user_stream : stream_.get();
    NvtxRange range("features");
    const int n_fft = p_.n_fft, n_bins = p_.n_bins(), n_mels = p_.n_mels;

    // Clips per pass: as many as fit the workspace budget (and cuFFT's int batch count).
    const double per_clip = double(n_frames) * (4.0 * n_fft + 8.0 * n_bins + 4.0 * n_bins);
    int64_t per_pass = std::max<int64_t>(1, int64_t(kPassBytes / per_clip));
    // launch_2d covers at most 65535 * 8 rows; the framing grid has clips * n_frames rows.
    constexpr int64_t kMaxRows = 65535 * 8;
    GENRELAB_CHECK(n_frames <= kMaxRows, "a clip of ", n_frames, " frames is too long for one pass; split it");
    per_pass = std::min<int64_t>({per_pass, batch, kMaxRows / n_frames, kMaxRows / n_bins, kMaxRows / n_mels});
    per_pass = std::max<int64_t>(per_pass, 1);
    frames_.resize(size_t(per_pass * n_frames) * size_t(n_fft));  // frames: (per_pass * n_frames, n_fft)
    spec_.resize(size_t(per_pass * n_frames) * size_t(n_bins));   // spec: (per_pass, n_frames, n_bins)
    power_.resize(size_t(per_pass * n_frames) * size_t(n_bins));  // power: (per_pass, n_bins, n_frames)

    for (int64_t c0 = 0; c0 < batch; c0 += per_pass) {
      const int64_t cb = std::min(per_pass, batch - c0);
      float* out = mel + c0 * n_mels * n_frames;  // out: (cb, n_mels, n_frames)
      // Framing: grid rows = (clip, frame), columns = sample within the frame.
      launch_2d(cb * n_frames, n_fft,
                FrameFunctor{audio + c0 * n_samples, window_.data(), frames_.data(), n_samples, n_frames, n_fft,
                             p_.hop_length, n_fft, p_.center, p_.pad_mode},
                s);
      GENRELAB_CUDA_CHECK(cufftExecR2C(plans_.r2c(n_fft, cb * n_frames, s), frames_.data(), spec_.data()));
      // Power: rows = (clip, bin), columns = frame (coalesced writes of the transposed layout).
      launch_2d(
          cb * n_bins, n_frames,
          PowerSpectrumFunctor{reinterpret_cast<const float*>(spec_.data()), power_.data(), n_frames, n_bins, p_.power},
          s);
      // Filterbank: rows = (clip, mel band), columns = frame.
      launch_2d(cb * n_mels, n_frames,
                MelFilterbankFunctor{power_.data(), start_.data(), count_.data(), offset_.data(), weights_.data(), out,
                                     n_frames, n_bins, n_mels},
                s);
      if (p_.db) to_db(out, cb, int64_t(n_mels) * n_frames, s);
      if (standardize)
        launch_2d(cb * n_mels, n_frames, StandardizeFunctor{out, mean_.data(), inv_std_.data(), n_frames, n_mels}, s);
    }
    if (!user_stream) stream_.synchronize();
  }

  void set_band_stats(const std::vector<float>& mean, const std::vector<float>& inv_std) override {
    upload(mean_, mean);
    upload(inv_std_, inv_std);
  }

  void accumulate(const float* mel, int64_t batch, int64_t n_frames, MelBandStatsAccumulator& acc,
                  CUstream_st* user_stream) override {
    const cudaStream_t s = user_stream ? user_stream : stream_.get();
    const int64_t rows = batch * p_.n_mels;  // one row = one band of one clip
    row_sum_.resize(size_t(rows));
    row_m2_.resize(size_t(rows));
    auto starts = thrust::make_transform_iterator(thrust::make_counting_iterator<int64_t>(0), SegmentStart{n_frames});
    auto as_double = thrust::make_transform_iterator(mel, ToDouble{});
    auto deviations = thrust::make_transform_iterator(thrust::make_counting_iterator<int64_t>(0),
                                                      SquaredDeviation{mel, row_sum_.data(), n_frames});
    size_t bytes_sum = 0, bytes_m2 = 0;
    GENRELAB_CUDA_CHECK(
        cub::DeviceSegmentedReduce::Sum(nullptr, bytes_sum, as_double, row_sum_.data(), rows, starts, starts + 1, s));
    GENRELAB_CUDA_CHECK(
        cub::DeviceSegmentedReduce::Sum(nullptr, bytes_m2, deviations, row_m2_.data(), rows, starts, starts + 1, s));
    temp_.resize(std::max<size_t>({bytes_sum, bytes_m2, 1}));
    GENRELAB_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp_.data(), bytes_sum, as_double, row_sum_.data(), rows,
                                                        starts, starts + 1, s));
    GENRELAB_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp_.data(), bytes_m2, deviations, row_m2_.data(), rows,
                                                        starts, starts + 1, s));
    const size_t n_rows = size_t(rows);
    std::vector<double> sum(n_rows), m2(n_rows);
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(sum.data(), row_sum_.data(), sum.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(m2.data(), row_m2_.data(), m2.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
    GENRELAB_CUDA_CHECK(cudaStreamSynchronize(s));
    for (int64_t r = 0; r < rows; ++r)
      acc.add_row(int(r % p_.n_mels), double(n_frames), sum[size_t(r)] / double(n_frames), m2[size_t(r)]);
  }

  std::vector<float> mel_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                              bool standardize) override {
    const size_t out_count = size_t(batch) * size_t(p_.n_mels) * size_t(p_.n_frames(n_samples));
    cuda::DeviceBuffer<float> d_audio(audio.size()), d_mel(out_count);  // (batch, n_samples), (batch, n_mels, n_frames)
    std::vector<float> out(out_count);
    if (audio.empty() || out_count == 0) return out;
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(d_audio.data(), audio.data(), audio.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    mel(d_audio.data(), batch, n_samples, d_mel.data(), standardize, stream_.get());
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(out.data(), d_mel.data(), out_count * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    stream_.synchronize();
    return out;
  }

  void accumulate_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                       MelBandStatsAccumulator& acc) override {
    const int64_t n_frames = p_.n_frames(n_samples);
    cuda::DeviceBuffer<float> d_audio(audio.size());                                        // (batch, n_samples)
    cuda::DeviceBuffer<float> d_mel(size_t(batch) * size_t(p_.n_mels) * size_t(n_frames));  // (batch, n_mels, n_frames)
    GENRELAB_CUDA_CHECK(
        cudaMemcpyAsync(d_audio.data(), audio.data(), audio.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    mel(d_audio.data(), batch, n_samples, d_mel.data(), false, stream_.get());
    accumulate(d_mel.data(), batch, n_frames, acc, stream_.get());
  }

 private:
  // power_to_db of `clips` clips in place: per-clip maximum by a CUB segmented reduction, then
  // the per-clip reference and floor, then the element-wise conversion.
  // mel: (clips, per_clip)
  void to_db(float* mel, int64_t clips, int64_t per_clip, cudaStream_t s) {
    clip_max_.resize(size_t(clips));
    ref_db_.resize(size_t(clips));
    floor_db_.resize(size_t(clips));
    auto starts = thrust::make_transform_iterator(thrust::make_counting_iterator<int64_t>(0), SegmentStart{per_clip});
    size_t temp_bytes = 0;
    GENRELAB_CUDA_CHECK(
        cub::DeviceSegmentedReduce::Max(nullptr, temp_bytes, mel, clip_max_.data(), clips, starts, starts + 1, s));
    temp_.resize(std::max<size_t>(temp_bytes, 1));
    GENRELAB_CUDA_CHECK(
        cub::DeviceSegmentedReduce::Max(temp_.data(), temp_bytes, mel, clip_max_.data(), clips, starts, starts + 1, s));
    launch_1d(clips, DbClipFunctor{clip_max_.data(), ref_db_.data(), floor_db_.data(), p_.db_params}, s);
    // Grid: rows = clip, columns = (mel band, frame).
    launch_2d(clips, per_clip, PowerToDbFunctor{mel, ref_db_.data(), floor_db_.data(), per_clip, p_.db_params.amin}, s);
  }

  MelParams p_;
  cuda::Stream stream_;
  cuda::DeviceBuffer<float> window_;                // window: (n_fft,)
  cuda::DeviceBuffer<int> start_, count_, offset_;  // (n_mels,) each
  cuda::DeviceBuffer<float> weights_;               // weights: (non-zero filterbank weights,)
  cuda::DeviceBuffer<float> mean_, inv_std_;        // (n_mels,) each
  cuda::DeviceBuffer<float> frames_, power_;
  cuda::DeviceBuffer<cufftComplex> spec_;
  cuda::DeviceBuffer<float> clip_max_, ref_db_, floor_db_;  // (batch,) each
  cuda::DeviceBuffer<double> row_sum_, row_m2_;             // (batch * n_mels,) each
  cuda::DeviceBuffer<unsigned char> temp_;                  // CUB temporary storage
  // R2C plans by the pass's transforms (clips × frames): streamed training featurises batches of
  // many sizes.
  cuda::FftPlanCache plans_{16};
};

}  // namespace

std::unique_ptr<MelExtractor::Backend> make_cuda_mel_backend(const MelParams& params, const MelFilterbank& fb) {
  return std::make_unique<CudaMelBackend>(params, fb);
}

}  // namespace genrelab
