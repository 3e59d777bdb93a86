// Tuning results kept between runs. The GPU backend times its choices on the first batch of each
// shape: cuDNN's algorithm for a convolution pass, the conv GEMM engine against it, cuBLASLt's
// algorithm for a product (about 1.6 s of the baseline's first epoch on an H100). The tuning cache
// keeps what was measured in one JSON file per user, filed under the context it was measured in
// (the GPU model, the driver, cuDNN, cuBLAS and GenreLab versions: tuning_context() on the GPU
// side), so a later process of the same shapes on the same kind of machine takes the stored
// results instead of timing again. Like MIOpen's find database: the results are measurements, so
// a stale one can only cost speed, never correctness, and every stored choice is checked against
// the library before it is used.
//
// The file: GENRELAB_TUNING_CACHE (a path, or "off"), else $XDG_CACHE_HOME/genrelab/tuning.json,
// else $HOME/.cache/genrelab/tuning.json. A file that cannot be read or written turns the cache
// off for the process with one warning on stderr; it never fails a run. A file of another format,
// or one that cannot be read, is left alone. Writes merge with what other processes wrote
// meanwhile (holding an flock on PATH.lock) and go through a temporary file renamed over the
// cache, so concurrent runs (data-parallel ranks) never see half a file or drop each other's
// values; a flush waiting for that lock holds up no lookup or store of its own process.
// Deterministic runs time nothing and so store nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "genrelab/config.h"

namespace genrelab::nn {

// The cache file this process uses; empty when the cache is off.
std::string tuning_cache_path();

// The value stored for `key` measured in `context`, if any.
std::optional<json> find_tuning(const std::string& context, const std::string& key);
// Counts a found value that its caller checked and took (tuning_cache_counts().found).
void count_tuning_taken();

// Stores a measurement: kept in memory at once, written by flush_tuning_cache (and at exit).
void store_tuning(const std::string& context, const std::string& key, json value);

// Writes the measurements stored since the last flush into the file, merged with its current
// contents. Nothing happens when nothing is new; never throws.
void flush_tuning_cache();

// This process's values taken from the cache (count_tuning_taken), and its measurements stored.
struct TuningCacheCounts {
  int64_t found = 0, stored = 0;
};
TuningCacheCounts tuning_cache_counts();

// Tests: forget everything in memory and take GENRELAB_TUNING_CACHE afresh at the next call.
void reset_tuning_cache_for_tests();

}  // namespace genrelab::nn
