// Audio collections on disk: scanning a root in one of the folder-per-class layouts (GTZAN Kaggle,
// original GTZAN, plain folders) into a sorted clip list, and a thread-pool loader that decodes
// every clip into memory, skipping unreadable files with one warning each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "genrelab/audio.h"

namespace genrelab {

class Config;

// Where the class folders are, relative to the root:
//   gtzan-kaggle  <root>/genres_original/<genre>/<audio>
//   gtzan         <root>/genres/<genre>/<audio>   (.au, .wav, or any audio extension)
//   folders       <root>/<class>/<audio>
//   auto          genres_original/ if present, else genres/, else the root's own class folders
struct DatasetOptions {
  std::string root;
  std::string layout = "auto";
  std::vector<std::string> classes;            // label order; empty = class folders, sorted
  std::optional<int64_t> max_clips_per_class;  // first N files of each class (sorted order)
};

// dataset.root (required: ConfigError when empty), dataset.layout, dataset.classes,
// dataset.max_clips_per_class.
DatasetOptions dataset_options_from_config(const Config& config);
// dataset.sample_rate and dataset.clip_samples.
DecodeOptions decode_options_from_config(const Config& config);

struct Clip {
  std::string path;  // absolute path of the file
  std::string name;  // relative name "<class>/<file.ext>", e.g. "blues/blues.00003.flac"
  int label = 0;     // index into Dataset::classes
};

struct Dataset {
  std::string root;        // the root as given, made absolute
  std::string class_root;  // the folder holding the class folders
  std::string layout;      // the layout used ("gtzan-kaggle", "gtzan" or "folders")
  std::vector<std::string> classes;
  std::vector<Clip> clips;  // sorted by label, then file name
};

// Lists the clips (files with an audio extension, see audio_extensions()). Throws RuntimeError
// for a missing root or a root with no class folders, ConfigError for a class listed in
// `classes` that has no folder (naming it and the folders found) or a layout whose folder is
// missing.
Dataset scan_dataset(const DatasetOptions& options);

// A file that could not be used, and why.
struct SkippedFile {
  std::string path;    // absolute path
  std::string name;    // "<class>/<file.ext>"
  std::string reason;  // AudioError::reason, e.g. "is empty (0 bytes)"
};

struct LoadedClip {
  Clip clip;
  std::vector<float> samples;  // samples: (n,) mono at LoadOptions::decode.sample_rate (empty if !keep_samples)
  AudioInfo source;            // what the file held (rate, channels, frames, format)
};

struct LoadOptions {
  DecodeOptions decode;
  int threads = 0;             // decoding threads; 0 = std::thread::hardware_concurrency()
  bool keep_samples = true;    // false: decode (to validate) but keep only the source info
  bool warn = true;            // one "warning: PATH: REASON (skipped)" line on stderr per bad file
  bool progress = true;        // progress bar on stderr
  bool require_usable = true;  // throw RuntimeError when no clip decodes (false: return the skips)
};

struct LoadedDataset {
  std::vector<std::string> classes;
  std::vector<LoadedClip> clips;     // the usable clips, in the dataset's sorted order
  std::vector<SkippedFile> skipped;  // every unreadable file, in sorted order
};

// Decodes every clip on a pool of threads. Never stops for a bad clip; throws RuntimeError only
// when no clip at all is usable (unless !require_usable).
LoadedDataset load_dataset(const Dataset& dataset, const LoadOptions& options);
// How load_dataset reports: a clip skipped for `reason` (warned on stderr with options.warn) into
// `out`; then, once every clip is in, the error when none is usable.
void add_skipped_clip(const Clip& clip, std::string reason, const LoadOptions& options, LoadedDataset& out);
void require_usable_clips(const Dataset& dataset, const LoadedDataset& loaded, const LoadOptions& options);

// The usable clips' records (what split functions take).
std::vector<Clip> clip_records(const LoadedDataset& loaded);

}  // namespace genrelab
