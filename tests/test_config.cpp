// Experiment config: defaults, extends chains, --set typing, and the error messages for unknown
// keys, wrong types, cycles and bad --set syntax.
#include <cmath>
#include <fstream>
#include <limits>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nn/network.h"
#include "test_util.h"

using namespace genrelab;

namespace {
std::string write(const std::filesystem::path& dir, const std::string& name, const std::string& text) {
  const auto p = dir / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
  return p.string();
}
std::string config_error(const std::function<void()>& f) {
  try { f(); } catch (const ConfigError& e) { return e.what(); }
  return "(no error)";
}
}  // namespace

TEST_CASE("config defaults are the baseline settings", "[config]") {
  const Config c;
  CHECK(c.get_int("features.n_fft") == 1024);
  CHECK(c.get_int("features.hop_length") == 512);
  CHECK(c.get_int("features.n_mels") == 128);
  CHECK(c.get_number("features.power") == 2.0);
  CHECK(c.get_string("features.pad_mode") == "reflect");
  CHECK_FALSE(c.get_bool("features.db"));
  CHECK_FALSE(c.get_optional_number("features.fmax").has_value());
  CHECK(c.get_number("train.epsilon") == Approx(1e-7));
  CHECK(c.at("model.layers").size() == 17);
  CHECK(c.get_string("split.kind") == "sklearn");
  CHECK(c.get_int("split.seed") == 6);
}

TEST_CASE("config extends chains merge deeply and record sources", "[config]") {
  const auto dir = test::temp_dir("config-extends");
  write(dir, "base.json", R"({"name": "base", "features": {"n_mels": 64, "hop_length": 256}, "train": {"epochs": 3}})");
  const auto child = write(dir, "sub/child.json", R"({"extends": "../base.json", "features": {"n_mels": 80}})");
  const Config c = Config::load(child, {"train.lr=0.01"});
  CHECK(c.get_int("features.n_mels") == 80);
  CHECK(c.get_int("features.hop_length") == 256);
  CHECK(c.get_int("train.epochs") == 3);
  CHECK(c.get_number("train.lr") == 0.01);
  CHECK(c.get_string("name") == "base");
  CHECK(c.source_of("features.n_mels") == child);
  CHECK(c.source_of("train.lr") == "--set");
  CHECK(c.source_of("features.fmin") == "default");
}

TEST_CASE("config file without a name takes the file stem", "[config]") {
  const auto dir = test::temp_dir("config-name");
  const auto f = write(dir, "my-ablation.json", R"({"train": {"epochs": 2}})");
  CHECK(Config::load(f).name() == "my-ablation");
}

TEST_CASE("config errors name the file the key and a suggestion", "[config]") {
  const auto dir = test::temp_dir("config-errors");
  struct Case { std::string text; std::vector<std::string> expect; };
  const std::vector<Case> cases = {
      {R"({"features": {"n_ftt": 2048}})", {"features.n_ftt", "unknown key", "did you mean 'features.n_fft'"}},
      {R"({"dataset": {"n_fft": 2048}})", {"dataset.n_fft", "did you mean 'features.n_fft'"}},
      {R"({"featurs": {"n_fft": 2048}})", {"featurs", "did you mean 'features'"}},
      {R"({"features": {"n_fft": "big"}})", {"features.n_fft", "expected an integer", "\"big\""}},
      {R"({"features": {"n_fft": 1024.5}})", {"features.n_fft", "expected an integer"}},
      {R"({"features": {"pad_mode": "reflct"}})", {"features.pad_mode", "did you mean 'reflect'"}},
      {R"({"train": {"lr": -1}})", {"train.lr", ">= 0"}},
      {R"({"features": 3})", {"features", "expected an object"}},
      {R"({"features": {"fmax": 20000}})", {"features.fmax", "Nyquist"}},
      {R"({"augment": {"noise": {"min_amplitude": 0.5, "max_amplitude": 0.1}}})", {"augment.noise.min_amplitude", "must not exceed"}},
      {R"({"model": {"layers": [{"filters": 3}]}})", {"model.layers", "missing its \"type\""}},
      {R"({"split": {"kind": "manifest"}})", {"split.kind", "split.train_list", "manifest"}},
      {R"([1, 2])", {"must be a JSON object"}},
      {"{\"train\": {\"lr\": 0.1,}}", {":1:", "invalid JSON"}},
      // Well-formed JSON whose number overflows a double (found by fuzz_config).
      {R"({"train": {"lr": 1e999}})", {"invalid JSON", "number overflow", "1e999", "double"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto f = write(dir, "case" + std::to_string(i) + ".json", cases[i].text);
    const std::string msg = config_error([&] { Config::load(f); });
    INFO("case " << i << ": " << cases[i].text << " -> " << msg);
    CHECK(msg.find(f) != std::string::npos);
    for (const auto& e : cases[i].expect) CHECK(msg.find(e) != std::string::npos);
  }
}

// A check that fails on a key the experiment never set (e.g. training without dataset.clip_samples)
// names the experiment's file, where the key is to be set, and says the value is the default.
TEST_CASE("config errors about a key left at its default name the experiment's file", "[config]") {
  const auto dir = test::temp_dir("config-default-key");
  const auto f = write(dir, "exp.json", R"({"train": {"epochs": 3}})");
  const Config c = Config::load(f);
  CHECK(config_error([&] { c.fail("train.epochs", "too few"); }) == f + ": train.epochs: too few");
  CHECK(config_error([&] { c.fail("features.n_mels", "too many"); }) ==
        f + ": features.n_mels (not set: the default 128): too many");
  CHECK(config_error([&] { c.fail("dataset.clip_samples", "needed"); }) ==
        f + ": dataset.clip_samples (not set): needed");
  Config overridden = Config::load(f);
  overridden.apply_override("features.n_mels=64");
  CHECK(config_error([&] { overridden.fail("features.n_mels", "x"); }) == "--set: features.n_mels: x");
  // Without an experiment file (a command's built-in defaults) there is no file to name.
  CHECK(config_error([] { Config().fail("features.n_mels", "x"); }) ==
        "default config: features.n_mels (not set: the default 128): x");
}

TEST_CASE("config refuses a run name that cannot be one folder name", "[config]") {
  const auto dir = test::temp_dir("config-run-name");
  // The run directory is <out>/<name>-<timestamp>: these would leave --out, ignore it, hide the
  // name or fail only when the folder is made. 235 bytes: over a file name's 255 with the suffix.
  const std::vector<std::string> bad = {
      "", ".", "..", "../../escape", "/abs/path", "a/b", "a/", std::string("a\0b", 3), std::string(235, 'x')};
  for (size_t i = 0; i < bad.size(); ++i) {
    INFO("name " << json(bad[i]).dump());
    const auto f = write(dir, "case" + std::to_string(i) + ".json", json{{"name", bad[i]}}.dump());
    CHECK(config_error([&] { Config::load(f); }).find(f + ": name: expected a folder name") == 0);
    // Checked as the file is read, as every key is: a --set that replaces it does not excuse it.
    CHECK(config_error([&] { Config::load(f, {"name=ok"}); }).find(f + ": name: expected a folder name") == 0);
    const std::string set = config_error([&] { Config::load_or_defaults("", {"name=" + bad[i]}); });
    CHECK(set.find("--set name: expected a folder name") == 0);
  }
  for (const std::string& good :
       std::vector<std::string>{"my run v2", "lr=3e-4,bs.32", "...", ".hidden", std::string(234, 'x')}) {
    INFO("name " << good);
    CHECK(Config::load_or_defaults("", {"name=" + good}).name() == good);
  }
}

TEST_CASE("config refuses duplicate keys, naming the file, line and key path", "[config]") {
  const auto dir = test::temp_dir("config-duplicates");
  struct Case {
    std::string text, error;
  };
  const std::vector<Case> cases = {
      // A repeated section would have dropped the first's train.epochs.
      {"{\"train\": {\"epochs\": 3},\n \"train\": {\"lr\": 0.5}}", ":2: train: duplicate key (also on line 1)"},
      {"{\"train\": {\"epochs\": 3,\n\n  \"epochs\": 4}}", ":3: train.epochs: duplicate key (also on line 1)"},
      {"{\"model\": {\"layers\": [{\"type\": \"flatten\"},\n  {\"type\": \"dense\", \"units\": 4,\n   \"units\": 5}]}}",
       ":3: model.layers[1].units: duplicate key (also on line 2)"},
      {"{\"augment\": {\"noise\": {\"p\": 0.5}, \"gain\": {\"p\": 0.5}, \"noise\": {}}}",
       ":1: augment.noise: duplicate key (also on line 1)"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto f = write(dir, "case" + std::to_string(i) + ".json", cases[i].text);
    INFO(cases[i].text);
    CHECK(config_error([&] { Config::load(f); }).find(f + cases[i].error + "; only the last would count") == 0);
  }
  // In a file that "extends" pulls in.
  const auto parent = write(dir, "parent.json", "{\"name\": \"a\",\n \"name\": \"b\"}");
  const auto child = write(dir, "child.json", R"({"extends": "parent.json"})");
  CHECK(config_error([&] { Config::load(child); }).find(parent + ":2: name: duplicate key (also on line 1)") == 0);
  // The same key in different objects is no duplicate.
  const auto ok = write(dir, "ok.json", R"({"train": {"seed": 1}, "split": {"seed": 2},
      "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": "classes"}]}})");
  const Config c = Config::load(ok);
  CHECK(c.get_int("train.seed") == 1);
  CHECK(c.get_int("split.seed") == 2);
  CHECK(c.at("model.layers").size() == 2);
}

TEST_CASE("config extends cycles and missing parents are reported", "[config]") {
  const auto dir = test::temp_dir("config-cycle");
  const auto a = write(dir, "a.json", R"({"extends": "b.json"})");
  write(dir, "b.json", R"({"extends": "a.json"})");
  const std::string msg = config_error([&] { Config::load(a); });
  CHECK(msg.find("cycle") != std::string::npos);
  const auto c = write(dir, "c.json", R"({"extends": "missing.json"})");
  CHECK(config_error([&] { Config::load(c); }).find("missing.json") != std::string::npos);
  CHECK(config_error([&] { Config::load((dir / "nope.json").string()); }).find("cannot open") != std::string::npos);
}

TEST_CASE("set overrides are typed by the schema", "[config]") {
  Config c;
  c.apply_override("features.n_mels=64");
  c.apply_override("features.fmax=8000");
  c.apply_override("features.ref=max");
  c.apply_override("dataset.root=/data/1234");
  c.apply_override("dataset.classes=blues,jazz");
  c.apply_override("train.clip_norm=null");
  c.apply_override("features.center=false");
  c.apply_override("model.layers[0].filters=32");
  CHECK(c.get_int("features.n_mels") == 64);
  CHECK(c.get_number("features.fmax") == 8000);
  CHECK(c.get_string("features.ref") == "max");
  CHECK(c.get_string("dataset.root") == "/data/1234");  // a string key keeps digits as text
  CHECK(c.get_string_list("dataset.classes") == std::vector<std::string>{"blues", "jazz"});
  CHECK_FALSE(c.get_bool("features.center"));
  CHECK(c.at("model.layers")[0]["filters"] == 32);

  CHECK(config_error([&] { c.apply_override("features.n_mels"); }).find("expected key=value") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("=3"); }).find("expected key=value") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("features.n_mel=3"); }).find("did you mean 'features.n_mels'") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("features.n_mels=many"); }).find("expected an integer") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("features.center=yes"); }).find("true or false") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("features=3"); }).find("is a section") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("model.layers[99].filters=3"); }).find("17 layers") != std::string::npos);
  // Bytes that are not UTF-8 (a Latin-1 "é", a lone continuation byte) are refused up front: as a
  // JSON string they would make every later dump (messages, the run's config.json) throw.
  CHECK(config_error([&] { c.apply_override("features.n_mels=\xe9"); }).find("not valid UTF-8") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("dataset.root=/data/caf\xe9"); }).find("not valid UTF-8") != std::string::npos);
  CHECK(config_error([&] { c.apply_override("dataset.classes=a,\x80"); }).find("not valid UTF-8") != std::string::npos);
  c.apply_override("dataset.root=/data/caf\xc3\xa9");  // UTF-8 "café" is fine
  CHECK(c.get_string("dataset.root") == "/data/caf\xc3\xa9");
  CHECK(c.resolved_for_saving().dump().find("caf\xc3\xa9") != std::string::npos);
}

TEST_CASE("cuDNN's search probes every candidate by default, and a benchmark limit refuses a negative count and Find",
          "[config]") {
  const nn::TrainHyper defaults = nn::TrainHyper::from_config(Config::load_or_defaults("", {}));
  CHECK(defaults.cudnn_search == "probe");
  CHECK(defaults.cudnn_benchmark_limit == 0);
  CHECK(nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.cudnn_search=find"})).cudnn_search == "find");
  CHECK(config_error([] { Config::load_or_defaults("", {"train.cudnn_search=fastest"}); }).find("train.cudnn_search") !=
        std::string::npos);
  const std::string with_find = config_error([] {
    nn::TrainHyper::from_config(
        Config::load_or_defaults("", {"train.cudnn_search=find", "train.cudnn_benchmark_limit=2"}));
  });
  CHECK(with_find.find("train.cudnn_benchmark_limit") != std::string::npos);
  CHECK(with_find.find("train.cudnn_search=probe") != std::string::npos);
  CHECK(nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.cudnn_benchmark_limit=3"}))
            .cudnn_benchmark_limit == 3);
  const std::string e = config_error([] { Config::load_or_defaults("", {"train.cudnn_benchmark_limit=-1"}); });
  CHECK(e.find("train.cudnn_benchmark_limit") != std::string::npos);
  CHECK(config_error([] {
          Config::load_or_defaults("", {"train.cudnn_benchmark_limit=2.5"});
        }).find("expected an integer") != std::string::npos);
}

TEST_CASE("paths expand ${VAR} only when used", "[config]") {
  const auto dir = test::temp_dir("config-env");
  const auto f = write(dir, "exp.json", R"({"dataset": {"root": "${GENRELAB_TEST_UNSET_VAR}/gtzan"}, "split": {"train_list": "lists/train.txt", "kind": "manifest", "test_list": "/abs/test.txt"}})");
  ::unsetenv("GENRELAB_TEST_UNSET_VAR");
  const Config c = Config::load(f);  // loading alone does not need the variable
  const std::string msg = config_error([&] { c.get_path("dataset.root"); });
  CHECK(msg.find("GENRELAB_TEST_UNSET_VAR is not set") != std::string::npos);
  CHECK(msg.find("dataset.root") != std::string::npos);
  ::setenv("GENRELAB_TEST_UNSET_VAR", "/srv/music", 1);
  CHECK(c.get_path("dataset.root") == "/srv/music/gtzan");
  ::unsetenv("GENRELAB_TEST_UNSET_VAR");
  // Relative paths in a file resolve against that file's folder; absolute ones stay.
  CHECK(c.get_path("split.train_list") == (dir / "lists/train.txt").string());
  CHECK(c.get_path("split.test_list") == "/abs/test.txt");
  CHECK(c.get_path("output.dir") == "runs");  // output.dir: relative to the working directory
}

TEST_CASE("a saved resolved config loads back to the same document", "[config]") {
  Config c;
  c.apply_override("features.n_mels=40");
  const json saved = c.resolved_for_saving();
  const Config back = Config::from_resolved(saved, "run/config.json");
  CHECK(back.resolved() == saved);
  CHECK(back.source_of("features.n_mels") == "run/config.json");
  CHECK(back.source_of("train.fuse_conv_pool") == "default");  // saved at its default
  json bad = saved;
  bad["features"]["colour"] = "blue";
  CHECK(config_error([&] { Config::from_resolved(bad, "run/config.json"); }).find("features.colour") != std::string::npos);
}

TEST_CASE("config type descriptions write bounds as a file would", "[config]") {
  // Whole numbers in full, fractions in the shortest text that reads back exactly (the default
  // stream precision wrote 4294967295 as 4.29497e+09 and 2^-14 as 6.10352e-05).
  auto described = [](KeyType type, double lo, double hi) {
    KeySpec k{"a.b", type, json(0), "", false, {}, lo, hi};
    return describe_type(k);
  };
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(described(KeyType::integer, 0, 4294967295.0) == "an integer in [0, 4294967295]");
  CHECK(described(KeyType::integer, 1, 1 << 20) == "an integer in [1, 1048576]");
  CHECK(described(KeyType::number, std::ldexp(1.0, -14), 1e30) == "a number in [6.103515625e-05, 1e+30]");
  CHECK(described(KeyType::number, 0.1, inf) == "a number >= 0.1");
  CHECK(described(KeyType::number, -inf, 0.999) == "a number <= 0.999");
  // The schema's own keys, as `config keys` and experiments/README.md show them.
  CHECK(describe_type(*find_key_spec("split.seed")) == "an integer in [0, 4294967295]");
}
