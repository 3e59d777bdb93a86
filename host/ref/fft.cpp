// FFTW-backed batched real FFTs (single and double precision) and the periodic Hann window
// (see ops/stft.h).
#include <fftw3.h>

#include <cmath>
#include <mutex>

#include "genrelab/ops/stft.h"

namespace genrelab {

namespace {
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

std::vector<double> hann_window_f64(int n_fft, int win_length) {
  GENRELAB_CHECK(win_length >= 1 && win_length <= n_fft, "window length ", win_length, " outside [1, n_fft=", n_fft, "]");
  std::vector<double> w(size_t(n_fft), 0.0);
  const int offset = (n_fft - win_length) / 2;
  for (int k = 0; k < win_length; ++k) w[size_t(offset + k)] = 0.5 - 0.5 * std::cos(2.0 * M_PI * k / win_length);
  return w;
}

std::vector<float> hann_window(int n_fft, int win_length) {
  const std::vector<double> w = hann_window_f64(n_fft, win_length);
  return std::vector<float>(w.begin(), w.end());
}

CpuRealFft::CpuRealFft(int n, int64_t batch, int in_stride) : n_(n), batch_(batch), stride_(in_stride) {
  GENRELAB_CHECK(n >= 1 && batch >= 1 && in_stride >= n, "bad FFT geometry n=", n, " batch=", batch, " stride=", in_stride);
  const int bins = n / 2 + 1;
  std::vector<float> real(size_t(in_stride) * size_t(batch));
  std::vector<fftwf_complex> cplx(size_t(bins) * size_t(batch));
  std::lock_guard<std::mutex> lock(planner_mutex());
  const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
  forward_plan_ = fftwf_plan_many_dft_r2c(1, &n, int(batch), real.data(), nullptr, 1, in_stride, cplx.data(), nullptr,
                                          1, bins, flags);
  inverse_plan_ = fftwf_plan_many_dft_c2r(1, &n, int(batch), cplx.data(), nullptr, 1, bins, real.data(), nullptr, 1,
                                          in_stride, flags | FFTW_PRESERVE_INPUT);
  GENRELAB_CHECK(forward_plan_ && inverse_plan_, "FFTW could not plan an FFT of size ", n);
}

CpuRealFft::~CpuRealFft() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (forward_plan_) fftwf_destroy_plan(static_cast<fftwf_plan>(forward_plan_));
  if (inverse_plan_) fftwf_destroy_plan(static_cast<fftwf_plan>(inverse_plan_));
}

void CpuRealFft::forward(const float* in, std::complex<float>* out) const {
  fftwf_execute_dft_r2c(static_cast<fftwf_plan>(forward_plan_), const_cast<float*>(in),
                        reinterpret_cast<fftwf_complex*>(out));
}

void CpuRealFft::inverse(const std::complex<float>* in, float* out) const {
  fftwf_execute_dft_c2r(static_cast<fftwf_plan>(inverse_plan_),
                        reinterpret_cast<fftwf_complex*>(const_cast<std::complex<float>*>(in)), out);
}

CpuRealFft64::CpuRealFft64(int n, int64_t batch, int in_stride) : n_(n), batch_(batch), stride_(in_stride) {
  GENRELAB_CHECK(n >= 1 && batch >= 1 && in_stride >= n, "bad FFT geometry n=", n, " batch=", batch, " stride=", in_stride);
  const int bins = n / 2 + 1;
  std::vector<double> real(size_t(in_stride) * size_t(batch));
  std::vector<fftw_complex> cplx(size_t(bins) * size_t(batch));
  std::lock_guard<std::mutex> lock(planner_mutex());
  const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
  forward_plan_ = fftw_plan_many_dft_r2c(1, &n, int(batch), real.data(), nullptr, 1, in_stride, cplx.data(), nullptr, 1,
                                         bins, flags);
  inverse_plan_ = fftw_plan_many_dft_c2r(1, &n, int(batch), cplx.data(), nullptr, 1, bins, real.data(), nullptr, 1,
                                         in_stride, flags | FFTW_PRESERVE_INPUT);
  GENRELAB_CHECK(forward_plan_ && inverse_plan_, "FFTW could not plan an FFT of size ", n);
}

CpuRealFft64::~CpuRealFft64() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (forward_plan_) fftw_destroy_plan(static_cast<fftw_plan>(forward_plan_));
  if (inverse_plan_) fftw_destroy_plan(static_cast<fftw_plan>(inverse_plan_));
}

void CpuRealFft64::forward(const double* in, std::complex<double>* out) const {
  fftw_execute_dft_r2c(static_cast<fftw_plan>(forward_plan_), const_cast<double*>(in),
                       reinterpret_cast<fftw_complex*>(out));
}

void CpuRealFft64::inverse(const std::complex<double>* in, double* out) const {
  fftw_execute_dft_c2r(static_cast<fftw_plan>(inverse_plan_),
                       reinterpret_cast<fftw_complex*>(const_cast<std::complex<double>*>(in)), out);
}

}  // namespace genrelab
