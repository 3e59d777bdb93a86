// Checkpoint files (docs/checkpoint-format.md): "GLABCKPT", u32 version, u32 flags, u64 header
// length, JSON header, zero padding to 64 bytes, float32 tensor data, u64 checksum of everything
// before it (version 2: XXH3-64, from libxxhash; version 1, still read: FNV-1a 64). All integers
// and floats little-endian.
#include "genrelab/nn/checkpoint.h"

#include <xxhash.h>

#include <cstring>
#include <memory>
#include <sstream>

#include "genrelab/common.h"
#include "genrelab/io.h"

namespace genrelab::nn {

namespace {

bool little_endian() {
  const uint32_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

template <typename U>
void put(std::string& out, U v) {
  char b[sizeof(U)];
  for (size_t i = 0; i < sizeof(U); ++i) b[i] = char((uint64_t(v) >> (8 * i)) & 0xff);
  out.append(b, sizeof(U));
}

template <typename U>
U get(const std::string& in, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(U); ++i) v |= uint64_t(uint8_t(in[off + i])) << (8 * i);
  return U(v);
}

json shape_json(const Shape3& s) { return json::array({s.h, s.w, s.c}); }

std::string dims_str(const json& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + d[i].dump();
  return s + (d.size() == 1 ? ",)" : ")");
}

constexpr size_t kPrefix = 24;  // magic 8 + version 4 + flags 4 + header length 8
// A header takes a few hundred bytes per layer and tensor: a length field above this is damage,
// not a model.
constexpr uint64_t kMaxHeader = 64ull << 20;

}  // namespace

uint64_t checkpoint_checksum(uint32_t version, const void* data, size_t n) {
  if (version != 1) return uint64_t(XXH3_64bits(data, n));
  // Version 1's FNV-1a 64, one byte at a time: about 1 GB/s (0.2 s for the baseline's 188 MB,
  // where XXH3 takes about 30 ms), from the offset basis version 1 was written with, one digit
  // short of the standard one (docs/checkpoint-format.md).
  return fnv1a64(data, n, 1469598103934665603ull);
}

json plan_to_json(const ModelPlan& plan) {
  json layers = json::array();
  for (const auto& L : plan.layers) {
    json params = json::array();
    for (const auto& p : L.params) params.push_back({{"name", p.name}, {"shape", p.dims}, {"trainable", p.trainable}});
    layers.push_back({{"index", L.index}, {"type", L.type}, {"name", L.name}, {"spec", L.spec}, {"in", shape_json(L.in)},
                      {"out", shape_json(L.out)}, {"params", params}});
  }
  return {{"input", shape_json(plan.input)}, {"classes", plan.classes}, {"param_count", plan.param_count()}, {"layers", layers}};
}

void save_checkpoint(const std::string& path, const ModelPlan& plan, const TrainHyper& hyper,
                     const std::vector<NamedTensor>& tensors, const CheckpointMeta& meta) {
  GENRELAB_CHECK(little_endian(), "checkpoints are written on little-endian hosts only");
  json header;
  header["format"] = "genrelab-checkpoint";
  header["version"] = kCheckpointVersion;
  header["model"] = plan_to_json(plan);
  header["optimizer"] = {{"name", hyper.optimizer}, {"lr", hyper.lr}, {"beta1", hyper.beta1}, {"beta2", hyper.beta2},
                         {"epsilon", hyper.epsilon}, {"momentum", hyper.momentum}, {"nesterov", hyper.nesterov},
                         {"weight_decay", hyper.weight_decay}, {"l2", hyper.l2}, {"clip_norm", hyper.clip_norm},
                         {"label_smoothing", hyper.label_smoothing}, {"init", hyper.init}, {"precision", hyper.precision},
                         {"seed", hyper.seed}, {"slots", optimizer_slots(hyper.optimizer)}};
  header["epoch"] = meta.epoch;
  header["step"] = meta.step;
  header["rng"] = meta.rng;
  header["extra"] = meta.extra;
  json list = json::array();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t size = 1;
    for (int64_t d : t.dims) size *= d;
    GENRELAB_CHECK(size == int64_t(t.data.size()), "tensor '", t.name, "' has ", t.data.size(), " values for its shape");
    list.push_back({{"name", t.name}, {"dtype", "float32"}, {"shape", t.dims}, {"offset", offset}, {"bytes", t.data.size() * 4}});
    offset += t.data.size() * 4;
  }
  header["tensors"] = list;
  header["data_bytes"] = offset;
  const std::string text = header.dump();

  std::string head;
  head.append(kCheckpointMagic, 8);
  put<uint32_t>(head, kCheckpointVersion);
  put<uint32_t>(head, 0);
  put<uint64_t>(head, text.size());
  head += text;
  head.append((64 - head.size() % 64) % 64, '\0');
  // Written straight from the tensors (no second copy of them), the checksum running alongside.
  AtomicFileWriter file(path);
  const std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> hash(XXH3_createState(), XXH3_freeState);
  GENRELAB_CHECK(hash && XXH3_64bits_reset(hash.get()) == XXH_OK, "out of host memory for the checkpoint's checksum");
  auto emit = [&](const void* data, size_t bytes) {
    XXH3_64bits_update(hash.get(), data, bytes);
    file.write(data, bytes);
  };
  emit(head.data(), head.size());
  for (const auto& t : tensors) emit(t.data.data(), t.data.size() * 4);
  std::string tail;
  put<uint64_t>(tail, uint64_t(XXH3_64bits_digest(hash.get())));
  file.write(tail.data(), tail.size());
  file.commit();
}

Checkpoint load_checkpoint(const std::string& path) {
  GENRELAB_CHECK(little_endian(), "checkpoints are read on little-endian hosts only");
  const std::string in = read_file(path);
  auto bad = [&](const std::string& why) -> RuntimeError { return RuntimeError(path + ": " + why); };
  if (in.size() < 8 || std::memcmp(in.data(), kCheckpointMagic, 8) != 0)
    throw bad("not a genrelab checkpoint (bad magic; expected the file to start with \"GLABCKPT\")");
  if (in.size() < kPrefix + 8) throw bad("truncated checkpoint (" + std::to_string(in.size()) + " bytes)");
  const uint32_t version = get<uint32_t>(in, 8);
  if (version < 1 || version > kCheckpointVersion)
    throw bad("checkpoint format version " + std::to_string(version) + ", this genrelab reads versions 1 to " +
              std::to_string(kCheckpointVersion) +
              (version > kCheckpointVersion ? " (written by a newer genrelab)" : ""));
  const uint64_t hlen = get<uint64_t>(in, 16);
  if (hlen > kMaxHeader)
    throw bad("corrupt checkpoint: its header length field reads " + std::to_string(hlen) +
              " bytes, far more than any checkpoint header (the file is damaged: restore it from a copy or train the "
              "run again)");
  if (hlen > in.size() - kPrefix) throw bad("truncated checkpoint (the header needs " + std::to_string(hlen) + " bytes)");
  Checkpoint ck;
  try {
    ck.header = json::parse(in.substr(kPrefix, size_t(hlen)));
  } catch (const json::exception& e) {
    throw bad(std::string("corrupt checkpoint header: ") + e.what());
  }
  size_t data = kPrefix + size_t(hlen);
  data += (64 - data % 64) % 64;
  try {
    const uint64_t data_bytes = ck.header.at("data_bytes").get<uint64_t>();
    // data_bytes is compared with the file size before any sum, so an absurd value cannot wrap.
    if (data_bytes > in.size() || in.size() < data + data_bytes + 8)
      throw bad("truncated checkpoint: " + std::to_string(in.size()) + " bytes, the header describes " +
                std::to_string(data + data_bytes + 8) + " (an interrupted copy?)");
    if (in.size() > data + data_bytes + 8) throw bad("corrupt checkpoint: " + std::to_string(in.size() - (data + data_bytes + 8)) + " unexpected trailing bytes");
    const uint64_t sum = get<uint64_t>(in, size_t(data + data_bytes));
    if (sum != checkpoint_checksum(version, in.data(), size_t(data + data_bytes)))
      throw bad("corrupt checkpoint: checksum mismatch");
    ck.meta.epoch = ck.header.at("epoch").get<int64_t>();
    ck.meta.step = ck.header.at("step").get<int64_t>();
    ck.meta.rng = ck.header.value("rng", json::object());
    ck.meta.extra = ck.header.value("extra", json::object());
    for (const auto& t : ck.header.at("tensors")) {
      NamedTensor nt;
      nt.name = t.at("name").get<std::string>();
      if (t.at("dtype") != "float32") throw bad("tensor '" + nt.name + "' has dtype " + t.at("dtype").dump() + " (float32 expected)");
      nt.dims = t.at("shape").get<std::vector<int64_t>>();
      const uint64_t off = t.at("offset").get<uint64_t>(), bytes = t.at("bytes").get<uint64_t>();
      // Every dimension >= 0 and the element count within the data section, checked without
      // overflow (the sizes come from the file: absurd ones must not wrap or allocate).
      uint64_t size = 1;
      for (int64_t d : nt.dims) {
        if (d < 0 || (d > 0 && size > data_bytes / 4 / uint64_t(d)))
          throw bad("corrupt checkpoint: tensor '" + nt.name + "' shape " + t.at("shape").dump() + " does not fit the data");
        size *= uint64_t(d);
      }
      if (bytes != size * 4 || off > data_bytes || bytes > data_bytes - off)
        throw bad("corrupt checkpoint: tensor '" + nt.name + "' extent");
      nt.data.resize(size_t(size));
      std::memcpy(nt.data.data(), in.data() + data + off, size_t(bytes));
      ck.tensors.push_back(std::move(nt));
    }
  } catch (const json::exception& e) {
    throw bad(std::string("corrupt checkpoint header: ") + e.what());
  }
  return ck;
}

void check_checkpoint_plan(const Checkpoint& ckpt, const ModelPlan& plan, const std::string& path) {
  const json want = plan_to_json(plan);
  const json& got = ckpt.header.value("model", json::object());
  auto fail = [&](const std::string& what) { throw RuntimeError(path + ": the checkpoint does not match this model: " + what); };
  if (got.value("input", json()) != want["input"])
    fail("input shape " + dims_str(got.value("input", json::array())) + " in the checkpoint, " + dims_str(want["input"]) + " here");
  if (got.value("classes", json()) != want["classes"])
    fail(got.value("classes", json()).dump() + " classes in the checkpoint, " + want["classes"].dump() + " here");
  const json gl = got.value("layers", json::array()), wl = want["layers"];
  for (size_t i = 0; i < std::min(gl.size(), wl.size()); ++i) {
    const json& a = gl[i];
    const json& b = wl[i];
    const std::string at = "layer " + std::to_string(i) + ": ";
    if (a.value("type", "") != b["type"]) fail(at + "the checkpoint has a " + a.value("type", "?") + ", this model a " + b["type"].get<std::string>());
    if (a.value("out", json()) != b["out"])
      fail(at + b["name"].get<std::string>() + " outputs " + dims_str(a.value("out", json::array())) + " in the checkpoint, " +
           dims_str(b["out"]) + " here");
    if (a.value("params", json()) != b["params"]) fail(at + b["name"].get<std::string>() + " parameters differ: " + a.value("params", json()).dump() + " vs " + b["params"].dump());
  }
  if (gl.size() != wl.size())
    fail(std::to_string(gl.size()) + " layers in the checkpoint, " + std::to_string(wl.size()) + " in this model");
}

CheckpointMeta restore_checkpoint(const std::string& path, Network& network) {
  const Checkpoint ck = load_checkpoint(path);
  check_checkpoint_plan(ck, network.plan(), path);
  try {
    network.load_state(ck.tensors);
  } catch (const RuntimeError& e) {
    throw RuntimeError(path + ": " + e.what());
  }
  return ck.meta;
}

}  // namespace genrelab::nn
