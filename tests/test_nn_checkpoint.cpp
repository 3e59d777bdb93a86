// Checkpoints: bitwise save → load round trip (identical logits after restoring), the trainer's
// metadata, and clear errors for truncated, corrupt, foreign, newer-version and mismatched files.
#include <cstring>
#include <fstream>
#include <future>

#include "genrelab/common.h"
#include "genrelab/io.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/ops/philox.h"
#include "nn_fixtures.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

namespace {

ModelPlan small_plan(int filters = 6) {
  json layers = json::parse(R"([
    {"type": "conv2d", "filters": 6, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "batchnorm"}, {"type": "maxpool2d", "size": 2}, {"type": "dropout", "rate": 0.2},
    {"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}])");
  layers[0]["filters"] = filters;
  return plan_layers(layers, {6, 8, 2}, 4);
}

std::vector<float> inputs(int64_t n) {
  const PhiloxStream s(3, RngPurpose::noise, 0, 0);
  std::vector<float> x(size_t(n * 6 * 8 * 2));
  for (size_t i = 0; i < x.size(); ++i) x[i] = s.uniform(i);
  return x;
}

// `steps` training steps of `net` on 8 fixed examples, numbered from `first` (Adam's moments and
// the step counter become non-trivial state).
void train_steps(Network& net, uint64_t first, uint64_t steps) {
  const auto x = inputs(8);
  const std::vector<int32_t> y = {0, 1, 2, 3, 0, 1, 2, 3};
  for (uint64_t s = first; s < first + steps; ++s) net.train_step(x.data(), y.data(), 8, 8, 1e-2f, {0, s, 0});
}

std::string runtime_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "(no error)";
}

// A checkpoint file built by hand: prefix, `header`, padding to 64, `data`, a correct checksum
// (checkpoint_checksum: its values are checked against independent ones below).
std::string forged_checkpoint(const json& header, const std::string& data, uint32_t version = kCheckpointVersion) {
  auto put = [](std::string& out, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
  };
  const std::string text = header.dump();
  std::string out(kCheckpointMagic, 8);
  put(out, version, 4);
  put(out, 0, 4);
  put(out, text.size(), 8);
  out += text;
  out.append((64 - out.size() % 64) % 64, '\0');
  out += data;
  put(out, checkpoint_checksum(version, out.data(), out.size()), 8);
  return out;
}

}  // namespace

TEST_CASE("nn checkpoint round trip is bitwise", "[nn]") {
  const auto dir = test::temp_dir("nn-ckpt");
  const std::string path = (dir / "ckpt.bin").string();
  const ModelPlan plan = small_plan();
  for (const std::string opt : {"adam", "sgd"}) {
    TrainHyper h;
    h.optimizer = opt;
    h.momentum = opt == "sgd" ? 0.9 : 0.0;
    auto net = make_cpu_network(plan, h);
    train_steps(*net, 0, 3);
    CheckpointMeta meta;
    meta.epoch = 2;
    meta.step = 3;
    meta.rng = {{"shuffle_seed", 0}, {"augment_epoch", 2}};
    meta.extra = {{"best_test_accuracy", 0.5}};
    save_checkpoint(path, plan, h, net->state(), meta);
    // The file, byte for byte: the format built independently from its header and the tensors.
    const std::string bytes = read_file(path);
    REQUIRE(bytes.size() > 24);
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, bytes.data() + 16, 8);
    std::string data;
    for (const auto& t : net->state()) data.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
    CHECK(bytes == forged_checkpoint(json::parse(bytes.substr(24, size_t(header_bytes))), data));

    auto other = make_cpu_network(plan, h);
    const CheckpointMeta back = restore_checkpoint(path, *other);
    CHECK(back.epoch == 2);
    CHECK(back.step == 3);
    CHECK(back.rng == meta.rng);
    CHECK(back.extra == meta.extra);
    const auto a = net->state(), b = other->state();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].name == b[i].name);
      CHECK(a[i].dims == b[i].dims);
      CHECK(std::memcmp(a[i].data.data(), b[i].data.data(), a[i].data.size() * 4) == 0);
    }
    const auto x = inputs(8);
    std::vector<float> pa(8 * 4), pb(8 * 4);
    net->predict(x.data(), 8, pa.data());
    other->predict(x.data(), 8, pb.data());
    CHECK(std::memcmp(pa.data(), pb.data(), pa.size() * 4) == 0);
    // Both continue identically.
    train_steps(*net, 3, 1);
    train_steps(*other, 3, 1);
    CHECK(net->last_stats().loss_sum == other->last_stats().loss_sum);
  }
}

TEST_CASE("nn state snapshot is the state when taken, read later on another thread", "[nn]") {
  const ModelPlan plan = small_plan();
  auto net = make_cpu_network(plan, TrainHyper{});
  train_steps(*net, 0, 2);
  const auto want = net->state();
  auto snapshot = net->state_snapshot();
  train_steps(*net, 2, 2);
  const auto got = std::async(std::launch::async, snapshot).get();
  test::check_snapshot(got, want, net->state());
}

TEST_CASE("nn checkpoint errors name the file and the problem", "[nn]") {
  const auto dir = test::temp_dir("nn-ckpt-bad");
  const std::string path = (dir / "ckpt.bin").string();
  const ModelPlan plan = small_plan();
  TrainHyper h;
  auto net = make_cpu_network(plan, h);
  save_checkpoint(path, plan, h, net->state(), {});
  const std::string good = read_file(path);
  auto variant = [&](const std::string& name, const std::string& bytes) {
    const std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  };
  std::string p = variant("truncated.bin", good.substr(0, good.size() - 100));
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("truncated"));
  p = variant("short.bin", good.substr(0, 20));
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("truncated"));
  p = variant("magic.bin", "PK" + good.substr(2));
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("bad magic"));
  std::string newer = good;
  newer[8] = 3;
  p = variant("version.bin", newer);
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }),
             Catch::StartsWith(p) && Catch::Contains("version 3") && Catch::Contains("newer"));
  std::string zero = good;
  zero[8] = 0;
  p = variant("version0.bin", zero);
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("version 0") &&
                                                             Catch::Contains("versions 1 to 2") &&
                                                             !Catch::Contains("newer"));
  // A checkpoint of version 2 relabelled version 1 fails its (FNV-1a) checksum.
  std::string relabelled = good;
  relabelled[8] = 1;
  p = variant("relabelled.bin", relabelled);
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("checksum"));
  std::string flipped = good;
  flipped[good.size() - 20] ^= 0x10;
  p = variant("flipped.bin", flipped);
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("checksum"));
  CHECK_THAT(runtime_error([&] { load_checkpoint((dir / "missing.bin").string()); }), Catch::Contains("missing.bin"));

  // A model with 8 filters instead of 6: the first mismatch is layer 0's output shape.
  auto wider = make_cpu_network(small_plan(8), h);
  CHECK_THAT(runtime_error([&] { restore_checkpoint(path, *wider); }),
             Catch::StartsWith(path) && Catch::Contains("layer 0") && Catch::Contains("(6, 8, 6)") && Catch::Contains("(6, 8, 8)"));
  // Another optimizer's state: the first missing moment is named.
  TrainHyper sgd;
  sgd.optimizer = "sgd";
  auto other = make_cpu_network(plan, sgd);
  CHECK_THAT(runtime_error([&] { restore_checkpoint(path, *other); }), Catch::StartsWith(path) && Catch::Contains("sgd.velocity.0.conv2d_1.kernel"));
  // load_state names a tensor whose shape is wrong.
  auto state = net->state();
  state[0].dims = {6, 3, 3, 1};
  CHECK_THAT(runtime_error([&] { net->load_state(state); }),
             Catch::Contains("0.conv2d_1.kernel") && Catch::Contains("(6, 3, 3, 1)") && Catch::Contains("(6, 3, 3, 2)"));
}

TEST_CASE("nn checkpoint sizes from the header cannot wrap or allocate unbounded", "[nn]") {
  const auto dir = test::temp_dir("nn-ckpt-sizes");
  const std::string p = (dir / "forged.bin").string();
  auto load_error = [&](const std::string& bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
    return runtime_error([&] { load_checkpoint(p); });
  };
  auto header = [](json tensors, uint64_t data_bytes) {
    return json{{"epoch", 0}, {"step", 0}, {"tensors", std::move(tensors)}, {"data_bytes", data_bytes}};
  };
  const std::string eight(8, '\0');
  // A data size near 2^64 would wrap "header end + data + checksum" below the file size.
  CHECK_THAT(load_error(forged_checkpoint(header(json::array(), ~uint64_t(0) - 70), eight)),
             Catch::StartsWith(p) && Catch::Contains("truncated"));
  // A negative dimension: 4·(−1) bytes wraps to 2^64 − 4 and offset + bytes wraps to 0.
  json neg = json::array({{{"name", "a"}, {"dtype", "float32"}, {"shape", {-1}}, {"offset", 4}, {"bytes", ~uint64_t(0) - 3}}});
  CHECK_THAT(load_error(forged_checkpoint(header(neg, 8), eight)), Catch::StartsWith(p) && Catch::Contains("tensor 'a'"));
  // Dimensions whose product wraps modulo 2^64 to 2 elements: (2^32+1)(2^32-1) = 2^64 - 1 ≡ -1.
  const int64_t a = (int64_t(1) << 32) + 1, b = (int64_t(1) << 32) - 1;
  json big = json::array({{{"name", "b"}, {"dtype", "float32"}, {"shape", {a, b, a, b, 2}}, {"offset", 0}, {"bytes", 8}}});
  CHECK_THAT(load_error(forged_checkpoint(header(big, 8), eight)), Catch::StartsWith(p) && Catch::Contains("tensor 'b'"));
  // An offset near 2^64 wrapping offset + bytes.
  json off = json::array({{{"name", "c"}, {"dtype", "float32"}, {"shape", {1}}, {"offset", ~uint64_t(0) - 1}, {"bytes", 4}}});
  CHECK_THAT(load_error(forged_checkpoint(header(off, 8), eight)), Catch::StartsWith(p) && Catch::Contains("tensor 'c'"));
  // The same layout with sane numbers loads: two floats.
  json ok = json::array({{{"name", "d"}, {"dtype", "float32"}, {"shape", {2}}, {"offset", 0}, {"bytes", 8}}});
  std::ofstream(p, std::ios::binary) << forged_checkpoint(header(ok, 8), eight);
  const Checkpoint ck = load_checkpoint(p);
  REQUIRE(ck.tensors.size() == 1);
  CHECK(ck.tensors[0].data == std::vector<float>{0.0f, 0.0f});
}

TEST_CASE("nn checkpoint checksums match independent values: XXH3-64 (version 2), FNV-1a (version 1)", "[nn]") {
  // XXH3-64 with seed 0 from the Python xxhash package (xxh3_64_intdigest): the empty input, one
  // byte, and 1 024 bytes (past XXH3's 240-byte short-input path).
  std::string ramp;
  for (int i = 0; i < 1024; ++i) ramp.push_back(char(i % 256));
  CHECK(checkpoint_checksum(2, "", 0) == 0x2d06800538d394c2ull);
  CHECK(checkpoint_checksum(2, "a", 1) == 0xe6c632b61e964e1full);
  CHECK(checkpoint_checksum(2, ramp.data(), ramp.size()) == 0xa870f92984398d22ull);
  // Version 1: FNV-1a 64 with the offset basis version 1 was written with (1469598103934665603,
  // docs/checkpoint-format.md), computed by hand in Python.
  CHECK(checkpoint_checksum(1, "", 0) == 1469598103934665603ull);
  CHECK(checkpoint_checksum(1, "a", 1) == 0x44bd8ad473cd9906ull);
  CHECK(checkpoint_checksum(1, "foobar", 6) == 0x88fad7c0a8ff07f2ull);
  CHECK(checkpoint_checksum(1, ramp.data(), ramp.size()) == 0x88cf7baad1c48b83ull);
}

TEST_CASE("nn checkpoint of format version 1 still loads", "[nn]") {
  const auto dir = test::temp_dir("nn-ckpt-v1");
  const std::string p = (dir / "v1.bin").string();
  const std::vector<float> values = {1.5f, -2.25f, 3.0f};
  const std::string data(reinterpret_cast<const char*>(values.data()), 12);
  json header = {
      {"epoch", 4},
      {"step", 40},
      {"data_bytes", 12},
      {"tensors", json::array({{{"name", "w"}, {"dtype", "float32"}, {"shape", {3}}, {"offset", 0}, {"bytes", 12}}})}};
  std::ofstream(p, std::ios::binary) << forged_checkpoint(header, data, 1);
  const Checkpoint ck = load_checkpoint(p);
  CHECK(ck.meta.epoch == 4);
  CHECK(ck.meta.step == 40);
  REQUIRE(ck.tensors.size() == 1);
  CHECK(ck.tensors[0].data == values);
  // The same bytes with version 2's checksum in place of version 1's are corrupt.
  std::string wrong = forged_checkpoint(header, data, 2);
  wrong[8] = 1;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << wrong;
  CHECK_THAT(runtime_error([&] { load_checkpoint(p); }), Catch::StartsWith(p) && Catch::Contains("checksum"));
}

TEST_CASE("nn checkpoint reads back in Python from its documented format, checksum included", "[nn][python]") {
  const std::string py = test::python();
  if (py.empty()) {
    WARN("SKIPPED: GENRELAB_PYTHON is not set (numpy + xxhash reference)");
    return;
  }
  const auto dir = test::temp_dir("nn-ckpt-python");
  const std::string path = (dir / "ckpt.bin").string();
  const ModelPlan plan = small_plan();
  auto net = make_cpu_network(plan, TrainHyper{});
  train_steps(*net, 0, 2);
  CheckpointMeta meta;
  meta.epoch = 1;
  meta.step = 2;
  save_checkpoint(path, plan, TrainHyper{}, net->state(), meta);
  std::string out;
  const int rc = test::run_command(
      "'" + py + "' '" + test::source_dir() + "/tools/golden/checkpoint_reference.py' '" + path + "' 2>&1", &out);
  if (rc != 0 && out.find("No module named") != std::string::npos) {
    WARN("SKIPPED: numpy or xxhash is not importable by " << py << ": " << out);
    return;
  }
  INFO(out);
  REQUIRE(rc == 0);
  const json got = json::parse(out);
  CHECK(got.at("version") == kCheckpointVersion);
  CHECK(got.at("checksum_ok") == true);
  CHECK(got.at("epoch") == 1);
  CHECK(got.at("step") == 2);
  const auto want = net->state();
  REQUIRE(got.at("tensors").size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const json& t = got["tensors"][i];
    INFO(want[i].name);
    CHECK(t.at("name") == want[i].name);
    CHECK(t.at("shape").get<std::vector<int64_t>>() == want[i].dims);
    // Python's float repr round-trips: the values compare exactly.
    CHECK(t.at("values").get<std::vector<float>>() == want[i].data);
  }
  // A flipped data byte: Python's checksum disagrees too.
  std::string bytes = read_file(path);
  bytes[bytes.size() - 20] ^= 0x10;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  REQUIRE(test::run_command(
              "'" + py + "' '" + test::source_dir() + "/tools/golden/checkpoint_reference.py' '" + path + "' 2>&1",
              &out) == 0);
  CHECK(json::parse(out).at("checksum_ok") == false);
}
