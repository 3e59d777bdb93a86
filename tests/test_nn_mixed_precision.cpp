// Mixed precision on the CPU backend (train.precision = bf16 | fp16): the rounding functors against
// numpy and hand-computed bit patterns, conv2d and dense against float64 math on the rounded
// operands, finite-difference gradients, learning, and the fp16 dynamic loss scale (overflow skip,
// growth, collapse guard, checkpoint round trip).
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "genrelab/nn/checkpoint.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/philox.h"
#include "genrelab/parallel_for.h"
#include "nn_fixtures.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::vector<float> random_vec(int64_t n, uint32_t salt, double lo = -1, double hi = 1) {
  const PhiloxStream s(4321, RngPurpose::init, salt, 5);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(s.uniform_range(uint64_t(i), lo, hi));
  return v;
}

std::vector<double> rounded(const std::vector<float>& v, int format) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = double(ops::round_to_half(v[i], format));
  return r;
}

// Significant bits of the format (bf16: 8, fp16: 11): half an ulp is at most 2^-bits relative.
int significant_bits(int format) { return format == ops::kHalfFp16 ? 11 : 8; }

// got is a value of the 16-bit format within half an ulp (plus float32 accumulation slack) of the
// exact want.
void require_rounded_close(const std::vector<float>& got, const std::vector<double>& want, int format, double scale,
                           const std::string& what) {
  REQUIRE(got.size() == want.size());
  const double half_ulp = std::ldexp(1.0, -significant_bits(format));
  size_t bad = 0, unrounded = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - want[i]);
    const double bound = half_ulp * std::fabs(want[i]) * (1 + 1e-4) + 1e-6 * scale;
    worst = std::max(worst, err / (std::fabs(want[i]) + 1e-6 * scale));
    bad += err > bound;
    unrounded += ops::round_to_half(got[i], format) != got[i];
  }
  INFO(what << ": worst relative error " << worst << " (half ulp " << half_ulp << ")");
  CHECK(bad == 0);
  CHECK(unrounded == 0);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace

TEST_CASE("nn half rounding gives hand-computed bit patterns", "[nn][mixed]") {
  using ops::float_to_bf16_bits;
  using ops::float_to_fp16_bits;
  // bf16: ties to even, a carry into the exponent, overflow of the largest float, signed zero, NaN.
  CHECK(float_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(float_to_bf16_bits(from_bits(0x3f808000)) == 0x3f80);  // 1 + 2^-8: tie, even stays
  CHECK(float_to_bf16_bits(from_bits(0x3f818000)) == 0x3f82);  // 1 + 3·2^-8: tie, odd rounds up
  CHECK(float_to_bf16_bits(from_bits(0x3f808001)) == 0x3f81);  // just above the tie
  CHECK(float_to_bf16_bits(from_bits(0x3fffffff)) == 0x4000);  // carry into the exponent
  CHECK(float_to_bf16_bits(from_bits(0x7f7fffff)) == 0x7f80);  // FLT_MAX → +inf
  CHECK(float_to_bf16_bits(from_bits(0x7f7f7fff)) == 0x7f7f);  // stays the largest bf16
  CHECK(float_to_bf16_bits(-0.0f) == 0x8000);
  CHECK(float_to_bf16_bits(from_bits(0x00018000)) == 0x0002);  // subnormal tie → even
  CHECK(float_to_bf16_bits(std::nanf("")) == 0x7fc0);
  CHECK(float_to_bf16_bits(from_bits(0x7f800001)) == 0x7fc0);  // signalling NaN is quieted, not inf
  CHECK(float_to_bf16_bits(-INFINITY) == 0xff80);
  // fp16: the largest finite, the overflow tie, subnormals, the subnormal/normal boundary.
  CHECK(float_to_fp16_bits(65504.0f) == 0x7bff);
  CHECK(float_to_fp16_bits(65519.0f) == 0x7bff);
  CHECK(float_to_fp16_bits(65520.0f) == 0x7c00);  // tie between 65504 and 2^16: even = inf
  CHECK(float_to_fp16_bits(-1e6f) == 0xfc00);
  CHECK(float_to_fp16_bits(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_fp16_bits(std::ldexp(1.0f, -25)) == 0x0000);      // tie → even 0
  CHECK(float_to_fp16_bits(3 * std::ldexp(1.0f, -25)) == 0x0002);  // tie between 1 and 2 → 2
  CHECK(float_to_fp16_bits(std::ldexp(1.0f, -25) * 1.0001f) == 0x0001);
  CHECK(float_to_fp16_bits(std::ldexp(1.0f, -14)) == 0x0400);
  CHECK(float_to_fp16_bits(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);  // tie 0x3ff|0x400 → even
  CHECK(float_to_fp16_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(float_to_fp16_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(float_to_fp16_bits(-2.0f) == 0xc000);
  CHECK(float_to_fp16_bits(-0.0f) == 0x8000);
  CHECK(float_to_fp16_bits(1e-30f) == 0x0000);
  CHECK(float_to_fp16_bits(INFINITY) == 0x7c00);
  CHECK(float_to_fp16_bits(-std::nanf("")) == 0xfe00);
  // Back to float: exact values.
  CHECK(ops::fp16_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(ops::fp16_bits_to_float(0x83ff) == -1023 * std::ldexp(1.0f, -24));
  CHECK(ops::fp16_bits_to_float(0x7bff) == 65504.0f);
  CHECK(std::isinf(ops::fp16_bits_to_float(0xfc00)));
  CHECK(std::isnan(ops::fp16_bits_to_float(0x7e00)));
  CHECK(ops::bf16_bits_to_float(0x3f82) == 1.015625f);
  CHECK(ops::round_to_half(1.3f, ops::kHalfNone) == 1.3f);
}

TEST_CASE("nn half rounding matches numpy on edge cases and random floats", "[nn][mixed][python]") {
  const std::string py = test::python();
  if (py.empty()) {
    WARN("SKIPPED: GENRELAB_PYTHON is not set (numpy reference)");
    return;
  }
  std::string out;
  const int rc = test::run_command("'" + py + "' '" + test::source_dir() + "/tools/golden/half_round.py' 2>&1", &out);
  if (rc != 0 && out.find("No module named") != std::string::npos) {
    WARN("SKIPPED: numpy is not importable by " << py);
    return;
  }
  REQUIRE(rc == 0);
  std::istringstream in(out);
  std::string kind;
  int64_t rounds = 0, decodes = 0, bad = 0;
  while (in >> kind) {
    if (kind == "r") {
      std::string a, b, c;
      in >> a >> b >> c;
      const float x = from_bits(uint32_t(std::stoul(a, nullptr, 16)));
      const uint16_t h = uint16_t(std::stoul(b, nullptr, 16)), bf = uint16_t(std::stoul(c, nullptr, 16));
      const uint16_t gh = ops::float_to_fp16_bits(x), gb = ops::float_to_bf16_bits(x);
      bool ok;
      if (std::isnan(x))  // any quiet NaN with the input's sign
        ok = (gh & 0x7e00) == 0x7e00 && (gh & 0x8000) == (h & 0x8000) && (gb & 0x7fc0) == 0x7fc0 &&
             (gb & 0x8000) == (bf & 0x8000);
      else
        ok = gh == h && gb == bf;
      if (!ok && bad++ < 5)
        FAIL_CHECK("float bits " << a << ": fp16 " << std::hex << gh << " want " << b << ", bf16 " << gb << " want "
                                 << c);
      ++rounds;
    } else {
      std::string a, b;
      in >> a >> b;
      const float got = ops::fp16_bits_to_float(uint16_t(std::stoul(a, nullptr, 16)));
      const float want = from_bits(uint32_t(std::stoul(b, nullptr, 16)));
      const bool ok = std::isnan(want) ? std::isnan(got) : to_bits(got) == to_bits(want);
      if (!ok && bad++ < 5) FAIL_CHECK("fp16 bits " << a << ": got " << got << " want " << want);
      ++decodes;
    }
  }
  INFO(rounds << " roundings, " << decodes << " fp16 decodings compared");
  CHECK(rounds > 20000);
  CHECK(decodes == 65536);
  CHECK(bad == 0);
}

namespace {

// conv2d (F, kh, kw, C) with no bias and no activation, planned on `in`.
LayerDesc conv_desc(const json& spec, Shape3 in) {
  json layers =
      json::array({spec, {{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
  return plan_layers(layers, in, 3).layers[0];
}

// The convolution of rounded x and W in float64: y (n, oh, ow, F); and its backward for dz.
struct ConvRef {
  LayerDesc d;
  Window2d g;
  int64_t n;
  std::vector<double> y(const std::vector<double>& x, const std::vector<double>& w) const {
    const Shape3 in = d.in, out = d.out;
    std::vector<double> y(size_t(n * out.size()), 0.0);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t oh = 0; oh < out.h; ++oh)
        for (int64_t ow = 0; ow < out.w; ++ow)
          for (int64_t f = 0; f < out.c; ++f) {
            double s = 0;
            for (int64_t a = 0; a < g.kh; ++a)
              for (int64_t b = 0; b < g.kw; ++b) {
                const int64_t ih = oh * g.sh - g.pad_top + a * g.dh, iw = ow * g.sw - g.pad_left + b * g.dw;
                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w) continue;
                for (int64_t c = 0; c < in.c; ++c)
                  s += x[size_t(((e * in.h + ih) * in.w + iw) * in.c + c)] *
                       w[size_t(((f * g.kh + a) * g.kw + b) * in.c + c)];
              }
            y[size_t(((e * out.h + oh) * out.w + ow) * out.c + f)] = s;
          }
    return y;
  }
  void backward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& dz,
                std::vector<double>& dx, std::vector<double>& dw) const {
    const Shape3 in = d.in, out = d.out;
    dx.assign(size_t(n * in.size()), 0.0);
    dw.assign(w.size(), 0.0);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t oh = 0; oh < out.h; ++oh)
        for (int64_t ow = 0; ow < out.w; ++ow)
          for (int64_t f = 0; f < out.c; ++f) {
            const double gz = dz[size_t(((e * out.h + oh) * out.w + ow) * out.c + f)];
            for (int64_t a = 0; a < g.kh; ++a)
              for (int64_t b = 0; b < g.kw; ++b) {
                const int64_t ih = oh * g.sh - g.pad_top + a * g.dh, iw = ow * g.sw - g.pad_left + b * g.dw;
                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w) continue;
                for (int64_t c = 0; c < in.c; ++c) {
                  const size_t xi = size_t(((e * in.h + ih) * in.w + iw) * in.c + c),
                               wi = size_t(((f * g.kh + a) * g.kw + b) * in.c + c);
                  dx[xi] += gz * w[wi];
                  dw[wi] += gz * x[xi];
                }
              }
          }
  }
};

}  // namespace

// The first index where two arrays differ in their bits (-1: none).
template <typename T>
int64_t first_difference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return int64_t(i);
  return -1;
}

// The GPU conv2d's fused 16-bit epilogues (cuda/nn/conv.cu) against the functors they fuse, run
// one after the other: the same floats and 16-bit patterns, bit for bit; and by hand.
TEST_CASE("nn fused 16-bit conv epilogues equal the cast and activation functors one after the other", "[nn][mixed]") {
  const int64_t channels = 3, count = 4096 * channels;
  const size_t m = size_t(count);
  const std::vector<float> z = random_vec(count, 71, -3, 3), bias = random_vec(channels, 72), y = random_vec(count, 73),
                           dy = random_vec(count, 74, -2, 2);
  for (int format : {ops::kHalfBf16, ops::kHalfFp16})
    for (int act : {ops::kActNone, ops::kActRelu, ops::kActElu, ops::kActLeakyRelu, ops::kActTanh, ops::kActSigmoid})
      for (bool with_bias : {false, true}) {
        CAPTURE(format, act, with_bias);
        const float* b = with_bias ? bias.data() : nullptr;
        std::vector<uint16_t> z16(m, 0);
        cpu_for_1d(count, ops::ToHalf{z.data(), z16.data(), format});
        // forward: FromHalf, then BiasActivation in place
        std::vector<float> want(m), got(m);
        cpu_for_1d(count, ops::FromHalf{z16.data(), want.data(), format, false});
        cpu_for_1d(count, ops::BiasActivation<float>{want.data(), b, channels, act, 0.3f});
        cpu_for_1d(count, ops::HalfBiasActivation{z16.data(), got.data(), b, channels, format, act, 0.3f});
        REQUIRE(first_difference(got, want) == -1);
        // backward: ActivationBackward, then ToHalf of its result
        std::vector<float> dz_want(m), dz_got(m);
        std::vector<uint16_t> dz16_want(m), dz16_got(m);
        cpu_for_1d(count, ops::ActivationBackward<float>{y.data(), dy.data(), dz_want.data(), act, 0.3f});
        cpu_for_1d(count, ops::ToHalf{dz_want.data(), dz16_want.data(), format});
        cpu_for_1d(count, ops::ActivationBackwardToHalf{y.data(), dy.data(), dz_got.data(), dz16_got.data(), format, act, 0.3f});
        REQUIRE(first_difference(dz_got, dz_want) == -1);
        REQUIRE(first_difference(dz16_got, dz16_want) == -1);
      }
  // By hand: bf16 0x3FC0 = 1.5, fp16 0xBC00 = -1; bias 0.25 on channel 1 of 2 (element 3).
  const uint16_t bf[4] = {0, 0, 0, 0x3FC0}, hf[4] = {0, 0, 0, 0xBC00};
  const float b2[2] = {0.0f, 0.25f};
  float out[4] = {};
  ops::HalfBiasActivation{bf, out, b2, 2, ops::kHalfBf16, ops::kActRelu, 0.0f}(3);
  REQUIRE(out[3] == 1.75f);
  ops::HalfBiasActivation{hf, out, b2, 2, ops::kHalfFp16, ops::kActRelu, 0.0f}(3);
  REQUIRE(out[3] == 0.0f);
  ops::HalfBiasActivation{hf, out, b2, 2, ops::kHalfFp16, ops::kActLeakyRelu, 0.5f}(3);
  REQUIRE(out[3] == -0.375f);
  // relu' at y = 0.5 is 1: dz = dy = 3 (bf16 0x4040, fp16 0x4200); at y = 0 it is 0
  const float yy[2] = {0.5f, 0.0f}, dd[2] = {3.0f, 3.0f};
  float dz[2];
  uint16_t dz16[2];
  for (int64_t i = 0; i < 2; ++i) ops::ActivationBackwardToHalf{yy, dd, dz, dz16, ops::kHalfBf16, ops::kActRelu, 0.0f}(i);
  REQUIRE((dz[0] == 3.0f && dz16[0] == 0x4040 && dz[1] == 0.0f && dz16[1] == 0));
  ops::ActivationBackwardToHalf{yy, dd, dz, dz16, ops::kHalfFp16, ops::kActRelu, 0.0f}(0);
  REQUIRE(dz16[0] == 0x4200);
}

// The GEMM engine's 16-bit kernel gradient (cuda/nn/conv_gemm.cu) adds its float product rounded
// once: AddRoundedToHalf against the ToHalf → FromHalf(accumulate) pair it replaces (cuDNN's 16-bit
// dW added to the float gradient), bit for bit; and by hand.
TEST_CASE("nn AddRoundedToHalf equals the 16-bit cast then the accumulating FromHalf", "[nn][mixed]") {
  const int64_t count = 8192;
  const size_t m = size_t(count);
  const std::vector<float> product = random_vec(count, 81, -40, 40), grad = random_vec(count, 82, -1, 1);
  for (int format : {ops::kHalfBf16, ops::kHalfFp16}) {
    CAPTURE(format);
    std::vector<uint16_t> h(m);
    std::vector<float> want = grad, got = grad;
    cpu_for_1d(count, ops::ToHalf{product.data(), h.data(), format});
    cpu_for_1d(count, ops::FromHalf{h.data(), want.data(), format, true});
    cpu_for_1d(count, ops::AddRoundedToHalf{product.data(), got.data(), format});
    REQUIRE(first_difference(got, want) == -1);
  }
  // By hand: bf16 keeps 8 significant bits, so 1 + 2^-9 rounds to 1; fp16 keeps 11 and the value.
  const float x[1] = {1.0f + 0x1p-9f};
  float y[1] = {0.5f};
  ops::AddRoundedToHalf{x, y, ops::kHalfBf16}(0);
  REQUIRE(y[0] == 1.5f);
  y[0] = 0.5f;
  ops::AddRoundedToHalf{x, y, ops::kHalfFp16}(0);
  REQUIRE(y[0] == 1.5f + 0x1p-9f);
}

TEST_CASE("nn channel of an element uses 32-bit division only where it is exact", "[nn]") {
  for (int64_t c : {int64_t(1), int64_t(3), int64_t(64), int64_t(1000), int64_t(65537)})
    for (int64_t i : {int64_t(0), int64_t(1), c - 1, c, int64_t(152582144), (int64_t(1) << 32) - 1, int64_t(1) << 32,
                      (int64_t(1) << 32) + 5, (int64_t(1) << 40) + 3, (int64_t(1) << 62) + 11}) {
      CAPTURE(c, i);
      REQUIRE(ops::channel_of(i, c) == i % c);
    }
}

TEST_CASE("nn cpu conv2d in bf16 and fp16 equals float64 math on rounded operands", "[nn][mixed]") {
  const json specs[] = {
      {{"type", "conv2d"}, {"filters", 5}, {"kernel", 3}, {"padding", "same"}, {"use_bias", false}},
      {{"type", "conv2d"},
       {"filters", 4},
       {"kernel", json::array({2, 4})},
       {"stride", 2},
       {"padding", "same"},
       {"use_bias", false}},
      {{"type", "conv2d"}, {"filters", 6}, {"kernel", 1}, {"use_bias", false}},  // the direct (x is the columns) path
  };
  for (const int format : {ops::kHalfBf16, ops::kHalfFp16})
    for (const auto& spec : specs) {
      const LayerDesc d = conv_desc(spec, {7, 9, 3});
      INFO("format " << format << " " << spec.dump());
      const int64_t n = 3;
      auto layer = make_cpu_layer<float>(d);
      layer->set_matmul_format(format);
      const auto w = random_vec(d.params[0].size(), 1, -0.7, 0.7);
      layer->params()[0] = w;
      const auto x = random_vec(n * d.in.size(), 2, -1.5, 1.5);
      const auto dy = random_vec(n * d.out.size(), 3, -1, 1);
      std::vector<float> y(dy.size()), dx(x.size());
      layer->forward(x.data(), y.data(), n, true, {});
      layer->zero_grads();
      layer->backward(x.data(), y.data(), dy.data(), dx.data(), n, {});
      const ConvRef ref{d, window_of(d), n};
      const auto xr = rounded(x, format), wr = rounded(w, format), dzr = rounded(dy, format);
      const auto yref = ref.y(xr, wr);
      require_rounded_close(y, yref, format, max_abs(yref), "y");
      std::vector<double> dxref, dwref;
      ref.backward(xr, wr, dzr, dxref, dwref);
      require_rounded_close(dx, dxref, format, max_abs(dxref), "dx");
      require_rounded_close(layer->grads()[0], dwref, format, max_abs(dwref), "dW");
      // The rounding is real: float32 operands give a visibly different y.
      const auto yexact = ref.y(rounded(x, ops::kHalfNone), rounded(w, ops::kHalfNone));
      double diff = 0;
      for (size_t i = 0; i < y.size(); ++i) diff = std::max(diff, std::fabs(double(y[i]) - yexact[i]));
      CHECK(diff > std::ldexp(1.0, -significant_bits(format) - 4) * max_abs(yexact));
    }
}

TEST_CASE("nn cpu dense in bf16 and fp16 equals float64 math on rounded operands", "[nn][mixed]") {
  for (const int format : {ops::kHalfBf16, ops::kHalfFp16}) {
    INFO("format " << format);
    const json layers = json::array(
        {{{"type", "dense"}, {"units", 9}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
    const LayerDesc d = plan_layers(layers, {1, 1, 37}, 3).layers[0];
    const int64_t n = 5, I = 37, U = 9;
    auto layer = make_cpu_layer<float>(d);
    layer->set_matmul_format(format);
    const auto w = random_vec(I * U, 4, -0.5, 0.5), b = random_vec(U, 5, -0.2, 0.2);
    layer->params()[0] = w;
    layer->params()[1] = b;
    const auto x = random_vec(n * I, 6, -2, 2), dy = random_vec(n * U, 7, -1, 1);
    std::vector<float> y(size_t(n * U)), dx(x.size());
    layer->forward(x.data(), y.data(), n, true, {});
    layer->zero_grads();
    layer->backward(x.data(), y.data(), dy.data(), dx.data(), n, {});
    const auto xr = rounded(x, format), wr = rounded(w, format), dzr = rounded(dy, format);
    std::vector<double> yref(y.size()), dxref(x.size(), 0.0), dwref(w.size(), 0.0), dbref(size_t(U), 0.0);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t u = 0; u < U; ++u) {
        double s = b[size_t(u)];
        for (int64_t i = 0; i < I; ++i) s += xr[size_t(e * I + i)] * wr[size_t(i * U + u)];
        yref[size_t(e * U + u)] = s;
        dbref[size_t(u)] += double(dy[size_t(e * U + u)]);  // the bias gradient takes the float32 dz
        for (int64_t i = 0; i < I; ++i) {
          dxref[size_t(e * I + i)] += dzr[size_t(e * U + u)] * wr[size_t(i * U + u)];
          dwref[size_t(i * U + u)] += dzr[size_t(e * U + u)] * xr[size_t(e * I + i)];
        }
      }
    // Float32 accumulation of exact 16-bit products: float32 tolerance, no output rounding.
    test::require_close(y, yref, 1e-5 * max_abs(yref), 1e-5, "y");
    test::require_close(dx, dxref, 1e-5 * max_abs(dxref), 1e-5, "dx");
    test::require_close(layer->grads()[0], dwref, 1e-5 * max_abs(dwref), 1e-5, "dW");
    test::require_close(layer->grads()[1], dbref, 1e-6, 1e-6, "db");
  }
}

TEST_CASE("nn bf16 and fp16 layer gradients agree with finite differences", "[nn][mixed]") {
  // The 16-bit layer's analytic gradients against central differences of the exact (double,
  // unrounded) layer: they differ by the operand rounding only, a few 2^-bits relative.
  const json specs[] = {
      {{"type", "conv2d"}, {"filters", 4}, {"kernel", 3}, {"padding", "same"}, {"activation", "tanh"}},
      {{"type", "dense"}, {"units", 6}, {"activation", "elu"}},
  };
  for (const int format : {ops::kHalfBf16, ops::kHalfFp16})
    for (const auto& spec : specs) {
      INFO("format " << format << " " << spec.dump());
      const LayerDesc d =
          spec["type"] == "dense"
              ? plan_layers(json::array({spec, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
                            {1, 1, 20}, 3)
                    .layers[0]
              : conv_desc(spec, {5, 6, 2});
      const int64_t n = 2;
      auto low = make_cpu_layer<float>(d);
      auto exact = make_cpu_layer<double>(d);
      low->set_matmul_format(format);
      for (size_t j = 0; j < d.params.size(); ++j) {
        const auto p = random_vec(d.params[j].size(), 10 + uint32_t(j), -0.6, 0.6);
        low->params()[j] = p;
        exact->params()[j].assign(p.begin(), p.end());
      }
      const auto xf = random_vec(n * d.in.size(), 20, -1, 1), r = random_vec(n * d.out.size(), 21, -1, 1);
      std::vector<double> x(xf.begin(), xf.end()), rd(r.begin(), r.end());
      std::vector<float> y(r.size()), dx(xf.size());
      low->forward(xf.data(), y.data(), n, true, {});
      low->zero_grads();
      low->backward(xf.data(), y.data(), r.data(), dx.data(), n, {});
      // L = Σ r·y of the exact layer.
      auto loss = [&]() {
        std::vector<double> ye(r.size());
        exact->forward(x.data(), ye.data(), n, true, {});
        return std::inner_product(ye.begin(), ye.end(), rd.begin(), 0.0);
      };
      const double h = 1e-5;
      // Central differences of the loss with respect to every element of v.
      auto central_difference = [&](std::vector<double>& v) {
        std::vector<double> fd(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
          const double keep = v[i];
          v[i] = keep + h;
          const double lp = loss();
          v[i] = keep - h;
          const double lm = loss();
          v[i] = keep;
          fd[i] = (lp - lm) / (2 * h);
        }
        return fd;
      };
      const std::vector<double> fd_x = central_difference(x), fd_w = central_difference(exact->params()[0]);
      const double tol = format == ops::kHalfBf16 ? 2e-2 : 3e-3;
      test::require_close(dx, fd_x, tol * max_abs(fd_x), 0.0, "dx");
      test::require_close(low->grads()[0], fd_w, tol * max_abs(fd_w), 0.0, "dW");
    }
}


TEST_CASE("nn small cnn learns the quadrant task in bf16 on the cpu", "[nn][mixed]") {
  const double acc = test::train_quadrant_task("bf16");
  INFO("bf16 test accuracy " << acc);
  CHECK(acc >= 0.95);
}

TEST_CASE("nn small cnn learns the quadrant task in fp16 on the cpu", "[nn][mixed]") {
  double scale = 0;
  const double acc = test::train_quadrant_task("fp16", &scale);
  INFO("fp16 test accuracy " << acc << ", final loss scale " << scale);
  CHECK(acc >= 0.95);
  CHECK(scale == 65536.0);  // 64 steps: no growth yet, and no overflow at 2^16 on this task
}

namespace {

ModelPlan scaler_plan() {
  return plan_layers(json::parse(R"([
    {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "flatten"},
    {"type": "dense", "units": "classes", "activation": "softmax"}])"),
                     {6, 5, 2}, 3);
}

const NamedTensor& tensor(const std::vector<NamedTensor>& s, const std::string& name) {
  for (const auto& t : s)
    if (t.name == name) return t;
  FAIL("no state tensor " << name);
  return s.front();
}

}  // namespace

TEST_CASE("nn fp16 overflow skips the step and halves the loss scale", "[nn][mixed]") {
  const ModelPlan plan = scaler_plan();
  const auto x = random_vec(8 * plan.input.size(), 30, -1, 1);
  const std::vector<int32_t> y = {0, 1, 2, 0, 1, 2, 0, 1};
  for (const std::string opt : {"adam", "sgd"}) {
    INFO(opt);
    TrainHyper h;
    h.optimizer = opt;
    h.momentum = opt == "sgd" ? 0.9 : 0.0;
    h.precision = "fp16";
    h.loss_scale_init = 1e30;  // dL/dlogits · 1e30 overflows fp16 in the first 16-bit rounding
    auto net = make_cpu_network(plan, h);
    net->train_step(x.data(), y.data(), 8, 8, 1e-2f, {0, 0, 0});
    const auto before = net->state();  // after one skipped step: still the initial weights
    const auto init = initial_weights(plan, h);
    for (size_t i = 0; i < init.size(); ++i) CHECK(tensor(before, init[i].name).data == init[i].data);
    CHECK(net->loss_scale() == double(1e30f * 0.5f));
    net->train_step(x.data(), y.data(), 8, 8, 1e-2f, {0, 1, 0});
    const auto after = net->state();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      if (after[i].name == "step" || after[i].name.rfind("loss_scale", 0) == 0) continue;
      INFO(after[i].name);
      CHECK(std::memcmp(after[i].data.data(), before[i].data.data(), after[i].data.size() * sizeof(float)) == 0);
    }
    CHECK(tensor(after, "loss_scale").data[0] == 1e30f * 0.25f);
    CHECK(tensor(after, "loss_scale.good_steps").data[0] == 0.0f);
    CHECK(tensor(after, "step").data[0] == 2.0f);  // the schedule's step counter still counts skipped steps
    // The guard does not stop a run on an overflow step: the weights are finite.
    std::string where;
    CHECK(net->check_finite(&where));
    // At a sane scale the same batch trains: weights move, the good-step count grows.
    TrainHyper h2 = h;
    h2.loss_scale_init = 1024;
    auto net2 = make_cpu_network(plan, h2);
    net2->train_step(x.data(), y.data(), 8, 8, 1e-2f, {0, 0, 0});
    const auto s2 = net2->state();
    CHECK(tensor(s2, init[0].name).data != init[0].data);
    CHECK(tensor(s2, "loss_scale.good_steps").data[0] == 1.0f);
    CHECK(net2->loss_scale() == 1024.0);
  }
}

TEST_CASE("nn fp16 loss scale unscales to the unscaled gradient step", "[nn][mixed]") {
  // Scales are powers of two: unscaled gradients equal those of a scale-1 run wherever no fp16
  // value under- or overflows, so one Adam step from either scale lands on nearly the same weights.
  const ModelPlan plan = scaler_plan();
  const auto x = random_vec(8 * plan.input.size(), 31, -1, 1);
  const std::vector<int32_t> y = {2, 1, 0, 0, 1, 2, 2, 1};
  TrainHyper h;
  h.optimizer = "sgd";
  h.precision = "fp16";
  h.loss_scale_init = 1;
  auto a = make_cpu_network(plan, h);
  h.loss_scale_init = 4096;
  auto b = make_cpu_network(plan, h);
  a->train_step(x.data(), y.data(), 8, 8, 0.1f, {0, 0, 0});
  b->train_step(x.data(), y.data(), 8, 8, 0.1f, {0, 0, 0});
  const auto sa = a->state(), sb = b->state();
  for (size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].name.rfind("loss_scale", 0) == 0 || sa[i].name == "step") continue;
    test::require_close(sb[i].data, sa[i].data, 1e-6, 1e-3, sa[i].name);
  }
}

TEST_CASE("nn fp16 loss scale grows after the growth interval", "[nn][mixed]") {
  const ModelPlan plan = scaler_plan();
  const auto x = random_vec(4 * plan.input.size(), 32, -1, 1);
  const std::vector<int32_t> y = {0, 1, 2, 1};
  TrainHyper h;
  h.precision = "fp16";
  h.loss_scale_init = 1024;
  h.loss_scale_growth_interval = 3;
  auto net = make_cpu_network(plan, h);
  const double want[] = {1024, 1024, 2048, 2048, 2048, 4096};
  for (uint64_t s = 0; s < 6; ++s) {
    net->train_step(x.data(), y.data(), 4, 4, 1e-3f, {0, s, 0});
    INFO("step " << s);
    CHECK(net->loss_scale() == want[s]);
    CHECK(tensor(net->state(), "loss_scale.good_steps").data[0] == float((s + 1) % 3));
  }
  // PyTorch's defaults when nothing is configured: 2^16, growth every 2000 steps.
  const TrainHyper d = TrainHyper::from_config(Config{});
  CHECK(d.loss_scale_init == 65536.0);
  CHECK(d.loss_scale_growth_interval == 2000);
}

TEST_CASE("nn fp16 loss scale collapse stops the run with a clear message", "[nn][mixed]") {
  const ModelPlan plan = scaler_plan();
  auto x = random_vec(2 * plan.input.size(), 33, -1, 1);
  x[3] = std::nanf("");  // a NaN input: every step overflows whatever the scale
  const std::vector<int32_t> y = {0, 1};
  TrainHyper h;
  h.precision = "fp16";
  h.loss_scale_init = 2 * Network::kMinLossScale;
  auto net = make_cpu_network(plan, h);
  std::string where;
  net->train_step(x.data(), y.data(), 2, 2, 1e-3f, {0, 0, 0});
  CHECK(net->check_finite(&where));  // skipped, scale at the floor: not yet a failure
  net->train_step(x.data(), y.data(), 2, 2, 1e-3f, {0, 1, 0});
  CHECK_FALSE(net->check_finite(&where));
  CHECK_THAT(where, Catch::Contains("fp16 loss scale fell to") && Catch::Contains("2^-14"));
  // Without loss scaling the same NaN is a non-finite gradient, as before.
  h.precision = "bf16";
  auto bf = make_cpu_network(plan, h);
  bf->train_step(x.data(), y.data(), 2, 2, 1e-3f, {0, 0, 0});
  CHECK_FALSE(bf->check_finite(&where));
  CHECK_THAT(where, Catch::Contains("non-finite gradient"));
  CHECK(bf->loss_scale() == 0.0);
}

TEST_CASE("nn fp16 loss scale survives a checkpoint round trip", "[nn][mixed]") {
  const auto dir = test::temp_dir("nn-fp16-ckpt");
  const std::string path = (dir / "ckpt.bin").string();
  const ModelPlan plan = scaler_plan();
  const auto x = random_vec(4 * plan.input.size(), 34, -1, 1);
  const std::vector<int32_t> y = {0, 1, 2, 1};
  TrainHyper h;
  h.precision = "fp16";
  h.loss_scale_init = 1e30;
  h.loss_scale_growth_interval = 5;
  auto net = make_cpu_network(plan, h);
  // Overflow (halving from 1e30) until the first finite step, then one more finite step.
  int64_t skipped = -1;
  for (int k = 0; k < 200; ++k) {
    net->train_step(x.data(), y.data(), 4, 4, 1e-3f, {0, uint64_t(k), 0});
    if (tensor(net->state(), "loss_scale.good_steps").data[0] == 1.0f) break;
    skipped = k + 1;
  }
  REQUIRE(skipped > 50);
  const double scale = net->loss_scale();
  CHECK(scale == double(1e30f * std::ldexp(1.0f, -int(skipped))));
  net->train_step(x.data(), y.data(), 4, 4, 1e-3f, {0, 300, 0});
  REQUIRE(net->loss_scale() == scale);
  const auto want = net->state();
  CHECK(tensor(want, "loss_scale.good_steps").data[0] == 2.0f);
  CheckpointMeta meta;
  meta.step = 3;
  save_checkpoint(path, plan, h, want, meta);
  TrainHyper fresh = h;
  fresh.loss_scale_init = 65536;
  auto back = make_cpu_network(plan, fresh);
  restore_checkpoint(path, *back);
  CHECK(back->loss_scale() == scale);
  const auto got = back->state();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].data == want[i].data);
  }
  // Across precisions: an fp32 network ignores the scale, an fp16 network without one starts
  // from train.loss_scale_init.
  TrainHyper f32 = h;
  f32.precision = "fp32";
  auto n32 = make_cpu_network(plan, f32);
  n32->load_state(want);
  CHECK(n32->state().size() == want.size() - 2);
  auto again = make_cpu_network(plan, fresh);
  again->load_state(n32->state());
  CHECK(again->loss_scale() == 65536.0);
}

TEST_CASE("nn fp16 small cnn recovers from an overflowing initial loss scale", "[nn][mixed]") {
  // The CPU half of the [gpu] fp16 training test: from 2^22 the first steps overflow and are
  // skipped (the initial weights stay), the scale halves until the gradients fit, then training
  // proceeds and the scale grows every 4 finite steps.
  const ModelPlan plan = plan_layers(test::small_cnn(), {12, 10, 2}, 4);
  TrainHyper h;
  h.optimizer = "sgd";
  h.lr = 0.05;
  h.momentum = 0.9;
  h.seed = 5;
  h.precision = "fp16";
  h.loss_scale_init = 1 << 22;
  h.loss_scale_growth_interval = 4;
  auto net = make_cpu_network(plan, h);
  const int64_t n = 7;
  const auto init = initial_weights(plan, h);
  int skipped = 0, grown = 0;
  double prev = net->loss_scale(), first_loss = 0, last_loss = 0;
  for (uint64_t step = 0; step < 20; ++step) {
    const auto x = random_vec(n * plan.input.size(), 100 + uint32_t(step % 5), -1, 1);
    std::vector<int32_t> y;
    for (int64_t e = 0; e < n; ++e) y.push_back(int32_t((e + int64_t(step % 5)) % 4));
    net->train_step(x.data(), y.data(), n, n, float(h.lr), {h.seed, step, 0});
    REQUIRE(net->check_finite());
    const double s = net->loss_scale();
    skipped += s < prev;
    grown += s > prev;
    prev = s;
    if (step == 0) first_loss = net->last_stats().loss_sum / n;
    last_loss = net->last_stats().loss_sum / n;
  }
  INFO("skipped " << skipped << ", grown " << grown << ", final scale " << prev << ", loss " << first_loss << " -> "
                  << last_loss);
  CHECK(skipped >= 1);
  CHECK(grown >= 1);
  CHECK(tensor(net->state(), init[0].name).data != init[0].data);  // it trained after the skips
  CHECK(last_loss < first_loss);
}
