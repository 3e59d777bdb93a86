// Run directories, epoch metrics and summaries (see run.h).
#include "genrelab/run.h"

#include <sndfile.h>
#include <fftw3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "genrelab/common.h"
#include "genrelab/device.h"
#include "genrelab/io.h"

namespace fs = std::filesystem;

namespace genrelab {

json to_json(const EpochMetrics& m) {
  json j = {{"epoch", m.epoch},
            {"train_loss", m.train_loss},
            {"train_accuracy", m.train_accuracy},
            {"test_loss", m.test_loss},
            {"test_accuracy", m.test_accuracy}};
  if (m.valid_loss) j["valid_loss"] = *m.valid_loss;
  if (m.valid_accuracy) j["valid_accuracy"] = *m.valid_accuracy;
  j["seconds"] = m.seconds;
  j["samples_per_second"] = m.samples_per_second;
  j["lr"] = m.lr;
  j["evaluate_seconds"] = m.evaluate_seconds;
  return j;
}

EpochMetrics metrics_from_json(const json& j, const std::string& source) {
  auto num = [&](const char* key) -> double {
    if (!j.contains(key) || !j[key].is_number()) throw RuntimeError(source + ": metrics line lacks a number '" + key + "'");
    return j[key].get<double>();
  };
  EpochMetrics m;
  m.epoch = int(num("epoch"));
  m.train_loss = num("train_loss");
  m.train_accuracy = num("train_accuracy");
  m.test_loss = num("test_loss");
  m.test_accuracy = num("test_accuracy");
  if (j.contains("valid_loss")) m.valid_loss = num("valid_loss");
  if (j.contains("valid_accuracy")) m.valid_accuracy = num("valid_accuracy");
  m.seconds = num("seconds");
  m.samples_per_second = num("samples_per_second");
  if (j.contains("lr")) m.lr = num("lr");
  if (j.contains("evaluate_seconds")) m.evaluate_seconds = num("evaluate_seconds");  // older runs lack it
  return m;
}

RunSummary summarize(const std::vector<EpochMetrics>& metrics, const ConfusionMatrix& confusion,
                     const std::vector<std::string>& classes, double wall_seconds, const std::string& device) {
  GENRELAB_CHECK(!metrics.empty(), "a summary needs at least one epoch");
  RunSummary s;
  const bool by_valid = metrics.front().valid_accuracy.has_value();
  s.best_epoch_selected_by = by_valid ? "valid" : "test";
  size_t best = 0;
  for (size_t i = 1; i < metrics.size(); ++i) {
    const double a = by_valid ? *metrics[i].valid_accuracy : metrics[i].test_accuracy;
    const double b = by_valid ? *metrics[best].valid_accuracy : metrics[best].test_accuracy;
    if (a > b) best = i;  // first epoch wins ties
  }
  s.best_epoch = metrics[best].epoch;
  s.best_test_accuracy = metrics[best].test_accuracy;
  s.final_test_accuracy = metrics.back().test_accuracy;
  s.classes = classes;
  s.confusion_matrix = confusion;
  for (const auto& row : confusion) {
    int64_t total = 0;
    for (int64_t c : row) total += c;
    const size_t r = s.per_class_accuracy.size();
    s.per_class_accuracy.push_back(total > 0 && r < row.size() ? double(row[r]) / double(total) : 0.0);
  }
  s.wall_seconds = wall_seconds;
  s.device = device;
  s.versions = version_info();
  return s;
}

json to_json(const RunSummary& s) {
  json per_class = json::object();
  for (size_t i = 0; i < s.classes.size() && i < s.per_class_accuracy.size(); ++i)
    per_class[s.classes[i]] = s.per_class_accuracy[i];
  return {{"best_test_accuracy", s.best_test_accuracy},
          {"best_epoch", s.best_epoch},
          {"best_epoch_selected_by", s.best_epoch_selected_by},
          {"final_test_accuracy", s.final_test_accuracy},
          {"per_class_accuracy", per_class},
          {"confusion_matrix", s.confusion_matrix},
          {"classes", s.classes},
          {"wall_seconds", s.wall_seconds},
          {"time_seconds",
           {{"before_training", s.time.before_training},
            {"preparing", s.time.preparing},
            {"training", s.time.training},
            {"evaluation", s.time.evaluation},
            {"saving", s.time.saving},
            {"last_checkpoint", s.time.last_checkpoint},
            {"parts",
             {{"data", s.time.data},
              {"examples", s.time.examples},
              {"network", s.time.network},
              {"tuning", s.time.tuning}}}}},
          {"device", s.device},
          {"versions", s.versions}};
}

json version_info() {
  json v = json::object();
  v["genrelab"] = GENRELAB_VERSION;
  v["libsndfile"] = std::string(sf_version_string());
  v["fftw"] = std::string(fftwf_version);
  v["cuda_backend"] = built_with_cuda();
  return v;
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

RunDir RunDir::create(const std::string& parent, const std::string& name) {
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw RuntimeError("cannot create the output folder " + parent + ": " + ec.message());
  const std::string base = (fs::path(parent) / (name + "-" + utc_timestamp())).string();
  for (int attempt = 1; attempt < 1000; ++attempt) {
    const std::string path = attempt == 1 ? base : base + "-" + std::to_string(attempt);
    // mkdir is atomic: exactly one process wins a name.
    if (::mkdir(path.c_str(), 0755) == 0) return RunDir(path);
    if (errno != EEXIST)
      throw RuntimeError("cannot create run directory " + path + ": " + std::strerror(errno) +
                         " (is the output folder writable? choose another with --out)");
  }
  throw RuntimeError("cannot find a free run directory name under " + parent);
}

RunDir RunDir::open(const std::string& path) {
  if (!fs::is_directory(path)) throw RuntimeError(path + ": not a run directory (no such folder)");
  if (!fs::exists(fs::path(path) / "config.json"))
    throw RuntimeError(path + ": not a run directory (no config.json); give the folder a 'genrelab train' run created");
  return RunDir(path);
}

std::string RunDir::file(const std::string& name) const { return (fs::path(path_) / name).string(); }

bool RunDir::has(const std::string& name) const { return fs::exists(file(name)); }

void RunDir::write_json(const std::string& name, const json& doc) const {
  write_file_atomic(file(name), doc.dump(2) + "\n");
}

RuntimeError RunDir::damaged(const std::string& name, const std::string& what) const {
  return RuntimeError(file(name) + ": " + what + "; the run directory is damaged: restore " + name +
                      " from a copy or train the run again");
}

json RunDir::read_json(const std::string& name) const {
  json doc;
  try {
    doc = json::parse(read_file(file(name)));
  } catch (const json::exception& e) {
    const std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ..."
    throw damaged(name, "not valid JSON (" + what.substr(what.find("] ") + 2) + ")");
  }
  if (!doc.is_object()) throw damaged(name, std::string("expected a JSON object, found ") + doc.type_name());
  return doc;
}

RunSplit RunDir::read_split() const {
  const json doc = read_json("split.json");
  auto strings = [&](const char* key) {
    const json* v = doc.contains(key) ? &doc[key] : nullptr;
    if (!v || !v->is_array() || !std::all_of(v->begin(), v->end(), [](const json& e) { return e.is_string(); }))
      throw damaged("split.json", std::string("'") + key + "' is missing or not a list of strings");
    return v->get<std::vector<std::string>>();
  };
  RunSplit split;
  split.classes = strings("classes");
  if (split.classes.empty()) throw damaged("split.json", "'classes' is empty");
  if (!doc.contains("class_root") || !doc["class_root"].is_string())
    throw damaged("split.json", "'class_root' is missing or not a string");
  split.class_root = doc["class_root"].get<std::string>();
  for (const char* set : {"train", "valid", "test"}) {
    split.sets[set] = strings(set);
    for (const std::string& clip : split.sets[set]) {
      const std::string cls = clip.substr(0, clip.find('/'));
      if (cls == clip || std::find(split.classes.begin(), split.classes.end(), cls) == split.classes.end())
        throw damaged("split.json",
                      std::string("'") + set + "' lists " + clip + ", not a CLASS/FILE of one of 'classes'");
    }
  }
  return split;
}

MelBandStats RunDir::read_feature_stats(int64_t n_mels) const {
  const json doc = read_json("feature_stats.json");
  auto bands = [&](const char* key) {
    const json* v = doc.contains(key) ? &doc[key] : nullptr;
    if (!v || !v->is_array() || int64_t(v->size()) != n_mels)
      throw damaged("feature_stats.json", std::string("'") + key + "' is not a list of " + std::to_string(n_mels) +
                                              " numbers (one per mel band, features.n_mels)");
    std::vector<float> out;
    for (const json& e : *v) {
      if (!e.is_number() || !std::isfinite(e.get<float>()))
        throw damaged("feature_stats.json", std::string("'") + key + "' holds " + e.dump() + ", not a finite number");
      out.push_back(e.get<float>());
    }
    return out;
  };
  MelBandStats stats{bands("mean"), bands("std")};
  // A band of zero spread is written as std 0 (it is only centred, see inverse_std); below 0 is not.
  for (float s : stats.std)
    if (s < 0) throw damaged("feature_stats.json", "'std' holds " + json(s).dump() + ", a negative spread");
  return stats;
}

void RunDir::write_metrics(const std::vector<EpochMetrics>& metrics) const {
  std::string text;
  for (const auto& m : metrics) text += to_json(m).dump() + "\n";
  write_file_atomic(file("metrics.jsonl"), text);
}

std::vector<EpochMetrics> RunDir::read_metrics() const {
  std::vector<EpochMetrics> out;
  if (!has("metrics.jsonl")) return out;
  std::istringstream in(read_file(file("metrics.jsonl")));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    const std::string where = file("metrics.jsonl") + ":" + std::to_string(n);
    json j;
    try { j = json::parse(line); } catch (const json::exception& e) { throw RuntimeError(where + ": not valid JSON"); }
    out.push_back(metrics_from_json(j, where));
  }
  return out;
}

}  // namespace genrelab
