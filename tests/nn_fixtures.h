// Shared network-test fixtures: the small CNN (every layer family) of the cross-backend and
// mixed-precision training tests, and a CNN trained on the CPU on a synthetic separable task
// (4 classes: a bright 3x3 patch in one quadrant of a 12x12 noisy image) for the learning tests.
#pragma once

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "genrelab/nn/conv_gemm_plan.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/philox.h"
#include "test_util.h"

namespace genrelab::test {

// C (m × n, column-major) = op(A) · op(B) + beta · C as BLAS defines it, in double.
inline void gemm_column_major(const nn::GemmCall& c, const float* a, const float* b, float* out) {
  for (int64_t j = 0; j < c.n; ++j)
    for (int64_t i = 0; i < c.m; ++i) {
      double sum = 0;
      for (int64_t p = 0; p < c.k; ++p) {
        const double av = c.trans_a ? a[c.a_offset + p + i * c.lda] : a[c.a_offset + i + p * c.lda];
        const double bv = c.trans_b ? b[c.b_offset + j + p * c.ldb] : b[c.b_offset + p + j * c.ldb];
        sum += av * bv;
      }
      float& o = out[i + j * c.ldc];
      o = float(sum + double(c.beta) * double(o));
    }
}

// A CNN whose first conv2d → maxpool2d can be fused (train.fuse_conv_pool), dropout after the pool.
inline nlohmann::json conv_pool_cnn() {
  return nlohmann::json::parse(R"([
    {"type": "conv2d", "filters": 6, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.2},
    {"type": "conv2d", "filters": 5, "kernel": 3, "activation": "relu"},
    {"type": "global_avgpool"},
    {"type": "dense", "units": "classes", "activation": "softmax"}
  ])");
}

// A CNN with three conv2d → maxpool2d runs whose epilogues fuse (train.fuse_conv_epilogue), for
// (21, 31, 1) inputs: a first pair that train.fuse_conv_pool also takes, then 8 channels (four a
// call), then 6 with elu; dropout after the first two pools; windows that leave rows and columns
// uncovered.
inline nlohmann::json conv_epilogue_cnn() {
  return nlohmann::json::parse(R"([
    {"type": "conv2d", "filters": 6, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.2},
    {"type": "conv2d", "filters": 8, "kernel": 2, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.1},
    {"type": "conv2d", "filters": 6, "kernel": 2, "activation": "elu"},
    {"type": "maxpool2d", "size": [2, 3]},
    {"type": "flatten"},
    {"type": "dense", "units": "classes", "activation": "softmax"}
  ])");
}

// count floats uniform in [lo, hi) from a Philox stream keyed by seed: the same on every run.
inline std::vector<float> random_vec(int64_t count, uint32_t seed, double lo, double hi) {
  const PhiloxStream s(seed, RngPurpose::init, 99, 7);
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[size_t(i)] = float(s.uniform_range(uint64_t(i), lo, hi));
  return v;
}

// 12 Adam steps (lr 3e-3) on the CPU network of batches of 8 that cycle over 21 examples (every
// third batch partial), then predictions of the first 5: what the fused-against-unfused tests compare.
struct CpuTrained {
  std::vector<double> losses;
  std::vector<nn::NamedTensor> state;
  std::vector<float> probs;
};
inline CpuTrained train_cpu_cycling(const nn::ModelPlan& plan, const nn::TrainHyper& h) {
  const auto x = random_vec(21 * plan.input.size(), 5, -1, 1);
  std::vector<int32_t> labels(21);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t((i * 7) % 3);
  CpuTrained t;
  auto net = nn::make_cpu_network(plan, h);
  for (uint64_t step = 0; step < 12; ++step) {
    const int64_t first = int64_t(step % 3) * 8, n = std::min<int64_t>(8, 21 - first);
    net->train_step(x.data() + first * plan.input.size(), labels.data() + first, n, n, 3e-3f, {h.seed, step, 0});
    t.losses.push_back(net->last_stats().loss_sum);
  }
  t.probs.resize(size_t(5 * plan.classes));
  net->predict(x.data(), 5, t.probs.data());
  t.state = net->state();
  return t;
}

// A state snapshot read after more training steps: `got` has the names, shapes and values of
// `want` (state() when the snapshot was taken), and `after` (state() now) differs, so the steps
// really changed what the snapshot had to keep.
inline void check_snapshot(const std::vector<nn::NamedTensor>& got, const std::vector<nn::NamedTensor>& want,
                           const std::vector<nn::NamedTensor>& after) {
  REQUIRE(got.size() == want.size());
  REQUIRE(after.size() == want.size());
  bool moved = false;
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dims == want[i].dims);
    CHECK(got[i].data == want[i].data);
    moved = moved || after[i].data != want[i].data;
  }
  CHECK(moved);
}

// Conv, batch norm, both poolings, dropout, dense and the softmax head, for (12, 10, 2) inputs.
inline nlohmann::json small_cnn() {
  return nlohmann::json::parse(R"([
    {"type": "conv2d", "filters": 6, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "batchnorm"},
    {"type": "maxpool2d", "size": 2},
    {"type": "dropout", "rate": 0.25},
    {"type": "conv2d", "filters": 8, "kernel": 2, "activation": "elu"},
    {"type": "avgpool2d", "size": 2, "padding": "same"},
    {"type": "flatten"},
    {"type": "dense", "units": 16, "activation": "relu"},
    {"type": "dropout", "rate": 0.1},
    {"type": "dense", "units": "classes", "activation": "softmax"}
  ])");
}

// Trains 4 epochs (Adam, lr 3e-3, batch 32) in `precision` and returns the test accuracy; with
// `last_scale`, also the final fp16 loss scale (0 for the other precisions).
inline double train_quadrant_task(const std::string& precision, double* last_scale = nullptr) {
  const int64_t H = 12, W = 12, C = 4, n_train = 512, n_test = 256;
  auto make = [&](int64_t n, uint32_t salt, std::vector<float>& x, std::vector<int32_t>& y) {
    const PhiloxStream s(5, RngPurpose::augment_choice, salt, 0);
    x.assign(size_t(n * H * W), 0.0f);
    y.resize(size_t(n));
    for (int64_t e = 0; e < n; ++e) {
      const int32_t k = int32_t(s.word(uint64_t(e * 4)) % 4);
      y[size_t(e)] = k;
      const int64_t r0 = (k / 2) * 6 + int64_t(s.word(uint64_t(e * 4 + 1)) % 4),
                    c0 = (k % 2) * 6 + int64_t(s.word(uint64_t(e * 4 + 2)) % 4);
      for (int64_t i = 0; i < H * W; ++i)
        x[size_t(e * H * W + i)] = float(s.uniform(uint64_t(1000000 + e * H * W + i))) * 0.6f;
      for (int64_t a = 0; a < 3; ++a)
        for (int64_t b = 0; b < 3; ++b) x[size_t(e * H * W + (r0 + a) * W + c0 + b)] += 0.8f;
    }
  };
  std::vector<float> xt, xv;
  std::vector<int32_t> yt, yv;
  make(n_train, 1, xt, yt);
  make(n_test, 2, xv, yv);
  const nn::ModelPlan plan = nn::plan_layers(nlohmann::json::parse(R"([
    {"type": "conv2d", "filters": 8, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "batchnorm", "momentum": 0.9},
    {"type": "conv2d", "filters": 8, "kernel": 3, "activation": "relu"},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.1},
    {"type": "dense", "units": 32, "activation": "relu"},
    {"type": "dense", "units": "classes", "activation": "softmax"}])"),
                                     {H, W, 1}, C);
  nn::TrainHyper h;
  h.lr = 3e-3;
  h.precision = precision;
  auto net = nn::make_cpu_network(plan, h);
  const int64_t batch = 32;
  uint64_t step = 0;
  for (int epoch = 0; epoch < 4; ++epoch)
    for (int64_t b0 = 0; b0 < n_train; b0 += batch, ++step) {
      net->train_step(xt.data() + b0 * H * W, yt.data() + b0, batch, batch, float(h.lr), {0, step, 0});
      REQUIRE(net->check_finite());
    }
  std::vector<float> probs(size_t(n_test * C));
  net->predict(xv.data(), n_test, probs.data());
  int64_t correct = 0;
  for (int64_t e = 0; e < n_test; ++e) {
    const float* p = probs.data() + e * C;
    CHECK(std::accumulate(p, p + C, 0.0) == Approx(1.0).epsilon(1e-5));
    correct += std::max_element(p, p + C) - p == yv[size_t(e)];
  }
  if (last_scale) *last_scale = net->loss_scale();
  return double(correct) / double(n_test);
}


}  // namespace genrelab::test
