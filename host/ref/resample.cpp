// Host side of the windowed-sinc resampler: filter table design and the CPU loop.
#include "genrelab/ops/resample.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <tuple>

#include "genrelab/parallel_for.h"

namespace genrelab {

namespace {
// Modified Bessel function of the first kind, order 0 (power series).
double bessel_i0(double x) {
  double sum = 1.0, term = 1.0;
  const double q = x * x / 4.0;
  for (int k = 1; k < 200; ++k) {
    term *= q / (double(k) * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}
}  // namespace

std::vector<float> make_resample_table(const ResampleFilterDesign& d) {
  GENRELAB_CHECK(d.zero_crossings > 0 && d.per_crossing > 0, "bad resample filter design");
  const int64_t n = int64_t(d.zero_crossings) * d.per_crossing;
  std::vector<float> table(size_t(n + 2), 0.0f);
  const double i0_beta = bessel_i0(d.beta);
  for (int64_t k = 0; k <= n; ++k) {
    const double u = double(k) / d.per_crossing;  // in zero crossings
    const double sinc = k == 0 ? 1.0 : std::sin(M_PI * u) / (M_PI * u);
    const double r = u / d.zero_crossings;
    const double window = bessel_i0(d.beta * std::sqrt(std::max(0.0, 1.0 - r * r))) / i0_beta;
    table[size_t(k)] = float(sinc * window);
  }
  return table;
}

int polyphase_half(const ResampleFilterDesign& d, double scale) {
  return int(std::ceil(d.zero_crossings / scale)) + 1;  // reach in input samples, plus one
}

const std::vector<float>& resample_table(const ResampleFilterDesign& d) {
  static std::mutex mutex;
  static auto* tables = new std::map<std::tuple<int, int, double>, std::vector<float>>;  // kept: referenced
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, added] = tables->try_emplace(std::make_tuple(d.zero_crossings, d.per_crossing, d.beta));
  if (added) it->second = make_resample_table(d);
  return it->second;
}

std::vector<float> make_polyphase_bank(const ResampleFilterDesign& d, double scale, int phases, int half) {
  GENRELAB_CHECK(scale > 0 && scale <= 1 && phases >= 1 && half >= polyphase_half(d, scale),
                 "bad polyphase bank: scale ", scale, ", phases ", phases, ", half ", half);
  const std::vector<float>& table = resample_table(d);
  const int64_t last = int64_t(d.zero_crossings) * d.per_crossing;
  const int taps = 2 * half;
  std::vector<float> bank(size_t(phases + 1) * size_t(taps));
  for (int p = 0; p <= phases; ++p)
    for (int m = 0; m < taps; ++m)
      bank[size_t(p) * size_t(taps) + size_t(m)] =
          polyphase_tap(table.data(), last, d.per_crossing, scale, phases, half, p, m);
  return bank;
}

int64_t resampled_length(int64_t n, double in_rate, double out_rate) {
  return int64_t(std::ceil(double(n) * out_rate / in_rate - 1e-9));
}

namespace {
const std::vector<float>& cached_table(const ResampleFilterDesign& design) {
  static thread_local std::vector<float> table;
  static thread_local ResampleFilterDesign cached{-1, -1, 0, 0};
  if (cached.zero_crossings != design.zero_crossings || cached.per_crossing != design.per_crossing ||
      cached.beta != design.beta) {
    table = make_resample_table(design);
    cached = design;
  }
  return table;
}
}  // namespace

PolyphasePlan make_polyphase_plan(double in_rate, double out_rate, const ResampleFilterDesign& design, int64_t max_up) {
  PolyphasePlan plan;
  if (in_rate != std::floor(in_rate) || out_rate != std::floor(out_rate) || in_rate <= 0 || out_rate <= 0) return plan;
  const int64_t a = int64_t(out_rate), b = int64_t(in_rate), g = std::gcd(a, b);
  if (a / g > max_up) return plan;
  plan.up = a / g;
  plan.down = b / g;
  const std::vector<float>& table = cached_table(design);
  const double scale = design.rolloff * std::min(1.0, out_rate / in_rate);
  const double reach = design.zero_crossings / scale;  // taps on each side, in input samples
  plan.left = int(std::floor(reach)) + 1;
  plan.taps = 2 * plan.left + 1;
  plan.coef.assign(size_t(plan.up * plan.taps), 0.0f);
  const int64_t limit = int64_t(design.zero_crossings) * design.per_crossing;
  for (int64_t phase = 0; phase < plan.up; ++phase)
    for (int m = 0; m < plan.taps; ++m) {
      // Output at base + phase/up, input at base - left + m: distance phase/up + left - m.
      const double d = double(phase) / double(plan.up) + plan.left - m;
      if (std::fabs(d) > reach) continue;  // ResampleFunctor's tap range
      const double u = std::fabs(d) * scale * design.per_crossing;
      const int64_t i = int64_t(u);
      if (i >= limit) continue;
      const double frac = u - double(i);
      plan.coef[size_t(phase * plan.taps + m)] = float((table[size_t(i)] + frac * (table[size_t(i) + 1] - table[size_t(i)])) * scale);
    }
  return plan;
}

std::vector<float> resample_direct(const std::vector<float>& x, double in_rate, double out_rate,
                                   const ResampleFilterDesign& design) {
  GENRELAB_CHECK(in_rate > 0 && out_rate > 0, "resample rates must be positive");
  if (in_rate == out_rate) return x;
  const std::vector<float>& table = cached_table(design);
  const int64_t n_out = resampled_length(int64_t(x.size()), in_rate, out_rate);
  std::vector<float> y(static_cast<size_t>(n_out));  // y: (n_out,)
  const ResampleFunctor f{x.data(), y.data(), table.data(), int64_t(x.size()), n_out, in_rate / out_rate,
                          design.rolloff * std::min(1.0, out_rate / in_rate), design.zero_crossings,
                          design.per_crossing};
  cpu_for_2d(1, n_out, f);
  return y;
}

std::vector<float> resample(const std::vector<float>& x, double in_rate, double out_rate,
                            const ResampleFilterDesign& design) {
  GENRELAB_CHECK(in_rate > 0 && out_rate > 0, "resample rates must be positive");
  if (in_rate == out_rate) return x;
  const PolyphasePlan plan = make_polyphase_plan(in_rate, out_rate, design);
  if (plan.up == 0) return resample_direct(x, in_rate, out_rate, design);
  const int64_t n_out = resampled_length(int64_t(x.size()), in_rate, out_rate);
  std::vector<float> y(static_cast<size_t>(n_out));  // y: (n_out,)
  const PolyphaseResampleFunctor f{x.data(), y.data(), plan.coef.data(), int64_t(x.size()), n_out,
                                   plan.up, plan.down, plan.taps, plan.left};
  cpu_for_2d(1, n_out, f);
  return y;
}

}  // namespace genrelab
