// Experiment config loading: `extends` chains (cycles detected), per-file validation against the
// schema (unknown keys and wrong types name the file and key, with a "did you mean"), `--set`
// overrides typed by the schema, and getters that expand ${VAR} only when a path is used.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>

#include "genrelab/common.h"
#include "genrelab/config.h"

namespace fs = std::filesystem;

namespace genrelab {

namespace {

std::vector<std::string> split_dots(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '.') { parts.push_back(cur); cur.clear(); }
    else cur += c;
  }
  parts.push_back(cur);
  return parts;
}

void set_leaf(json& doc, const std::string& path, const json& value) {
  json* node = &doc;
  const auto parts = split_dots(path);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!node->contains(parts[i]) || !(*node)[parts[i]].is_object()) (*node)[parts[i]] = json::object();
    node = &(*node)[parts[i]];
  }
  (*node)[parts.back()] = value;
}

const json* get_leaf(const json& doc, const std::string& path) {
  const json* node = &doc;
  for (const auto& p : split_dots(path)) {
    if (!node->is_object() || !node->contains(p)) return nullptr;
    node = &(*node)[p];
  }
  return node;
}

// True when `path` is a section (an object) of the schema, e.g. "augment.noise".
bool is_section(const std::string& path) {
  const std::string prefix = path + ".";
  for (const auto& k : config_schema())
    if (k.path.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

// Direct children names of a section ("" = top level).
std::vector<std::string> children_of(const std::string& section) {
  std::set<std::string> names;
  const std::string prefix = section.empty() ? "" : section + ".";
  for (const auto& k : config_schema()) {
    if (k.path.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = k.path.substr(prefix.size());
    names.insert(rest.substr(0, rest.find('.')));
  }
  if (section.empty()) names.insert("extends");
  return {names.begin(), names.end()};
}

std::string short_json(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string unknown_key_message(const std::string& path) {
  const auto dot = path.rfind('.');
  const std::string section = dot == std::string::npos ? "" : path.substr(0, dot);
  const std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
  std::string msg = "unknown key";
  std::string guess = closest_match(leaf, children_of(section));
  if (!guess.empty()) return msg + " (did you mean '" + (section.empty() ? "" : section + ".") + guess + "'?)";
  // The right name in the wrong section ("dataset.n_fft" -> "features.n_fft").
  std::string same_leaf;  // the shortest path with this leaf name
  for (const auto& k : config_schema()) {
    const auto kd = k.path.rfind('.');
    if (kd != std::string::npos && k.path.substr(kd + 1) == leaf && (same_leaf.empty() || k.path.size() < same_leaf.size()))
      same_leaf = k.path;
  }
  if (!same_leaf.empty()) return msg + " (did you mean '" + same_leaf + "'?)";
  std::vector<std::string> full;
  for (const auto& k : config_schema()) full.push_back(k.path);
  guess = closest_match(path, full);
  if (!guess.empty()) return msg + " (did you mean '" + guess + "'?)";
  return msg + " (see experiments/README.md for the keys of '" + (section.empty() ? "the top level" : section) + "')";
}

// Checks one value against its spec; returns "" when fine, else the reason.
std::string type_problem(const KeySpec& k, const json& v) {
  const std::string want = "expected " + describe_type(k) + ", got " + short_json(v);
  if (v.is_null()) return k.nullable ? "" : want;
  auto in_range = [&](double x) -> std::string {
    if (!std::isfinite(x)) return want;
    if (x < k.min || x > k.max) return want;
    return "";
  };
  switch (k.type) {
    case KeyType::boolean: return v.is_boolean() ? "" : want;
    case KeyType::integer: {
      if (v.is_number_integer()) return in_range(v.get<double>());
      if (v.is_number_float()) {
        const double x = v.get<double>();
        if (std::isfinite(x) && x == std::floor(x)) return in_range(x);
      }
      return want;
    }
    case KeyType::number:
      if (v.is_number()) return in_range(v.get<double>());
      if (v.is_string() && std::find(k.choices.begin(), k.choices.end(), v.get<std::string>()) != k.choices.end()) return "";
      return want;
    case KeyType::string: {
      if (!v.is_string()) return want;
      const std::string s = v.get<std::string>();
      if (k.folder_name && (s.empty() || s == "." || s == ".." ||
                            s.find_first_of(std::string("/\0", 2)) != std::string::npos || s.size() > kMaxFolderName))
        return want;
      if (k.choices.empty()) return "";
      if (std::find(k.choices.begin(), k.choices.end(), s) != k.choices.end()) return "";
      const std::string guess = closest_match(s, k.choices);
      return want + (guess.empty() ? "" : " (did you mean '" + guess + "'?)");
    }
    case KeyType::path: return v.is_string() ? "" : want;
    case KeyType::string_list:
      if (!v.is_array()) return want;
      for (const auto& e : v)
        if (!e.is_string()) return want;
      return "";
    case KeyType::layers:
      if (!v.is_array()) return want;
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_object()) return "layer " + std::to_string(i) + ": expected an object, got " + short_json(v[i]);
        if (!v[i].contains("type") || !v[i]["type"].is_string())
          return "layer " + std::to_string(i) + ": missing its \"type\" (e.g. \"conv2d\", \"dense\")";
      }
      return "";
  }
  return want;
}

std::string read_text_file(const std::string& file) {
  std::error_code ec;
  if (fs::is_directory(file, ec))
    throw ConfigError(file + ": is a folder, not an experiment file; give the path of a .json file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(file + ": cannot open experiment file (does it exist?)");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// The characters of a text for json::parse, recording how far the parser has read: its callback
// is not told where it is.
class TrackedChars {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackedChars(const char* p, const char** read_to) : p_(p), read_to_(read_to) {}
  reference operator*() const { return *p_; }
  TrackedChars& operator++() {
    *read_to_ = ++p_;
    return *this;
  }
  bool operator==(const TrackedChars& o) const { return p_ == o.p_; }
  bool operator!=(const TrackedChars& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  const char** read_to_;
};

// Parses `text`, refusing a key repeated in one object: JSON keeps only the last, so a repeated
// section would silently drop the keys of the first.
json parse_without_duplicates(const std::string& text, const std::string& file) {
  const char* read_to = text.data();
  auto line_at = [&](const char* p) { return std::to_string(1 + std::count(text.data(), p, '\n')); };
  struct Level {
    std::string path;                          // "model.layers[2]"; "" at the top
    bool array = false;                        // an array, else an object
    size_t index = 0;                          // arrays: the element being read
    std::map<std::string, std::string> lines;  // objects: key -> line
    std::string key;                           // objects: the key being read
  };
  std::vector<Level> levels;
  auto finish_value = [&] {
    if (!levels.empty() && levels.back().array) ++levels.back().index;
  };
  const json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        Level level;
        if (!levels.empty()) {
          const Level& up = levels.back();
          level.path = up.array ? up.path + "[" + std::to_string(up.index) + "]"
                                : (up.path.empty() ? "" : up.path + ".") + up.key;
        }
        level.array = event == json::parse_event_t::array_start;
        levels.push_back(std::move(level));
        break;
      }
      case json::parse_event_t::key: {
        Level& level = levels.back();
        level.key = parsed.get<std::string>();
        const std::string line = line_at(read_to);
        const auto [it, fresh] = level.lines.emplace(level.key, line);
        if (!fresh)
          throw ConfigError(file + ":" + line + ": " + (level.path.empty() ? "" : level.path + ".") + level.key +
                            ": duplicate key (also on line " + it->second +
                            "); only the last would count: give each key once (merge repeated sections into one)");
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        levels.pop_back();
        finish_value();
        break;
      case json::parse_event_t::value:
        finish_value();
        break;
    }
    return true;
  };
  return json::parse(TrackedChars(text.data(), &read_to), TrackedChars(text.data() + text.size(), &read_to), on_event);
}

json parse_json_file(const std::string& file) {
  const std::string text = read_text_file(file);
  try {
    return parse_without_duplicates(text, file);
  } catch (const json::parse_error& e) {
    // Byte offset -> line:column for the message.
    size_t line = 1, col = 1;
    for (size_t i = 0; i < text.size() && i + 1 < e.byte; ++i) {
      if (text[i] == '\n') { ++line; col = 1; } else ++col;
    }
    std::string what = e.what();
    const auto pos = what.find("; ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    throw ConfigError(file + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON: " + what);
  } catch (const json::exception& e) {
    // Well-formed but unrepresentable, e.g. a number beyond double's range (1e999).
    std::string what = e.what();
    const auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    throw ConfigError(file + ": invalid JSON: " + what + "; write numbers within double precision's range");
  }
}

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    const size_t d = distance(word, c);
    if (d < best_d) { best_d = d; best = c; }
  }
  return best;
}

Config::Config() {
  doc_ = json::object();
  for (const auto& k : config_schema()) {
    set_leaf(doc_, k.path, k.default_value);
    source_[k.path] = "default";
  }
}

Config Config::load(const std::string& file, const std::vector<std::string>& overrides) {
  Config c;
  c.file_ = file;
  std::vector<std::string> chain;
  c.merge_file(file, chain);
  if (c.source_["name"] == "default") c.doc_["name"] = fs::path(file).stem().string();
  for (const auto& o : overrides) c.apply_override(o);
  c.validate_all();
  return c;
}

Config Config::load_or_defaults(const std::string& file, const std::vector<std::string>& overrides) {
  if (!file.empty()) return load(file, overrides);
  Config c;
  for (const auto& o : overrides) c.apply_override(o);
  c.validate_all();
  return c;
}

Config Config::from_resolved(const json& resolved, const std::string& source) {
  if (!resolved.is_object()) throw ConfigError(source + ": expected a JSON object");
  Config c;
  std::function<void(const json&, const std::string&)> walk = [&](const json& node, const std::string& prefix) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (const KeySpec* spec = find_key_spec(path)) {
        const std::string problem = type_problem(*spec, it.value());
        if (!problem.empty()) throw ConfigError(source + ": " + path + ": " + problem);
        set_leaf(c.doc_, path, it.value());
        // A saved config holds every key: those at their default count as defaults, so that what
        // speaks only about keys an experiment set (train.cuda_graph, train.fuse_conv_pool)
        // stays quiet on --resume too.
        if (it.value() != spec->default_value) c.source_[path] = source;
      } else if (is_section(path) && it.value().is_object()) {
        walk(it.value(), path);
      } else {
        throw ConfigError(source + ": " + path + ": " + unknown_key_message(path) +
                          "; was this run written by another genrelab version?");
      }
    }
  };
  c.file_ = source;
  walk(resolved, "");
  c.validate_all();
  return c;
}

void Config::merge_file(const std::string& file, std::vector<std::string>& chain) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(fs::absolute(file), ec);
  const std::string id = ec ? file : canon.string();
  if (std::find(chain.begin(), chain.end(), id) != chain.end()) {
    std::string cycle;
    for (const auto& c : chain) cycle += c + " -> ";
    throw ConfigError(file + ": \"extends\" cycle: " + cycle + id);
  }
  if (chain.size() > 32) throw ConfigError(file + ": \"extends\" chain deeper than 32 files");
  chain.push_back(id);

  const json doc = parse_json_file(file);
  if (!doc.is_object()) throw ConfigError(file + ": an experiment file must be a JSON object, got " + short_json(doc));
  if (doc.contains("extends")) {
    const json& parent = doc["extends"];
    if (!parent.is_string() || parent.get<std::string>().empty())
      throw ConfigError(file + ": extends: expected the path of another experiment file, got " + short_json(parent));
    fs::path p = parent.get<std::string>();
    if (p.is_relative()) p = fs::path(file).parent_path() / p;
    std::error_code exists_ec;
    if (!fs::exists(p, exists_ec))
      throw ConfigError(file + ": extends: " + p.string() + " does not exist (\"extends\" takes a path relative to " +
                        (fs::path(file).parent_path().empty() ? std::string(".") : fs::path(file).parent_path().string()) +
                        ")");
    merge_file(p.string(), chain);
  }

  std::function<void(const json&, const std::string&)> walk = [&](const json& node, const std::string& prefix) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (path == "extends") continue;
      if (const KeySpec* spec = find_key_spec(path)) {
        const std::string problem = type_problem(*spec, it.value());
        if (!problem.empty()) throw ConfigError(file + ": " + path + ": " + problem);
        set_leaf(doc_, path, it.value());
        source_[path] = file;
      } else if (is_section(path)) {
        if (!it.value().is_object())
          throw ConfigError(file + ": " + path + ": expected an object (a section), got " + short_json(it.value()));
        walk(it.value(), path);
      } else {
        throw ConfigError(file + ": " + path + ": " + unknown_key_message(path));
      }
    }
  };
  walk(doc, "");
  chain.pop_back();
}

void Config::apply_override(const std::string& assignment) {
  // Values become JSON strings, which must be UTF-8 (dumping an invalid one throws much later:
  // in an error message or when the run's config.json is written).
  try {
    (void)json(assignment).dump();
  } catch (const json::type_error&) {
    throw ConfigError("--set: the assignment is not valid UTF-8 text");
  }
  const auto eq = assignment.find('=');
  const std::string key = eq == std::string::npos ? "" : strip(assignment.substr(0, eq));
  if (eq == std::string::npos || key.empty())
    throw ConfigError("--set '" + assignment + "': expected key=value (e.g. --set train.epochs=5)");
  const std::string raw = assignment.substr(eq + 1);

  // model.layers[i].key=value edits one layer.
  const auto lb = key.find('[');
  if (lb != std::string::npos) {
    const auto rb = key.find(']', lb);
    const std::string base = key.substr(0, lb);
    if (base != "model.layers" || rb == std::string::npos || rb + 1 >= key.size() || key[rb + 1] != '.')
      throw ConfigError("--set " + key + ": only model.layers[INDEX].KEY takes an index");
    size_t index = 0;
    try { index = std::stoul(key.substr(lb + 1, rb - lb - 1)); }
    catch (...) { throw ConfigError("--set " + key + ": bad layer index"); }
    json& layers = doc_["model"]["layers"];
    if (index >= layers.size())
      throw ConfigError("--set " + key + ": the model has " + std::to_string(layers.size()) + " layers (0-based index)");
    json v;
    try { v = json::parse(raw); } catch (...) { v = raw; }
    layers[index][key.substr(rb + 2)] = v;
    source_["model.layers"] = "--set";
    return;
  }

  const KeySpec* spec = find_key_spec(key);
  if (!spec) {
    if (is_section(key)) throw ConfigError("--set " + key + ": is a section; set one of its keys (e.g. " + key + "." + children_of(key).front() + ")");
    throw ConfigError("--set " + key + ": " + unknown_key_message(key));
  }
  json v;
  const std::string s = strip(raw);
  if (spec->nullable && s == "null") {
    v = nullptr;
  } else {
    switch (spec->type) {
      case KeyType::string:
      case KeyType::path: v = raw; break;
      case KeyType::string_list:
        try { v = json::parse(s); } catch (...) {
          v = json::array();
          std::stringstream ss(s);
          std::string item;
          while (std::getline(ss, item, ',')) if (!strip(item).empty()) v.push_back(strip(item));
        }
        break;
      default:
        try { v = json::parse(s); } catch (...) { v = s; }
    }
  }
  const std::string problem = type_problem(*spec, v);
  if (!problem.empty()) throw ConfigError("--set " + key + ": " + problem);
  set_leaf(doc_, key, v);
  source_[key] = "--set";
}

void Config::validate_all() const {
  auto need_le = [&](const std::string& lo, const std::string& hi) {
    if (get_number(lo) > get_number(hi))
      fail(lo, "must not exceed " + hi + " (" + short_json(at(lo)) + " > " + short_json(at(hi)) + ")");
  };
  need_le("augment.noise.min_amplitude", "augment.noise.max_amplitude");
  need_le("augment.pitch_shift.min_semitones", "augment.pitch_shift.max_semitones");
  need_le("augment.time_stretch.min_rate", "augment.time_stretch.max_rate");
  need_le("augment.time_shift.min_fraction", "augment.time_shift.max_fraction");
  need_le("augment.gain.min_db", "augment.gain.max_db");

  const int64_t n_fft = get_int("features.n_fft");
  if (auto w = get_optional_int("features.win_length"); w && *w > n_fft)
    fail("features.win_length", "must not exceed features.n_fft (" + std::to_string(*w) + " > " + std::to_string(n_fft) + ")");
  const double nyquist = get_int("dataset.sample_rate") / 2.0;
  const double fmin = get_number("features.fmin");
  const double fmax = get_optional_number("features.fmax").value_or(nyquist);
  if (fmax > nyquist + 1e-9)
    fail("features.fmax", "is above the Nyquist frequency sample_rate/2 = " + std::to_string(nyquist) + " Hz");
  if (fmin >= fmax) fail("features.fmin", "must be below fmax (" + std::to_string(fmax) + " Hz)");
  const double pw = get_number("features.power");
  if (pw != 1.0 && pw != 2.0) fail("features.power", "must be 1 (magnitude) or 2 (power)");

  if (get_number("split.test_fraction") + get_number("split.valid_fraction") >= 1.0)
    fail("split.valid_fraction", "test_fraction + valid_fraction must be below 1 (no clips would be left to train on)");
  if (get_string("split.kind") == "manifest") {
    if (at("split.train_list").get<std::string>().empty()) fail("split.kind", "is manifest but no split.train_list is given");
    if (at("split.test_list").get<std::string>().empty()) fail("split.kind", "is manifest but no split.test_list is given");
  }
}

const json& Config::at(const std::string& path) const {
  const json* v = get_leaf(doc_, path);
  if (!v) throw ConfigError("internal: config key '" + path + "' is not in the schema");
  return *v;
}

bool Config::get_bool(const std::string& path) const {
  const json& v = at(path);
  if (!v.is_boolean()) fail(path, "expected true or false, got " + short_json(v));
  return v.get<bool>();
}

int64_t Config::get_int(const std::string& path) const {
  const json& v = at(path);
  if (!v.is_number()) fail(path, "expected an integer, got " + short_json(v));
  return int64_t(std::llround(v.get<double>()));
}

std::optional<int64_t> Config::get_optional_int(const std::string& path) const {
  if (at(path).is_null()) return std::nullopt;
  return get_int(path);
}

double Config::get_number(const std::string& path) const {
  const json& v = at(path);
  if (!v.is_number()) fail(path, "expected a number, got " + short_json(v));
  return v.get<double>();
}

std::optional<double> Config::get_optional_number(const std::string& path) const {
  if (at(path).is_null()) return std::nullopt;
  return get_number(path);
}

std::string Config::get_string(const std::string& path) const {
  const json& v = at(path);
  if (!v.is_string()) fail(path, "expected a string, got " + short_json(v));
  return v.get<std::string>();
}

std::vector<std::string> Config::get_string_list(const std::string& path) const {
  const json& v = at(path);
  std::vector<std::string> out;
  if (!v.is_array()) fail(path, "expected a list of strings, got " + short_json(v));
  for (const auto& e : v) out.push_back(e.get<std::string>());
  return out;
}

std::string Config::get_path(const std::string& path) const {
  const std::string raw = get_string(path);
  std::string out;
  for (size_t i = 0; i < raw.size();) {
    if (raw[i] == '$' && i + 1 < raw.size() && raw[i + 1] == '{') {
      const auto close = raw.find('}', i + 2);
      if (close == std::string::npos) fail(path, "unterminated ${ in '" + raw + "'");
      const std::string var = raw.substr(i + 2, close - i - 2);
      const char* val = std::getenv(var.c_str());
      if (!val || !*val)
        fail(path, "environment variable " + var + " is not set; export " + var + "=/path or pass --set " + path + "=/path");
      out += val;
      i = close + 1;
    } else {
      out += raw[i++];
    }
  }
  if (out.empty()) return out;
  fs::path p = out;
  const KeySpec* spec = find_key_spec(path);
  const std::string src = source_of(path);
  if (p.is_relative() && spec && !spec->relative_to_cwd && src != "--set" && src != "default")
    p = fs::path(src).parent_path() / p;
  return p.lexically_normal().string();
}

json Config::resolved_for_saving() const {
  json out = doc_;
  for (const auto& k : config_schema()) {
    if (k.type != KeyType::path) continue;
    try {
      std::string p = get_path(k.path);
      if (!p.empty()) p = fs::absolute(p).lexically_normal().string();
      set_leaf(out, k.path, p);
    } catch (const ConfigError&) {
      // An unset ${VAR} in an unused path stays as written.
    }
  }
  return out;
}

std::string Config::source_of(const std::string& path) const {
  std::string key = path.substr(0, path.find('['));
  auto it = source_.find(key);
  while (it == source_.end() && key.find('.') != std::string::npos) {
    key = key.substr(0, key.rfind('.'));
    it = source_.find(key);
  }
  return it == source_.end() ? "default" : it->second;
}

void Config::fail(const std::string& path, const std::string& message) const {
  const std::string src = source_of(path);
  if (src != "default") throw ConfigError(src + ": " + path + ": " + message);
  // A key the experiment left at its default: the experiment's file is where to set it.
  const json* v = get_leaf(doc_, path);
  throw ConfigError(
      (file_.empty() ? std::string("default config") : file_) + ": " + path +
      (v && !v->is_null() ? " (not set: the default " + short_json(*v) + ")" : std::string(" (not set)")) + ": " +
      message);
}

}  // namespace genrelab
