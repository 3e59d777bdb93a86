// Training math: the optimizers against hand-computed values of their published update rules
// (Keras forms), the softmax cross-entropy head against finite differences, one full CPU
// train_step (loss averaged over the global batch, L2, global-norm clipping) against a direct
// computation, learning-rate schedules, initialisers, and a small CNN learning a separable task.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nn/network.h"
#include "genrelab/nn/schedule.h"
#include "genrelab/ops/nn_loss.h"
#include "genrelab/ops/nn_optim.h"
#include "genrelab/ops/philox.h"
#include "nn_fixtures.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

TEST_CASE("nn adam and adamw steps follow the Keras update rule", "[nn]") {
  // w0 = 1, gradients 0.5, -0.2, 0.1; lr 0.01, β 0.9 / 0.999, ε 1e-7. Expected values from
  // m = β1 m + (1 − β1) g, v = β2 v + (1 − β2) g², w −= lr·√(1 − β2^t)/(1 − β1^t) · m / (√v + ε).
  const double grads[] = {0.5, -0.2, 0.1};
  const double adam[] = {0.9900000632451532, 0.9865440250693356, 0.9827501291450313};
  const double adamw[] = {0.9890000632451532, 0.9845550250060904, 0.9797765740567801};  // wd 0.1: w −= w·wd·lr first
  for (int decayed = 0; decayed < 2; ++decayed) {
    double w = 1, m = 0, v = 0, g = 0;
    for (int t = 0; t < 3; ++t) {
      g = grads[t];
      const ops::OptimStep<double> step{adam_step_size(0.01, 0.9, 0.999, uint64_t(t)), 0.01 * 0.1};
      ops::AdamUpdate<double>{&w, &g, &m, &v, &step, 0.9, 0.999, 1e-7, decayed == 1}(0);
      CHECK(w == Approx(decayed ? adamw[t] : adam[t]).epsilon(1e-14));
    }
    CHECK(m == Approx(0.0325).epsilon(1e-13));
    CHECK(v == Approx(0.00029946025).epsilon(1e-12));
  }
  // The first step moves by lr·g/(|g| + ε/√(1 − β2)) — ε matters for tiny gradients.
  double w = 0, m = 0, v = 0, g = 1e-7;
  const ops::OptimStep<double> first{adam_step_size(1.0, 0.9, 0.999, 0), 0.0};
  ops::AdamUpdate<double>{&w, &g, &m, &v, &first, 0.9, 0.999, 1e-7, false}(0);
  CHECK(w == Approx(-1e-7 / (1e-7 + 1e-7 / std::sqrt(0.001))).epsilon(1e-12));
}

TEST_CASE("nn sgd momentum and nesterov steps follow the Keras update rule", "[nn]") {
  // lr 0.1, momentum 0.9: v = μv − lr·g; w += v (plain) or w += μv − lr·g (Nesterov).
  const double grads[] = {0.5, -0.2, 0.1};
  const double plain[] = {0.95, 0.925, 0.8925}, nesterov[] = {0.905, 0.9025, 0.86325};
  for (int nest = 0; nest < 2; ++nest) {
    double w = 1, vel = 0, g = 0;
    for (int t = 0; t < 3; ++t) {
      g = grads[t];
      const ops::OptimStep<double> step{0.1, 0.0};
      ops::SgdUpdate<double>{&w, &g, &vel, &step, 0.9, nest == 1, false}(0);
      CHECK(w == Approx(nest ? nesterov[t] : plain[t]).epsilon(1e-14));
    }
    CHECK(vel == Approx(-0.0325).epsilon(1e-13));
  }
  double w = 2, vel = 0, g = 0;  // momentum 0 and decoupled decay: w = w − w·lr·wd − lr·g
  const ops::OptimStep<double> decay{0.1, 0.1 * 0.5};
  ops::SgdUpdate<double>{&w, &g, &vel, &decay, 0.0, false, true}(0);
  CHECK(w == Approx(1.9).epsilon(1e-14));
}

// The update functors as they were before the per-step scalars moved behind a pointer (by value),
// verbatim: the reference for the bit-identity test below.
template <typename T>
struct ByValueAdamUpdate {
  T* w;
  const T* g;
  T* m;
  T* v;
  T lr_t, beta1, beta2, epsilon;
  T decay;
  void operator()(int64_t i) const {
    T wi = w[i];
    if (decay != T(0)) wi -= wi * decay;
    const T gi = g[i];
    const T mi = m[i] + (gi - m[i]) * (T(1) - beta1);
    const T vi = v[i] + (gi * gi - v[i]) * (T(1) - beta2);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - lr_t * mi / (sqrt(vi) + epsilon);
  }
};
template <typename T>
struct ByValueSgdUpdate {
  T* w;
  const T* g;
  T* velocity;
  T lr, momentum;
  bool nesterov;
  T decay;
  void operator()(int64_t i) const {
    T wi = w[i];
    if (decay != T(0)) wi -= wi * decay;
    const T vi = momentum * velocity[i] - lr * g[i];
    velocity[i] = vi;
    w[i] = nesterov ? wi + momentum * vi - lr * g[i] : wi + vi;
  }
};

// The functors read the per-step scalars through a pointer (what lets a captured CUDA graph take
// each step's learning rate): the float results must equal, bit for bit, the previous by-value
// functors fed the previous host arithmetic (lr_t and lr·wd in double, rounded once), for every
// optimizer, decayed or not, over a changing learning rate — and one functor object must see a
// new value written into its scalars between two steps.
TEST_CASE("nn optimizer functors read per-step scalars through a pointer bit-identically", "[nn]") {
  const std::vector<float> lrs = {1e-3f, 3.7e-4f, 0.05f, 1e-6f};
  for (const char* opt : {"adam", "adamw", "sgd"}) {
    for (int nest = 0; nest < 2; ++nest) {
      TrainHyper h;
      h.optimizer = opt;
      if (h.optimizer != "sgd" && nest) continue;
      h.weight_decay = h.optimizer == "adam" ? 0.0 : 0.013;
      h.momentum = h.optimizer == "sgd" ? 0.9 : 0.0;
      h.nesterov = nest == 1;
      for (int decayed = 0; decayed < 2; ++decayed) {
        const int64_t N = 257;
        std::vector<float> w(N), g(N), m(N, 0.0f), v(N, 0.0f);
        for (int64_t i = 0; i < N; ++i) {
          w[size_t(i)] = std::sin(0.37f * float(i)) * 0.5f;
          g[size_t(i)] = std::cos(0.11f * float(i) + 0.3f) * 0.01f;
        }
        std::vector<float> rw = w, rm = m, rv = v;
        ops::OptimStep<float> scalars{};  // one host block, rewritten before each step
        const ops::AdamUpdate<float> adam{w.data(), g.data(), m.data(), v.data(), &scalars, float(h.beta1), float(h.beta2),
                                          float(h.epsilon), decayed == 1};
        const ops::SgdUpdate<float> sgd{w.data(), g.data(), m.data(), &scalars, float(h.momentum), h.nesterov, decayed == 1};
        for (size_t t = 0; t < lrs.size(); ++t) {
          const float lr = lrs[t];
          scalars = optimizer_step(h, lr, t);
          // The previous by-value scalars (cpu_network.cpp and cuda_network.cu before the change).
          const bool is_adam = h.optimizer != "sgd";
          const float lr_t = is_adam ? float(adam_step_size(lr, h.beta1, h.beta2, t)) : lr;
          const float decay = decayed && h.optimizer != "adam" ? float(double(lr) * h.weight_decay) : 0.0f;
          const ByValueAdamUpdate<float> ref_adam{rw.data(), g.data(), rm.data(), rv.data(), lr_t, float(h.beta1),
                                                  float(h.beta2), float(h.epsilon), decay};
          const ByValueSgdUpdate<float> ref_sgd{rw.data(), g.data(), rm.data(), lr, float(h.momentum), h.nesterov, decay};
          for (int64_t i = 0; i < N; ++i) {
            if (is_adam) {
              adam(i);
              ref_adam(i);
            } else {
              sgd(i);
              ref_sgd(i);
            }
          }
          for (int64_t i = 0; i < N; ++i) {
            INFO(opt << " nesterov " << nest << " decayed " << decayed << " step " << t << " element " << i);
            REQUIRE(w[size_t(i)] == rw[size_t(i)]);
            REQUIRE(m[size_t(i)] == rm[size_t(i)]);
            REQUIRE(v[size_t(i)] == rv[size_t(i)]);
          }
        }
        CHECK(w != std::vector<float>(N, 0.0f));
      }
    }
  }
  // optimizer_step by hand: adamw's step 0 at lr 0.01, weight decay 0.1: lr_t = 0.01·√0.001/0.1.
  TrainHyper h;
  h.optimizer = "adamw";
  h.weight_decay = 0.1;
  const ops::OptimStep<float> s0 = optimizer_step(h, 0.01f, 0);
  CHECK(s0.lr == float(double(0.01f) * std::sqrt(1.0 - 0.999) / (1.0 - 0.9)));
  CHECK(s0.decay == float(double(0.01f) * 0.1));
  h.optimizer = "adam";
  h.weight_decay = 0.0;
  CHECK(optimizer_step(h, 0.01f, 0).decay == 0.0f);
  h.optimizer = "sgd";
  h.weight_decay = 0.5;
  CHECK(optimizer_step(h, 0.25f, 7).lr == 0.25f);
  CHECK(optimizer_step(h, 0.25f, 7).decay == 0.125f);
}

TEST_CASE("nn softmax cross-entropy loss and gradient with label smoothing", "[nn]") {
  const std::vector<double> z = {1.0, -0.5, 2.0, 0.25, 0.0, 0.0, 3.0, -1.0};  // (2, 4)
  const std::vector<int32_t> labels = {2, 1};
  for (double ls : {0.0, 0.1}) {
    std::vector<double> loss(2);
    std::vector<int32_t> correct(2);
    for (int64_t e = 0; e < 2; ++e) ops::SoftmaxXentLoss<double>{z.data(), labels.data(), 4, ls, loss.data(), correct.data()}(e);
    // Reference: −Σ t_k log softmax_k with t = (1 − ls)·onehot + ls/4.
    for (int e = 0; e < 2; ++e) {
      double lse = 0;
      for (int k = 0; k < 4; ++k) lse += std::exp(z[size_t(e * 4 + k)]);
      lse = std::log(lse);
      double want = 0;
      for (int k = 0; k < 4; ++k) want -= ((k == labels[size_t(e)] ? 1 - ls : 0) + ls / 4) * (z[size_t(e * 4 + k)] - lse);
      CHECK(loss[size_t(e)] == Approx(want).epsilon(1e-14));
    }
    CHECK(correct == std::vector<int32_t>{1, 0});
    // Gradient of the mean over a global batch of 5 against central differences.
    std::vector<double> grad(8), zz = z;
    for (int64_t i = 0; i < 8; ++i) ops::SoftmaxXentGrad<double>{z.data(), labels.data(), 4, ls, 1.0 / 5, grad.data()}(i);
    auto total = [&] {
      std::vector<double> l(2);
      for (int64_t e = 0; e < 2; ++e) ops::SoftmaxXentLoss<double>{zz.data(), labels.data(), 4, ls, l.data(), nullptr}(e);
      return (l[0] + l[1]) / 5;
    };
    std::vector<double> num(8);
    for (size_t i = 0; i < 8; ++i) {
      const double keep = zz[i];
      zz[i] = keep + 1e-6;
      const double lp = total();
      zz[i] = keep - 1e-6;
      const double lm = total();
      zz[i] = keep;
      num[i] = (lp - lm) / 2e-6;
    }
    test::require_close(grad, num, 1e-9, 1e-7, "dlogits");
  }
}

TEST_CASE("nn cpu train step equals a direct computation with l2 and clipping", "[nn]") {
  // Softmax regression on 3 features, 3 classes: one SGD step, loss averaged over a global
  // batch of 4 (this shard holds 2), L2 on the kernel, clip by global norm.
  const ModelPlan plan =
      plan_layers(json::parse(R"([{"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}])"), {1, 1, 3}, 3);
  for (double clip : {0.0, 0.05}) {
    TrainHyper h;
    h.optimizer = "sgd";
    h.l2 = 0.01;
    h.clip_norm = clip;
    h.label_smoothing = 0.2;
    auto net = make_cpu_network(plan, h);
    auto state = net->state();
    const std::vector<float> W = {0.1f, -0.2f, 0.3f, 0.4f, 0.0f, -0.1f, 0.2f, 0.2f, -0.3f}, b = {0.05f, -0.05f, 0.0f};
    for (auto& t : state) {
      if (t.name == "1.dense_1.kernel") t.data = W;
      if (t.name == "1.dense_1.bias") t.data = b;
    }
    net->load_state(state);
    const std::vector<float> x = {1.0f, 2.0f, -1.0f, 0.5f, -0.5f, 1.5f};
    const std::vector<int32_t> y = {2, 0};
    net->train_step(x.data(), y.data(), 2, 4, 0.5f, {0, 0, 0});
    // Direct computation in double.
    std::vector<double> gW(9, 0), gb(3, 0);
    double loss_sum = 0;
    for (int e = 0; e < 2; ++e) {
      double z[3], mx = -1e9, sum = 0;
      for (int u = 0; u < 3; ++u) {
        z[u] = b[size_t(u)];
        for (int i = 0; i < 3; ++i) z[u] += double(x[size_t(e * 3 + i)]) * W[size_t(i * 3 + u)];
        mx = std::max(mx, z[u]);
      }
      for (double v : z) sum += std::exp(v - mx);
      for (int u = 0; u < 3; ++u) {
        const double p = std::exp(z[u] - mx) / sum, t = (u == y[size_t(e)] ? 0.8 : 0.0) + 0.2 / 3;
        loss_sum -= t * std::log(p);
        const double dz = (p - t) / 4;
        gb[size_t(u)] += dz;
        for (int i = 0; i < 3; ++i) gW[size_t(i * 3 + u)] += dz * x[size_t(e * 3 + i)];
      }
    }
    for (int i = 0; i < 9; ++i) gW[size_t(i)] += 2 * 0.01 * W[size_t(i)];
    double norm = 0;
    for (double g : gW) norm += g * g;
    for (double g : gb) norm += g * g;
    norm = std::sqrt(norm);
    const double scale = clip > 0 && norm > clip ? clip / norm : 1.0;
    if (clip > 0) REQUIRE(scale < 0.9);  // the clip is active in this case
    std::vector<double> wantW(9), wantb(3);
    for (int i = 0; i < 9; ++i) wantW[size_t(i)] = W[size_t(i)] - 0.5 * scale * gW[size_t(i)];
    for (int i = 0; i < 3; ++i) wantb[size_t(i)] = b[size_t(i)] - 0.5 * scale * gb[size_t(i)];
    for (const auto& t : net->state()) {
      if (t.name == "1.dense_1.kernel") test::require_close(t.data, wantW, 1e-6, 1e-5, "kernel");
      if (t.name == "1.dense_1.bias") test::require_close(t.data, wantb, 1e-6, 1e-5, "bias");
      if (t.name == "step") CHECK(t.data[0] == 1.0f);
    }
    CHECK(net->last_stats().loss_sum == Approx(loss_sum).epsilon(1e-5));
    CHECK(net->last_stats().examples == 2);
  }
}

TEST_CASE("nn learning rate schedules", "[nn]") {
  LrSchedule s;
  s.lr = 0.1;
  s.steps_per_epoch = 10;
  s.epochs = 20;
  CHECK(s.at(0) == 0.1);
  CHECK(s.at(199) == 0.1);
  s.kind = "step";
  s.step_epochs = 5;
  s.step_gamma = 0.5;
  CHECK(s.at(49) == Approx(0.1));
  CHECK(s.at(50) == Approx(0.05));
  CHECK(s.at(100) == Approx(0.025));
  s.kind = "cosine";
  CHECK(s.at(0) == Approx(0.1));
  CHECK(s.at(100) == Approx(0.05));                                     // half way
  CHECK(s.at(50) == Approx(0.1 * 0.5 * (1 + std::cos(M_PI * 0.25))));  // a quarter
  s.warmup_epochs = 2;                                                   // 20 warm-up steps
  CHECK(s.at(0) == Approx(0.1 / 20));
  CHECK(s.at(9) == Approx(0.1 * 10 / 20));
  CHECK(s.at(20) == Approx(0.1));
  CHECK(s.at(110) == Approx(0.05));  // cosine runs from the end of the warm-up
  Config c;
  c.apply_override("train.schedule=step");
  c.apply_override("train.step_epochs=3");
  const LrSchedule fc = LrSchedule::from_config(c, 7);
  CHECK(fc.at(21) == Approx(1e-4));
}

TEST_CASE("nn initial weights are Keras initialisers keyed by seed", "[nn]") {
  const ModelPlan plan = plan_layers(json::parse(R"([
    {"type": "conv2d", "filters": 16, "kernel": 3}, {"type": "batchnorm"}, {"type": "flatten"},
    {"type": "lstm", "units": 8},
    {"type": "dense", "units": "classes", "activation": "softmax"}])"), {10, 10, 4}, 5);
  TrainHyper h;
  const auto w = initial_weights(plan, h);
  REQUIRE(w[0].name == "0.conv2d_1.kernel");
  // Glorot uniform: limit √(6 / (fan_in + fan_out)) = √(6 / (36 + 144)); uniform variance limit²/3.
  const double limit = std::sqrt(6.0 / (36 + 144));
  double mx = 0, sq = 0;
  for (float v : w[0].data) { mx = std::max(mx, double(std::fabs(v))); sq += double(v) * v; }
  CHECK(mx <= limit);
  CHECK(mx > 0.95 * limit);
  CHECK(sq / double(w[0].data.size()) == Approx(limit * limit / 3).epsilon(0.1));
  CHECK(std::all_of(w[1].data.begin(), w[1].data.end(), [](float v) { return v == 0; }));  // bias
  CHECK(w[2].data[0] == 1.0f);  // gamma
  CHECK(w[5].data[0] == 1.0f);  // moving variance
  // LSTM recurrent kernel (8, 32): orthonormal rows; bias 1 on the forget block only.
  const auto& R = w[7].data;
  for (int a = 0; a < 8; ++a)
    for (int b2 = 0; b2 < 8; ++b2) {
      double dot = 0;
      for (int k = 0; k < 32; ++k) dot += double(R[size_t(a * 32 + k)]) * R[size_t(b2 * 32 + k)];
      CHECK(dot == Approx(a == b2 ? 1.0 : 0.0).margin(1e-5));
    }
  CHECK(w[8].data[0] == 0.0f);
  CHECK(w[8].data[8] == 1.0f);
  CHECK(w[8].data[16] == 0.0f);
  // Same seed, same numbers; another seed, other numbers; He normal truncated at 2σ.
  CHECK(initial_weights(plan, h)[0].data == w[0].data);
  h.seed = 1;
  CHECK(initial_weights(plan, h)[0].data != w[0].data);
  h.init = "he_normal";
  const auto hn = initial_weights(plan, h)[0].data;
  const double sd = std::sqrt(2.0 / 36) / 0.87962566103423978;
  double s2 = 0;
  for (float v : hn) { CHECK(std::fabs(v) <= 2 * sd + 1e-6); s2 += double(v) * v; }
  CHECK(std::sqrt(s2 / double(hn.size())) == Approx(std::sqrt(2.0 / 36)).epsilon(0.1));
}

// The baseline plan (SPEC §1: Glorot-uniform kernels, zero biases), every kernel against its
// fans worked out by hand from the Keras model: within ±limit = √(6 / (fan_in + fan_out)), reaching
// the limit, with the mean and variance of U(−limit, limit) (0 and limit²/3) within five standard
// errors of a mean of `size` draws (limit/√(3·size) and limit²·√(4/45/size)).
TEST_CASE("nn baseline plan starts from Glorot-uniform kernels and zero biases", "[nn]") {
  const ModelPlan plan = plan_layers(Config().at("model.layers"), {128, 1206, 1}, 10);
  TrainHyper h;
  REQUIRE(h.init == "glorot_uniform");
  const auto w = initial_weights(plan, h);
  struct Kernel {
    const char* name;
    int64_t fan_in, fan_out, size;
  };
  const std::vector<Kernel> kernels = {{"conv2d_1", 2 * 2 * 1, 2 * 2 * 64, 2 * 2 * 1 * 64},
                                       {"conv2d_2", 2 * 2 * 64, 2 * 2 * 128, 2 * 2 * 64 * 128},
                                       {"conv2d_3", 2 * 2 * 128, 2 * 2 * 256, 2 * 2 * 128 * 256},
                                       {"conv2d_4", 2 * 2 * 256, 2 * 2 * 512, 2 * 2 * 256 * 512},
                                       {"dense_1", 6144, 2048, 6144 * 2048},
                                       {"dense_2", 2048, 1024, 2048 * 1024},
                                       {"dense_3", 1024, 256, 1024 * 256},
                                       {"dense_4", 256, 10, 256 * 10}};
  size_t next = 0;
  int64_t params = 0;
  for (const NamedTensor& t : w) {
    params += int64_t(t.data.size());
    const bool kernel = t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".kernel") == 0;
    const bool bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    REQUIRE((kernel || bias));
    INFO(t.name);
    if (bias) {
      CHECK(std::all_of(t.data.begin(), t.data.end(), [](float v) { return v == 0.0f; }));
      continue;
    }
    REQUIRE(next < kernels.size());
    const Kernel& k = kernels[next++];
    CHECK(t.name.find(std::string(".") + k.name + ".") != std::string::npos);
    REQUIRE(int64_t(t.data.size()) == k.size);
    const double limit = std::sqrt(6.0 / double(k.fan_in + k.fan_out)), n = double(k.size);
    double mx = 0, sum = 0, sq = 0;
    for (float v : t.data) {
      mx = std::max(mx, double(std::fabs(v)));
      sum += v;
      sq += double(v) * v;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    CHECK(mx <= limit);
    CHECK(mx > 0.95 * limit);
    CHECK(std::fabs(mean) <= 5 * limit / std::sqrt(3 * n));
    CHECK(std::fabs(var - limit * limit / 3) <= 5 * limit * limit * std::sqrt(4.0 / 45.0 / n));
  }
  CHECK(next == kernels.size());
  CHECK(params == 15637450);
}

TEST_CASE("nn small cnn learns a separable task on the cpu", "[nn]") {
  const double acc = test::train_quadrant_task("fp32");
  INFO("fp32 test accuracy " << acc);
  CHECK(acc >= 0.95);
}

TEST_CASE("nn hyper parameters from the config reject contradictions", "[nn]") {
  Config c;
  c.apply_override("train.weight_decay=0.01");
  CHECK_THROWS_WITH(TrainHyper::from_config(c), Catch::Contains("train.weight_decay") && Catch::Contains("adamw"));
  c.apply_override("train.optimizer=adamw");
  CHECK(TrainHyper::from_config(c).weight_decay == 0.01);
  c.apply_override("train.nesterov=true");
  CHECK_THROWS_WITH(TrainHyper::from_config(c), Catch::Contains("train.nesterov"));
  c.apply_override("train.optimizer=sgd");
  CHECK_THROWS_WITH(TrainHyper::from_config(c), Catch::Contains("train.momentum > 0"));
  c.apply_override("train.momentum=0.9");
  CHECK(TrainHyper::from_config(c).nesterov);
}
