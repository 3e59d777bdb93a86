// Short-time Fourier transform building blocks shared by the mel features and the phase
// vocoder: librosa's frame count, its periodic Hann window, numpy-style centre padding and the
// framing functor (gather form: one windowed sample of one frame per call). The FFTs themselves
// come from FFTW (CPU, CpuRealFft below) and cuFFT (GPU, cuda::FftPlan).
#pragma once

#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

#include "genrelab/common.h"

namespace genrelab {

enum class PadMode { reflect, constant };

// Frames librosa.stft produces: 1 + (n + 2*(n_fft/2 if center) - n_fft) / hop (at least 0).
inline int64_t stft_frame_count(int64_t n_samples, int n_fft, int hop, bool center) {
  const int64_t padded = n_samples + (center ? 2 * int64_t(n_fft / 2) : 0);
  if (padded < n_fft) return 0;
  return 1 + (padded - n_fft) / hop;
}

// Periodic Hann window of `win_length` (scipy.signal.get_window('hann', N, fftbins=True)),
// zero-padded on both sides to n_fft like librosa.util.pad_center.
std::vector<float> hann_window(int n_fft, int win_length);
// The same window in double precision (what scipy returns), for the CPU reference.
std::vector<double> hann_window_f64(int n_fft, int win_length);

// numpy.pad 'reflect' index for position i of a signal of length n (any i, repeated reflection).
GENRELAB_HD int64_t reflect_index(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// frames[b, t, k] = window[k] * padded(x[b])[t * hop + k], where padded() is x with n_fft/2
// samples of centre padding on each side (reflect or zeros) when `center`. Real is the frame
// precision: float on the GPU, double in the CPU reference (as librosa windows in float64).
template <typename Real>
struct BasicFrameFunctor {
  const float* x;      // x: (batch, n_samples)
  const Real* window;  // window: (n_fft,)
  Real* frames;        // frames: (batch, n_frames, frame_stride), first n_fft used
  int64_t n_samples, n_frames;
  int n_fft, hop, frame_stride;
  bool center;
  PadMode pad;

  // row = b * n_frames + t, col = k in [0, n_fft)
  GENRELAB_HD void operator()(int64_t row, int64_t k) const {
    const Coords4 pos = unravel4(row, n_frames, 1, 1);  // 32-bit division when it fits
    const int64_t b = pos.i3, t = pos.i0;
    int64_t i = t * hop + k - (center ? n_fft / 2 : 0);
    float v = 0.0f;
    if (i >= 0 && i < n_samples) v = x[b * n_samples + i];
    else if (pad == PadMode::reflect && n_samples > 0) v = x[b * n_samples + reflect_index(i, n_samples)];
    frames[row * frame_stride + k] = window[k] * Real(v);
  }
};
using FrameFunctor = BasicFrameFunctor<float>;

// Batched real FFTs on the CPU with FFTW, in single precision (float: fftwf_ plans) or double
// (double: fftw_ plans; the CPU reference computes librosa's float64 FFT, so its spectra keep
// full accuracy far below a frame's peak). Planning is serialised (FFTW's planner is not
// thread-safe); execution is thread-safe and works on any (unaligned) arrays.
template <typename Real>
class BasicCpuRealFft {
 public:
  // `batch` transforms of length n; inputs `in_stride` reals apart, outputs n/2+1 complex apart.
  BasicCpuRealFft(int n, int64_t batch, int in_stride);
  ~BasicCpuRealFft();
  BasicCpuRealFft(const BasicCpuRealFft&) = delete;
  BasicCpuRealFft& operator=(const BasicCpuRealFft&) = delete;

  // in: (batch, in_stride) real -> out: (batch, n/2+1) complex
  void forward(const Real* in, std::complex<Real>* out) const;
  // in: (batch, n/2+1) complex -> out: (batch, in_stride) real, unnormalised (like FFTW/cuFFT)
  void inverse(const std::complex<Real>* in, Real* out) const;

  int size() const { return n_; }
  int64_t batch() const { return batch_; }

 private:
  int n_;
  int64_t batch_;
  int stride_;
  void* forward_plan_ = nullptr;
  void* inverse_plan_ = nullptr;
};
extern template class BasicCpuRealFft<float>;
extern template class BasicCpuRealFft<double>;
using CpuRealFft = BasicCpuRealFft<float>;
using CpuRealFft64 = BasicCpuRealFft<double>;

}  // namespace genrelab
