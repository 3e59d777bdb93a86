// Synchronised batch normalisation (train.sync_batchnorm) under `mpirun` on the CPU backend: the
// batch-norm layer over two ranks (one of them with an empty shard) against the single-process
// layer on the concatenated batch, and data-parallel training of a model with batch norm against
// one process, with the same runs without synchronisation as the control that must differ.
// The mpirun tests skip (with the reason) when the binary was built without MPI or mpirun is absent.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "genrelab/config.h"
#include "genrelab/dist.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/ops/philox.h"
#include "genrelab/run.h"
#include "mpi_fixtures.h"
#include "train_fixtures.h"

namespace genrelab {
namespace {

namespace fs = std::filesystem;

// ---- the layer over two ranks -----------------------------------------------------------------

// Global batch sizes of the layer cases: 5 examples split 3 + 2, and 1 example split 1 + 0 (rank 1
// holds an empty shard and still joins both all-reduces).
const std::vector<int64_t> kLayerBatches = {5, 1};

nn::LayerDesc batchnorm_desc() {
  const json layers = json::parse(R"([{"type": "batchnorm", "momentum": 0.8, "epsilon": 0.01},
                                      {"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}])");
  return nn::plan_layers(layers, {3, 2, 4}, 3).layers[0];  // (h, w, c) = (3, 2, 4)
}

std::vector<double> values(size_t n, uint32_t salt, double lo, double hi) {
  const PhiloxStream s(77, RngPurpose::init, salt, 5);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = s.uniform_range(i, lo, hi);
  return v;
}

// A double batch-norm layer with non-trivial parameters (the same on every rank).
std::unique_ptr<nn::CpuLayer<double>> make_layer() {
  auto l = nn::make_cpu_layer<double>(batchnorm_desc());
  const int64_t C = l->desc().in.c;
  l->params()[0] = values(size_t(C), 1, 0.5, 1.5);   // gamma
  l->params()[1] = values(size_t(C), 2, -0.5, 0.5);  // beta
  l->params()[2] = values(size_t(C), 3, -0.2, 0.2);  // moving mean
  l->params()[3] = values(size_t(C), 4, 0.5, 1.5);   // moving variance
  return l;
}

// The whole batch of a case: x (n, 3, 2, 4) with a channel-dependent offset (the statistics must
// not be centred by accident) and the upstream gradient dy, the same on every rank.
std::pair<std::vector<double>, std::vector<double>> case_batch(int64_t n, const nn::LayerDesc& d) {
  const size_t count = size_t(n * d.in.size());
  std::vector<double> x = values(count, 10 + uint32_t(n), -1, 1), dy = values(count, 20 + uint32_t(n), -1, 1);
  for (size_t i = 0; i < count; ++i) x[i] += 3.0 * double(i % size_t(d.in.c));
  return {x, dy};
}

// One training step of the layer on the shard [first, first + count) of the batch; returns y, dx,
// the parameter gradients (this rank's part) and the moving statistics after the step.
json layer_step(nn::CpuLayer<double>& l, const std::vector<double>& x, const std::vector<double>& dy, int64_t first,
                int64_t count) {
  const int64_t size = l.desc().in.size();
  std::vector<double> y(size_t(count * size)), dx(size_t(count * size));
  const double* xs = count ? x.data() + first * size : nullptr;
  const double* dys = count ? dy.data() + first * size : nullptr;
  l.zero_grads();
  l.forward(xs, count ? y.data() : nullptr, count, true, {});
  l.backward(xs, nullptr, dys, count ? dx.data() : nullptr, count, {});
  return {{"y", y}, {"dx", dx}, {"dgamma", l.grads()[0]}, {"dbeta", l.grads()[1]},
          {"moving_mean", l.params()[2]}, {"moving_var", l.params()[3]}};
}

std::vector<double> doubles(const json& j) { return j.get<std::vector<double>>(); }

std::vector<double> concat(const json& a, const json& b, const char* key) {
  std::vector<double> v = doubles(a[key]);
  const std::vector<double> w = doubles(b[key]);
  v.insert(v.end(), w.begin(), w.end());
  return v;
}

std::vector<double> added(const json& a, const json& b, const char* key) {
  std::vector<double> v = doubles(a[key]);
  const std::vector<double> w = doubles(b[key]);
  for (size_t i = 0; i < v.size(); ++i) v[i] += w[i];
  return v;
}

std::string self_binary() {
  std::vector<char> buf(4096);
  const ssize_t len = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  REQUIRE(len > 0);
  return std::string(buf.data(), size_t(len));
}

// Run by the test below under `mpirun -np 2` (hidden from the normal test list): each rank runs
// every case on its shard with the MPI communicator and writes rank<r>.json to
// $GENRELAB_SYNCBN_CHILD_OUT.
TEST_CASE("sync batchnorm layer rank process", "[.][mpi-child]") {
  const char* out = std::getenv("GENRELAB_SYNCBN_CHILD_OUT");
  if (!out) {
    WARN("SKIPPED: started by the mpirun layer test only");
    return;
  }
  const dist::World world = dist::World::from_environment();
  auto comm = dist::make_communicator(world, Device::cpu, "", 60);
  REQUIRE(comm);
  json cases = json::array();
  for (int64_t n : kLayerBatches) {
    auto l = make_layer();
    l->set_communicator(comm.get());
    const auto [x, dy] = case_batch(n, l->desc());
    const dist::Shard s = dist::shard_of(n, world.rank, world.size);
    cases.push_back(layer_step(*l, x, dy, s.first, s.count));
  }
  std::ofstream(std::string(out) + "/rank" + std::to_string(world.rank) + ".json") << cases.dump();
  dist::shutdown(0);
}

TEST_CASE("sync batchnorm layer over two MPI ranks equals the single-process layer", "[dist][mpi]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("syncbn-layer");
  // This test binary under mpirun, running the hidden rank test case.
  std::string cmd = test::mpirun(2, "\"sync batchnorm layer rank process\"", "-x GENRELAB_SYNCBN_CHILD_OUT");
  const size_t at = cmd.rfind(test::genrelab_binary());
  REQUIRE(at != std::string::npos);
  cmd.replace(at, test::genrelab_binary().size(), self_binary());
  const auto r = test::run_shell("GENRELAB_SYNCBN_CHILD_OUT=" + dir.string() + " " + cmd);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  json ranks[2];
  for (int k = 0; k < 2; ++k) {
    std::ifstream in((dir / ("rank" + std::to_string(k) + ".json")).string());
    REQUIRE(in.good());
    ranks[k] = json::parse(in);
  }
  for (size_t c = 0; c < kLayerBatches.size(); ++c) {
    const int64_t n = kLayerBatches[c];
    INFO("global batch " << n);
    auto single = make_layer();
    const auto [x, dy] = case_batch(n, single->desc());
    const json want = layer_step(*single, x, dy, 0, n);
    const json& a = ranks[0][c];
    const json& b = ranks[1][c];
    test::require_close(concat(a, b, "y"), doubles(want["y"]), 1e-11, 1e-11, "y");
    test::require_close(concat(a, b, "dx"), doubles(want["dx"]), 1e-11, 1e-11, "dx");
    // Each rank keeps its own part of the parameter gradients (the network sums them once).
    test::require_close(added(a, b, "dgamma"), doubles(want["dgamma"]), 1e-11, 1e-11, "dgamma");
    test::require_close(added(a, b, "dbeta"), doubles(want["dbeta"]), 1e-11, 1e-11, "dbeta");
    for (const json* rank : {&a, &b}) {
      test::require_close(doubles((*rank)["moving_mean"]), doubles(want["moving_mean"]), 1e-12, 1e-12, "moving mean");
      test::require_close(doubles((*rank)["moving_var"]), doubles(want["moving_var"]), 1e-12, 1e-12, "moving var");
    }
  }
  CHECK(doubles(ranks[1][1]["y"]).empty());  // the empty shard
}

// ---- training with batch norm ----------------------------------------------------------------

// The tiny experiment of train_fixtures.h with batch norm after each convolution
// (layers: 0 conv2d_1, 1 batchnorm_1, 2 relu, 3 maxpool, 4 conv2d_2, 5 batchnorm_2, 6 relu,
// 7 global_avgpool, 8 dense). The convolutions have no bias, as usual before batch norm: its
// gradient is zero up to rounding, which Adam would turn into steps of size lr in any direction.
std::string batchnorm_experiment(const fs::path& dir, int epochs) {
  const std::string path = (dir / "tiny-bn.json").string();
  std::ofstream(path) << R"({
    "name": "tiny-bn",
    "dataset": {"root": ")" << test::tiny_data() << R"(", "clip_samples": 22050},
    "split": {"kind": "stratified", "test_fraction": 0.34, "seed": 1},
    "features": {"n_mels": 32, "db": true, "top_db": 80},
    "model": {"layers": [
      {"type": "conv2d", "filters": 8, "kernel": 3, "use_bias": false},
      {"type": "batchnorm", "momentum": 0.9},
      {"type": "relu"},
      {"type": "maxpool2d", "size": 2},
      {"type": "conv2d", "filters": 8, "kernel": 3, "use_bias": false},
      {"type": "batchnorm", "momentum": 0.9},
      {"type": "relu"},
      {"type": "global_avgpool"},
      {"type": "dense", "units": "classes", "activation": "softmax"}]},
    "train": {"epochs": )" << epochs << R"(, "batch_size": 8, "lr": 0.003, "seed": 5}
  })";
  return path;
}

fs::path only_run(const fs::path& out) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_directory()) dirs.push_back(e.path());
  REQUIRE(dirs.size() == 1);
  return dirs[0];
}

std::map<std::string, std::vector<float>> weights(const fs::path& run) {
  std::map<std::string, std::vector<float>> w;
  for (const auto& t : nn::load_checkpoint((run / "checkpoint.bin").string()).tensors)
    if (t.name.find('.') != std::string::npos && t.name.rfind("adam.", 0) != 0) w[t.name] = t.data;
  return w;
}

// How far run b is from run a: the largest relative difference of a per-epoch train or test loss,
// and of a weight or moving statistic (|difference| over the tensor's largest magnitude).
struct RunDistance {
  double loss = 0, weight = 0;
  std::string worst_tensor;
};

RunDistance distance(const fs::path& a, const fs::path& b) {
  RunDistance d;
  const auto ma = RunDir::open(a.string()).read_metrics(), mb = RunDir::open(b.string()).read_metrics();
  REQUIRE(ma.size() == mb.size());
  for (size_t e = 0; e < ma.size(); ++e)
    for (auto [x, y] : {std::pair{ma[e].train_loss, mb[e].train_loss}, std::pair{ma[e].test_loss, mb[e].test_loss}})
      d.loss = std::max(d.loss, std::fabs(y - x) / std::fabs(x));
  const auto wa = weights(a), wb = weights(b);
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, va] : wa) {
    const auto& vb = wb.at(name);
    REQUIRE(va.size() == vb.size());
    double scale = 1e-6, diff = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      scale = std::max(scale, double(std::fabs(va[i])));
      diff = std::max(diff, double(std::fabs(vb[i] - va[i])));
    }
    if (diff / scale > d.weight) {
      d.weight = diff / scale;
      d.worst_tensor = name;
    }
  }
  return d;
}

// World of 1 against a world of `np` ranks with synchronised batch norm and, when `control`, one
// without it (which must differ by far more than the tolerance: the comparison has teeth).
void check_sync_against_one(int np, const std::string& extra, const std::string& tag, bool control) {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir(tag);
  const std::string exp = batchnorm_experiment(dir, 2);
  const std::string common = "train " + exp + " --device cpu --quiet --set train.deterministic=true " + extra;
  REQUIRE(test::run_genrelab(common + " --out " + (dir / "w1").string()).rc == 0);
  const auto sync = test::run_shell(
      test::mpirun(np, common + " --set train.sync_batchnorm=true --out " + (dir / "sync").string()));
  INFO(sync.err);
  REQUIRE(sync.rc == 0);
  CHECK(sync.err.find("batch-norm statistics over all ranks") != std::string::npos);

  const fs::path one = only_run(dir / "w1"), synced = only_run(dir / "sync");
  const RunDistance on = distance(one, synced);
  WARN("world of " << np << " vs world of 1, sync on: losses " << on.loss << ", weights " << on.weight << " ("
                   << on.worst_tensor << ")");
  // Synchronised: the single-process model up to summation order, the same predictions.
  CHECK(on.loss < 1e-4);
  CHECK(on.weight < 1e-4);
  const RunDir r1 = RunDir::open(one.string()), rs = RunDir::open(synced.string());
  const auto m1 = r1.read_metrics(), ms = rs.read_metrics();
  for (size_t e = 0; e < m1.size(); ++e) {
    CHECK(ms[e].train_accuracy == Approx(m1[e].train_accuracy).margin(1e-12));
    CHECK(ms[e].test_accuracy == Approx(m1[e].test_accuracy).margin(1e-12));
  }
  CHECK(rs.read_json("summary.json")["confusion_matrix"] == r1.read_json("summary.json")["confusion_matrix"]);
  if (!control) return;
  const auto local = test::run_shell(test::mpirun(np, common + " --out " + (dir / "local").string()));
  INFO(local.err);
  REQUIRE(local.rc == 0);
  const RunDistance off = distance(one, only_run(dir / "local"));
  WARN("world of " << np << " vs world of 1, sync off: losses " << off.loss << ", weights " << off.weight << " ("
                   << off.worst_tensor << ")");
  // Shard statistics train another model: far outside the tolerance above.
  CHECK(off.loss > 1e-3);
  CHECK(off.weight > 1e-2);
}

TEST_CASE("two MPI ranks with synchronised batch norm train what one process trains", "[dist][mpi][train][slow]") {
  check_sync_against_one(2, "", "syncbn-two", true);
}

TEST_CASE("three MPI ranks with an empty shard and synchronised batch norm train what one process trains",
          "[dist][mpi][train][slow]") {
  // 60 training examples in global batches of 29: the last batch has 2, so rank 2's shard is empty
  // and it still joins every batch-norm all-reduce (forward and backward) and the update.
  check_sync_against_one(3, "--set train.batch_size=29", "syncbn-three", false);
}

}  // namespace
}  // namespace genrelab
