// Train / valid / test splits of the usable clips: `sklearn` (bit-exact with
// sklearn.model_selection.train_test_split and an integer random_state), `stratified` (per-class
// fractions) and `manifest` (list files). Splits index the clips that decoded, so a corrupt file
// never shifts a split silently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "genrelab/dataset.h"

namespace genrelab {

class Config;

// numpy's legacy RandomState(seed) for an integer seed, as far as splits need it: MT19937
// seeded by `mt19937_seed` (Knuth's init_genrand, the same state as std::mt19937(seed)),
// `random_interval` (masked rejection sampling on 32-bit draws) and `permutation` (legacy
// Fisher–Yates from the end).
class LegacyRandomState {
 public:
  explicit LegacyRandomState(uint32_t seed);
  uint32_t next_uint32();
  // Uniform integer in [0, max] (numpy random_interval).
  uint64_t interval(uint64_t max);
  // numpy RandomState.permutation(n): arange(n) shuffled in place.
  std::vector<int64_t> permutation(int64_t n);

 private:
  void generate();
  uint32_t key_[624];
  int pos_;
};

// sklearn's rounding for a float test_size: n_test = ceil(fraction * n), n_train = n - n_test.
int64_t sklearn_test_count(int64_t n, double fraction);

// train_test_split(arange(n), test_size=n_test, random_state=seed) with an integer n_test:
// permutation = RandomState(seed).permutation(n); test = permutation[:n_test],
// train = permutation[n_test:]. Both lists in permutation order, as sklearn returns them.
struct TrainTest {
  std::vector<int64_t> train, test;
};
TrainTest sklearn_train_test_split(int64_t n, int64_t n_test, uint32_t seed);

struct SplitOptions {
  std::string kind = "sklearn";  // sklearn | stratified | manifest
  double test_fraction = 0.2;
  double valid_fraction = 0.0;
  uint32_t seed = 6;
  std::string train_list, valid_list, test_list;  // manifest kind
};
// split.kind, split.test_fraction, split.valid_fraction, split.seed, split.*_list.
SplitOptions split_options_from_config(const Config& config);

// A manifest line that names no usable clip.
struct ManifestMiss {
  std::string list;    // list file path
  int line = 0;        // 1-based line number
  std::string entry;   // the line as written, e.g. "jazz/jazz.00054.wav"
  std::string reason;  // "not on disk", "failed to decode: ...", "already listed in train"
};

struct Split {
  std::vector<int64_t> train, valid, test;  // indices into the clip list given to make_split
  std::vector<ManifestMiss> missed;         // manifest kind only
};

// Splits `clips` (the usable clips in dataset order; labels index `n_classes` classes).
//   sklearn:    test = first ceil(test_fraction·n) of RandomState(seed).permutation(n), train = the
//               rest (sklearn's train_test_split exactly). valid_fraction v > 0: a second sklearn
//               split of that train list with an integer test_size of ceil(v·n) (v is a fraction of
//               all clips) and the same seed: train_test_split(train, test_size=ceil(v·n),
//               random_state=seed) → (train, valid).
//   stratified: one RandomState(seed) drawn class by class in label order: for a class with n_c
//               clips (in dataset order), p = permutation(n_c); test takes ceil(test_fraction·n_c)
//               of p, valid the next ceil(valid_fraction·n_c), train the rest (each class keeps at
//               least one training clip). Lists sorted by clip index.
//   manifest:   each list file holds "<class>/<file>" lines (blank and '#' lines ignored); a line
//               matches the clip of that class whose file name equals it up to the extension
//               (so "blues/blues.00003.wav" finds blues.00003.flac). Lines naming no usable clip
//               are returned in `missed` (skipped files give their decode reason), never fatal.
//               Lists keep file order.
// Throws ConfigError when the fractions leave no training clip, or a manifest list is unreadable.
Split make_split(const std::vector<Clip>& clips, int n_classes, const SplitOptions& options,
                 const std::vector<SkippedFile>& skipped = {});

}  // namespace genrelab
