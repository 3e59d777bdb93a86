// conv2d's epilogue fused with the max pooling and dropout after it (ops/conv_epilogue.h,
// train.fuse_conv_epilogue): the fused forward and backward against the layers' own functors run
// one by one (BiasActivation / HalfBiasActivation, MaxPoolForward, DropoutApply, and backward
// DropoutApply, MaxPoolBackwardDisjoint over a zeroed map, ActivationBackward(ToHalf)), which
// they must equal bit for bit; which plans fuse; and the CPU network trained with and without it.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "genrelab/config.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/conv_epilogue.h"
#include "genrelab/ops/nn_gpu_extra.h"
#include "genrelab/parallel_for.h"
#include "nn_fixtures.h"
#include "test_util.h"

using namespace genrelab;
using json = nlohmann::json;
using test::random_vec;

namespace {

struct Case {
  int64_t n, h, w, c, kh, kw;
  int act;
  float alpha;
  bool bias;
  float rate;  // 0: no dropout in the run
  int format;  // ops::kHalf*: the product's z in 16 bits
  std::string name() const {
    return std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c) + " pool " +
           std::to_string(kh) + "x" + std::to_string(kw) + " act " + std::to_string(act) + (bias ? " bias" : "") +
           " rate " + std::to_string(rate) + " format " + std::to_string(format);
  }
};

// Equal as floats (so +0 and −0 agree; the data hold no NaN).
void require_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i]) && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << got.size() << " differ, first at " << first << ": " << got[first] << " vs "
            << want[first]);
  REQUIRE(bad == 0);
}

// The run one layer at a time and fused, forward and backward, with calls of `lanes` channels
// launched one example at a time (so each launch's first example n0 is exercised).
void check_case(const Case& t, int lanes) {
  INFO(t.name() << ", " << lanes << " lanes");
  const int64_t oh = t.h / t.kh, ow = t.w / t.kw;
  const int64_t zcount = t.n * t.h * t.w * t.c, pcount = t.n * oh * ow * t.c;
  // The product's z: coarse values so that windows tie (the first maximum must win on both sides).
  std::vector<float> z = random_vec(zcount, 11, -2, 2);
  for (float& v : z) v = std::round(v * 8.0f) / 8.0f;
  std::vector<uint16_t> z16(static_cast<size_t>(zcount));
  if (t.format != ops::kHalfNone)
    for (size_t i = 0; i < z.size(); ++i) z16[i] = ops::float_to_half_bits(z[i] * 1.37f, t.format);
  const std::vector<float> bias = random_vec(t.c, 12, -0.5, 0.5);
  const float* b = t.bias ? bias.data() : nullptr;
  const ops::DropoutStep step{7, 3};  // first example 3: the mask's element offset is not a multiple of 4
  ops::DropoutMask mask{21, 5, t.rate, oh * ow * t.c, &step};

  // One by one.
  std::vector<float> y(static_cast<size_t>(zcount));
  if (t.format != ops::kHalfNone) {
    cpu_for_1d(zcount, ops::HalfBiasActivation{z16.data(), y.data(), b, t.c, t.format, t.act, t.alpha});
  } else {
    y = z;
    cpu_for_1d(zcount, ops::BiasActivation<float>{y.data(), b, t.c, t.act, t.alpha});
  }
  const ops::PoolGeom pg{t.h, t.w, t.c, oh, ow, t.kh, t.kw, t.kh, t.kw, 0, 0};
  std::vector<float> pooled(static_cast<size_t>(pcount)), dropped(static_cast<size_t>(pcount));
  std::vector<uint8_t> argmax(static_cast<size_t>(pcount));
  cpu_for_1d(pcount, ops::MaxPoolForward<1>{y.data(), pooled.data(), argmax.data(), pg});
  if (t.rate > 0) cpu_for_1d(ops::DropoutApply<float>::groups(pcount), ops::DropoutApply<float>{mask, pooled.data(), dropped.data(), pcount});

  const std::vector<float> dy = random_vec(pcount, 13, -1, 1);
  std::vector<float> dpool_in = dy;  // the gradient reaching the pooling
  if (t.rate > 0) cpu_for_1d(ops::DropoutApply<float>::groups(pcount), ops::DropoutApply<float>{mask, dy.data(), dpool_in.data(), pcount});
  std::vector<float> dmap(size_t(zcount), 0.0f), dz(static_cast<size_t>(zcount));
  std::vector<uint16_t> dz16(static_cast<size_t>(zcount));
  cpu_for_1d(pcount, ops::MaxPoolBackwardDisjoint<1>{dpool_in.data(), argmax.data(), dmap.data(), pg});
  if (t.format != ops::kHalfNone)
    cpu_for_1d(zcount, ops::ActivationBackwardToHalf{y.data(), dmap.data(), dz.data(), dz16.data(), t.format, t.act, t.alpha});
  else
    cpu_for_1d(zcount, ops::ActivationBackward<float>{y.data(), dmap.data(), dz.data(), t.act, t.alpha});

  // Fused.
  const ops::ConvEpilogueGeom g(t.h, t.w, t.c, t.kh, t.kw, lanes);
  ops::EpilogueDropout drop;
  drop.on = t.rate > 0;
  drop.mask = mask;
  std::vector<float> f_pooled(size_t(pcount), -7.0f), f_dropped(size_t(pcount), -7.0f);
  std::vector<uint8_t> f_argmax(size_t(pcount), 255);
  std::vector<float> f_dz(size_t(zcount), -7.0f);
  std::vector<uint16_t> f_dz16(size_t(zcount), 0xffff);
  std::vector<float> f_dpool(static_cast<size_t>(pcount), -7.0f);
  std::vector<uint16_t> f_dz16_only(static_cast<size_t>(zcount), 0xffff);
  // Where the argmax byte carries the sign, the backward must not read the pooled map (null here),
  // and a forward may skip writing it (the second forward below: the same dropout output and bytes).
  const bool sign = g.sign_coded(t.act);
  const float* pooled_read = sign ? nullptr : f_pooled.data();
  std::vector<float> f_dropped_only(size_t(pcount), -7.0f);
  std::vector<uint8_t> f_argmax_only(size_t(pcount), 255);
  auto run = [&](auto lane_count) {
    constexpr int L = decltype(lane_count)::value;
    auto forward = [&](float* p, uint8_t* at, float* d) {
      for (int64_t e = 0; e < t.n; ++e) {
        if (t.format != ops::kHalfNone)
          cpu_for_1d(g.calls(1, L), ops::ConvEpilogueForward<L, uint16_t>{z16.data(), t.format, b, t.act, t.alpha, p,
                                                                          at, drop, d, g, e});
        else
          cpu_for_1d(g.calls(1, L), ops::ConvEpilogueForward<L, float>{z.data(), ops::kHalfNone, b, t.act, t.alpha, p,
                                                                       at, drop, d, g, e});
      }
    };
    forward(f_pooled.data(), f_argmax.data(), t.rate > 0 ? f_dropped.data() : nullptr);
    if (t.rate > 0) forward(nullptr, f_argmax_only.data(), f_dropped_only.data());
    for (int64_t e = 0; e < t.n; ++e)
      cpu_for_1d(g.calls(1, L),
                 ops::ConvEpilogueBackward<L>{dy.data(), pooled_read, f_argmax.data(), drop, t.act, t.alpha,
                                              f_dz.data(), t.format != ops::kHalfNone ? f_dz16.data() : nullptr,
                                              t.format, f_dpool.data(), g, e});
    // Under bf16/fp16 the product reads only dz16: the same values without the float dz.
    if (t.format != ops::kHalfNone)
      for (int64_t e = 0; e < t.n; ++e)
        cpu_for_1d(g.calls(1, L),
                   ops::ConvEpilogueBackward<L>{dy.data(), pooled_read, f_argmax.data(), drop, t.act, t.alpha, nullptr,
                                                f_dz16_only.data(), t.format, nullptr, g, e});
  };
  if (lanes == 4) run(std::integral_constant<int, 4>());
  else run(std::integral_constant<int, 1>());

  require_equal(f_pooled, pooled, "pooled");
  // MaxPoolForward's offsets, and where sign-coded the top bit for pooled > 0.
  std::vector<uint8_t> coded = argmax;
  for (size_t o = 0; o < coded.size(); ++o)
    if (sign && pooled[o] > 0.0f) coded[o] |= ops::kEpiloguePositive;
  CHECK(f_argmax == coded);
  if (t.rate > 0) {
    require_equal(f_dropped, dropped, "dropped");
    require_equal(f_dropped_only, dropped, "dropped, no pooled map written");
    CHECK(f_argmax_only == coded);
  }
  require_equal(f_dz, dz, "dz");
  // dpool: the gradient at each window's maximum, so its sums per channel are dz's.
  std::vector<float> dpool_ref(static_cast<size_t>(pcount));
  for (int64_t o = 0; o < pcount; ++o)
    dpool_ref[size_t(o)] = dpool_in[size_t(o)] * ops::activation_grad<float>(t.act, pooled[size_t(o)], t.alpha);
  require_equal(f_dpool, dpool_ref, "dpool");
  for (int64_t ch = 0; ch < t.c; ++ch) {
    double from_dz = 0, from_dpool = 0;
    for (int64_t i = ch; i < zcount; i += t.c) from_dz += dz[size_t(i)];
    for (int64_t o = ch; o < pcount; o += t.c) from_dpool += f_dpool[size_t(o)];
    CHECK(std::fabs(from_dz - from_dpool) <= 1e-12 * (1 + std::fabs(from_dz)));
  }
  if (t.format != ops::kHalfNone) {
    CHECK(f_dz16_only == f_dz16);
    // dz16 of ±0 may differ in sign only.
    size_t bad = 0;
    for (size_t i = 0; i < dz16.size(); ++i)
      if (f_dz16[i] != dz16[i] && ((f_dz16[i] | dz16[i]) & 0x7fff) != 0) ++bad;
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("fused conv epilogue equals bias + activation, max pooling and dropout one by one", "[nn][conv_epilogue]") {
  using namespace ops;
  // (n, h, w, c, kh, kw, act, alpha, bias, rate, format)
  const std::vector<Case> cases = {
      {2, 6, 9, 8, 2, 2, kActRelu, 0, true, 0.1f, kHalfNone},     // a column no window covers
      {2, 7, 9, 8, 2, 2, kActRelu, 0, true, 0.5f, kHalfNone},     // and a row
      {3, 9, 14, 4, 4, 4, kActRelu, 0, true, 0.1f, kHalfNone},    // the baseline's third pooling
      {2, 13, 13, 8, 6, 6, kActRelu, 0, false, 0.0f, kHalfNone},  // its fourth, no dropout
      {2, 5, 7, 3, 1, 3, kActElu, 1.0f, true, 0.25f, kHalfNone},  // 3 channels: one a call
      {2, 6, 6, 4, 2, 3, kActLeakyRelu, 0.2f, true, 0.3f, kHalfNone},
      {2, 6, 8, 4, 2, 2, kActTanh, 0, true, 0.0f, kHalfNone},
      {2, 6, 8, 4, 2, 2, kActSigmoid, 0, false, 0.2f, kHalfNone},
      {2, 6, 8, 4, 3, 2, kActNone, 0, true, 0.2f, kHalfNone},
      {2, 7, 9, 8, 2, 2, kActRelu, 0, true, 0.1f, kHalfBf16},  // the product's 16-bit z and dz
      {2, 7, 9, 8, 2, 2, kActElu, 0.5f, true, 0.1f, kHalfFp16},
      {2, 6, 8, 4, 2, 2, kActNone, 0, false, 0.0f, kHalfBf16},
      {1, 25, 13, 4, 12, 12, kActRelu, 0, true, 0.2f, kHalfNone},  // 144 cells: offsets need all 8 bits, no sign bit
      {2, 6, 8, 4, 2, 2, kActLeakyRelu, 0.1f, true, 0.0f, kHalfBf16},
  };
  for (const Case& t : cases) {
    if (t.c % 4 == 0) check_case(t, 4);
    check_case(t, 1);
  }
}

// The backward with dy summed from the next convolution's input-gradient columns (the GPU leaves
// them when that convolution's GEMM engine computes its dx) against col2im run first, its dx
// rounded as the engine rounds it under bf16/fp16, and read as dy: equal bit for bit (the same
// sums in the same order), for a valid 2 × 2 next conv (the baseline's) and a padded, strided,
// dilated one.
TEST_CASE("fused conv epilogue sums dy from the next conv's input-gradient columns as col2im writes it",
          "[nn][conv_epilogue]") {
  struct ColsCase {
    int64_t n, h, w, c, kh, kw;  // the run: conv output and pooling windows
    int act;
    float rate;
    int round;                                    // the next conv's dx rounding (ops::kHalf*)
    int32_t nkh, nkw, sh, sw, dh, dw, top, left;  // the next conv over the pooled map
  };
  using namespace ops;
  const std::vector<ColsCase> cases = {
      {2, 8, 10, 8, 2, 2, kActRelu, 0.1f, kHalfNone, 2, 2, 1, 1, 1, 1, 0, 0},
      {2, 9, 13, 8, 2, 2, kActElu, 0.2f, kHalfBf16, 2, 2, 1, 1, 1, 1, 0, 0},
      {1, 16, 20, 4, 4, 4, kActRelu, 0.0f, kHalfFp16, 3, 2, 2, 1, 1, 2, 1, 0},
  };
  for (const ColsCase& t : cases) {
    const int64_t oh = t.h / t.kh, ow = t.w / t.kw;
    ConvColsGeom next;
    next.h = int32_t(oh), next.w = int32_t(ow), next.c = int32_t(t.c);
    next.kh = t.nkh, next.kw = t.nkw, next.sh = t.sh, next.sw = t.sw, next.dh = t.dh, next.dw = t.dw;
    next.top = t.top, next.left = t.left;
    next.oh = int32_t((oh + 2 * t.top - t.dh * (t.nkh - 1) - 1) / t.sh + 1);
    next.ow = int32_t((ow + 2 * t.left - t.dw * (t.nkw - 1) - 1) / t.sw + 1);
    const int64_t zcount = t.n * t.h * t.w * t.c, pcount = t.n * oh * ow * t.c;
    const std::vector<float> z = random_vec(zcount, 31, -2, 2);
    const std::vector<float> dcols = random_vec(t.n * next.positions() * next.k(), 32, -1, 1);
    const DropoutStep step{3, 1};
    EpilogueDropout drop;
    drop.on = t.rate > 0;
    drop.mask = DropoutMask{5, 2, t.rate, oh * ow * t.c, &step};
    for (int lanes : {4, 1}) {
      INFO("pool " << t.kh << "x" << t.kw << ", next conv " << t.nkh << "x" << t.nkw << ", round " << t.round << ", "
                   << lanes << " lanes");
      auto run = [&](auto lane_count) {
        constexpr int L = decltype(lane_count)::value;
        const ConvEpilogueGeom g(t.h, t.w, t.c, t.kh, t.kw, L);
        std::vector<float> pooled(static_cast<size_t>(pcount)), dropped(static_cast<size_t>(pcount));
        std::vector<uint8_t> argmax(static_cast<size_t>(pcount));
        cpu_for_1d(g.calls(t.n, L),
                   ConvEpilogueForward<L, float>{z.data(), kHalfNone, nullptr, t.act, 0.5f, pooled.data(),
                                                 argmax.data(), drop, dropped.data(), g, 0});
        // col2im first, then its dx read as dy.
        std::vector<float> dx(size_t(pcount), -7.0f);
        cpu_for_2d(t.n * oh * ow, Col2Im<float, L>::groups(next), Col2Im<float, L>{next, dcols.data(), dx.data()});
        cpu_for_1d(pcount, RoundToHalf<float>{dx.data(), dx.data(), t.round});
        std::vector<float> dz_read(size_t(zcount), -7.0f), dz_summed(size_t(zcount), -7.0f);
        std::vector<float> dpool_read(size_t(pcount), -7.0f), dpool_summed(size_t(pcount), -7.0f);
        cpu_for_1d(g.calls(t.n, L),
                   ConvEpilogueBackward<L>{dx.data(), pooled.data(), argmax.data(), drop, t.act, 0.5f, dz_read.data(),
                                           nullptr, kHalfNone, dpool_read.data(), g, 0});
        ColumnsGrad cols{dcols.data(), next, t.round};
        cpu_for_1d(g.calls(t.n, L), ConvEpilogueBackward<L>{nullptr, pooled.data(), argmax.data(), drop, t.act, 0.5f,
                                                            dz_summed.data(), nullptr, kHalfNone, dpool_summed.data(),
                                                            g, 0, columns_grad_sum<L>(cols), cols.round});
        require_equal(dz_summed, dz_read, "dz");
        require_equal(dpool_summed, dpool_read, "dpool");
        size_t nonzero = 0;
        for (float v : dz_read) nonzero += v != 0.0f;
        CHECK(nonzero > size_t(zcount) / 20);  // the comparison is not of zeros
      };
      if (lanes == 4)
        run(std::integral_constant<int, 4>());
      else
        run(std::integral_constant<int, 1>());
    }
  }
}

// im2col fused into the forward: the run's output (dropped, or pooled without a dropout; training
// and inference) written into the next convolution's columns, with EpilogueOutputs' buffers for
// that case, against the forward writing its output and im2col of it: equal bit for bit, the same
// argmax bytes, and the output buffer left unwritten.
TEST_CASE("fused conv epilogue writes the next conv's columns as im2col of its output", "[nn][conv_epilogue]") {
  using namespace ops;
  struct ColsCase {
    int64_t n, h, w, c, kh, kw;
    int act;
    float rate;
    int format;
    int32_t nkh, nkw, dh, dw;  // the next conv: stride 1, no padding
  };
  const std::vector<ColsCase> cases = {
      {2, 8, 10, 8, 2, 2, kActRelu, 0.1f, kHalfNone, 2, 2, 1, 1},  // the baseline's
      {2, 9, 13, 8, 2, 2, kActElu, 0.0f, kHalfBf16, 2, 2, 1, 1},
      {1, 16, 20, 6, 4, 4, kActTanh, 0.3f, kHalfNone, 2, 3, 2, 1},
  };
  for (const ColsCase& t : cases) {
    const int64_t oh = t.h / t.kh, ow = t.w / t.kw;
    ConvColsGeom next;
    next.h = int32_t(oh), next.w = int32_t(ow), next.c = int32_t(t.c);
    next.kh = t.nkh, next.kw = t.nkw, next.dh = t.dh, next.dw = t.dw;
    next.oh = int32_t(oh - (t.nkh - 1) * t.dh), next.ow = int32_t(ow - (t.nkw - 1) * t.dw);
    REQUIRE(ColumnsOut::writable(next));
    const int64_t zcount = t.n * t.h * t.w * t.c, pcount = t.n * oh * ow * t.c;
    std::vector<float> z = random_vec(zcount, 51, -2, 2);
    std::vector<uint16_t> z16(static_cast<size_t>(zcount));
    for (size_t i = 0; i < z16.size(); ++i)
      z16[i] = float_to_half_bits(z[i], t.format == kHalfNone ? kHalfBf16 : t.format);
    const std::vector<float> bias = random_vec(t.c, 52, -0.5, 0.5);
    const DropoutStep step{4, 2};
    EpilogueDropout drop;
    drop.mask = DropoutMask{8, 3, t.rate, oh * ow * t.c, &step};
    const bool sign = ConvEpilogueGeom::sign_coded(t.act, t.kh, t.kw);
    for (const bool training : {true, false}) {
      drop.on = training && t.rate > 0;
      for (int lanes : {4, 1}) {
        if (t.c % lanes != 0) continue;
        INFO("pool " << t.kh << "x" << t.kw << ", act " << t.act << ", rate " << t.rate << ", format " << t.format
                     << (training ? ", training" : ", inference") << ", " << lanes << " lanes");
        auto run = [&](auto lane_count) {
          constexpr int L = decltype(lane_count)::value;
          const ConvEpilogueGeom g(t.h, t.w, t.c, t.kh, t.kw, L);
          auto forward = [&](const EpilogueOutputs& out, const ColumnsOut& cols) {
            if (t.format != kHalfNone)
              cpu_for_1d(g.calls(t.n, L),
                         ConvEpilogueForward<L, uint16_t>{z16.data(), t.format, bias.data(), t.act, 0.2f, out.pooled,
                                                          out.argmax, drop, out.dropped, g, 0, cols});
            else
              cpu_for_1d(g.calls(t.n, L),
                         ConvEpilogueForward<L, float>{z.data(), kHalfNone, bias.data(), t.act, 0.2f, out.pooled,
                                                       out.argmax, drop, out.dropped, g, 0, cols});
          };
          const std::vector<float> untouched(static_cast<size_t>(pcount), -7.0f);
          std::vector<float> pooled = untouched, dropped = untouched, pooled2 = untouched, dropped2 = untouched;
          std::vector<uint8_t> argmax(static_cast<size_t>(pcount)), argmax2(static_cast<size_t>(pcount));
          float* d = t.rate > 0 ? dropped.data() : nullptr;
          forward(EpilogueOutputs::of(training, pooled.data(), d, argmax.data(), sign), ColumnsOut());
          const std::vector<float>& output = t.rate > 0 ? dropped : pooled;  // the run's, the next conv's input
          std::vector<float> want(size_t(t.n * next.positions() * next.k()), -7.0f), got(want.size(), -7.0f);
          cpu_for_2d(t.n * next.positions(), Im2Col<float, 1>::groups(next),
                     Im2Col<float, 1>{next, output.data(), want.data()});
          const EpilogueOutputs out2 = EpilogueOutputs::of(
              training, pooled2.data(), t.rate > 0 ? dropped2.data() : nullptr, argmax2.data(), sign, true);
          forward(out2, ColumnsOut{got.data(), next});
          CHECK(got == want);
          if (training) CHECK(argmax2 == argmax);
          CHECK(dropped2 == untouched);  // the output itself is not written
          // The pooled map still where the backward reads it (not sign-coded, training).
          CHECK((pooled2 == untouched) == !(training && !sign));
          if (training && !sign) CHECK(pooled2 == pooled);
        };
        if (lanes == 4)
          run(std::integral_constant<int, 4>());
        else
          run(std::integral_constant<int, 1>());
      }
    }
  }
}

TEST_CASE("fused conv epilogue: geometry, launches and lanes", "[nn][conv_epilogue]") {
  using G = ops::ConvEpilogueGeom;
  // Tiling: stride = window, no padding, floor division.
  CHECK(G::tiles(62, 601, 2, 2, 2, 2, 0, 0, 31, 300));
  CHECK_FALSE(G::tiles(62, 601, 3, 3, 2, 2, 0, 0, 30, 300));  // overlapping windows
  CHECK_FALSE(G::tiles(62, 601, 2, 2, 2, 2, 0, 1, 31, 301));  // "same" padding
  CHECK_FALSE(G::tiles(62, 601, 2, 2, 3, 3, 0, 0, 21, 200));  // gaps between windows
  // The argmax byte's sign bit: activations whose derivative is a function of the sign, windows of
  // at most 128 cells.
  CHECK(G::sign_coded(ops::kActRelu, 2, 2));
  CHECK(G::sign_coded(ops::kActLeakyRelu, 8, 16));
  CHECK(G::sign_coded(ops::kActNone, 6, 6));
  CHECK_FALSE(G::sign_coded(ops::kActRelu, 12, 12));
  for (int act : {ops::kActElu, ops::kActTanh, ops::kActSigmoid}) CHECK_FALSE(G::sign_coded(act, 2, 2));
  // The buffers a forward writes, and pooled_ever_written (what the GPU allocates) agreeing with them.
  float pooled = 0, dropped = 0;
  uint8_t argmax = 0;
  for (const bool has_dropout : {false, true})
    for (const bool sign : {false, true}) {
      bool any = false;
      for (const bool training : {false, true})
        for (const bool cols : {false, true}) {
          const ops::EpilogueOutputs out =
              ops::EpilogueOutputs::of(training, &pooled, has_dropout ? &dropped : nullptr, &argmax, sign, cols);
          INFO("dropout " << has_dropout << " sign " << sign << " training " << training << " cols " << cols);
          CHECK((out.argmax != nullptr) == training);
          CHECK(out.dropped == (training && has_dropout && !cols ? &dropped : nullptr));
          // The pooled slot: the pooled map, or (inference) the dropout's output it is written to.
          if (out.pooled == &pooled) any = true;
          CHECK((out.pooled == &pooled) == (training ? !sign || (!has_dropout && !cols) : !has_dropout && !cols));
          if (!training) CHECK(out.pooled == (cols ? nullptr : has_dropout ? &dropped : &pooled));
        }
      CHECK(ops::EpilogueOutputs::pooled_ever_written(has_dropout, sign) == any);
    }
  // The baseline's second pooling: 31·300·128/4 calls an example; launches stay under 2^31 calls.
  const G g(62, 601, 128, 2, 2, 4);
  CHECK(g.calls(1, 4) == 31 * 300 * 32);
  CHECK(g.examples_per_launch(4) == ((int64_t(1) << 31) - 1) / (31 * 300 * 32));
  std::vector<std::pair<int64_t, int64_t>> launches;
  const G wide(62, 601, 128, 2, 2, 1);
  ops::for_each_conv_epilogue_launch(wide, 1, 5000, [&](int64_t n0, int64_t m) { launches.push_back({n0, m}); });
  const int64_t per = ((int64_t(1) << 31) - 1) / (31 * 300 * 128);
  REQUIRE(launches.size() == size_t((5000 + per - 1) / per));
  CHECK(launches[1] == std::make_pair(per, per));
  CHECK(launches.back().first + launches.back().second == 5000);
  // Window of the last call of example 2.
  const auto win = g.window<4>(g.calls(1, 4) - 1, 2);
  CHECK(win.n == 2);
  CHECK(win.oy == 30);
  CHECK(win.ox == 299);
  CHECK(win.c0 == 124);
  CHECK(win.o == 3 * 31 * 300 * 128 - 4);
  // Four channels a call only with every buffer aligned for it.
  alignas(16) float f[8];
  alignas(16) uint16_t h[8];
  alignas(16) uint8_t a[8];
  CHECK(ops::conv_epilogue_lanes(8, {f}, {h}, a) == 4);
  CHECK(ops::conv_epilogue_lanes(6, {f}, {h}, a) == 1);
  CHECK(ops::conv_epilogue_lanes(8, {f + 1}, {h}, a) == 1);
  CHECK(ops::conv_epilogue_lanes(8, {f}, {h + 2}, a) == 1);
  CHECK(ops::conv_epilogue_lanes(8, {f, nullptr}, {nullptr}, a + 1) == 1);
  CHECK(ops::conv_epilogue_lanes(8, {f, nullptr}, {nullptr}, nullptr) == 4);
}

TEST_CASE("fused conv epilogue: which layers of a plan fuse", "[nn][conv_epilogue]") {
  // The baseline: conv2 → pool → dropout, conv3 → pool 4x4 → dropout, conv4 → pool 6x6 → dropout
  // after the first pair (which train.fuse_conv_pool takes); from layer 0 the first pair too.
  const Config config;
  const nn::ModelPlan plan = nn::plan_model(config, {128, 1206, 1}, 10);
  const auto runs = nn::conv_epilogue_runs(plan, 2);
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].conv == 3);
  CHECK(runs[0].pool == 4);
  CHECK(runs[0].dropout == 5);
  CHECK(runs[0].h == 62);
  CHECK(runs[0].w == 601);
  CHECK(runs[0].c == 128);
  CHECK(runs[0].pooled_size() == 31 * 300 * 128);
  CHECK(runs[0].rate == 0.1f);
  CHECK(runs[0].dropout_size == 31 * 300 * 128);
  CHECK(runs[0].name == "conv2d_2+maxpool2d_2+dropout_2");
  CHECK(runs[1].conv == 6);
  CHECK(runs[1].kh == 4);
  CHECK(runs[2].conv == 9);
  CHECK(runs[2].kh == 6);
  CHECK(runs[2].last() == 11);
  CHECK(nn::conv_epilogue_runs(plan, 0).size() == 4);

  const json conv = {{"type", "conv2d"}, {"filters", 4}, {"kernel", 2}, {"activation", "relu"}};
  const json flatten = {{"type", "flatten"}};
  const json head = {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}};
  auto runs_of = [&](json pool) {
    return nn::conv_epilogue_runs(nn::plan_layers(json::array({conv, pool, flatten, head}), {10, 10, 1}, 3), 0);  // conv output 9 x 9
  };
  const auto plain = runs_of({{"type", "maxpool2d"}, {"size", 2}});
  REQUIRE(plain.size() == 1);
  CHECK(plain[0].dropout == -1);
  CHECK(plain[0].last() == 1);
  CHECK(plain[0].name == "conv2d_1+maxpool2d_1");
  CHECK(runs_of({{"type", "maxpool2d"}, {"size", 3}, {"stride", 2}}).empty());      // overlapping windows
  CHECK(runs_of({{"type", "maxpool2d"}, {"size", 2}, {"padding", "same"}}).empty());  // padded
  CHECK(runs_of({{"type", "avgpool2d"}, {"size", 2}}).empty());

  // Set by the experiment but impossible: a note; by default, quiet.
  nn::TrainHyper h = nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.fuse_conv_epilogue=true"}));
  CHECK(h.fuse_conv_epilogue);
  const auto avg =
      nn::plan_layers(json::array({conv, {{"type", "avgpool2d"}, {"size", 2}}, flatten, head}), {9, 9, 1}, 3);
  auto said = [](const nn::ModelPlan& p, const nn::TrainHyper& hyper, size_t& runs) {
    std::ostringstream err;
    std::streambuf* old = std::cerr.rdbuf(err.rdbuf());
    runs = nn::use_fused_conv_epilogues(p, hyper, 0).size();
    std::cerr.rdbuf(old);
    return err.str();
  };
  size_t used = 9;
  CHECK(said(avg, h, used).find("note: train.fuse_conv_epilogue:") != std::string::npos);
  CHECK(used == 0);
  const nn::TrainHyper by_default = nn::TrainHyper::from_config(Config::load_or_defaults("", {}));
  CHECK(by_default.fuse_conv_epilogue);
  CHECK_FALSE(by_default.fuse_conv_epilogue_set);
  CHECK(said(avg, by_default, used).empty());
  CHECK(used == 0);
  nn::TrainHyper off = by_default;
  off.fuse_conv_epilogue = false;
  CHECK(nn::use_fused_conv_epilogues(plan, off, 2).empty());
}

// The CPU network with the fused epilogues (three runs, the first pair unfused) against the same
// network without: 12 Adam steps (a partial last batch), per-step losses, every state tensor and
// predictions, equal bit for bit in fp32 and under bf16 (the product's rounded z and dz).
TEST_CASE("fused conv epilogue trains what the layers one by one train", "[nn][conv_epilogue]") {
  const std::string precision = GENERATE("fp32", "bf16");
  INFO(precision);
  const auto plan = nn::plan_layers(test::conv_epilogue_cnn(), {21, 31, 1}, 3);
  auto run = [&](bool fuse) {
    nn::TrainHyper h;
    h.seed = 4;
    h.precision = precision;
    h.fuse_conv_epilogue = fuse;
    REQUIRE(nn::use_fused_conv_epilogues(plan, h, 0).size() == (fuse ? 3 : 0));
    return test::train_cpu_cycling(plan, h);
  };
  const test::CpuTrained fused = run(true), unfused = run(false);
  CHECK(fused.losses == unfused.losses);
  CHECK(fused.losses.front() != fused.losses.back());  // it trains
  REQUIRE(fused.state.size() == unfused.state.size());
  for (size_t i = 0; i < fused.state.size(); ++i) require_equal(fused.state[i].data, unfused.state[i].data, fused.state[i].name);
  require_equal(fused.probs, unfused.probs, "predict");
}
