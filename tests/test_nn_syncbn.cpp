// Synchronised batch normalisation without MPI: the GPU backend's sequence of shared functors
// (ops/batchnorm.h: local sums from per-shard mean and variance, the global statistics, the
// normalisation, the local gradient sums and dx), run here on simulated shards whose sums are
// added by hand, against the single-process CPU layer on the concatenated batch; and the CPU
// layer's synchronised path over a one-rank communicator against its ordinary path.
#include <cmath>

#include "genrelab/dist.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/ops/batchnorm.h"
#include "genrelab/ops/philox.h"
#include "genrelab/parallel_for.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

namespace {

LayerDesc bn_desc(Shape3 in) {
  const json layers = json::parse(R"([{"type": "batchnorm", "momentum": 0.7, "epsilon": 0.005},
                                      {"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}])");
  return plan_layers(layers, in, 3).layers[0];
}

std::vector<double> values(size_t n, uint32_t salt, double lo, double hi) {
  const PhiloxStream s(91, RngPurpose::init, salt, 3);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = s.uniform_range(i, lo, hi);
  return v;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// A communicator of one rank: every collective leaves the data as it is.
class SelfCommunicator final : public dist::Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }
  void all_reduce_sum(void*, int64_t, dist::DType, void*) override { ++calls; }
  void broadcast(void*, int64_t, int, void*) override {}
  void all_reduce_sum_host(void*, int64_t, dist::DType) override { ++calls; }
  void broadcast_host(void*, int64_t, int) override {}
  void barrier() override {}
  int calls = 0;
};

TEST_CASE("nn sync batchnorm gpu functor sequence over simulated shards equals the single-process layer", "[nn]") {
  const LayerDesc d = bn_desc({2, 3, 5});
  const int64_t C = d.in.c, hw = d.in.h * d.in.w, size = d.in.size();
  const std::vector<int64_t> shards = {3, 0, 2, 1};  // examples per simulated rank (one empty)
  int64_t n = 0;
  for (int64_t s : shards) n += s;
  // x with channel offsets and spreads, dy random: float data, as on the GPU.
  std::vector<double> xd = values(size_t(n * size), 1, -1, 1);
  for (size_t i = 0; i < xd.size(); ++i) xd[i] = xd[i] * (1 + double(i % size_t(C))) + 2.0 * double(i % size_t(C));
  const std::vector<float> x = cast<float>(xd), dy = cast<float>(values(size_t(n * size), 2, -1, 1));
  const std::vector<double> gamma = values(size_t(C), 3, 0.5, 1.5), beta = values(size_t(C), 4, -0.5, 0.5),
                            mm0 = values(size_t(C), 5, -0.3, 0.3), mv0 = values(size_t(C), 6, 0.5, 1.5);

  // Reference: the CPU layer in double on the whole batch (inputs are the float values).
  auto ref = make_cpu_layer<double>(d);
  ref->params() = {gamma, beta, mm0, mv0};
  const std::vector<double> xr(x.begin(), x.end()), dyr(dy.begin(), dy.end());
  std::vector<double> y_ref(xr.size()), dx_ref(xr.size());
  ref->forward(xr.data(), y_ref.data(), n, true, {});
  ref->zero_grads();
  ref->backward(xr.data(), nullptr, dyr.data(), dx_ref.data(), n, {});

  // The GPU path, one simulated rank at a time; the all-reduces are sums over the shards.
  const std::vector<float> gf = cast<float>(gamma), bf = cast<float>(beta);
  std::vector<double> sums(size_t(1 + 2 * C), 0.0);
  for (int64_t s = 0, first = 0; s < int64_t(shards.size()); first += shards[size_t(s)], ++s) {
    const int64_t m = shards[size_t(s)] * hw;
    // This shard's mean and unbiased variance, as cuDNN's forward training writes them.
    std::vector<float> mean(size_t(C), 0), var(size_t(C), 0);
    for (int64_t c = 0; c < C && m > 0; ++c) {
      double a = 0, q = 0;
      for (int64_t r = 0; r < m; ++r) a += xr[size_t((first * hw + r) * C + c)];
      a /= double(m);
      for (int64_t r = 0; r < m; ++r) q += std::pow(xr[size_t((first * hw + r) * C + c)] - a, 2);
      mean[size_t(c)] = float(a);
      var[size_t(c)] = m > 1 ? float(q / double(m - 1)) : 0.0f;
    }
    std::vector<double> local(sums.size());
    cpu_for_1d(1 + 2 * C, ops::BatchNormLocalSums<double>{mean.data(), var.data(), m, C, local.data()});
    for (size_t i = 0; i < sums.size(); ++i) sums[i] += local[i];
  }
  CHECK(sums[0] == double(n * hw));
  // Every rank then computes the same statistics and moving statistics from the summed values.
  std::vector<float> mm = cast<float>(mm0), mv = cast<float>(mv0), scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  std::vector<double> stats(size_t(1 + 2 * C));
  cpu_for_1d(C, ops::BatchNormGlobalStats<float, double>{sums.data(), gf.data(), bf.data(), mm.data(), mv.data(),
                                                         stats.data(), scale.data(), shift.data(), C, 0.7, 0.005});
  test::require_close(mm, ref->params()[2], 1e-6, 1e-6, "moving mean");
  test::require_close(mv, ref->params()[3], 1e-6, 1e-6, "moving var");
  std::vector<float> y(x.size()), terms(x.size());
  cpu_for_1d(n * size, ops::BatchNormApply<float>{x.data(), scale.data(), shift.data(), y.data(), C});
  test::require_close(y, y_ref, 2e-5, 2e-5, "y");

  // Backward: per shard Σ dy and Σ dy·x̂ (column sums of the terms, as cuBLAS takes them), the
  // local parameter gradients, then dx from the summed values.
  cpu_for_1d(n * size, ops::BatchNormDyXhat<float, double>{x.data(), dy.data(), stats.data(), terms.data(), C});
  std::vector<double> grad_sums(size_t(2 * C), 0.0);
  std::vector<float> dgamma(size_t(C), 0.0f), dbeta(size_t(C), 0.0f);
  for (int64_t s = 0, first = 0; s < int64_t(shards.size()); first += shards[size_t(s)], ++s) {
    const int64_t m = shards[size_t(s)] * hw;
    std::vector<float> colsum(size_t(2 * C), 0.0f);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < C; ++c) {
        colsum[size_t(c)] += dy[size_t((first * hw + r) * C + c)];
        colsum[size_t(C + c)] += terms[size_t((first * hw + r) * C + c)];
      }
    std::vector<float> g_rank(size_t(C), 0.0f), b_rank(size_t(C), 0.0f);  // this rank's gradients
    std::vector<double> local(size_t(2 * C));
    cpu_for_1d(2 * C, ops::BatchNormLocalGradSums<double>{m ? colsum.data() : nullptr, g_rank.data(), b_rank.data(),
                                                          local.data(), C});
    for (int64_t c = 0; c < C; ++c) {  // the network's gradient all-reduce
      dgamma[size_t(c)] += g_rank[size_t(c)];
      dbeta[size_t(c)] += b_rank[size_t(c)];
    }
    for (size_t i = 0; i < grad_sums.size(); ++i) grad_sums[i] += local[i];  // the layer's all-reduce
  }
  test::require_close(dgamma, ref->grads()[0], 2e-5, 2e-5, "dgamma");
  test::require_close(dbeta, ref->grads()[1], 2e-5, 2e-5, "dbeta");
  std::vector<float> dx(x.size());
  cpu_for_1d(n * size, ops::BatchNormBackwardDx<float, double>{x.data(), dy.data(), gf.data(), stats.data(),
                                                               grad_sums.data(), dx.data(), C});
  test::require_close(dx, dx_ref, 2e-5, 2e-5, "dx");
}

TEST_CASE("nn sync batchnorm over a one-rank communicator equals the local layer", "[nn]") {
  // By hand: one channel, values 1 2 3 6 (mean 3, biased variance 3.5), γ = 2, β = 1, ε = 0.005.
  const LayerDesc d = bn_desc({1, 1, 1});
  auto l = make_cpu_layer<double>(d);
  SelfCommunicator self;
  l->set_communicator(&self);
  l->params() = {{2.0}, {1.0}, {0.0}, {1.0}};
  const std::vector<double> x = {1, 2, 3, 6}, dy = {1, 0, 0, -1};
  std::vector<double> y(4), dx(4);
  l->forward(x.data(), y.data(), 4, true, {});
  const double inv = 1 / std::sqrt(3.5 + 0.005);
  std::vector<double> want(4);
  for (size_t i = 0; i < 4; ++i) want[i] = 2 * (x[i] - 3) * inv + 1;
  test::require_close(y, want, 1e-12, 1e-12, "y");
  CHECK(l->params()[2][0] == Approx(0.3 * 3).epsilon(1e-12));        // moving mean: 0.7·0 + 0.3·3
  CHECK(l->params()[3][0] == Approx(0.7 + 0.3 * 3.5).epsilon(1e-12));  // moving variance (biased)
  l->zero_grads();
  l->backward(x.data(), nullptr, dy.data(), dx.data(), 4, {});
  CHECK(self.calls == 2);  // one all-reduce forward, one backward
  // Σ dy = 0, Σ dy·x̂ = (−2 − 3)·inv; dx = γ·inv/4·(4·dy − 0 − x̂·Σ dy·x̂).
  const double sdx = -5 * inv;
  CHECK(l->grads()[0][0] == Approx(sdx).epsilon(1e-12));
  CHECK(l->grads()[1][0] == Approx(0.0).margin(1e-12));
  for (size_t i = 0; i < 4; ++i)
    CHECK(dx[i] == Approx(2 * inv / 4 * (4 * dy[i] - (x[i] - 3) * inv * sdx)).epsilon(1e-12));
  // The same step on the ordinary layer gives the same values.
  auto plain = make_cpu_layer<double>(d);
  plain->params() = {{2.0}, {1.0}, {0.0}, {1.0}};
  std::vector<double> y2(4), dx2(4);
  plain->forward(x.data(), y2.data(), 4, true, {});
  plain->zero_grads();
  plain->backward(x.data(), nullptr, dy.data(), dx2.data(), 4, {});
  test::require_close(y, y2, 1e-12, 1e-12, "y vs local");
  test::require_close(dx, dx2, 1e-12, 1e-12, "dx vs local");
}

}  // namespace
