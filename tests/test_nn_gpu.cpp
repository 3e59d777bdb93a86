// GPU network backend: every GPU layer's forward and backward against the CPU reference layer on
// odd shapes, a 20-step training run on both backends, CUDA-graph steps against eager ones, the
// state round trip, precision and error paths ([gpu], skipped without a GPU); and the GPU-only
// gather functors of ops/nn_gpu_extra.h against the CPU reference layers and hand-computed values
// (these run everywhere). bf16/fp16 layers and training are held to the CPU backend's emulation
// of the same 16-bit rounding.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/nn/schedule.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_gpu_extra.h"
#include "genrelab/ops/nn_optim.h"
#include "genrelab/ops/philox.h"
#include "genrelab/parallel_for.h"
#include "nn_fixtures.h"
#include "test_util.h"

#if GENRELAB_HAVE_CUDA
#include "../cuda/nn/conv_epilogue.h"
#include "../cuda/nn/conv_gemm.h"
#include "../cuda/nn/conv_pool.h"
#include "../cuda/nn/gpu_layers.h"
#include "genrelab/cuda/check.h"
#include "genrelab/cuda/gather.h"
#include "../host/dist/dist_impl.h"
#endif

namespace genrelab {
namespace {

using genrelab::json;
using nn::Shape3;

using test::random_vec;

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// |got − want| ≤ tol·(max|want| + 1e-3) + tol·|want|: relative to the tensor's scale, so sums
// that cancel to near zero are judged against the magnitude of their terms.
void require_rel(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  test::require_close(got, want, tol * (max_abs(want) + 1e-3), tol, what);
}

// ---- gather functors of ops/nn_gpu_extra.h on the CPU ------------------------------------------

TEST_CASE("nn gpu extra pad and crop round trip", "[nn][gpu_extra]") {
  const int64_t n = 2, h = 3, w = 4, c = 5, top = 1, left = 0, hp = h + 1 + 2, wp = w + 0 + 1;
  const auto x = random_vec(n * h * w * c, 1, -1, 1);
  std::vector<float> padded(size_t(n * hp * wp * c)), back(x.size());
  cpu_for_1d(int64_t(padded.size()), ops::PadNhwc<float>{x.data(), padded.data(), h, w, c, hp, wp, top, left, -9.0f});
  // Hand-checked positions: (1, 0, 2, 3) lands at (1, 1, 2, 3); row 0 and the last column are fill.
  CHECK(padded[size_t(((1 * hp + 1) * wp + 2) * c + 3)] == x[size_t(((1 * h + 0) * w + 2) * c + 3)]);
  CHECK(padded[size_t(((0 * hp + 0) * wp + 1) * c + 0)] == -9.0f);
  CHECK(padded[size_t(((1 * hp + 2) * wp + 4) * c + 2)] == -9.0f);
  CHECK(padded[size_t(((1 * hp + 4) * wp + 0) * c + 2)] == -9.0f);
  int64_t fills = 0;
  for (float v : padded) fills += v == -9.0f;
  CHECK(fills == n * (hp * wp - h * w) * c);
  cpu_for_1d(int64_t(back.size()), ops::CropNhwc<float>{padded.data(), back.data(), h, w, c, hp, wp, top, left});
  CHECK(back == x);
}

// Runs the functor pooling (as the GPU does for average pooling with "same") against the CPU layer.
void check_avgpool_functors(const json& layer, Shape3 in, int64_t n) {
  const auto plan = nn::plan_layers(
      json::array({layer, {{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
      in, 3);
  const nn::LayerDesc& d = plan.layers[0];
  const nn::Window2d g = nn::window_of(d);
  const ops::PoolGeom geom{d.in.h, d.in.w, d.in.c, d.out.h, d.out.w, g.kh, g.kw, g.sh, g.sw, g.pad_top, g.pad_left};
  auto cpu = nn::make_cpu_layer<float>(d);
  const auto x = random_vec(n * in.size(), 2, -2, 2), dy = random_vec(n * d.out.size(), 3, -1, 1);
  std::vector<float> y_ref(dy.size()), y(dy.size()), dx_ref(x.size()), dx(x.size());
  cpu->forward(x.data(), y_ref.data(), n, true, {});
  cpu->backward(x.data(), y_ref.data(), dy.data(), dx_ref.data(), n, {});
  cpu_for_1d(int64_t(y.size()), ops::AvgPoolForward<float>{x.data(), y.data(), geom});
  cpu_for_1d(int64_t(dx.size()), ops::AvgPoolBackward<float>{dy.data(), dx.data(), geom});
  require_rel(y, y_ref, 1e-6, "avgpool forward");
  require_rel(dx, dx_ref, 1e-6, "avgpool backward");
}

TEST_CASE("nn gpu extra avgpool same equals the cpu layer", "[nn][gpu_extra]") {
  check_avgpool_functors({{"type", "avgpool2d"}, {"size", 3}, {"stride", 2}, {"padding", "same"}}, {7, 8, 4}, 2);
  check_avgpool_functors({{"type", "avgpool2d"}, {"size", json::array({2, 3})}, {"padding", "same"}}, {5, 7, 3}, 3);
  check_avgpool_functors({{"type", "avgpool2d"}, {"size", 2}, {"stride", 1}, {"padding", "same"}}, {4, 5, 2}, 1);
  check_avgpool_functors({{"type", "avgpool2d"}, {"size", 2}}, {7, 9, 3}, 2);  // valid, odd sizes floor
}

// Runs the max-pooling functors (forward with argmax, gather backward) against the CPU layer, on
// inputs quantised to a few values so that windows hold ties: bit-identical results.
void check_maxpool_functors(const json& layer, Shape3 in, int64_t n) {
  const auto plan = nn::plan_layers(
      json::array({layer, {{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
      in, 3);
  const nn::LayerDesc& d = plan.layers[0];
  INFO("layer " << d.spec.dump() << " in " << d.in.str() << " out " << d.out.str());
  const nn::Window2d g = nn::window_of(d);
  const ops::PoolGeom geom{d.in.h, d.in.w, d.in.c, d.out.h, d.out.w, g.kh, g.kw, g.sh, g.sw, g.pad_top, g.pad_left};
  auto cpu = nn::make_cpu_layer<float>(d);
  auto x = random_vec(n * in.size(), 6, -2, 2);
  for (float& v : x) v = std::round(v * 1.5f);  // five levels: many ties
  const auto dy = random_vec(n * d.out.size(), 7, -1, 1);
  std::vector<float> y_ref(dy.size()), y(dy.size()), dx_ref(x.size()), dx(x.size());
  std::vector<uint8_t> argmax(dy.size());
  cpu->forward(x.data(), y_ref.data(), n, true, {});
  cpu->backward(x.data(), y_ref.data(), dy.data(), dx_ref.data(), n, {});
  cpu_for_1d(int64_t(y.size()), ops::MaxPoolForward<1>{x.data(), y.data(), argmax.data(), geom});
  cpu_for_1d(int64_t(dx.size()), ops::MaxPoolBackward<float>{dy.data(), argmax.data(), dx.data(), geom});
  test::require_close(y, y_ref, 0, 0, "maxpool forward");
  test::require_close(dx, dx_ref, 0, 0, "maxpool backward");
  using Disjoint = ops::MaxPoolBackwardDisjoint<1>;
  if (Disjoint::applies(geom)) {  // the per-window form the GPU uses when windows do not overlap
    std::vector<float> dxw(x.size(), Disjoint::covers_input(geom) ? NAN : 0.0f);  // NaN: every cell must be written
    cpu_for_1d(int64_t(y.size()), Disjoint{dy.data(), argmax.data(), dxw.data(), geom});
    test::require_close(dxw, dx_ref, 0, 0, "maxpool backward, one call per window");
  }
  if (in.c % 4 == 0) {  // four channels per call, as the GPU runs these layers when they fit
    REQUIRE(ops::pool_lanes(in.c, x.data(), y.data(), argmax.data()) == 4);
    std::vector<float> y4(y.size(), NAN);
    std::vector<uint8_t> argmax4(argmax.size(), 255);
    cpu_for_1d(int64_t(y.size()) / 4, ops::MaxPoolForward<4>{x.data(), y4.data(), argmax4.data(), geom});
    test::require_close(y4, y_ref, 0, 0, "maxpool forward, four channels per call");
    CHECK(argmax4 == argmax);
    if (Disjoint::applies(geom)) {
      std::vector<float> dx4(x.size(), Disjoint::covers_input(geom) ? NAN : 0.0f);
      cpu_for_1d(int64_t(y.size()) / 4, ops::MaxPoolBackwardDisjoint<4>{dy.data(), argmax4.data(), dx4.data(), geom});
      test::require_close(dx4, dx_ref, 0, 0, "maxpool backward, one call per window and four channels");
    }
  }
  // Hand check of one window: its gradient lands on its first maximum in row-major order.
  const int64_t c = 1 % in.c;
  float best = -INFINITY;
  int64_t at = -1;
  for (int64_t a = 0; a < g.kh; ++a)
    for (int64_t b = 0; b < g.kw; ++b) {
      const int64_t ih = a - g.pad_top, iw = b - g.pad_left;
      if (ih < 0 || iw < 0 || ih >= in.h || iw >= in.w) continue;
      const float v = x[size_t((ih * in.w + iw) * in.c + c)];
      if (v > best) { best = v; at = a * g.kw + b; }
    }
  CHECK(y[size_t(c)] == best);
  CHECK(int64_t(argmax[size_t(c)]) == at);
}

TEST_CASE("nn gpu extra maxpool with argmax equals the cpu layer", "[nn][gpu_extra]") {
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}}, {127, 33, 4}, 2);  // the baseline's: odd rows floor
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 3}, {"stride", 2}, {"padding", "same"}}, {7, 8, 4}, 2);
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", json::array({2, 3})}, {"padding", "same"}}, {5, 7, 3}, 3);
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 3}, {"stride", 1}}, {6, 5, 2}, 2);  // overlapping windows
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 6}}, {7, 74, 5}, 1);
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}}, {8, 6, 3}, 2);  // windows cover the input exactly
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}, {"stride", 3}}, {8, 9, 2}, 2);  // gaps between windows
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}, {"padding", "same"}}, {7, 5, 3}, 2);
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}, {"padding", "same"}}, {7, 5, 8}, 2);  // four channels per call
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}, {"stride", 3}}, {8, 9, 12}, 2);
  check_maxpool_functors({{"type", "maxpool2d"}, {"size", 2}}, {8, 6, 4}, 3);
}

TEST_CASE("nn gpu extra global avgpool equals the cpu layer", "[nn][gpu_extra]") {
  const auto plan = nn::plan_layers(
      json::array({{{"type", "global_avgpool"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
      {5, 3, 6}, 3);
  const nn::LayerDesc& d = plan.layers[0];
  auto cpu = nn::make_cpu_layer<float>(d);
  const int64_t n = 3;
  const auto x = random_vec(n * d.in.size(), 4, -1, 1), dy = random_vec(n * d.out.size(), 5, -1, 1);
  std::vector<float> y_ref(dy.size()), y(dy.size()), dx_ref(x.size()), dx(x.size());
  cpu->forward(x.data(), y_ref.data(), n, true, {});
  cpu->backward(x.data(), y_ref.data(), dy.data(), dx_ref.data(), n, {});
  cpu_for_1d(int64_t(y.size()), ops::GlobalAvgPoolForward<float>{x.data(), y.data(), 15, 6});
  cpu_for_1d(int64_t(dx.size()), ops::GlobalAvgPoolBackward<float>{dy.data(), dx.data(), 15, 6});
  require_rel(y, y_ref, 1e-6, "global avgpool forward");
  require_rel(dx, dx_ref, 1e-6, "global avgpool backward");
}

TEST_CASE("nn gpu extra batchnorm moving statistics by hand", "[nn][gpu_extra]") {
  // m = 4 values per channel; cuDNN reports the unbiased variance 2.0 → biased 1.5.
  std::vector<float> mm{1.0f, -2.0f}, mv{1.0f, 0.5f};
  const std::vector<float> bm{3.0f, 0.0f}, bv{2.0f, 8.0f};
  cpu_for_1d(2, ops::BatchNormMoving<float>{mm.data(), mv.data(), bm.data(), bv.data(), 0.9f, 0.75f});
  CHECK(mm[0] == Approx(0.9 * 1.0 + 0.1 * 3.0));
  CHECK(mm[1] == Approx(0.9 * -2.0));
  CHECK(mv[0] == Approx(0.9 * 1.0 + 0.1 * 1.5));
  CHECK(mv[1] == Approx(0.9 * 0.5 + 0.1 * 6.0));
  // m = 1: no variance reported, the batch variance is 0.
  cpu_for_1d(2, ops::BatchNormMoving<float>{mm.data(), mv.data(), bm.data(), nullptr, 0.5f, 0.0f});
  CHECK(mv[0] == Approx(0.5 * (0.9 + 0.15)));
}

TEST_CASE("nn gpu extra device clip scale equals GradFinish", "[nn][gpu_extra]") {
  // The GPU's clip and fp16 unscale multiply by a scale left in device memory (ops::ScaleByDevice);
  // the CPU's clip is GradFinish with the L2 term already in g (l2x2 = 0).
  const auto w = random_vec(100, 6, -1, 1);
  auto g1 = random_vec(100, 7, -1, 1), g2 = g1;
  const float scale = 0.37f;
  cpu_for_1d(100, ops::GradFinish<float>{g1.data(), w.data(), scale, 0.0f});
  cpu_for_1d(100, ops::ScaleByDevice{g2.data(), &scale});
  CHECK(g1 == g2);
  CHECK(g2[3] == random_vec(100, 7, -1, 1)[3] * scale);
  // An overflowed gradient stays infinite (its step is skipped), as on both backends.
  std::vector<float> inf = {std::numeric_limits<float>::infinity(), -1.0f};
  cpu_for_1d(2, ops::ScaleByDevice{inf.data(), &scale});
  CHECK(std::isinf(inf[0]));
  CHECK(inf[1] == -scale);
}

TEST_CASE("nn gpu extra rnn sequence gather and scatter", "[nn][gpu_extra]") {
  // x (n, h, T, c) → seq (T, n, h·c) → x again; one element checked by hand.
  const int64_t n = 2, h = 3, T = 4, c = 2;
  const auto x = random_vec(n * h * T * c, 8, -1, 1);
  std::vector<float> seq(x.size()), back(x.size());
  cpu_for_1d(int64_t(seq.size()), ops::RnnGatherSequence<float>{x.data(), seq.data(), n, h, T, c});
  // seq[t = 2][e = 1][f = hh·c + cc = 2·2 + 1] = x[1][2][2][1]
  CHECK(seq[size_t((2 * n + 1) * (h * c) + 2 * c + 1)] == x[size_t(((1 * h + 2) * T + 2) * c + 1)]);
  cpu_for_1d(int64_t(back.size()), ops::RnnScatterSequence<float>{seq.data(), back.data(), n, h, T, c});
  CHECK(back == x);
}

TEST_CASE("nn gpu extra strided copy moves a gate block and back", "[nn][gpu_extra]") {
  // Keras kernel (in = 3, G·units = 3·2): gate g = 1 → a (units, in) row-major matrix.
  const int64_t in = 3, units = 2, GU = 6;
  const auto k = random_vec(in * GU, 9, -1, 1);
  std::vector<float> m(size_t(units * in), 0.0f), dk(k.size(), 1.0f);
  cpu_for_1d(units * in, ops::StridedCopy2d<float>{k.data() + units, m.data(), in, 1, GU, in, 1, false});
  for (int64_t j = 0; j < units; ++j)
    for (int64_t f = 0; f < in; ++f) CHECK(m[size_t(j * in + f)] == k[size_t(f * GU + units + j)]);
  cpu_for_1d(units * in, ops::StridedCopy2d<float>{m.data(), dk.data() + units, in, in, 1, 1, GU, true});
  for (int64_t f = 0; f < in; ++f)
    for (int64_t col = 0; col < GU; ++col) {
      const bool in_block = col >= units && col < 2 * units;
      CHECK(dk[size_t(f * GU + col)] == (in_block ? 1.0f + k[size_t(f * GU + col)] : 1.0f));
    }
}

#if GENRELAB_HAVE_CUDA

using cuda::nn::GpuContext;
using cuda::nn::Precision;

std::vector<float> download(const float* d, int64_t count) {
  std::vector<float> h(static_cast<size_t>(count));
  cuda::copy_to_host(h.data(), d, size_t(count));
  return h;
}

void upload(const std::vector<float>& h, float* d) {
  cuda::copy_to_device(d, h.data(), h.size());
}

struct DevVec {
  cuda::DeviceBuffer<float> buf;
  explicit DevVec(const std::vector<float>& h) : buf(h.size()) { upload(h, buf.data()); }
  explicit DevVec(size_t count) : buf(count) {}
  float* get() { return buf.data(); }
};

json head() {
  return json::array({{{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
}

// Layer `index` of `layers` on the GPU against the CPU reference: training forward, backward
// (input gradient and accumulated parameter gradients, batch-norm moving statistics), and the
// inference forward, within tol relative to each tensor's scale.
// gpu_comm: the GPU layer takes its training statistics over that communicator
// (train.sync_batchnorm); the CPU layer stays local. input_grad false: the backward is asked for
// no input gradient, as the network asks its first layer.
// engine: train.conv_engine of the GPU context (conv2d layers); benchmark_limit its
// train.cudnn_benchmark_limit; cudnn_find its train.cudnn_search=find.
void check_layer(json layers, Shape3 in, int64_t n, size_t index, double tol, Precision precision = Precision::fp32,
                 bool logits = false, dist::Communicator* gpu_comm = nullptr, bool input_grad = true,
                 cuda::nn::ConvEngine engine = cuda::nn::ConvEngine::automatic, int64_t benchmark_limit = 0,
                 bool cudnn_find = false) {
  const auto plan = nn::plan_layers(layers, in, 3);
  const nn::LayerDesc& d = plan.layers[index];
  INFO("layer " << d.name << " " << d.spec.dump() << " in " << d.in.str() << " out " << d.out.str() << " n " << n);
  auto cpu = nn::make_cpu_layer<float>(d);
  cpu->set_matmul_format(cuda::nn::half_format(precision));  // the CPU emulates bf16/fp16 rounding
  GpuContext ctx(precision, false, engine, benchmark_limit, cudnn_find);
  auto gpu = cuda::nn::make_gpu_layer(d, ctx);
  cpu->set_logits_output(logits);
  gpu->set_logits_output(logits);
  cuda::Stream comm_stream;
  if (gpu_comm) gpu->set_communicator(gpu_comm, comm_stream.get());
  for (size_t j = 0; j < d.params.size(); ++j) {
    const bool var = d.params[j].name == "moving_var";
    auto p = random_vec(d.params[j].size(), 20 + uint32_t(j), var ? 0.5 : -0.8, var ? 2.0 : 0.8);
    cpu->params()[j] = p;
    upload(p, gpu->params()[j]);
  }
  const auto x = random_vec(n * d.in.size(), 30, -1.5, 1.5);
  const auto dy = random_vec(n * d.out.size(), 31, -1, 1);
  const nn::StepKey key{11, 4, 7};
  const int64_t engine_passes = cuda::nn::GemmConv::passes_queued();
  std::vector<float> y_ref(dy.size()), dx_ref(x.size());
  DevVec dx_d(x), y_d(dy.size()), dy_d(dy), dxo_d(x.size());

  cpu->forward(x.data(), y_ref.data(), n, true, key);
  gpu->forward(dx_d.get(), y_d.get(), n, true, key);
  require_rel(download(y_d.get(), int64_t(dy.size())), y_ref, tol, "training forward y");

  cpu->zero_grads();
  gpu->zero_grads();
  cpu->backward(x.data(), y_ref.data(), dy.data(), dx_ref.data(), n, key);
  gpu->backward(dx_d.get(), y_d.get(), dy_d.get(), input_grad ? dxo_d.get() : nullptr, n, key);
  if (input_grad) require_rel(download(dxo_d.get(), int64_t(x.size())), dx_ref, tol, "backward dx");
  const auto g = gpu->grads();
  REQUIRE(g.size() == cpu->grads().size());
  for (size_t j = 0; j < g.size(); ++j)
    require_rel(download(g[j], int64_t(cpu->grads()[j].size())), cpu->grads()[j], tol, "gradient " + std::to_string(j));
  for (size_t j = 0; j < d.params.size(); ++j)
    require_rel(download(gpu->params()[j], d.params[j].size()), cpu->params()[j], tol,
                "param after step " + d.params[j].name);

  cpu->forward(x.data(), y_ref.data(), n, false, key);
  gpu->forward(dx_d.get(), y_d.get(), n, false, key);
  require_rel(download(y_d.get(), int64_t(dy.size())), y_ref, tol, "inference forward y");
  // train.conv_engine=gemm ran every pass on the engine (two forwards, the kernel gradient, the
  // input gradient when asked), except where a 16-bit layer needs the padded copy ("same" padding
  // that may be asymmetric), which stays on cuDNN.
  const bool half = precision == Precision::bf16 || precision == Precision::fp16;
  if (engine == cuda::nn::ConvEngine::gemm && d.type == "conv2d" && !(half && d.spec.value("padding", "") == "same"))
    CHECK(cuda::nn::GemmConv::passes_queued() - engine_passes >= (input_grad ? 4 : 3));
}

json with_head(json layer) {
  json l = json::array({layer});
  for (const auto& h : head()) l.push_back(h);
  return l;
}

TEST_CASE("nn gpu conv2d equals the cpu layer", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const double tol = 1e-4;
  using cuda::nn::ConvEngine;
  struct Case {
    json conv;
    Shape3 in;
    int64_t n;
    bool input_grad;
  };
  const std::vector<Case> cases = {
      {{{"type", "conv2d"}, {"filters", 5}, {"kernel", json::array({3, 2})}, {"activation", "relu"}}, {7, 9, 3}, 3, true},
      // "same" with an even kernel and stride 2: asymmetric padding (cuDNN: the padded-copy path;
      // the GEMM engine: zeros outside the map in im2col).
      {{{"type", "conv2d"}, {"filters", 4}, {"kernel", 2}, {"stride", 2}, {"padding", "same"}, {"activation", "elu"}},
       {6, 7, 2}, 2, true},
      // "same" with an odd kernel and dilation 2: symmetric padding handled by cuDNN, no bias.
      {{{"type", "conv2d"}, {"filters", 3}, {"kernel", 3}, {"dilation", 2}, {"padding", "same"},
        {"activation", "leaky_relu"}, {"use_bias", false}},
       {8, 5, 4}, 2, true},
      // 1×1: the GEMM engine's direct path (x is its own column matrix).
      {{{"type", "conv2d"}, {"filters", 6}, {"kernel", 1}, {"activation", "tanh"}}, {3, 4, 5}, 1, true},
      {{{"type", "conv2d"}, {"filters", 2}, {"kernel", json::array({2, 3})}, {"stride", json::array({1, 2})},
        {"activation", "sigmoid"}},
       {5, 9, 1}, 4, true},
      // Enough rows (2·39·59 = 4 602) that the GEMM engine's kernel gradient runs over row ranges
      // (batched partial products, a tail range, the matrix-vector sum); 8 channels: 4-lane im2col.
      {{{"type", "conv2d"}, {"filters", 32}, {"kernel", 2}, {"activation", "relu"}}, {40, 60, 8}, 2, true},
      // The first layer: no input gradient asked for.
      {{{"type", "conv2d"}, {"filters", 16}, {"kernel", 2}, {"activation", "relu"}}, {20, 30, 4}, 2, false},
  };
  // Each shape on cuDNN, on the im2col + cuBLAS engine (train.conv_engine=gemm) and as auto picks.
  for (const ConvEngine engine : {ConvEngine::cudnn, ConvEngine::gemm, ConvEngine::automatic}) {
    INFO("engine " << int(engine));
    for (const Case& c : cases)
      check_layer(with_head(c.conv), c.in, c.n, 0, tol, Precision::fp32, false, nullptr, c.input_grad, engine);
  }
}

TEST_CASE("nn gpu conv2d at a smaller batch takes the larger batch's algorithms without searching", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  using cuda::nn::ConvEngine;
  // Geometries no other test uses, one per engine setting (the choices are the process's): every
  // pass searched at batch 4; none at batch 3 (an epoch's partial last batch), which still equals
  // the CPU layer on the algorithms and engines it took; batch 5 is searched.
  const Shape3 in{11, 13, 3};
  int filters = 7;
  for (const ConvEngine engine : {ConvEngine::automatic, ConvEngine::cudnn}) {
    INFO("engine " << int(engine));
    const json conv = with_head({{"type", "conv2d"}, {"filters", filters++}, {"kernel", json::array({3, 2})},
                                 {"activation", "relu"}});
    int64_t searched = cuda::nn::conv_algo_searches();
    check_layer(conv, in, 4, 0, 1e-4, Precision::fp32, false, nullptr, true, engine);
    CHECK(cuda::nn::conv_algo_searches() - searched == 3);
    searched = cuda::nn::conv_algo_searches();
    check_layer(conv, in, 3, 0, 1e-4, Precision::fp32, false, nullptr, true, engine);
    CHECK(cuda::nn::conv_algo_searches() == searched);
    check_layer(conv, in, 5, 0, 1e-4, Precision::fp32, false, nullptr, true, engine);
    CHECK(cuda::nn::conv_algo_searches() - searched == 3);
  }
}

TEST_CASE("nn gpu conv2d under a cuDNN benchmark limit probes and times only the heuristics' first algorithms",
          "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  // Geometries no other test uses (the choices are the process's), cuDNN only, so that its choice
  // runs every pass: each pass's search probes and times at most `limit` algorithms (times at least
  // one), and the layer still equals the CPU layer on what it chose, in fp32 and on bf16's 16-bit
  // tensors.
  const Shape3 in{12, 17, 5};
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    for (const int64_t limit : {int64_t(1), int64_t(2)}) {
      INFO("precision " << int(precision) << ", limit " << limit);
      // Even filter counts under bf16, whose cuDNN kernels the other tests run with even ones only.
      const int filters = (precision == Precision::fp32 ? 9 : 14) + 2 * int(limit);
      const json conv = with_head(
          {{"type", "conv2d"}, {"filters", filters}, {"kernel", json::array({2, 3})}, {"activation", "relu"}});
      const int64_t searched = cuda::nn::conv_algo_searches(), ran = cuda::nn::conv_candidates_run(),
                    probed = cuda::nn::conv_candidates_probed();
      const double tol = precision == Precision::fp32 ? 1e-4 : 2e-2;
      check_layer(conv, in, 4, 0, tol, precision, false, nullptr, true, cuda::nn::ConvEngine::cudnn, limit);
      CHECK(cuda::nn::conv_algo_searches() - searched == 3);
      CHECK(cuda::nn::conv_candidates_run() - ran >= 3);
      CHECK(cuda::nn::conv_candidates_run() - ran <= 3 * limit);
      CHECK(cuda::nn::conv_candidates_probed() - probed <= (limit > 1 ? 3 * limit : 0));  // one candidate: no probe
    }
  }
}

TEST_CASE("nn gpu conv2d: cuDNN's Find and the probed search both choose algorithms that equal the cpu layer",
          "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  // Geometries no other test uses, cuDNN only, batch 16 (probes of 2 examples). The probed search
  // (the default) times on the whole batch only candidates it probed first (or a pass's only one),
  // at least one per pass; Find (train.cudnn_search=find) neither probes nor counts.
  const Shape3 in{10, 21, 6};
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    for (const bool find : {false, true}) {
      INFO("precision " << int(precision) << (find ? ", find" : ", probe"));
      const int filters = (precision == Precision::fp32 ? 5 : 8) + (find ? 2 : 0);
      const json conv = with_head(
          {{"type", "conv2d"}, {"filters", filters}, {"kernel", json::array({3, 3})}, {"activation", "relu"}});
      const int64_t searched = cuda::nn::conv_algo_searches(), ran = cuda::nn::conv_candidates_run(),
                    probed = cuda::nn::conv_candidates_probed();
      const double tol = precision == Precision::fp32 ? 1e-4 : 2e-2;
      check_layer(conv, in, 16, 0, tol, precision, false, nullptr, true, cuda::nn::ConvEngine::cudnn, 0, find);
      CHECK(cuda::nn::conv_algo_searches() - searched == 3);
      if (find) {
        CHECK(cuda::nn::conv_candidates_run() == ran);
        CHECK(cuda::nn::conv_candidates_probed() == probed);
      } else {
        CHECK(cuda::nn::conv_candidates_run() - ran >= 3);
        // A pass with one candidate times it unprobed; one with more times no more than it probed.
        CHECK(cuda::nn::conv_candidates_run() - ran <= cuda::nn::conv_candidates_probed() - probed + 3);
      }
    }
  }
}

TEST_CASE("nn gpu pooling equals the cpu layer", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const double tol = 1e-5;
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 2}}), {7, 9, 3}, 3, 0, tol);
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 3}, {"stride", 2}, {"padding", "same"}}), {7, 8, 4}, 2, 0,
              tol);
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 2}, {"padding", "same"}}), {5, 5, 2}, 2, 0, tol);
  check_layer(with_head({{"type", "maxpool2d"}, {"size", json::array({6, 4})}}), {13, 9, 3}, 2, 0, tol);
  // Channels in multiples of 4: four per call (MaxPoolForward<4>, MaxPoolBackwardDisjoint<4>), with
  // an uncovered last row and column, exact cover, and "same" padding.
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 2}}), {7, 9, 8}, 3, 0, tol);
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 2}}), {6, 8, 12}, 2, 0, tol);
  check_layer(with_head({{"type", "maxpool2d"}, {"size", 2}, {"padding", "same"}}), {5, 5, 4}, 2, 0, tol);
  check_layer(with_head({{"type", "avgpool2d"}, {"size", 2}}), {7, 9, 3}, 3, 0, tol);
  check_layer(with_head({{"type", "avgpool2d"}, {"size", 3}, {"stride", 2}, {"padding", "same"}}), {7, 8, 4}, 2, 0,
              tol);
  check_layer(
      json::array({{{"type", "global_avgpool"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
      {5, 3, 6}, 3, 0, tol);
}

TEST_CASE("nn gpu batchnorm equals the cpu layer", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  check_layer(with_head({{"type", "batchnorm"}}), {5, 3, 6}, 4, 0, 2e-4);
  check_layer(with_head({{"type", "batchnorm"}, {"momentum", 0.9}, {"epsilon", 1e-5}}), {1, 1, 7}, 5, 0, 2e-4);
}

TEST_CASE("nn gpu synchronised batchnorm over a one-rank NCCL communicator equals the cpu layer", "[gpu][nn][dist]") {
  GENRELAB_REQUIRE_GPU();
  if (!dist::built_with_nccl()) {
    WARN("SKIPPED: this genrelab was built without NCCL");
    return;
  }
  // The synchronised path (cuDNN's local statistics, NCCL all-reduces of the sums on the layer's
  // stream, the ops/batchnorm.h functors) in a world of one: the single-process layer's values.
  const auto dir = test::temp_dir("syncbn-nccl-one");
  auto comm = dist::make_nccl_communicator(dist::World{}, dir.string(), 60);
  check_layer(with_head({{"type", "batchnorm"}}), {5, 3, 6}, 4, 0, 2e-4, Precision::fp32, false, comm.get());
  check_layer(with_head({{"type", "batchnorm"}, {"momentum", 0.9}, {"epsilon", 1e-5}}), {1, 1, 7}, 5, 0, 2e-4,
              Precision::fp32, false, comm.get());
}

TEST_CASE("nn gpu elementwise layers equal the cpu layers", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const double tol = 1e-6;
  check_layer(with_head({{"type", "relu"}}), {4, 5, 3}, 2, 0, tol);
  check_layer(with_head({{"type", "elu"}, {"alpha", 0.7}}), {4, 5, 3}, 2, 0, tol);
  check_layer(with_head({{"type", "leaky_relu"}}), {4, 5, 3}, 2, 0, tol);
  // Dropout masks come from the shared Philox functor: identical, not just close.
  check_layer(with_head({{"type", "dropout"}, {"rate", 0.3}}), {4, 5, 3}, 3, 0, 0.0);
  check_layer(with_head({{"type", "flatten"}}), {4, 5, 3}, 2, 0, 0.0);
}

TEST_CASE("nn gpu dense equals the cpu layer", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const double tol = 1e-4;
  const json hidden = json::array({{{"type", "flatten"}},
                                   {{"type", "dense"}, {"units", 13}, {"activation", "relu"}},
                                   {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
  check_layer(hidden, {3, 5, 7}, 5, 1, tol);
  const json no_bias = json::array({{{"type", "flatten"}},
                                    {{"type", "dense"}, {"units", 9}, {"use_bias", false}},
                                    {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
  check_layer(no_bias, {1, 1, 11}, 3, 1, tol);
  check_layer(hidden, {3, 5, 7}, 5, 2, tol);                         // softmax probabilities
  check_layer(hidden, {3, 5, 7}, 5, 2, tol, Precision::fp32, true);  // fused head: logits
}

TEST_CASE("nn gpu gru and lstm equal the cpu layers", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const double tol = 1e-4;
  check_layer(with_head({{"type", "gru"}, {"units", 5}}), {3, 6, 2}, 3, 0, tol);
  check_layer(with_head({{"type", "gru"}, {"units", 4}, {"bidirectional", true}, {"return_sequences", true}}),
              {2, 5, 3}, 2, 0, tol);
  check_layer(with_head({{"type", "gru"}, {"units", 3}, {"use_bias", false}}), {1, 4, 2}, 1, 0, tol);
  check_layer(with_head({{"type", "lstm"}, {"units", 4}}), {3, 7, 1}, 3, 0, tol);
  check_layer(with_head({{"type", "lstm"}, {"units", 3}, {"bidirectional", true}, {"use_bias", false}}), {2, 4, 2}, 2,
              0, tol);
  check_layer(with_head({{"type", "lstm"}, {"units", 6}, {"return_sequences", true}}), {1, 5, 4}, 2, 0, tol);
}

TEST_CASE("nn gpu tf32 layers stay close to fp32", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  // TF32 keeps 10 mantissa bits of each product input: about 1e-3 relative per product. The
  // layers are linear: behind a relu, a pre-activation near 0 can change sign between TF32 and
  // fp32 and switch a whole gradient path on or off (seen on an H200 when cuDNN's benchmark chose
  // another algorithm under load), which says nothing about TF32's accuracy.
  const double tol = 5e-3;
  // cuDNN's TF32 algorithms, and cuBLAS's TF32 products under the GEMM engine.
  for (const auto engine : {cuda::nn::ConvEngine::cudnn, cuda::nn::ConvEngine::gemm})
    check_layer(with_head({{"type", "conv2d"}, {"filters", 16}, {"kernel", 3}}), {9, 11, 8}, 4, 0, tol, Precision::tf32,
                false, nullptr, true, engine);
  const json hidden = json::array({{{"type", "flatten"}},
                                   {{"type", "dense"}, {"units", 64}},
                                   {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
  check_layer(hidden, {4, 4, 8}, 8, 1, tol, Precision::tf32);
}

TEST_CASE("nn gpu bf16 and fp16 layers equal the cpu emulation", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  // Both backends round the same operands with the same functor; only the float accumulation order
  // differs, so a product near a rounding boundary can land one 16-bit ulp apart (bf16: 2^-8
  // relative, fp16: 2^-11), and a relu/maxpool near a tie can switch a path: tolerances of a few ulps.
  for (const Precision p : {Precision::bf16, Precision::fp16}) {
    const double tol = p == Precision::bf16 ? 1.5e-2 : 2.5e-3;
    INFO("precision " << (p == Precision::bf16 ? "bf16" : "fp16"));
    // Convolutions on cuDNN's 16-bit tensors and on the GEMM engine's 16-bit products (cublasGemmEx).
    for (const auto engine : {cuda::nn::ConvEngine::cudnn, cuda::nn::ConvEngine::gemm}) {
      INFO("engine " << int(engine));
      check_layer(with_head({{"type", "conv2d"}, {"filters", 16}, {"kernel", 3}}), {9, 11, 8}, 4, 0, tol, p, false,
                  nullptr, true, engine);
      // The baseline's first layer: one input channel, 2 × 2, relu, and no input gradient (the
      // network never asks its first layer for one, so no backward-data algorithm is searched).
      check_layer(with_head({{"type", "conv2d"}, {"filters", 64}, {"kernel", 2}, {"activation", "relu"}}), {16, 20, 1},
                  3, 0, tol, p, false, nullptr, false, engine);
      // asymmetric "same" padding with stride 2 (the padded-copy path, always on cuDNN) and a
      // fused activation
      check_layer(with_head({{"type", "conv2d"},
                             {"filters", 6},
                             {"kernel", 2},
                             {"stride", 2},
                             {"padding", "same"},
                             {"activation", "relu"}}),
                  {7, 9, 3}, 3, 0, tol, p, false, nullptr, true, engine);
      // 1×1: the GEMM engine's direct path (the 16-bit x is its own column matrix).
      check_layer(with_head({{"type", "conv2d"}, {"filters", 8}, {"kernel", 1}, {"use_bias", false}}), {5, 4, 6}, 2,
                  0, tol, p, false, nullptr, true, engine);
      // Enough rows for the GEMM engine's kernel gradient over row ranges (partials summed in float,
      // rounded once); 8 channels: 4-lane 16-bit im2col.
      check_layer(with_head({{"type", "conv2d"}, {"filters", 32}, {"kernel", 2}, {"activation", "relu"}}), {40, 60, 8},
                  2, 0, tol, p, false, nullptr, true, engine);
    }
    const json hidden = json::array({{{"type", "flatten"}},
                                     {{"type", "dense"}, {"units", 64}, {"activation", "elu"}},
                                     {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}});
    check_layer(hidden, {4, 4, 8}, 8, 1, tol, p);
    check_layer(hidden, {4, 4, 8}, 8, 2, tol, p, true);  // the fused head: logits
  }
}

// ---- whole network -----------------------------------------------------------------------

using test::small_cnn;

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> labels;
};

Batch make_batch(const nn::ModelPlan& plan, int64_t n, uint32_t seed) {
  Batch b;
  b.x = random_vec(n * plan.input.size(), seed, -1, 1);
  const PhiloxStream s(seed, RngPurpose::shuffle, 1, 2);
  for (int64_t e = 0; e < n; ++e) b.labels.push_back(int32_t(s.word(uint64_t(e)) % uint32_t(plan.classes)));
  return b;
}

// 20 steps of batches of 8 that cycle over the first 37 examples of `all` (every fifth batch
// partial), as the fused-against-unfused tests train; predictions of the first 5 examples after.
struct Trained {
  std::vector<double> losses;
  int64_t graphed = 0;  // steps that replayed a CUDA graph
  std::vector<nn::NamedTensor> state;
  std::vector<float> probs;
};
Trained train_cycling(const nn::ModelPlan& plan, const nn::TrainHyper& h, const Batch& all) {
  Trained t;
  auto net = nn::make_cuda_network(plan, h);
  const size_t row = size_t(plan.input.size());
  cuda::DeviceBuffer<float> xd{8 * row};
  cuda::DeviceBuffer<int32_t> ld{8};
  for (uint64_t step = 0; step < 20; ++step) {
    const int64_t first = int64_t(step % 5) * 8, n = std::min<int64_t>(8, 37 - first);
    upload(std::vector<float>(all.x.begin() + long(size_t(first) * row), all.x.begin() + long(size_t(first + n) * row)),
           xd.data());
    cuda::copy_to_device(ld.data(), all.labels.data() + first, size_t(n));
    net->train_step(xd.data(), ld.data(), n, n, 3e-3f, nn::StepKey{h.seed, step, 0});
    t.losses.push_back(net->last_stats().loss_sum);
    t.graphed += net->last_times().graphed ? 1 : 0;
  }
  t.state = net->state();
  t.probs.resize(size_t(5 * plan.classes));
  upload(std::vector<float>(all.x.begin(), all.x.begin() + long(5 * row)), xd.data());
  net->predict(xd.data(), 5, t.probs.data());
  return t;
}

// 20 steps on both backends from the same initial weights: per-step losses and correct counts,
// then every state tensor.
void check_training(const nn::TrainHyper& hyper, double loss_tol, double state_tol) {
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  auto cpu = nn::make_cpu_network(plan, hyper);
  auto gpu = nn::make_cuda_network(plan, hyper);
  const int64_t n = 7, global = 7;
  cuda::DeviceBuffer<float> xd{static_cast<size_t>(n * plan.input.size())};
  cuda::DeviceBuffer<int32_t> ld{static_cast<size_t>(n)};
  for (uint64_t step = 0; step < 20; ++step) {
    const Batch b = make_batch(plan, n, 100 + uint32_t(step % 5));
    upload(b.x, xd.data());
    cuda::copy_to_device(ld.data(), b.labels.data(), size_t(n));
    const nn::StepKey key{hyper.seed, step, 0};
    const float lr = float(hyper.lr);
    cpu->train_step(b.x.data(), b.labels.data(), n, global, lr, key);
    gpu->train_step(xd.data(), ld.data(), n, global, lr, key);
    const auto sc = cpu->last_stats(), sg = gpu->last_stats();
    INFO("step " << step);
    CHECK(sg.examples == n);
    CHECK(sg.loss_sum == Approx(sc.loss_sum).epsilon(loss_tol));
    CHECK(std::abs(sg.correct - sc.correct) <= 1);  // a near-tie may flip one argmax
  }
  const auto sc = cpu->state(), sg = gpu->state();
  REQUIRE(sc.size() == sg.size());
  for (size_t i = 0; i < sc.size(); ++i) {
    REQUIRE(sg[i].name == sc[i].name);
    REQUIRE(sg[i].dims == sc[i].dims);
    require_rel(sg[i].data, sc[i].data, state_tol, sc[i].name);
  }
  // Inference on both.
  const Batch b = make_batch(plan, n, 555);
  upload(b.x, xd.data());
  std::vector<float> pc(size_t(n * plan.classes)), pg(pc.size());
  cpu->predict(b.x.data(), n, pc.data());
  gpu->predict(xd.data(), n, pg.data());
  require_rel(pg, pc, loss_tol, "predict probabilities");
}

TEST_CASE("nn gpu 20 training steps equal the cpu backend with adam", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  nn::TrainHyper h;
  h.optimizer = "adam";
  h.lr = 1e-3;
  h.l2 = 1e-3;
  h.clip_norm = 0.5;  // exercises the device-side global norm
  h.label_smoothing = 0.1;
  h.seed = 3;
  h.deterministic = true;
  // Adam divides by √v: parameters whose gradients are tiny move by up to lr per step whatever
  // their size, so states are compared at a few lr-steps' tolerance, losses tightly.
  // Convolutions on cuDNN (a deterministic run's auto), then every pass as im2col + cuBLAS.
  for (const std::string engine : {"auto", "gemm"}) {
    INFO("train.conv_engine " << engine);
    h.conv_engine = engine;
    const int64_t engine_passes = cuda::nn::GemmConv::passes_queued();
    check_training(h, 5e-4, 5e-3);
    if (engine == "gemm") CHECK(cuda::nn::GemmConv::passes_queued() > engine_passes);  // it ran
  }
}

TEST_CASE("nn gpu training steps over a one-rank NCCL communicator equal steps without one", "[gpu][nn][dist]") {
  GENRELAB_REQUIRE_GPU();
  if (!dist::built_with_nccl()) {
    WARN("SKIPPED: this genrelab was built without NCCL");
    return;
  }
  // The data-parallel step (per-layer grouped gradient all-reduces on the communication stream,
  // the optimizer waiting for them, the buffers broadcast from rank 0) in a world of one, where
  // every collective is the identity: the losses and weights of the plain step.
  nn::TrainHyper h;
  h.optimizer = "adam";
  h.lr = 1e-3;
  h.seed = 3;
  h.deterministic = true;
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  const auto dir = test::temp_dir("nccl-one-network");
  auto comm = dist::make_nccl_communicator(dist::World{}, dir.string(), 60);
  auto plain = nn::make_cuda_network(plan, h), over_comm = nn::make_cuda_network(plan, h);
  over_comm->set_communicator(comm.get());
  const int64_t n = 7;
  cuda::DeviceBuffer<float> xd{static_cast<size_t>(n * plan.input.size())};
  cuda::DeviceBuffer<int32_t> ld{static_cast<size_t>(n)};
  for (uint64_t step = 0; step < 10; ++step) {
    const Batch b = make_batch(plan, n, 300 + uint32_t(step));
    upload(b.x, xd.data());
    cuda::copy_to_device(ld.data(), b.labels.data(), size_t(n));
    const nn::StepKey key{h.seed, step, 0};
    plain->train_step(xd.data(), ld.data(), n, n, float(h.lr), key);
    over_comm->train_step(xd.data(), ld.data(), n, n, float(h.lr), key);
    const auto a = plain->last_stats(), c = over_comm->last_stats();
    INFO("step " << step);
    CHECK(c.loss_sum == Approx(a.loss_sum).epsilon(1e-6));
    CHECK(c.correct == a.correct);
  }
  const auto sa = plain->state(), sc = over_comm->state();
  REQUIRE(sa.size() == sc.size());
  for (size_t i = 0; i < sa.size(); ++i) require_rel(sc[i].data, sa[i].data, 1e-6, sa[i].name);
}

TEST_CASE("nn gpu 20 training steps equal the cpu backend with sgd", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  nn::TrainHyper h;
  h.optimizer = "sgd";
  h.lr = 0.05;
  h.momentum = 0.9;
  h.nesterov = true;
  h.weight_decay = 1e-3;
  h.seed = 5;
  check_training(h, 1e-4, 2e-4);
}

TEST_CASE("nn gpu 20 bf16 training steps equal the cpu emulation", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  nn::TrainHyper h;
  h.optimizer = "adam";
  h.lr = 1e-3;
  h.clip_norm = 0.5;
  h.seed = 3;
  h.deterministic = true;
  h.precision = "bf16";
  // One bf16 ulp (2^-8) where the accumulation orders straddle a rounding boundary, compounded
  // over 20 Adam steps: losses within 1 %, states within a few lr-steps. Convolutions on cuDNN
  // (a deterministic run's auto), then every pass on the GEMM engine.
  for (const std::string engine : {"auto", "gemm"}) {
    INFO("train.conv_engine " << engine);
    h.conv_engine = engine;
    const int64_t engine_passes = cuda::nn::GemmConv::passes_queued();
    check_training(h, 1e-2, 3e-2);
    if (engine == "gemm") CHECK(cuda::nn::GemmConv::passes_queued() > engine_passes);  // it ran
  }
}

TEST_CASE("nn gpu 20 fp16 training steps with loss scaling equal the cpu emulation", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  nn::TrainHyper h;
  h.optimizer = "sgd";
  h.lr = 0.05;
  h.momentum = 0.9;
  h.seed = 5;
  h.deterministic = true;
  h.precision = "fp16";
  // The first steps overflow on both backends (skipped, the scale halves each time), then the
  // scale grows every 4 finite steps: the state comparison includes loss_scale and its counter.
  h.loss_scale_init = 1 << 22;
  h.loss_scale_growth_interval = 4;
  check_training(h, 2e-3, 5e-3);
  auto gpu = nn::make_cuda_network(nn::plan_layers(small_cnn(), {12, 10, 2}, 4), h);
  CHECK(gpu->loss_scale() == double(1 << 22));
}

// ---- CUDA graphs (train.cuda_graph) ------------------------------------------------------

struct GraphRun {
  std::vector<double> loss;       // per step
  std::vector<int64_t> correct;   // per step
  std::vector<bool> graphed;      // per step: ran as a graph launch
  std::vector<double> step_ms;    // per step (last_times)
  std::vector<nn::NamedTensor> state;
  std::vector<float> probs;       // predict() after training
};

// 20 steps of the dropout + batch-norm CNN over an "epoch" of 37 examples in batches of 8 (four
// full batches and a partial one of 5), gathered into the same two device buffers every step
// (as the trainer does), with a warm-up + cosine learning-rate schedule.
GraphRun graph_run(bool cuda_graph, const std::string& conv_engine = "auto") {
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  nn::TrainHyper h;
  h.conv_engine = conv_engine;
  h.optimizer = "adamw";
  h.weight_decay = 1e-2;
  h.l2 = 1e-3;
  h.clip_norm = 0.5;
  h.label_smoothing = 0.1;
  h.seed = 11;
  h.deterministic = true;  // the same cuDNN algorithms in every network
  h.cuda_graph = cuda_graph;
  nn::LrSchedule sched;
  sched.kind = "cosine";
  sched.lr = 3e-3;
  sched.warmup_epochs = 1;
  sched.epochs = 4;
  const int64_t examples = 37, batch = 8;
  sched.steps_per_epoch = (examples + batch - 1) / batch;
  auto net = nn::make_cuda_network(plan, h);
  const Batch all = make_batch(plan, examples, 321);
  cuda::DeviceBuffer<float> xd{static_cast<size_t>(batch * plan.input.size())};
  cuda::DeviceBuffer<int32_t> ld{static_cast<size_t>(batch)};
  GraphRun r;
  for (uint64_t step = 0; step < 20; ++step) {
    const int64_t b = int64_t(step) % sched.steps_per_epoch, first = b * batch;
    const int64_t n = std::min(batch, examples - first);
    const size_t row = size_t(plan.input.size());
    const std::vector<float> x(all.x.begin() + long(size_t(first) * row), all.x.begin() + long(size_t(first + n) * row));
    upload(x, xd.data());
    cuda::copy_to_device(ld.data(), all.labels.data() + first, size_t(n));
    net->train_step(xd.data(), ld.data(), n, n, float(sched.at(step)), nn::StepKey{h.seed, step, 0});
    const auto st = net->last_stats();
    const auto t = net->last_times();
    r.loss.push_back(st.loss_sum);
    r.correct.push_back(st.correct);
    r.graphed.push_back(t.graphed);
    r.step_ms.push_back(t.step_ms);
  }
  r.state = net->state();
  const Batch p = make_batch(plan, 7, 555);
  upload(p.x, xd.data());
  r.probs.resize(size_t(7 * plan.classes));
  net->predict(xd.data(), 7, r.probs.data());
  return r;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

// Graph replay against eager steps: the same kernels on the same data, so losses, weights, batch-
// norm statistics and Adam moments must be bit-identical. A second eager run measures the eager
// path's own run-to-run noise; only if that is not zero (a cuDNN kernel with atomics) may the
// graphed run differ, by no more than twice that noise or 1e-6 relative.
TEST_CASE("nn gpu cuda graph steps equal eager steps", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  // cuDNN (a deterministic run's auto), and the GEMM engine's cuBLAS calls and functors captured.
  for (const std::string engine : {"auto", "gemm"}) {
    INFO("train.conv_engine " << engine);
    const int64_t engine_passes = cuda::nn::GemmConv::passes_queued();
    const GraphRun e1 = graph_run(false, engine), e2 = graph_run(false, engine), g = graph_run(true, engine);
    if (engine == "gemm") CHECK(cuda::nn::GemmConv::passes_queued() > engine_passes);  // it ran
    // Which steps ran as graphs: each key's first step is an eager warm-up (steps 0 and 4), and
    // by the last epoch both keys (full batch, partial batch) replay.
    std::string pattern;
    for (bool b : g.graphed) pattern += b ? 'G' : 'e';
    INFO("graph pattern (e = eager, G = graph) " << pattern);
    for (bool b : e1.graphed) REQUIRE_FALSE(b);
    CHECK_FALSE(g.graphed[0]);
    CHECK_FALSE(g.graphed[4]);
    for (size_t i = 15; i < 20; ++i) CHECK(g.graphed[i]);
    for (size_t i = 0; i < 20; ++i)
      if (g.graphed[i]) CHECK(g.step_ms[i] > 0.0);
    bool eager_exact = e1.loss == e2.loss && e1.probs == e2.probs;
    for (size_t i = 0; i < e1.state.size(); ++i) eager_exact = eager_exact && e1.state[i].data == e2.state[i].data;
    WARN("cuda graph test: graph pattern " << pattern << "; eager run to run "
                                           << (eager_exact ? "bit-identical" : "NOT bit-identical"));
    for (size_t i = 0; i < 20; ++i) {
      INFO("step " << i);
      CHECK(g.correct[i] == e1.correct[i]);
      const double noise = std::fabs(e2.loss[i] - e1.loss[i]);
      if (eager_exact) CHECK(g.loss[i] == e1.loss[i]);
      else CHECK(std::fabs(g.loss[i] - e1.loss[i]) <= std::max(2 * noise, 1e-6 * std::fabs(e1.loss[i])));
    }
    REQUIRE(g.state.size() == e1.state.size());
    for (size_t i = 0; i < e1.state.size(); ++i) {
      INFO(e1.state[i].name << ": max |graph - eager| " << max_diff(g.state[i].data, e1.state[i].data)
                            << ", max |eager - eager| " << max_diff(e2.state[i].data, e1.state[i].data));
      REQUIRE(g.state[i].name == e1.state[i].name);
      if (eager_exact) CHECK(g.state[i].data == e1.state[i].data);
      else require_rel(g.state[i].data, e1.state[i].data, std::max(1e-6, 2 * max_diff(e2.state[i].data, e1.state[i].data)),
                       e1.state[i].name);
    }
    if (eager_exact) CHECK(g.probs == e1.probs);
    // Dropout and the schedule really act: a run with all steps at one key would repeat the loss.
    CHECK(e1.loss[1] != e1.loss[6]);
  }
}

// The trainer's loop: each step's rows gathered on the device (ops::GatherRows on the network's
// stream) from a table by a permutation and queued with no host synchronisation, the stats read
// once at the end through take_step_stats() (70 steps: more than its 64-slot pinned window).
// Against the same steps with the rows uploaded from the host and last_stats() read after each.
TEST_CASE("nn gpu queued steps with device batch gathers equal synchronised steps", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  for (const bool graph : {false, true}) {
    INFO("cuda_graph " << graph);
    const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
    nn::TrainHyper h;
    h.seed = 13;
    h.deterministic = true;
    h.cuda_graph = graph;
    const int64_t examples = 37, batch = 8, steps = 70, per_epoch = (examples + batch - 1) / batch;
    const size_t row = size_t(plan.input.size());
    const Batch all = make_batch(plan, examples, 77);
    std::vector<int64_t> perm(static_cast<size_t>(examples));
    for (int64_t i = 0; i < examples; ++i) perm[size_t(i)] = (i * 5) % examples;  // 5 is coprime to 37
    auto first_of = [&](int64_t step) { return (step % per_epoch) * batch; };
    // A learning rate of its own for every step: a step that read another's scalars shows.
    auto lr_of = [](int64_t step) { return 2e-3f * (1.0f + 0.01f * float(step)); };
    auto count_of = [&](int64_t step) { return std::min(batch, examples - first_of(step)); };

    auto ref = nn::make_cuda_network(plan, h);
    cuda::DeviceBuffer<float> xr{size_t(batch) * row};
    cuda::DeviceBuffer<int32_t> lr{size_t(batch)};
    std::vector<nn::StepStats> want;
    for (int64_t step = 0; step < steps; ++step) {
      const int64_t first = first_of(step), n = count_of(step);
      std::vector<float> x(size_t(n) * row);
      std::vector<int32_t> labels(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t src = perm[size_t(first + i)];
        std::copy(all.x.begin() + long(size_t(src) * row), all.x.begin() + long(size_t(src + 1) * row),
                  x.begin() + long(size_t(i) * row));
        labels[size_t(i)] = all.labels[size_t(src)];
      }
      upload(x, xr.data());
      cuda::copy_to_device(lr.data(), labels.data(), labels.size());
      ref->train_step(xr.data(), lr.data(), n, n, lr_of(step), nn::StepKey{h.seed, uint64_t(step), 0});
      want.push_back(ref->last_stats());
    }

    auto net = nn::make_cuda_network(plan, h);
    DevVec table(all.x);
    cuda::DeviceBuffer<int32_t> table_labels{all.labels.size()};
    cuda::copy_to_device(table_labels.data(), all.labels.data(), all.labels.size());
    cuda::DeviceBuffer<int64_t> perm_d{perm.size()};
    cuda::copy_to_device(perm_d.data(), perm.data(), perm.size());
    cuda::DeviceBuffer<float> xd{size_t(batch) * row};
    cuda::DeviceBuffer<int32_t> ld{size_t(batch)};
    // The stream is held for 300 ms first, so the host runs ahead until the ring of step scalars
    // makes it wait, and the 64-slot stats window fills while the GPU is still behind.
    GENRELAB_CUDA_CHECK(cudaLaunchHostFunc(
        net->stream(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr));
    for (int64_t step = 0; step < steps; ++step) {
      const int64_t first = first_of(step), n = count_of(step);
      cuda::gather_rows(table.get(), perm_d.data() + first, n, int64_t(row), xd.data(), net->stream());
      cuda::gather_rows(table_labels.data(), perm_d.data() + first, n, 1, ld.data(), net->stream());
      net->train_step(xd.data(), ld.data(), n, n, lr_of(step), nn::StepKey{h.seed, uint64_t(step), 0});
    }
    const std::vector<nn::StepStats> got = net->take_step_stats();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("step " << i);
      CHECK(got[i].examples == want[i].examples);
      CHECK(got[i].correct == want[i].correct);
      CHECK(std::fabs(got[i].loss_sum - want[i].loss_sum) <= 1e-6 * std::fabs(want[i].loss_sum));
    }
    CHECK(net->take_step_stats().empty());
    const auto a = net->state(), b = ref->state();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) require_rel(a[i].data, b[i].data, 1e-6, a[i].name);
  }
}

// train.fuse_conv_pool: the same 20 steps with the leading conv2d + maxpool2d fused and not, on
// the GPU, eager and graphed, fp32 and bf16 (the fused kernel rounds as cuDNN's 16-bit conv does).
// Only the conv's float32 summation order differs (ops/conv_pool.h), so losses and every state
// tensor agree to 1e-5 relative (bf16: 1e-2, where one flipped rounding moves a value by 2^-8).
TEST_CASE("nn gpu fused conv and max pool steps equal unfused steps", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(test::conv_pool_cnn(), {13, 21, 1}, 4);
  REQUIRE(nn::conv_pool_fusable(plan));
  const Batch all = make_batch(plan, 37, 91);
  for (const std::string precision : {"fp32", "bf16"}) {
    for (const bool graph : {false, true}) {
      INFO(precision << (graph ? " graphed" : " eager"));
      auto run = [&](bool fuse) {
        nn::TrainHyper h;
        h.seed = 21;
        h.deterministic = true;
        h.precision = precision;
        h.cuda_graph = graph;
        h.fuse_conv_pool = fuse;
        Trained t = train_cycling(plan, h, all);
        // A capture that failed would fall back to eager steps with only a warning.
        if (graph) CHECK(t.graphed > 0);
        return t;
      };
      const Trained fused = run(true), unfused = run(false);
      const double tol = precision == "bf16" ? 1e-2 : 1e-5;
      for (size_t i = 0; i < fused.losses.size(); ++i)
        CHECK(std::fabs(fused.losses[i] - unfused.losses[i]) <= tol * std::fabs(unfused.losses[i]));
      REQUIRE(fused.state.size() == unfused.state.size());
      for (size_t i = 0; i < fused.state.size(); ++i) require_rel(fused.state[i].data, unfused.state[i].data, tol, fused.state[i].name);
    }
  }
}

// train.fuse_conv_epilogue: the same 20 steps with each conv2d's bias + activation, max pooling
// and dropout fused (ops/conv_epilogue.h) and one by one, on the GPU, eager and graphed, fp32 and
// bf16 (the product's 16-bit z and dz), deterministic so both use the same cuDNN algorithms. The
// fused passes compute the layers' own arithmetic; only the bias gradient sums the same values in
// another order (cuBLAS over the gradient at each window's maximum instead of the whole dz), so
// losses, every state tensor and predictions agree to 1e-5 relative (bf16: 1e-2, where a bias a
// few ulps apart can flip one 16-bit rounding of the next layer's input). The first pair is fused too
// (train.fuse_conv_pool), so two runs fuse: 8 channels (four a call) and 6 (one a call) with elu.
// Each on cuDNN (a deterministic run's auto) and on the GEMM engine, where the second run's conv
// leaves its input gradient as columns for the first run's backward to sum (dx never written).
TEST_CASE("nn gpu fused conv epilogue steps equal unfused steps", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(test::conv_epilogue_cnn(), {21, 31, 1}, 4);
  const Batch all = make_batch(plan, 37, 92);
  for (const std::string precision : {"fp32", "bf16"}) {
    for (const auto& [graph, engine] :
         {std::pair(false, "auto"), std::pair(true, "auto"), std::pair(false, "gemm"), std::pair(true, "gemm")}) {
      INFO(precision << (graph ? " graphed" : " eager") << ", train.conv_engine " << engine);
      auto run = [&](bool fuse) {
        nn::TrainHyper h;
        h.seed = 22;
        h.deterministic = true;
        h.precision = precision;
        h.cuda_graph = graph;
        h.conv_engine = engine;
        h.fuse_conv_pool = true;
        h.fuse_conv_epilogue = fuse;
        REQUIRE(nn::use_fused_conv_epilogues(plan, h, 2).size() == (fuse ? 2 : 0));
        Trained t = train_cycling(plan, h, all);
        if (graph) CHECK(t.graphed > 0);
        return t;
      };
      const Trained fused = run(true), unfused = run(false);
      const double tol = precision == "bf16" ? 1e-2 : 1e-5;
      for (size_t i = 0; i < fused.losses.size(); ++i)
        CHECK(std::fabs(fused.losses[i] - unfused.losses[i]) <= tol * std::fabs(unfused.losses[i]));
      CHECK(fused.losses.front() != fused.losses.back());
      REQUIRE(fused.state.size() == unfused.state.size());
      for (size_t i = 0; i < fused.state.size(); ++i) require_rel(fused.state[i].data, unfused.state[i].data, tol, fused.state[i].name);
      require_rel(fused.probs, unfused.probs, tol, "predict");
    }
  }
}

// Stage timing (Network::set_stage_timing, what `bench --what train` prints): an eager step's
// stages are its layer ranges in execution order, each fused run once under its NVTX name, the
// loss head and the optimizer; they are disjoint intervals on the step's stream, so their times
// add up to no more than the step's. Off, and for a replayed CUDA graph, there are none.
TEST_CASE("nn gpu stage timing lists an eager step's layer runs in order", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(test::conv_epilogue_cnn(), {21, 31, 1}, 4);
  const Batch b = make_batch(plan, 8, 93);
  cuda::DeviceBuffer<float> xd{static_cast<size_t>(8 * plan.input.size())};
  cuda::DeviceBuffer<int32_t> ld{8};
  upload(b.x, xd.data());
  cuda::copy_to_device(ld.data(), b.labels.data(), size_t(8));
  const auto name = [&](size_t i) { return plan.layers[i].name; };
  // conv2d_1 + maxpool2d_1 + dropout_1 (train.fuse_conv_pool), two fused conv epilogues, flatten
  // (a view: no stage), dense_1.
  const std::vector<std::string> fwd = {name(0) + "+" + name(1) + "+" + name(2),
                                        name(3) + "+" + name(4) + "+" + name(5), name(6) + "+" + name(7), name(9)};
  std::vector<std::string> want;
  for (const auto& f : fwd) want.push_back("fwd " + f);
  want.push_back("loss");
  for (auto it = fwd.rbegin(); it != fwd.rend(); ++it) want.push_back("bwd " + *it);
  want.push_back("optimizer");
  for (const bool graph : {false, true}) {
    INFO((graph ? "train.cuda_graph on" : "train.cuda_graph off"));
    nn::TrainHyper h;
    h.seed = 4;
    h.cuda_graph = graph;
    h.fuse_conv_pool = true;  // the config's defaults (the struct's are off)
    h.fuse_conv_epilogue = true;
    REQUIRE(nn::use_fused_conv_epilogues(plan, h, 2).size() == 2);
    auto net = nn::make_cuda_network(plan, h);
    net->train_step(xd.data(), ld.data(), 8, 8, 1e-3f, nn::StepKey{h.seed, 0, 0});
    CHECK(net->last_stage_times().empty());  // timing off
    net->set_stage_timing(true);
    for (uint64_t step = 1; step < 4; ++step) {
      net->train_step(xd.data(), ld.data(), 8, 8, 1e-3f, nn::StepKey{h.seed, step, 0});
      const nn::StepTimes t = net->last_times();
      const std::vector<nn::StageTime> stages = net->last_stage_times();
      INFO("step " << step << (t.graphed ? " (graph replay)" : " (eager)"));
      if (t.graphed) {
        CHECK(stages.empty());
        continue;
      }
      std::vector<std::string> got;
      double sum = 0;
      for (const auto& st : stages) {
        got.push_back(st.name);
        CHECK(st.ms >= 0.0);
        sum += st.ms;
      }
      CHECK(got == want);
      CHECK(sum <= t.step_ms + 0.01 * double(stages.size()));
    }
  }
}

// The fused layer on its own against the CPU functors (ops/conv_pool.h, the same arithmetic) at
// the sizes the GPU launches differ on: the baseline's first layer (128 × 1206 input, 64 filters,
// batch 32: a 2-D backward grid of 2 × 2 371 blocks), 40 filters (a partial block of filters) and
// a map so large that the backward takes two launches; the first and last with a dropout after the
// pool, which the layer applies too (the same mask words on both sides: the GPU's read from the
// step block on the device, the CPU's from the host). Inputs, weights and output gradients are
// multiples of 1/64 in [-1, 1], so every product and every window's sum is exact in float32 and in
// bf16 whatever the order (the GPU contracts z += x·w into FMAs): the forward must be equal, and
// its argmax bytes too, with no near-tie of the window maximum decided differently. The gradients
// sum millions of terms: the
// GPU adds the chunks with cuBLAS, the CPU in chunk order, so within 1e-4 of their largest value
// (bf16: rounded once to bf16 at the end, within one bf16 step, 2^-8).
// [big]: about 2 GB of maps, too slow under compute-sanitizer.
TEST_CASE("nn gpu fused conv and max pool layer equals the CPU functors at launch-sized shapes", "[gpu][nn][big]") {
  GENRELAB_REQUIRE_GPU();
  struct Shape {
    const char* what;
    int64_t h, w, filters, n;
    double dropout;  // the rate of a dropout after the pool (fused too), or 0: none
  };
  for (const Shape& shape :
       {Shape{"baseline, its dropout", 128, 1206, 64, 32, 0.1}, Shape{"40 filters", 64, 301, 40, 5, 0.0},
        Shape{"two backward launches, dropout over 3 filters", 3866, 3866, 3, 9, 0.25}}) {
    nlohmann::json layers = {{{"type", "conv2d"}, {"filters", shape.filters}, {"kernel", 2}, {"activation", "relu"}},
                             {{"type", "maxpool2d"}, {"size", 2}},
                             {{"type", "global_avgpool"}},
                             {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}};
    if (shape.dropout > 0)
      layers.insert(layers.begin() + 2, nlohmann::json::object({{"type", "dropout"}, {"rate", shape.dropout}}));
    const auto plan = nn::plan_layers(layers, {shape.h, shape.w, 1}, 4);
    REQUIRE(nn::conv_pool_fusable(plan));
    // The mask of step 5 of a batch at global position 3 (the CPU reads the key from the host).
    const nn::StepKey key{17, 5, 3};
    const ops::DropoutStep host_step{key.step, key.first_example};
    const nn::FusedDropout dropout = nn::conv_pool_dropout(plan);
    REQUIRE(dropout.drops(true) == (shape.dropout > 0));
    const ops::ConvPoolGeom g = nn::conv_pool_geom(plan);
    const int64_t n = shape.n;
    auto sixty_fourths = [](std::vector<float> v) {
      for (float& e : v) e = std::round(e * 64.0f) / 64.0f;
      return v;
    };
    const auto x = sixty_fourths(test::random_vec(n * shape.h * shape.w, 31, -1.0, 1.0));
    const auto kernel = sixty_fourths(test::random_vec(g.f * g.k(), 32, -0.6, 0.6));
    const auto bias = sixty_fourths(test::random_vec(g.f, 33, -0.1, 0.1));
    const auto dy = sixty_fourths(test::random_vec(n * int64_t(g.qh) * g.qw * g.f, 34, -1.0, 1.0));
    const DevVec xd(x), kd(kernel), bd(bias), dyd(dy);
    for (const Precision precision : {Precision::fp32, Precision::bf16}) {
      const bool bf16 = precision == Precision::bf16;
      INFO(shape.what << (bf16 ? ", bf16" : ", fp32"));
      GpuContext ctx(precision, true);
      cuda::nn::FusedConvPool fused(plan, ctx);
      fused.reserve(n);
      const ops::ConvPoolCell cell{g, x.data(), kernel.data(), bias.data(), int(nn::activation_of(plan.layers[0])),
                                   float(nn::activation_alpha(plan.layers[0])), ctx.half_format()};
      std::vector<float> y_ref(dy.size());
      std::vector<uint8_t> argmax_ref(dy.size());
      nn::conv_pool_forward_cpu(cell, y_ref.data(), argmax_ref.data(), n,
                                dropout.of(key.seed, dropout.drops(true) ? &host_step : nullptr));
      DevVec yd(std::vector<float>(dy.size(), -7.0f));
      fused.forward(xd.buf.data(), kd.buf.data(), bd.buf.data(), yd.buf.data(), n, true, key);
      test::require_close(download(yd.buf.data(), int64_t(dy.size())), y_ref, 0.0, 0.0, "fused forward");
      std::vector<uint8_t> argmax(argmax_ref.size());
      cuda::copy_to_host(argmax.data(), fused.argmax(), argmax.size());
      CHECK(argmax == argmax_ref);  // the same first maximum of every window, ties included

      std::vector<float> gk_ref(size_t(g.f * g.k()), 0.0f), gb_ref(size_t(g.f), 0.0f);
      nn::conv_pool_backward_cpu(cell, dy.data(), argmax_ref.data(), n, gk_ref.data(), gb_ref.data(),
                                 dropout.backward_scale());
      DevVec gkd(std::vector<float>(gk_ref.size(), 0.0f)), gbd(std::vector<float>(gb_ref.size(), 0.0f));
      fused.backward(xd.buf.data(), dyd.buf.data(), kd.buf.data(), bd.buf.data(), gkd.buf.data(), gbd.buf.data(), n);
      for (const auto& [got, want, what] :
           {std::tuple{download(gkd.buf.data(), int64_t(gk_ref.size())), gk_ref, "kernel gradient"},
            std::tuple{download(gbd.buf.data(), int64_t(gb_ref.size())), gb_ref, "bias gradient"}}) {
        double scale = 0;
        for (float v : want) scale = std::max(scale, double(std::fabs(v)));
        test::require_close(got, want, (bf16 ? 1.0 / 256 : 1e-4) * scale, bf16 ? 1.0 / 256 : 1e-4, what);
      }
    }
  }
}

// The conv engine's float products through gemm_tuner.h's cuBLASLt path (forced, for tests: a
// real run keeps it only where it is faster than cublasSgemm, which these small products may not
// show), in fp32 and tf32, not deterministic so that each shape is timed: the forward,
// input-gradient and accumulating kernel-gradient products (an offset into the operands), the
// kernel gradient over row ranges as one strided-batched product, and a 27-tap kernel (3 × 3 × 3)
// whose operands are only 4-byte aligned, against a double-precision GEMM (tests/nn_fixtures.h)
// within 5e-5 of the largest value (tf32: 2e-3, its 10-bit mantissa). A second call of every shape
// takes the kept choice: nothing more is timed, and it computes the same values.
TEST_CASE("nn gpu tuned float products equal a double-precision GEMM and are timed once", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  cuda::nn::set_gemm_tuning_for_tests(true, 0.0);
  const int64_t rows = 2011, F = 128, first = 37, count = 1500;
  const nn::RowRanges ranges = nn::conv_filter_ranges(count, 3);  // 3 ranges of 500 rows
  struct Operands {
    int64_t K;
    std::vector<float> kernel, cols, dz;
    DevVec kernel_d, cols_d, dz_d;
    explicit Operands(int64_t k)
        : K(k),
          kernel(test::random_vec(F * k, 61, -1.0, 1.0)),
          cols(test::random_vec(rows * k, 62, -1.0, 1.0)),
          dz(test::random_vec(rows * F, 63, -1.0, 1.0)),
          kernel_d(kernel),
          cols_d(cols),
          dz_d(dz) {}
  };
  const Operands wide(256), odd(27);
  struct Product {
    const char* what;
    nn::GemmCall call;
    const Operands* ops;
    bool a_is_kernel, b_is_cols;
    int64_t out, batches;
    cuda::nn::GemmStrides strides;
  };
  const int64_t K = wide.K, k27 = odd.K;
  const std::vector<Product> products = {
      {"forward", nn::conv_forward_gemm(rows, K, F), &wide, true, true, F * rows, 1, {}},
      {"input gradient", nn::conv_data_gemm(rows, K, F), &wide, true, false, K * rows, 1, {}},
      {"kernel gradient, accumulated",
       nn::conv_filter_gemm(first, count, K, F, true),
       &wide,
       false,
       false,
       K * F,
       1,
       {}},
      {"kernel gradient over row ranges",
       nn::conv_filter_gemm(first, ranges.span, K, F, false),
       &wide,
       false,
       false,
       ranges.splits * K * F,
       ranges.splits,
       {ranges.span * K, ranges.span * F, K * F}},
      {"27 taps, kernel gradient from an odd row",
       nn::conv_filter_gemm(first, count, k27, F, true),
       &odd,
       false,
       false,
       k27 * F,
       1,
       {}},
      {"27 taps, forward", nn::conv_forward_gemm(rows, k27, F), &odd, true, true, F * rows, 1, {}}};
  for (const Precision precision : {Precision::fp32, Precision::tf32}) {
    INFO((precision == Precision::tf32 ? "tf32" : "fp32"));
    GpuContext ctx(precision, false);
    cuda::DeviceBuffer<uint8_t> workspace;
    const double tol = precision == Precision::tf32 ? 2e-3 : 5e-5;
    for (int round = 0; round < 2; ++round) {
      const cuda::nn::GemmTuning before = cuda::nn::gemm_tuning();
      for (const Product& p : products) {
        INFO(p.what << ", call " << round + 1);
        const Operands& o = *p.ops;
        const std::vector<float>& a = p.a_is_kernel ? o.kernel : o.cols;
        const std::vector<float>& b = p.b_is_cols ? o.cols : o.dz;
        const float* a_d = p.a_is_kernel ? o.kernel_d.buf.data() : o.cols_d.buf.data();
        const float* b_d = p.b_is_cols ? o.cols_d.buf.data() : o.dz_d.buf.data();
        const std::vector<float> start = test::random_vec(p.out, 64, -1.0, 1.0);
        DevVec out(start);
        cuda::nn::tuned_sgemm(ctx, p.call, a_d, b_d, out.get(), p.batches, p.strides, workspace);
        std::vector<float> want = start;
        for (int64_t j = 0; j < p.batches; ++j) {
          nn::GemmCall c = p.call;
          c.a_offset += j * p.strides.a, c.b_offset += j * p.strides.b;
          test::gemm_column_major(c, a.data(), b.data(), want.data() + j * p.strides.c);
        }
        double scale = 0;
        for (float v : want) scale = std::max(scale, double(std::fabs(v)));
        test::require_close(download(out.get(), p.out), want, tol * scale, tol, p.what);
      }
      const cuda::nn::GemmTuning after = cuda::nn::gemm_tuning();
      if (round == 0) {
        CHECK(after.shapes - before.shapes == int64_t(products.size()));  // each shape timed
        CHECK(after.on_lt - before.on_lt == int64_t(products.size()));    // and run on cuBLASLt (forced)
      } else {
        CHECK(after.shapes == before.shapes);  // nothing timed again
      }
    }
    // A shape first met with may_tune = false (a layer's smaller batch) is not timed: cublasSgemm runs it.
    const nn::GemmCall smaller = nn::conv_forward_gemm(rows - 1, K, F);
    DevVec out(test::random_vec(F * (rows - 1), 65, -1.0, 1.0));
    const cuda::nn::GemmTuning before = cuda::nn::gemm_tuning();
    cuda::nn::tuned_sgemm(ctx, smaller, wide.kernel_d.buf.data(), wide.cols_d.buf.data(), out.get(), 1, {}, workspace,
                          false);
    CHECK(cuda::nn::gemm_tuning().shapes == before.shapes);
    std::vector<float> want(size_t(F * (rows - 1)), 0.0f);
    test::gemm_column_major(smaller, wide.kernel.data(), wide.cols.data(), want.data());
    double scale = 0;
    for (float v : want) scale = std::max(scale, double(std::fabs(v)));
    test::require_close(download(out.get(), F * (rows - 1)), want, tol * scale, tol, "untuned smaller forward");
  }
  cuda::nn::set_gemm_tuning_for_tests(false, -1.0);
}

// The fused conv epilogue's kernels against the CPU's loop over the same functors at the
// baseline's sizes (its second, third and fourth conv runs: 2 × 2, 4 × 4 and 6 × 6 windows over
// 128 to 512 channels, uncovered rows and columns, dropout 0.1), batch 3, fp32 and bf16 (16-bit z
// and dz16). relu, adds and scalings are exact in IEEE arithmetic on both sides, so dropout output,
// dz and dz16 (and the pooled map of an inference forward) must be equal; the gradient at each maximum (dpool, what the
// GPU's bias gradient reads) sums per channel to dz's sums.
TEST_CASE("nn gpu fused conv epilogue equals the CPU functors at the baseline's sizes", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const Config config;
  const nn::ModelPlan plan = nn::plan_model(config, {128, 1206, 1}, 10);
  const int64_t n = 3;
  const nn::StepKey key{17, 5, 64};
  for (const nn::ConvEpilogueRun& run : nn::conv_epilogue_runs(plan, 2)) {
    const int64_t zcount = n * run.h * run.w * run.c, pcount = n * run.pooled_size();
    std::vector<float> z = test::random_vec(zcount, 41, -1.0, 1.0);
    const auto bias = test::random_vec(run.c, 42, -0.2, 0.2);
    const auto dy = test::random_vec(pcount, 43, -1.0, 1.0);
    for (const Precision precision : {Precision::fp32, Precision::bf16}) {
      const bool bf16 = precision == Precision::bf16;
      INFO(run.name << (bf16 ? ", bf16" : ", fp32"));
      GpuContext ctx(precision, true);
      std::vector<uint16_t> z16(static_cast<size_t>(bf16 ? zcount : 0));
      for (size_t i = 0; i < z16.size(); ++i) {
        z16[i] = ops::float_to_half_bits(z[i], ops::kHalfBf16);
        z[i] = ops::half_bits_to_float(z16[i], ops::kHalfBf16);  // what the CPU's product would hold
      }
      nn::CpuConvEpilogue cpu(run);
      // Training with a dropout after a relu writes no pooled map (the argmax bytes carry its sign):
      // both sides leave it as it was.
      const std::vector<float> untouched(size_t(pcount), -7.0f);
      std::vector<float> pooled = untouched, dropped(static_cast<size_t>(pcount)), dz(static_cast<size_t>(zcount));
      cpu.forward(z.data(), bias.data(), pooled.data(), dropped.data(), n, true, key);
      cpu.backward(dy.data(), pooled.data(), dz.data(), n, key);
      CHECK((pooled == untouched) == (run.sign_coded() && run.dropout >= 0));

      cuda::nn::FusedConvEpilogue gpu(run, ctx);
      gpu.reserve(n);
      const DevVec zd(z), bd(bias), dyd(dy);
      DevVec pd(untouched), dd(static_cast<size_t>(pcount)), dzd(std::vector<float>(size_t(zcount), -7.0f));
      cuda::DeviceBuffer<uint16_t> z16d(z16.size()), dz16d(z16.size());
      if (bf16) cuda::copy_to_device(z16d.data(), z16.data(), z16.size());
      gpu.forward(zd.buf.data(), bf16 ? z16d.data() : nullptr, bd.buf.data(), pd.buf.data(), dd.buf.data(), n, true, key);
      gpu.backward(dyd.buf.data(), {}, pd.buf.data(), dzd.buf.data(), bf16 ? dz16d.data() : nullptr, n, key);
      test::require_close(download(pd.buf.data(), pcount), pooled, 0.0, 0.0, "pooled");
      test::require_close(download(dd.buf.data(), pcount), dropped, 0.0, 0.0, "dropped");
      test::require_close(download(dzd.buf.data(), zcount), dz, 0.0, 0.0, "dz");
      if (bf16) {
        std::vector<uint16_t> got(z16.size());
        cuda::copy_to_host(got.data(), dz16d.data(), got.size());
        size_t bad = 0;
        for (size_t i = 0; i < got.size(); ++i)
          if (ops::half_bits_to_float(got[i], ops::kHalfBf16) != ops::half_bits_to_float(
                  ops::float_to_half_bits(dz[i], ops::kHalfBf16), ops::kHalfBf16))
            ++bad;
        CHECK(bad == 0);
      }
      const auto dpool = download(gpu.dpool(), pcount);
      for (int64_t ch = 0; ch < run.c; ++ch) {
        double from_dz = 0, from_dpool = 0;
        for (int64_t i = ch; i < zcount; i += run.c) from_dz += dz[size_t(i)];
        for (int64_t o = ch; o < pcount; o += run.c) from_dpool += dpool[size_t(o)];
        CHECK(std::fabs(from_dz - from_dpool) <= 1e-9 * (1 + std::fabs(from_dz)));
      }
      // Inference: the pooled map, into the dropout's output when there is one.
      std::vector<float> pooled_inf = untouched, out_inf = untouched;
      cpu.forward(z.data(), bias.data(), pooled_inf.data(), out_inf.data(), n, false, key);
      DevVec pid(untouched), oid(untouched);
      gpu.forward(zd.buf.data(), bf16 ? z16d.data() : nullptr, bd.buf.data(), pid.buf.data(), oid.buf.data(), n, false,
                  key);
      test::require_close(download(pid.buf.data(), pcount), pooled_inf, 0.0, 0.0, "inference pooled");
      test::require_close(download(oid.buf.data(), pcount), out_inf, 0.0, 0.0, "inference output");
    }
  }
}

// A capture that CUDA refuses (a synchronisation inside it, through the test hook) falls back to
// eager steps with a warning: no crash, and the results equal an eager run's.
TEST_CASE("nn gpu cuda graph capture failure falls back to eager steps", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const GraphRun e = graph_run(false);
  ::setenv("GENRELAB_TEST_CUDA_GRAPH_FAULT", "1", 1);
  GraphRun g;
  try {
    g = graph_run(true);
  } catch (...) {
    ::unsetenv("GENRELAB_TEST_CUDA_GRAPH_FAULT");
    throw;
  }
  ::unsetenv("GENRELAB_TEST_CUDA_GRAPH_FAULT");
  for (bool b : g.graphed) CHECK_FALSE(b);
  for (size_t i = 0; i < 20; ++i) CHECK(std::fabs(g.loss[i] - e.loss[i]) <= 1e-6 * std::fabs(e.loss[i]));
  for (size_t i = 0; i < e.state.size(); ++i) require_rel(g.state[i].data, e.state[i].data, 1e-6, e.state[i].name);
}

TEST_CASE("nn gpu state round trip", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  nn::TrainHyper h;
  h.seed = 9;
  auto cpu = nn::make_cpu_network(plan, h);
  const Batch b = make_batch(plan, 5, 77);
  cpu->train_step(b.x.data(), b.labels.data(), 5, 5, 1e-3f, {9, 0, 0});
  cpu->train_step(b.x.data(), b.labels.data(), 5, 5, 1e-3f, {9, 1, 0});
  const auto want = cpu->state();
  // CPU state → GPU → host: bit-identical copies, the same names, and the step counter.
  auto gpu = nn::make_cuda_network(plan, h);
  gpu->load_state(want);
  const auto got = gpu->state();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dims == want[i].dims);
    CHECK(got[i].data == want[i].data);
  }
  CHECK(got.back().name == "step");
  CHECK(got.back().data[0] == 2.0f);
  // Initial weights equal the CPU backend's before any step.
  auto gpu0 = nn::make_cuda_network(plan, h);
  auto cpu0 = nn::make_cpu_network(plan, h);
  const auto s0 = gpu0->state(), c0 = cpu0->state();
  for (size_t i = 0; i < s0.size(); ++i) CHECK(s0[i].data == c0[i].data);
  // A wrong shape is refused with the tensor's name.
  auto bad = want;
  bad[0].dims[0] += 1;
  REQUIRE_THROWS_WITH(gpu->load_state(bad), Catch::Contains(bad[0].name) && Catch::Contains("shape"));
  auto missing = want;
  missing.erase(missing.begin() + 1);
  REQUIRE_THROWS_WITH(gpu->load_state(missing), Catch::Contains(want[1].name));
}

TEST_CASE("nn gpu state snapshot is the state when taken, read later on another thread", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  for (const char* precision : {"fp32", "fp16"}) {
    INFO(precision);
    nn::TrainHyper h;
    h.seed = 5;
    h.precision = precision;
    auto gpu = nn::make_cuda_network(plan, h);
    const int64_t n = 6;
    cuda::DeviceBuffer<float> xd{static_cast<size_t>(n * plan.input.size())};
    cuda::DeviceBuffer<int32_t> ld{static_cast<size_t>(n)};
    const Batch b = make_batch(plan, n, 31);
    upload(b.x, xd.data());
    cuda::copy_to_device(ld.data(), b.labels.data(), size_t(n));
    uint64_t step = 0;
    auto train = [&](int steps) {
      for (int k = 0; k < steps; ++k) gpu->train_step(xd.data(), ld.data(), n, n, 1e-2f, {5, step++, 0});
    };
    train(2);
    for (int round = 0; round < 2; ++round) {  // the second snapshot reuses the first's buffer
      const auto want = gpu->state();
      auto snapshot = gpu->state_snapshot();
      train(3);  // queued behind the snapshot's copies: they must not reach it
      const auto got = std::async(std::launch::async, snapshot).get();
      test::check_snapshot(got, want, gpu->state());
      CHECK(got.back().name == (h.precision == "fp16" ? nn::kLossScaleGoodTensor : "step"));
    }
  }
}

TEST_CASE("nn gpu out of memory names the batch size", "[gpu][nn][oom]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(json::parse(R"([{"type": "conv2d", "filters": 64, "kernel": 1},
      {"type": "global_avgpool"}, {"type": "dense", "units": "classes", "activation": "softmax"}])"),
                                    {1024, 1024, 1}, 3);
  auto gpu = nn::make_cuda_network(plan, nn::TrainHyper{});
  // 100 000 examples × 256 MiB of activations: far beyond any GPU; fails before touching x.
  REQUIRE_THROWS_WITH(gpu->train_step(nullptr, nullptr, 100000, 100000, 1e-3f, {}),
                      Catch::Contains("train.batch_size=") && Catch::Contains("100000 examples"));
}

TEST_CASE("nn gpu unknown precision is a config error", "[gpu][nn]") {
  GENRELAB_REQUIRE_GPU();
  const auto plan = nn::plan_layers(small_cnn(), {12, 10, 2}, 4);
  nn::TrainHyper h;
  h.precision = "fp8";
  REQUIRE_THROWS_AS(nn::make_cuda_network(plan, h), ConfigError);
}

#endif  // GENRELAB_HAVE_CUDA

}  // namespace
}  // namespace genrelab
