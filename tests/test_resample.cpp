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
