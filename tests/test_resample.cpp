// Resampler forms: the polyphase functor (integer rates) equals the general windowed-sinc functor
// up to float rounding of its taps, edges included; other ratios use the general functor.
#include <cmath>

#include "genrelab/ops/resample.h"
#include "test_util.h"

using namespace genrelab;

TEST_CASE("polyphase resampling equals the direct windowed-sinc functor", "[resample]") {
  struct Case {
    double in, out;
    size_t n;
  };
  // Common rate pairs; short signals exercise the edge taps (n below the filter length too).
  const std::vector<Case> cases = {{44100, 22050, 20000}, {22050, 16000, 12345}, {48000, 22050, 9000},
                                   {8000, 22050, 3000},   {22050, 44100, 5001},  {44100, 22050, 50},
                                   {16000, 22050, 7}};
  for (const auto& c : cases) {
    std::vector<float> x(c.n);
    for (size_t i = 0; i < c.n; ++i) x[i] = float(0.5 * std::sin(0.013 * double(i)) + 0.3 * std::sin(1.7 * double(i)));
    const PolyphasePlan plan = make_polyphase_plan(c.in, c.out);
    REQUIRE(plan.up > 0);
    const std::vector<float> direct = resample_direct(x, c.in, c.out), poly = resample(x, c.in, c.out);
    REQUIRE(direct.size() == size_t(resampled_length(int64_t(c.n), c.in, c.out)));
    test::require_close(poly, direct, 1e-6, 0.0,
                        std::to_string(int(c.in)) + " -> " + std::to_string(int(c.out)) + ", n " + std::to_string(c.n));
  }
  // 44100 / 22050 reduces to down 2, up 1; 22050 -> 16000 to 441 / 320.
  CHECK(make_polyphase_plan(44100, 22050).up == 1);
  CHECK(make_polyphase_plan(44100, 22050).down == 2);
  CHECK(make_polyphase_plan(22050, 16000).up == 320);
  CHECK(make_polyphase_plan(22050, 16000).down == 441);
}

TEST_CASE("non-integer or large-ratio resampling uses the direct functor", "[resample]") {
  std::vector<float> x(4000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.05 * double(i)));
  CHECK(make_polyphase_plan(22050 * std::pow(2.0, 3.0 / 12), 22050).up == 0);  // a pitch-shift ratio
  CHECK(resample(x, 22050 * std::pow(2.0, 3.0 / 12), 22050) ==
        resample_direct(x, 22050 * std::pow(2.0, 3.0 / 12), 22050));
  CHECK(make_polyphase_plan(22051, 22050).up == 0);  // reduced up = 22050 > 4096
  CHECK(resample(x, 22051, 22050) == resample_direct(x, 22051, 22050));
}

// The pitch shift's polyphase banks against the filter they tabulate, computed here in double
// from its definition (a sinc under a Kaiser window, std::cyl_bessel_i for I0): tap m of phase p
// sits (p/phases + half − 1 − m) input samples from the output, scaled by the filter scale. The
// table's linear interpolation at 512 points a zero crossing leaves about 1e-6.
TEST_CASE("polyphase bank taps are the Kaiser-windowed sinc at their offsets", "[resample]") {
  const ResampleFilterDesign d{};
  const int phases = 512;
  for (double scale : {d.rolloff, d.rolloff * std::pow(2.0, -4.0 / 12), d.rolloff * std::pow(2.0, -12.0 / 12)}) {
    const int half = polyphase_half(d, scale);
    const std::vector<float> bank = make_polyphase_bank(d, scale, phases, half);
    REQUIRE(bank.size() == size_t(phases + 1) * size_t(2 * half));
    double worst = 0;
    for (int p = 0; p <= phases; p += 7)
      for (int m = 0; m < 2 * half; ++m) {
        const double x = std::fabs(double(p) / phases + double(half - 1 - m)) * scale;  // zero crossings
        double h = 0;
        if (x < d.zero_crossings) {
          const double sinc = x == 0 ? 1.0 : std::sin(M_PI * x) / (M_PI * x);
          const double r = x / d.zero_crossings;
          h = sinc * std::cyl_bessel_i(0.0, d.beta * std::sqrt(1 - r * r)) / std::cyl_bessel_i(0.0, d.beta);
        }
        worst = std::max(worst, std::fabs(double(bank[size_t(p) * size_t(2 * half) + size_t(m)]) - scale * h));
      }
    INFO("scale " << scale);
    CHECK(worst < 2e-6);
  }
}

// Both backends build a batch's banks with PolyphaseBankFunctor (the GPU on the device, the CPU
// over its threads): each row equals the single-row bank padded to the batch's widest filter,
// bit for bit.
TEST_CASE("a batch of polyphase banks equals its rows' banks", "[resample]") {
  const ResampleFilterDesign d{};
  const int phases = 512;
  const std::vector<double> scale = {d.rolloff, d.rolloff * 0.61, d.rolloff * std::pow(2.0, -7.5 / 12)};
  int half = 0;
  for (double s : scale) half = std::max(half, polyphase_half(d, s));
  const int64_t row = int64_t(phases + 1) * 2 * half;
  std::vector<float> bank(scale.size() * size_t(row), -1.0f);
  const auto f = PolyphaseBankFunctor::of(d, resample_table(d).data(), scale.data(), bank.data(), phases, half);
  for (int64_t b = 0; b < int64_t(scale.size()); ++b)
    for (int64_t i = 0; i < row; ++i) f(b, i);
  for (size_t b = 0; b < scale.size(); ++b) {
    const std::vector<float> one = make_polyphase_bank(d, scale[b], phases, half);
    INFO("row " << b);
    CHECK(std::vector<float>(bank.begin() + long(b) * row, bank.begin() + long(b + 1) * row) == one);
  }
}
