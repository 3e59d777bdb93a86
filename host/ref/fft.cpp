// FFTW-backed batched real FFTs (single and double precision) and the periodic Hann window
// (see ops/stft.h).
#include <fftw3.h>

#include <cmath>
#include <memory>
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

namespace {
// FFTW's single- and double-precision interfaces under one name each (fftwf_* and fftw_*).
template <typename Real>
struct Fftw;
template <>
struct Fftw<float> {
  using Complex = fftwf_complex;
  using Plan = fftwf_plan;
  static constexpr auto plan_r2c = fftwf_plan_many_dft_r2c;
  static constexpr auto plan_c2r = fftwf_plan_many_dft_c2r;
  static constexpr auto execute_r2c = fftwf_execute_dft_r2c;
  static constexpr auto execute_c2r = fftwf_execute_dft_c2r;
  static constexpr auto destroy = fftwf_destroy_plan;
};
template <>
struct Fftw<double> {
  using Complex = fftw_complex;
  using Plan = fftw_plan;
  static constexpr auto plan_r2c = fftw_plan_many_dft_r2c;
  static constexpr auto plan_c2r = fftw_plan_many_dft_c2r;
  static constexpr auto execute_r2c = fftw_execute_dft_r2c;
  static constexpr auto execute_c2r = fftw_execute_dft_c2r;
  static constexpr auto destroy = fftw_destroy_plan;
};
}  // namespace

template <typename Real>
BasicCpuRealFft<Real>::BasicCpuRealFft(int n, int64_t batch, int in_stride) : n_(n), batch_(batch), stride_(in_stride) {
  GENRELAB_CHECK(n >= 1 && batch >= 1 && in_stride >= n, "bad FFT geometry n=", n, " batch=", batch,
                 " stride=", in_stride);
  using F = Fftw<Real>;
  const int bins = n / 2 + 1;
  // The planner needs distinct arrays of the plan's size, but FFTW_ESTIMATE never reads or writes
  // them: left uninitialised, their pages are never touched (zeroing them cost a pitch shift tens
  // of MB of page faults per transform batch).
  const std::unique_ptr<Real[]> real(new Real[size_t(in_stride) * size_t(batch)]);
  const std::unique_ptr<typename F::Complex[]> cplx(new typename F::Complex[size_t(bins) * size_t(batch)]);
  std::lock_guard<std::mutex> lock(planner_mutex());
  const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
  forward_plan_ =
      F::plan_r2c(1, &n, int(batch), real.get(), nullptr, 1, in_stride, cplx.get(), nullptr, 1, bins, flags);
  inverse_plan_ = F::plan_c2r(1, &n, int(batch), cplx.get(), nullptr, 1, bins, real.get(), nullptr, 1, in_stride,
                              flags | FFTW_PRESERVE_INPUT);
  GENRELAB_CHECK(forward_plan_ && inverse_plan_, "FFTW could not plan an FFT of size ", n);
}

template <typename Real>
BasicCpuRealFft<Real>::~BasicCpuRealFft() {
  using F = Fftw<Real>;
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (forward_plan_) F::destroy(static_cast<typename F::Plan>(forward_plan_));
  if (inverse_plan_) F::destroy(static_cast<typename F::Plan>(inverse_plan_));
}

template <typename Real>
void BasicCpuRealFft<Real>::forward(const Real* in, std::complex<Real>* out) const {
  using F = Fftw<Real>;
  F::execute_r2c(static_cast<typename F::Plan>(forward_plan_), const_cast<Real*>(in),
                 reinterpret_cast<typename F::Complex*>(out));
}

template <typename Real>
void BasicCpuRealFft<Real>::inverse(const std::complex<Real>* in, Real* out) const {
  using F = Fftw<Real>;
  F::execute_c2r(static_cast<typename F::Plan>(inverse_plan_),
                 reinterpret_cast<typename F::Complex*>(const_cast<std::complex<Real>*>(in)), out);
}

template class BasicCpuRealFft<float>;
template class BasicCpuRealFft<double>;

}  // namespace genrelab
