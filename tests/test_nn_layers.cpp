// CPU layers: forward against independent direct loops / hand-computed values, and every layer
// type's backward against central finite differences of its own forward, in double precision
// (awkward shapes, both paddings, strides, dilation, with and without bias).
#include <cmath>

#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/ops/nn_activation.h"
#include "genrelab/ops/philox.h"
#include "genrelab/parallel_for.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

namespace {

// The LayerDesc of `layer` planned on `in` (a head is appended so the plan is complete).
LayerDesc desc_of(const json& layer, Shape3 in) {
  json layers = json::array({layer});
  if (layer.value("activation", "") == "softmax") return plan_layers(layers, in, 3).layers[0];
  if (layer["type"] != "dense") layers.push_back({{"type", "flatten"}});
  layers.push_back({{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}});
  return plan_layers(layers, in, 3).layers[0];
}

std::vector<double> random_vec(size_t n, uint32_t salt, double lo = -1, double hi = 1) {
  const PhiloxStream s(1234, RngPurpose::init, salt, 99);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = s.uniform_range(i, lo, hi);
  return v;
}

// Fills every parameter with random values (positive variances for batch norm).
void randomise(CpuLayer<double>& l) {
  uint32_t salt = 10;
  for (size_t j = 0; j < l.params().size(); ++j) {
    // Batch-norm moving variances (parameter 3) must stay positive.
    const bool variance = l.desc().type == "batchnorm" && j == 3;
    l.params()[j] = random_vec(l.params()[j].size(), salt++, variance ? 0.5 : -0.8, variance ? 1.5 : 0.8);
  }
}

// L = Σ y ⊙ r. Checks dL/dx and dL/dparams from backward against central differences.
void gradient_check(const json& layer, Shape3 in, int64_t n = 3) {
  INFO("layer " << layer.dump() << " on " << in.str());
  const LayerDesc d = desc_of(layer, in);
  auto l = make_cpu_layer<double>(d);
  randomise(*l);
  const StepKey key{7, 3, 5};
  std::vector<double> x = random_vec(size_t(n * d.in.size()), 1);
  const std::vector<double> r = random_vec(size_t(n * d.out.size()), 2);
  std::vector<double> y(r.size()), dx(x.size());
  auto loss = [&]() {
    l->forward(x.data(), y.data(), n, true, key);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
    return s;
  };
  loss();
  l->zero_grads();
  l->backward(x.data(), y.data(), r.data(), dx.data(), n, key);
  const double h = 1e-6;
  auto numeric = [&](double& v) {
    const double keep = v;
    v = keep + h;
    const double lp = loss();
    v = keep - h;
    const double lm = loss();
    v = keep;
    return (lp - lm) / (2 * h);
  };
  // Every input element (shapes are small), every parameter element.
  std::vector<double> num_dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) num_dx[i] = numeric(x[i]);
  test::require_close(dx, num_dx, 1e-7, 1e-6, "dx");
  size_t g = 0;
  for (size_t j = 0; j < d.params.size(); ++j) {
    if (!d.params[j].trainable) continue;
    auto& p = l->params()[j];
    std::vector<double> num(p.size());
    for (size_t i = 0; i < p.size(); ++i) num[i] = numeric(p[i]);
    test::require_close(l->grads()[g++], num, 1e-7, 1e-6, d.params[j].name);
  }
}

}  // namespace

TEST_CASE("nn gradients of conv2d", "[nn]") {
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 3, "kernel": 2})"), {5, 6, 2});
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 2, "kernel": [3, 2], "stride": 2, "padding": "same", "activation": "relu"})"), {7, 5, 3});
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 2, "kernel": 3, "dilation": 2, "padding": "same", "use_bias": false, "activation": "elu"})"), {6, 7, 2});
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 3, "kernel": 1, "activation": "leaky_relu", "alpha": 0.2})"), {4, 5, 3});
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 2, "kernel": 3, "stride": [2, 1], "dilation": [1, 2], "activation": "tanh"})"), {7, 8, 2});
  gradient_check(json::parse(R"({"type": "conv2d", "filters": 1, "kernel": [1, 3], "padding": "same", "activation": "sigmoid", "use_bias": false})"), {3, 4, 1}, 1);
}

TEST_CASE("nn gradients of pooling", "[nn]") {
  gradient_check(json::parse(R"({"type": "maxpool2d", "size": 2})"), {5, 7, 2});
  gradient_check(json::parse(R"({"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"})"), {6, 5, 2});
  gradient_check(json::parse(R"({"type": "maxpool2d", "size": [2, 3], "stride": 1})"), {4, 5, 1});
  gradient_check(json::parse(R"({"type": "avgpool2d", "size": 2, "padding": "same"})"), {5, 5, 3});
  gradient_check(json::parse(R"({"type": "avgpool2d", "size": 3, "stride": 2})"), {7, 6, 2});
  gradient_check(json::parse(R"({"type": "global_avgpool"})"), {3, 4, 5});
}

TEST_CASE("nn gradients of activations dropout flatten and batchnorm", "[nn]") {
  gradient_check(json::parse(R"({"type": "relu"})"), {3, 4, 2});
  gradient_check(json::parse(R"({"type": "elu", "alpha": 0.7})"), {3, 4, 2});
  gradient_check(json::parse(R"({"type": "leaky_relu", "alpha": 0.2})"), {3, 4, 2});
  gradient_check(json::parse(R"({"type": "dropout", "rate": 0.3})"), {3, 4, 2});
  gradient_check(json::parse(R"({"type": "flatten"})"), {2, 3, 2});
  gradient_check(json::parse(R"({"type": "batchnorm"})"), {3, 3, 4}, 4);
  gradient_check(json::parse(R"({"type": "batchnorm", "epsilon": 0.1})"), {1, 1, 5}, 6);
}

TEST_CASE("nn gradients of dense", "[nn]") {
  gradient_check(json::parse(R"({"type": "dense", "units": 5, "activation": "relu"})"), {1, 1, 7});
  gradient_check(json::parse(R"({"type": "dense", "units": 4, "use_bias": false, "activation": "elu"})"), {1, 1, 3}, 5);
  gradient_check(json::parse(R"({"type": "dense", "units": 3, "activation": "tanh"})"), {1, 1, 6}, 1);
  // The softmax output layer: backward through the softmax Jacobian.
  gradient_check(json::parse(R"({"type": "dense", "units": "classes", "activation": "softmax"})"), {1, 1, 4});
}

TEST_CASE("nn gradients of gru and lstm", "[nn]") {
  gradient_check(json::parse(R"({"type": "gru", "units": 3})"), {2, 5, 2});
  gradient_check(json::parse(R"({"type": "gru", "units": 2, "bidirectional": true, "return_sequences": true})"), {1, 4, 3});
  gradient_check(json::parse(R"({"type": "lstm", "units": 3, "return_sequences": true})"), {2, 4, 1});
  gradient_check(json::parse(R"({"type": "lstm", "units": 2, "bidirectional": true, "use_bias": false})"), {3, 3, 1});
}

TEST_CASE("nn conv2d forward equals a direct convolution", "[nn]") {
  struct Case { const char* layer; Shape3 in; };
  const Case cases[] = {
      {R"({"type": "conv2d", "filters": 3, "kernel": [3, 2], "stride": 2, "padding": "same"})", {7, 6, 2}},
      {R"({"type": "conv2d", "filters": 4, "kernel": 3, "dilation": 2, "padding": "same", "use_bias": false})", {6, 9, 3}},
      {R"({"type": "conv2d", "filters": 2, "kernel": 2, "stride": [1, 3]})", {5, 10, 1}},
      {R"({"type": "conv2d", "filters": 5, "kernel": 1})", {3, 3, 4}}};
  for (const auto& c : cases) {
    INFO(c.layer);
    const LayerDesc d = desc_of(json::parse(c.layer), c.in);
    auto l = make_cpu_layer<double>(d);
    randomise(*l);
    const int64_t n = 2;
    const auto x = random_vec(size_t(n * d.in.size()), 5);
    std::vector<double> y(size_t(n * d.out.size()));
    l->forward(x.data(), y.data(), n, false, {});
    // Direct loops with TensorFlow's "same" padding written out independently.
    const json& s = d.spec;
    auto pr = [](const json& v, int k) { return v.is_array() ? v[k].get<int64_t>() : v.get<int64_t>(); };
    const int64_t kh = pr(s["kernel"], 0), kw = pr(s["kernel"], 1), sh = pr(s["stride"], 0), sw = pr(s["stride"], 1);
    const int64_t dh = pr(s["dilation"], 0), dw = pr(s["dilation"], 1);
    int64_t pt = 0, pl = 0;
    if (s["padding"] == "same") {
      pt = std::max<int64_t>(0, (d.out.h - 1) * sh + (kh - 1) * dh + 1 - d.in.h) / 2;
      pl = std::max<int64_t>(0, (d.out.w - 1) * sw + (kw - 1) * dw + 1 - d.in.w) / 2;
    }
    const auto& W = l->params()[0];
    std::vector<double> want(y.size());
    for (int64_t e = 0; e < n; ++e)
      for (int64_t oh = 0; oh < d.out.h; ++oh)
        for (int64_t ow = 0; ow < d.out.w; ++ow)
          for (int64_t f = 0; f < d.out.c; ++f) {
            double acc = s["use_bias"].get<bool>() ? l->params()[1][size_t(f)] : 0.0;
            for (int64_t a = 0; a < kh; ++a)
              for (int64_t b = 0; b < kw; ++b)
                for (int64_t ci = 0; ci < d.in.c; ++ci) {
                  const int64_t ih = oh * sh - pt + a * dh, iw = ow * sw - pl + b * dw;
                  if (ih < 0 || iw < 0 || ih >= d.in.h || iw >= d.in.w) continue;
                  acc += W[size_t(((f * kh + a) * kw + b) * d.in.c + ci)] * x[size_t(((e * d.in.h + ih) * d.in.w + iw) * d.in.c + ci)];
                }
            want[size_t(((e * d.out.h + oh) * d.out.w + ow) * d.out.c + f)] = acc;
          }
    test::require_close(y, want, 1e-12, 1e-12, "conv2d");
  }
}

TEST_CASE("nn pooling forward matches hand-computed Keras values", "[nn]") {
  // 5x5 ramp x[h][w] = 5h + w, one channel. "same" 3x3 stride 2: out 3x3, pad 1 on each side;
  // padded cells never count (TensorFlow), so the corner average is over 2x2 valid cells.
  std::vector<double> x(25);
  for (int i = 0; i < 25; ++i) x[size_t(i)] = i;
  auto run = [&](const char* layer) {
    const LayerDesc d = desc_of(json::parse(layer), {5, 5, 1});
    auto l = make_cpu_layer<double>(d);
    std::vector<double> y(size_t(d.out.size()));
    l->forward(x.data(), y.data(), 1, false, {});
    return y;
  };
  test::require_close(run(R"({"type": "avgpool2d", "size": 3, "stride": 2, "padding": "same"})"),
                      std::vector<double>{3, 4.5, 6, 10.5, 12, 13.5, 18, 19.5, 21}, 1e-12, 0, "avg same");
  test::require_close(run(R"({"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"})"),
                      std::vector<double>{6, 8, 9, 16, 18, 19, 21, 23, 24}, 0, 0, "max same");
  // "valid" floors: 2x2 stride 2 on 5x5 gives 2x2, the last row and column unused.
  test::require_close(run(R"({"type": "maxpool2d", "size": 2})"), std::vector<double>{6, 8, 16, 18}, 0, 0, "max valid");
  test::require_close(run(R"({"type": "avgpool2d", "size": 2})"), std::vector<double>{3, 5, 13, 15}, 1e-12, 0, "avg valid");
  test::require_close(run(R"({"type": "global_avgpool"})"), std::vector<double>{12}, 1e-12, 0, "global");
}

TEST_CASE("nn batchnorm forward normalises and updates moving statistics like Keras", "[nn]") {
  const LayerDesc d = desc_of(json::parse(R"({"type": "batchnorm", "momentum": 0.9, "epsilon": 0.001})"), {1, 2, 2});
  auto l = make_cpu_layer<double>(d);
  l->params()[0] = {2.0, 1.0};  // gamma
  l->params()[1] = {0.5, 0.0};  // beta
  l->params()[2] = {0.0, 0.0};  // moving mean and variance as Keras initialises them
  l->params()[3] = {1.0, 1.0};
  // Channel 0 values 1, 3, 5, 7 (mean 4, biased var 5); channel 1 values 0, 0, 2, 2 (mean 1, var 1).
  const std::vector<double> x = {1, 0, 3, 0, 5, 2, 7, 2};
  std::vector<double> y(8);
  l->forward(x.data(), y.data(), 2, true, {});
  const double s0 = 1 / std::sqrt(5.001), s1 = 1 / std::sqrt(1.001);
  test::require_close(y, std::vector<double>{2 * -3 * s0 + 0.5, -s1, 2 * -1 * s0 + 0.5, -s1, 2 * s0 + 0.5, s1, 2 * 3 * s0 + 0.5, s1},
                      1e-12, 1e-12, "training");
  test::require_close(l->params()[2], std::vector<double>{0.4, 0.1}, 1e-12, 0, "moving mean");
  test::require_close(l->params()[3], std::vector<double>{0.9 + 0.5, 0.9 + 0.1}, 1e-12, 0, "moving var");
  l->forward(x.data(), y.data(), 2, false, {});
  CHECK(y[0] == Approx(2 * (1 - 0.4) / std::sqrt(1.4 + 0.001) + 0.5).epsilon(1e-12));
}

TEST_CASE("nn dropout masks are keyed by step layer and global example", "[nn]") {
  const LayerDesc d = desc_of(json::parse(R"({"type": "dropout", "rate": 0.25})"), {10, 10, 10});
  auto l = make_cpu_layer<float>(d);
  const int64_t n = 8, size = 1000;
  std::vector<float> x(size_t(n * size), 1.0f), y(x.size()), y2(x.size());
  l->forward(x.data(), y.data(), n, true, {3, 11, 0});
  int64_t kept = 0;
  for (float v : y) {
    CHECK((v == 0.0f || v == Approx(1.0f / 0.75f)));
    kept += v != 0.0f;
  }
  CHECK(double(kept) / double(y.size()) == Approx(0.75).margin(0.02));
  // A shard holding global examples 4..7 draws what the whole batch drew for them.
  l->forward(x.data(), y2.data(), 4, true, {3, 11, 4});
  for (int64_t i = 0; i < 4 * size; ++i) REQUIRE(y2[size_t(i)] == y[size_t(4 * size + i)]);
  // Another step draws another mask; inference is the identity.
  l->forward(x.data(), y2.data(), n, true, {3, 12, 0});
  CHECK(y2 != y);
  l->forward(x.data(), y2.data(), n, false, {3, 11, 0});
  CHECK(y2 == x);
  // Element by element against the mask's definition, on a shard whose global offset is not a
  // multiple of a Philox block (27 elements per example, first example 1): the functor takes four
  // elements per block and must still read word e·27 + j for each.
  const LayerDesc odd = desc_of(json::parse(R"({"type": "dropout", "rate": 0.4})"), {3, 3, 3});
  auto lo = make_cpu_layer<float>(odd);
  std::vector<float> xo(size_t(5 * 27)), yo(xo.size());
  for (size_t i = 0; i < xo.size(); ++i) xo[i] = 1.0f + float(i);
  lo->forward(xo.data(), yo.data(), 5, true, {9, 2, 1});
  const ops::DropoutStep key{2, 1};
  const ops::DropoutMask m{9, odd.index, 0.4f, 27, &key};
  for (int64_t i = 0; i < 5 * 27; ++i) {
    const PhiloxStream s(9, RngPurpose::dropout, uint32_t(odd.index), 2);
    const bool keep = s.uniform(uint64_t(27 + i)) >= 0.4f;
    REQUIRE(keep == m.keep(i));
    REQUIRE(yo[size_t(i)] == (keep ? xo[size_t(i)] * (1.0f / (1.0f - 0.4f)) : 0.0f));
  }
  // The same on a layer of 64 elements per example, where each call moves its four elements as
  // one 16-byte access, and through buffers one float off that alignment (one element at a time).
  const ops::DropoutMask m64{9, 5, 0.4f, 64, &key};
  const PhiloxStream s64(9, RngPurpose::dropout, 5, 2);
  std::vector<float> x64(size_t(3 * 64 + 1)), y64(x64.size());
  for (size_t i = 0; i < x64.size(); ++i) x64[i] = 0.5f + float(i);
  for (int64_t shift : {0, 1}) {
    CAPTURE(shift);
    const float* in = x64.data() + shift;
    float* out = y64.data() + shift;
    cpu_for_1d(ops::DropoutApply<float>::groups(3 * 64), ops::DropoutApply<float>{m64, in, out, 3 * 64});
    for (int64_t i = 0; i < 3 * 64; ++i) {
      const bool keep = s64.uniform(uint64_t(64 + i)) >= 0.4f;
      REQUIRE(out[i] == (keep ? in[i] * (1.0f / (1.0f - 0.4f)) : 0.0f));
    }
  }
}

TEST_CASE("nn dense forward and gemm match direct products", "[nn]") {
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {5, 300, 7}, {70, 33, 600}, {130, 270, 2100}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const auto A = random_vec(size_t(M * K), 20), B = random_vec(size_t(K * N), 21);
      std::vector<double> C(size_t(M * N), 1.0), want(size_t(M * N));
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 1.0;  // accumulate onto the existing 1.0
          for (int64_t k = 0; k < K; ++k) s += A[size_t(ta ? k * M + i : i * K + k)] * B[size_t(tb ? j * K + k : k * N + j)];
          want[size_t(i * N + j)] = s;
        }
      cpu_gemm<double>(ta, tb, M, N, K, A.data(), B.data(), C.data(), true);
      INFO("M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb);
      test::require_close(C, want, 1e-10, 1e-12, "gemm");
    }
  }
}
