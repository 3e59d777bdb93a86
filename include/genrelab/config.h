// Experiment configuration: one schema (every key, its type, default, allowed values and doc),
// JSON files that `extends` others, `--set a.b=c` overrides, and typed getters whose errors name
// the key and the file (or `--set`) that gave its value.
#pragma once

#include <nlohmann/json.hpp>

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace genrelab {

using json = nlohmann::json;

enum class KeyType {
  boolean,
  integer,
  number,       // also accepts the strings in `choices` (e.g. features.ref: 1.0 or "max")
  string,       // `choices` non-empty: one of them
  path,         // a string; ${VAR} expanded and made absolute only when used (Config::get_path)
  string_list,  // array of strings
  layers,       // model.layers: array of objects with a "type"; validated by the model builder
};

struct KeySpec {
  std::string path;          // "features.n_fft"
  KeyType type;
  json default_value;
  std::string doc;
  bool nullable = false;     // null is accepted (means "not set": e.g. fmax null = sr/2)
  std::vector<std::string> choices;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool relative_to_cwd = false;  // path keys: relative paths resolve against the working directory
                                 // (output.dir) instead of the folder of the file that set them
  bool folder_name = false;      // string keys: the value becomes part of one folder's name (the
                                 // run directory's), so it cannot hold '/' or be "." or ".."
};

// The longest value of a folder_name key: a file name's 255 bytes less the "-<UTC timestamp>-999"
// that RunDir::create appends.
constexpr size_t kMaxFolderName = 255 - 21;

// Every key of the experiment schema, in documentation order.
const std::vector<KeySpec>& config_schema();
// The spec for a leaf path ("features.n_fft"), or nullptr.
const KeySpec* find_key_spec(const std::string& path);
// A human-readable type name for messages and docs ("integer ≥ 1", "one of reflect|constant").
std::string describe_type(const KeySpec& spec);

class Config {
 public:
  // Schema defaults only.
  Config();
  // Loads `file` (following `extends`), then applies `overrides` ("a.b=c"), then validates.
  static Config load(const std::string& file, const std::vector<std::string>& overrides = {});
  // Defaults (or `file` when non-empty) plus overrides: what commands with an optional --config use.
  static Config load_or_defaults(const std::string& file, const std::vector<std::string>& overrides);
  // A resolved config as saved in a run directory (no extends; all keys present). source_of is
  // `source` for the keys away from their defaults, "default" for the others.
  static Config from_resolved(const json& resolved, const std::string& source);

  // Applies one "a.b.c=value" override, typed by the schema (JSON values allowed).
  void apply_override(const std::string& assignment);

  // The fully resolved document (every schema key present, no "extends").
  const json& resolved() const { return doc_; }

  // Typed getters. Each throws ConfigError naming the key and its source on a type mismatch.
  const json& at(const std::string& path) const;
  bool get_bool(const std::string& path) const;
  int64_t get_int(const std::string& path) const;
  double get_number(const std::string& path) const;
  std::optional<double> get_optional_number(const std::string& path) const;
  std::optional<int64_t> get_optional_int(const std::string& path) const;
  std::string get_string(const std::string& path) const;
  std::vector<std::string> get_string_list(const std::string& path) const;
  // A path value with ${VAR} expanded (an unset VAR is an error naming the key) and relative
  // paths taken relative to the folder of the file that set it (or the working directory for
  // --set and defaults). Empty stays empty.
  std::string get_path(const std::string& path) const;

  // The resolved document with every path key made absolute where it can be (for config.json in
  // a run directory, which must mean the same wherever it is read from).
  json resolved_for_saving() const;

  // Where a key's value came from: a file path, "--set", or "default". Paths inside arrays
  // ("model.layers[2].filters") report the source of the array.
  std::string source_of(const std::string& path) const;
  // Throws ConfigError "SOURCE: KEY: message"; for a key left at its default, "FILE: KEY (not set:
  // the default VALUE): message", FILE the experiment's file ("default config" without one).
  [[noreturn]] void fail(const std::string& path, const std::string& message) const;

  // The experiment's name (key "name"), or the file's stem when the file did not set one.
  std::string name() const { return doc_.value("name", std::string("experiment")); }

 private:
  void merge_file(const std::string& file, std::vector<std::string>& chain);
  void validate_all() const;

  json doc_;
  std::map<std::string, std::string> source_;  // leaf path → file | "--set"
  std::string file_;                           // the experiment's file (load, from_resolved); empty: none
};

// Closest candidate to `word` (edit distance), or "" when nothing is close: for "did you mean".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace genrelab
