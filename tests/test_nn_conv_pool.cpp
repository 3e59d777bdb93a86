// The fused first conv2d + maxpool2d (ops/conv_pool.h, train.fuse_conv_pool): its forward and its
// two-stage weight/bias gradient on the CPU against the CPU reference layers run one after the
// other, on odd shapes, both paddings, overlapping pool windows, dead relu windows, the dropout
// after the pool and the bf16/fp16 rounding; a CPU network trained fused against unfused; which
// plans may fuse.
#include <cmath>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "genrelab/config.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/conv_pool.h"
#include "genrelab/parallel_for.h"
#include "nn_fixtures.h"
#include "test_util.h"

namespace genrelab {
namespace {

using nn::Shape3;

using test::random_vec;

// conv, pool, then (rate > 0) a dropout, and a small head.
json layers_of(const json& conv, const json& pool, double rate = 0) {
  json layers = json::array(
      {conv, pool, {{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
  if (rate > 0) layers.insert(layers.begin() + 2, json::object({{"type", "dropout"}, {"rate", rate}}));
  return layers;
}

// The fused pair (with the dropout after it when rate > 0) against conv2d, maxpool2d (and dropout)
// on the CPU layers: forward y, then the kernel and bias gradients of a random dy (with zeros, as
// a later dropout leaves), within tol relative to scale.
void check_fused(const json& conv, const json& pool, Shape3 in, int64_t n, int half, double tol, double rate = 0) {
  const nn::ModelPlan plan = nn::plan_layers(layers_of(conv, pool, rate), in, 3);
  REQUIRE(nn::conv_pool_fusable(plan));
  const nn::LayerDesc& dc = plan.layers[0];
  const nn::LayerDesc& dp = plan.layers[1];
  INFO("conv " << dc.spec.dump() << " pool " << dp.spec.dump() << " in " << in.str() << " half " << half << " dropout "
               << rate);
  const nn::FusedDropout dropout = nn::conv_pool_dropout(plan);
  REQUIRE(dropout.drops(true) == (rate > 0));
  auto conv_layer = nn::make_cpu_layer<float>(dc);
  auto pool_layer = nn::make_cpu_layer<float>(dp);
  conv_layer->set_matmul_format(half);
  for (size_t j = 0; j < dc.params.size(); ++j)
    conv_layer->params()[j] = random_vec(dc.params[j].size(), 7 + uint32_t(j), -0.6, 0.6);
  const auto x = random_vec(n * dc.in.size(), 9, -1.0, 1.0);
  std::vector<float> dy = random_vec(n * dp.out.size(), 10, -1.0, 1.0);
  for (size_t i = 0; i < dy.size(); i += 7) dy[i] = 0.0f;

  // Reference: the two (or three) layers; the dropout's mask of step 3 of a batch at global position 2.
  const nn::StepKey key{1, 3, 2};
  std::vector<float> yc(size_t(n * dc.out.size())), yp(size_t(n * dp.out.size())), dyc(yc.size());
  conv_layer->forward(x.data(), yc.data(), n, true, key);
  pool_layer->forward(yc.data(), yp.data(), n, true, key);
  conv_layer->zero_grads();
  std::vector<float> dyp = dy;
  const std::vector<float> pooled = yp;
  if (rate > 0) {
    auto drop_layer = nn::make_cpu_layer<float>(plan.layers[2]);
    std::vector<float> yd(yp.size());
    drop_layer->forward(yp.data(), yd.data(), n, true, key);
    drop_layer->backward(yp.data(), yd.data(), dy.data(), dyp.data(), n, key);
    int64_t dropped = 0;
    for (float v : yd) dropped += v == 0.0f;
    CHECK(dropped > 0);  // the mask drops something here, so the comparisons below see it
    yp = yd;
  }
  pool_layer->backward(yc.data(), yp.data(), dyp.data(), dyc.data(), n, key);
  conv_layer->backward(x.data(), yc.data(), dyc.data(), nullptr, n, key);

  // Fused: the same parameters through the functors.
  const ops::ConvPoolGeom g = nn::conv_pool_geom(plan);
  const bool bias = dc.params.size() > 1;
  const ops::ConvPoolCell cell{g,
                               x.data(),
                               conv_layer->params()[0].data(),
                               bias ? conv_layer->params()[1].data() : nullptr,
                               int(nn::activation_of(dc)),
                               float(nn::activation_alpha(dc)),
                               half};
  std::vector<float> y(yp.size(), -7.0f);
  std::vector<uint8_t> argmax(y.size());
  const ops::DropoutStep step{key.step, key.first_example};
  nn::conv_pool_forward_cpu(cell, y.data(), argmax.data(), n,
                            dropout.of(key.seed, dropout.drops(true) ? &step : nullptr));
  test::require_close(y, yp, tol, tol, "fused forward");
  // im2col fused: the same forward writing the next conv's columns instead of y (a 2 × 2 window,
  // and one dilated 2 wide where the map allows) equals im2col of y bit for bit.
  for (const int32_t dw : {1, 2}) {
    ops::ConvColsGeom next;
    next.h = g.qh, next.w = g.qw, next.c = g.f, next.kh = 2, next.kw = 2, next.dw = dw;
    next.oh = g.qh - 1, next.ow = g.qw - dw;
    if (next.oh < 1 || next.ow < 1) continue;
    REQUIRE(ops::ColumnsOut::writable(next));
    INFO("next conv 2x2, dilation 1x" << dw);
    std::vector<float> want(size_t(n * next.positions() * next.k()), -7.0f), got(want.size(), -7.0f);
    cpu_for_2d(n * next.positions(), ops::Im2Col<float, 1>::groups(next),
               ops::Im2Col<float, 1>{next, y.data(), want.data()});
    std::vector<uint8_t> argmax2(argmax.size());
    nn::conv_pool_forward_cpu(cell, nullptr, argmax2.data(), n,
                              dropout.of(key.seed, dropout.drops(true) ? &step : nullptr),
                              ops::ColumnsOut{got.data(), next});
    CHECK(got == want);
    CHECK(argmax2 == argmax);
  }
  // A dropped output (zero after the dropout, not before) passes no gradient: its argmax byte says so.
  if (rate > 0) {
    int64_t marked = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      if (pooled[i] != 0.0f && yp[i] == 0.0f) CHECK(argmax[i] == ops::kConvPoolNoMax);
      if (argmax[i] == ops::kConvPoolNoMax) marked += 1;
    }
    CHECK(marked > 0);
  }

  // The backward's chunks of 64 pooled positions split examples and rows on these shapes.
  std::vector<float> gk(size_t(g.f * g.k()), 0.0f), gb(size_t(g.f), 0.0f);
  nn::conv_pool_backward_cpu(cell, dy.data(), argmax.data(), n, gk.data(), bias ? gb.data() : nullptr,
                             dropout.backward_scale());
  double scale = 0;
  for (float v : conv_layer->grads()[0]) scale = std::max(scale, double(std::fabs(v)));
  test::require_close(gk, conv_layer->grads()[0], tol * scale, tol, "kernel gradient");
  if (bias) {
    double bscale = 0;
    for (float v : conv_layer->grads()[1]) bscale = std::max(bscale, double(std::fabs(v)));
    test::require_close(gb, conv_layer->grads()[1], tol * bscale, tol, "bias gradient");
  }
}

TEST_CASE("fused conv and max pool equal the two cpu layers", "[nn][conv_pool]") {
  const json relu_conv = {{"type", "conv2d"}, {"filters", 5}, {"kernel", {2, 3}}, {"activation", "relu"}};
  const json pool22 = {{"type", "maxpool2d"}, {"size", 2}};
  SECTION("the baseline's pair: valid, 2x2 pool, relu") { check_fused(relu_conv, pool22, {13, 17, 1}, 3, 0, 2e-6); }
  SECTION("same padding on both, strides, no bias, two channels") {
    const json conv = {{"type", "conv2d"}, {"filters", 4},      {"kernel", 2},        {"stride", {1, 2}},
                       {"padding", "same"}, {"use_bias", false}, {"activation", "elu"}};
    const json pool = {{"type", "maxpool2d"}, {"size", {3, 2}}, {"stride", {2, 1}}, {"padding", "same"}};
    check_fused(conv, pool, {11, 14, 2}, 2, 0, 2e-6);
  }
  SECTION("overlapping windows, dilation, leaky relu, a partial last window") {
    const json conv = {{"type", "conv2d"}, {"filters", 3}, {"kernel", 2}, {"dilation", 2}, {"activation", "leaky_relu"}};
    const json pool = {{"type", "maxpool2d"}, {"size", 3}, {"stride", 2}};
    check_fused(conv, pool, {12, 15, 1}, 2, 0, 2e-6);
  }
  SECTION("four filters per call: seven filters leave one spare") {
    const json conv = {{"type", "conv2d"}, {"filters", 7}, {"kernel", 2}, {"activation", "relu"}};
    check_fused(conv, pool22, {9, 13, 1}, 2, 0, 2e-6);
  }
  SECTION("twenty filters: five groups of calls") {
    const json conv = {{"type", "conv2d"}, {"filters", 20}, {"kernel", 2}, {"activation", "relu"}};
    check_fused(conv, pool22, {9, 13, 1}, 2, 0, 2e-6);
  }
  SECTION("the baseline's 64 filters over a few groups of calls") {
    const json conv = {{"type", "conv2d"}, {"filters", 64}, {"kernel", 2}, {"activation", "relu"}};
    check_fused(conv, pool22, {8, 11, 1}, 2, 0, 2e-6);
  }
  SECTION(
      "35 pooled positions an example, 105 in all: a forward call's positions and a backward's batch of reads "
      "cross examples, and the last ones are partial") {
    const json conv = {{"type", "conv2d"}, {"filters", 64}, {"kernel", 2}, {"activation", "relu"}};
    check_fused(conv, pool22, {11, 15, 1}, 3, 0, 2e-6, 0.2);
  }
  SECTION("linear activation (no relu zeros)") {
    const json conv = {{"type", "conv2d"}, {"filters", 6}, {"kernel", 3}};
    check_fused(conv, pool22, {10, 9, 1}, 2, 0, 2e-6);
  }
  SECTION("15-wide windows, the widest an argmax byte holds, clipped by same padding") {
    const json conv = {{"type", "conv2d"}, {"filters", 3}, {"kernel", 2}, {"activation", "relu"}};
    const json pool = {{"type", "maxpool2d"}, {"size", {3, 15}}, {"stride", {2, 7}}, {"padding", "same"}};
    check_fused(conv, pool, {10, 40, 1}, 2, 0, 2e-6);
  }
  SECTION("with the dropout after the pool: 64 filters, aligned groups of four (one Philox block a call)") {
    const json conv = {{"type", "conv2d"}, {"filters", 64}, {"kernel", 2}, {"activation", "relu"}};
    check_fused(conv, pool22, {8, 11, 1}, 3, 0, 2e-6, 0.3);
  }
  SECTION("with the dropout after the pool: 7 filters, groups across Philox blocks, same padding") {
    const json conv = {{"type", "conv2d"}, {"filters", 7}, {"kernel", 2}, {"padding", "same"}, {"activation", "elu"}};
    check_fused(conv, pool22, {9, 13, 1}, 2, 0, 2e-6, 0.5);
  }
  SECTION("with the dropout after the pool: kernel volume 9, two filters a call, bf16") {
    const json conv = {{"type", "conv2d"}, {"filters", 5}, {"kernel", 3}, {"activation", "relu"}};
    check_fused(conv, pool22, {10, 12, 1}, 2, ops::kHalfBf16, 1e-5, 0.25);
  }
  // Under bf16/fp16 the rounded conv output ties more often; the first maximum still matches.
  SECTION("bf16 rounding") { check_fused(relu_conv, pool22, {13, 17, 1}, 3, ops::kHalfBf16, 1e-5); }
  SECTION("fp16 rounding") { check_fused(relu_conv, pool22, {13, 17, 1}, 3, ops::kHalfFp16, 1e-5); }
}

// The network with train.fuse_conv_pool against the same network without: 12 Adam steps of a
// small CNN (dropout after the pool, partial last batch), per-step losses and every state tensor.
TEST_CASE("fused conv and max pool train what the two layers train", "[nn][conv_pool]") {
  const auto plan = nn::plan_layers(test::conv_pool_cnn(), {11, 16, 1}, 3);
  auto run = [&](bool fuse) {
    nn::TrainHyper h;
    h.seed = 4;
    h.fuse_conv_pool = fuse;
    return test::train_cpu_cycling(plan, h);
  };
  const test::CpuTrained fused = run(true), unfused = run(false);
  for (size_t i = 0; i < fused.losses.size(); ++i)
    CHECK(std::fabs(fused.losses[i] - unfused.losses[i]) <= 1e-5 * std::fabs(unfused.losses[i]));
  CHECK(fused.losses.front() != fused.losses.back());  // it trains
  REQUIRE(fused.state.size() == unfused.state.size());
  for (size_t i = 0; i < fused.state.size(); ++i) {
    double scale = 0;
    for (float v : unfused.state[i].data) scale = std::max(scale, double(std::fabs(v)));
    test::require_close(fused.state[i].data, unfused.state[i].data, 1e-5 * (scale + 1e-3), 1e-5, fused.state[i].name);
  }
  test::require_close(fused.probs, unfused.probs, 1e-6, 1e-5, "predict");
}

TEST_CASE("fused conv and max pool: which plans fuse", "[nn][conv_pool]") {
  const json conv = {{"type", "conv2d"}, {"filters", 4}, {"kernel", 2}, {"activation", "relu"}};
  const json pool = {{"type", "maxpool2d"}, {"size", 2}};
  std::string why;
  CHECK(nn::conv_pool_fusable(nn::plan_layers(layers_of(conv, pool), {8, 8, 1}, 3), &why));
  // 2x2x5 = 20 > 16 sums per thread.
  CHECK_FALSE(nn::conv_pool_fusable(nn::plan_layers(layers_of(conv, pool), {8, 8, 5}, 3), &why));
  CHECK(why.find("kernel volume 20") != std::string::npos);
  const json avg = {{"type", "avgpool2d"}, {"size", 2}};
  CHECK_FALSE(nn::conv_pool_fusable(nn::plan_layers(layers_of(conv, avg), {8, 8, 1}, 3), &why));
  CHECK(why.find("conv2d followed by maxpool2d") != std::string::npos);
  // The argmax byte holds a cell's row and column in 4 bits each: windows up to 15.
  const json pool15 = {{"type", "maxpool2d"}, {"size", json::array({15, 2})}};
  const json pool16 = {{"type", "maxpool2d"}, {"size", json::array({2, 16})}};
  CHECK(nn::conv_pool_fusable(nn::plan_layers(layers_of(conv, pool15), {40, 40, 1}, 3), &why));
  CHECK_FALSE(nn::conv_pool_fusable(nn::plan_layers(layers_of(conv, pool16), {40, 40, 1}, 3), &why));
  CHECK(why.find("window 2x16") != std::string::npos);
  // The baseline's geometry: 128 x 1206 x 1 → conv 2x2 (127 x 1205 x 64) → pool 2x2 (63 x 602).
  const json baseline_conv = {{"type", "conv2d"}, {"filters", 64}, {"kernel", 2}, {"activation", "relu"}};
  const ops::ConvPoolGeom g = nn::conv_pool_geom(nn::plan_layers(layers_of(baseline_conv, pool), {128, 1206, 1}, 10));
  CHECK(g.oh == 127);
  CHECK(g.ow == 1205);
  CHECK(g.qh == 63);
  CHECK(g.qw == 602);
  CHECK(g.k() == 4);
  // One launch covers 885 examples of the baseline (63·602·64 outputs each, under 2^31).
  CHECK(ops::conv_pool_examples_per_launch(g) == ((int64_t(1) << 31) - 1) / (63 * 602 * 64));
}

// The key is on by default and quiet about it: a model that cannot fuse, or the cpu backend, says
// so on stderr only when the experiment set the key itself.
TEST_CASE("train.fuse_conv_pool is on by default and speaks only when set", "[nn][conv_pool]") {
  const auto fusable = nn::plan_layers(test::conv_pool_cnn(), {11, 16, 1}, 3);
  const auto unfusable = nn::plan_layers(json::array({{{"type", "conv2d"}, {"filters", 3}, {"kernel", 5}},
                                                      {{"type", "maxpool2d"}, {"size", 2}}, {{"type", "flatten"}},
                                                      {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
                                         {11, 16, 2}, 3);  // kernel volume 5·5·2 = 50 > 16
  REQUIRE(nn::conv_pool_fusable(fusable));
  REQUIRE_FALSE(nn::conv_pool_fusable(unfusable));
  auto said = [](const nn::ModelPlan& plan, const nn::TrainHyper& h, Device device, bool& used) {
    std::ostringstream err;
    std::streambuf* old = std::cerr.rdbuf(err.rdbuf());
    used = nn::use_fused_conv_pool(plan, h, device);
    std::cerr.rdbuf(old);
    return err.str();
  };
  const nn::TrainHyper by_default = nn::TrainHyper::from_config(Config::load_or_defaults("", {}));
  CHECK(by_default.fuse_conv_pool);
  CHECK_FALSE(by_default.fuse_conv_pool_set);
  bool used = false;
  CHECK(said(fusable, by_default, Device::cpu, used).empty());
  CHECK(used);
  CHECK(said(unfusable, by_default, Device::cpu, used).empty());
  CHECK_FALSE(used);

  const nn::TrainHyper set = nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.fuse_conv_pool=true"}));
  CHECK(set.fuse_conv_pool_set);
  CHECK_THAT(said(fusable, set, Device::cpu, used), Catch::Contains("meant for the GPU"));
  CHECK(used);
  CHECK_THAT(said(unfusable, set, Device::cpu, used),
             Catch::Contains("note: train.fuse_conv_pool:") && Catch::Contains("run one by one"));
  CHECK_FALSE(used);

  const nn::TrainHyper off = nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.fuse_conv_pool=false"}));
  CHECK(said(fusable, off, Device::cpu, used).empty());
  CHECK_FALSE(used);
}

}  // namespace
}  // namespace genrelab
