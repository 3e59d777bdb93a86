// Splits: numpy's legacy MT19937 permutation (for sklearn parity), stratified and manifest splits.
#include "genrelab/split.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "genrelab/config.h"

namespace genrelab {

// ---- numpy legacy RandomState ----------------------------------------------------------------

LegacyRandomState::LegacyRandomState(uint32_t seed) {
  // numpy mt19937_seed: Knuth's generator from the MT reference implementation.
  for (int i = 0; i < 624; ++i) {
    key_[i] = seed;
    seed = uint32_t(1812433253u * (seed ^ (seed >> 30)) + uint32_t(i) + 1u);
  }
  pos_ = 624;
}

void LegacyRandomState::generate() {
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrixA = 0x9908b0dfu;
  constexpr int N = 624, M = 397;
  int i = 0;
  uint32_t y;
  for (; i < N - M; ++i) {
    y = (key_[i] & kUpper) | (key_[i + 1] & kLower);
    key_[i] = key_[i + M] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  }
  for (; i < N - 1; ++i) {
    y = (key_[i] & kUpper) | (key_[i + 1] & kLower);
    key_[i] = key_[i + (M - N)] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  }
  y = (key_[N - 1] & kUpper) | (key_[0] & kLower);
  key_[N - 1] = key_[M - 1] ^ (y >> 1) ^ (-(y & 1u) & kMatrixA);
  pos_ = 0;
}

uint32_t LegacyRandomState::next_uint32() {
  if (pos_ == 624) generate();
  uint32_t y = key_[pos_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

uint64_t LegacyRandomState::interval(uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;  // smallest all-ones mask >= max
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t value;
  if (max <= 0xffffffffull) {
    while ((value = (next_uint32() & mask)) > max) {
    }
  } else {
    while ((value = (((uint64_t(next_uint32()) << 32) | next_uint32()) & mask)) > max) {
    }
  }
  return value;
}

std::vector<int64_t> LegacyRandomState::permutation(int64_t n) {
  std::vector<int64_t> a(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) a[size_t(i)] = i;
  for (int64_t i = n - 1; i >= 1; --i) {
    const int64_t j = int64_t(interval(uint64_t(i)));
    std::swap(a[size_t(i)], a[size_t(j)]);
  }
  return a;
}

// ---- sklearn ----------------------------------------------------------------------------------

int64_t sklearn_test_count(int64_t n, double fraction) { return int64_t(std::ceil(fraction * double(n))); }

TrainTest sklearn_train_test_split(int64_t n, int64_t n_test, uint32_t seed) {
  GENRELAB_CHECK(n_test >= 0 && n_test <= n, "n_test ", n_test, " out of range for n = ", n);
  const std::vector<int64_t> p = LegacyRandomState(seed).permutation(n);
  TrainTest out;
  out.test.assign(p.begin(), p.begin() + n_test);
  out.train.assign(p.begin() + n_test, p.end());
  return out;
}

SplitOptions split_options_from_config(const Config& config) {
  SplitOptions o;
  o.kind = config.get_string("split.kind");
  o.test_fraction = config.get_number("split.test_fraction");
  o.valid_fraction = config.get_number("split.valid_fraction");
  o.seed = uint32_t(config.get_int("split.seed"));
  if (o.kind == "manifest") {
    o.train_list = config.get_path("split.train_list");
    o.valid_list = config.get_path("split.valid_list");
    o.test_list = config.get_path("split.test_list");
  }
  return o;
}

namespace {

std::string strip_extension(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return name;
  return name.substr(0, dot);
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

Split sklearn_split(int64_t n, const SplitOptions& o) {
  const int64_t n_test = sklearn_test_count(n, o.test_fraction);
  const int64_t n_valid = o.valid_fraction > 0 ? sklearn_test_count(n, o.valid_fraction) : 0;
  if (n - n_test - n_valid < 1)
    throw ConfigError("split: with " + std::to_string(n) + " clips, test_fraction " + std::to_string(o.test_fraction) +
                      " and valid_fraction " + std::to_string(o.valid_fraction) +
                      " leave no training clip; lower the fractions");
  TrainTest first = sklearn_train_test_split(n, n_test, o.seed);
  Split s;
  s.test = std::move(first.test);
  if (n_valid == 0) {
    s.train = std::move(first.train);
    return s;
  }
  const TrainTest second = sklearn_train_test_split(int64_t(first.train.size()), n_valid, o.seed);
  for (int64_t i : second.test) s.valid.push_back(first.train[size_t(i)]);
  for (int64_t i : second.train) s.train.push_back(first.train[size_t(i)]);
  return s;
}

Split stratified_split(const std::vector<Clip>& clips, int n_classes, const SplitOptions& o) {
  std::vector<std::vector<int64_t>> members(size_t(std::max(n_classes, 0)));
  for (size_t i = 0; i < clips.size(); ++i) {
    GENRELAB_CHECK(clips[i].label >= 0 && clips[i].label < n_classes, "clip label out of range");
    members[size_t(clips[i].label)].push_back(int64_t(i));
  }
  LegacyRandomState rng(o.seed);
  Split s;
  for (const auto& m : members) {
    const int64_t n = int64_t(m.size());
    if (n == 0) continue;
    const std::vector<int64_t> p = rng.permutation(n);
    int64_t n_test = sklearn_test_count(n, o.test_fraction);
    int64_t n_valid = o.valid_fraction > 0 ? sklearn_test_count(n, o.valid_fraction) : 0;
    // Keep at least one training clip per class: shrink valid first, then test.
    while (n_test + n_valid > n - 1 && n_valid > 0) --n_valid;
    while (n_test + n_valid > n - 1 && n_test > 0) --n_test;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t idx = m[size_t(p[size_t(k)])];
      (k < n_test ? s.test : k < n_test + n_valid ? s.valid : s.train).push_back(idx);
    }
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.valid.begin(), s.valid.end());
  std::sort(s.test.begin(), s.test.end());
  if (s.train.empty()) throw ConfigError("split: the stratified split left no training clip");
  return s;
}

Split manifest_split(const std::vector<Clip>& clips, const SplitOptions& o, const std::vector<SkippedFile>& skipped) {
  if (o.train_list.empty() || o.test_list.empty())
    throw ConfigError(
        "split.kind is manifest: set split.train_list and split.test_list (split.valid_list is optional)");
  std::map<std::string, int64_t> usable;      // "class/stem" → clip index
  std::map<std::string, std::string> failed;  // "class/stem" → decode reason
  for (size_t i = 0; i < clips.size(); ++i) usable.emplace(strip_extension(clips[i].name), int64_t(i));
  for (const auto& f : skipped) failed.emplace(strip_extension(f.name), f.reason);

  Split s;
  std::map<int64_t, std::string> taken;  // clip index → list it went to
  auto read_list = [&](const std::string& file, const std::string& which, std::vector<int64_t>& into) {
    if (file.empty()) return;
    std::ifstream in(file);
    if (!in) throw ConfigError("split." + which + "_list: cannot read " + file);
    std::string raw;
    int line_no = 0;
    while (std::getline(in, raw)) {
      ++line_no;
      const std::string entry = trim(raw);
      if (entry.empty() || entry[0] == '#') continue;
      const std::string key = strip_extension(entry);
      const auto it = usable.find(key);
      if (it == usable.end()) {
        const auto f = failed.find(key);
        s.missed.push_back(
            {file, line_no, entry, f != failed.end() ? "failed to decode: " + f->second : "not on disk"});
        continue;
      }
      const auto prev = taken.find(it->second);
      if (prev != taken.end()) {
        s.missed.push_back({file, line_no, entry, "already listed in " + prev->second});
        continue;
      }
      taken.emplace(it->second, which);
      into.push_back(it->second);
    }
  };
  read_list(o.train_list, "train", s.train);
  read_list(o.valid_list, "valid", s.valid);
  read_list(o.test_list, "test", s.test);
  return s;
}

}  // namespace

Split make_split(const std::vector<Clip>& clips, int n_classes, const SplitOptions& options,
                 const std::vector<SkippedFile>& skipped) {
  if (options.test_fraction < 0 || options.test_fraction >= 1)
    throw ConfigError("split.test_fraction must be in [0, 1), got " + std::to_string(options.test_fraction));
  if (options.valid_fraction < 0 || options.valid_fraction >= 1)
    throw ConfigError("split.valid_fraction must be in [0, 1), got " + std::to_string(options.valid_fraction));
  if (options.kind == "manifest") return manifest_split(clips, options, skipped);
  if (clips.empty()) throw RuntimeError("split: no usable clip to split");
  if (options.kind == "sklearn") return sklearn_split(int64_t(clips.size()), options);
  if (options.kind == "stratified") return stratified_split(clips, n_classes, options);
  throw ConfigError("split.kind: unknown kind '" + options.kind + "' (sklearn | stratified | manifest)");
}

}  // namespace genrelab
