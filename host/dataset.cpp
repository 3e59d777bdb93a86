// Collection scanning (GTZAN Kaggle / original / plain folder layouts) and the parallel loader.
#include "genrelab/dataset.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "genrelab/config.h"
#include "genrelab/progress.h"

namespace genrelab {

namespace fs = std::filesystem;

namespace {

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool hidden(const std::string& name) { return name.empty() || name[0] == '.'; }

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_audio_extension(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  const auto& all = audio_extensions();
  return std::find(all.begin(), all.end(), ext) != all.end();
}

// Sub-folder names of `dir`, sorted (byte order, like Python's sorted()).
std::vector<std::string> subfolders(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!hidden(name) && is_dir(it->path())) out.push_back(name);
  }
  if (ec) throw RuntimeError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// Audio file names in `dir` (regular files or links to them, audio extension), sorted.
std::vector<std::string> audio_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code ec2;
    if (hidden(name) || fs::is_directory(it->path(), ec2) || !has_audio_extension(it->path())) continue;
    out.push_back(name);
  }
  if (ec) throw RuntimeError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

DatasetOptions dataset_options_from_config(const Config& config) {
  DatasetOptions o;
  o.root = config.get_path("dataset.root");
  if (o.root.empty())
    config.fail("dataset.root",
                "no dataset root is set; set dataset.root in the experiment or pass --set dataset.root=DIR");
  o.layout = config.get_string("dataset.layout");
  o.classes = config.get_string_list("dataset.classes");
  o.max_clips_per_class = config.get_optional_int("dataset.max_clips_per_class");
  return o;
}

DecodeOptions decode_options_from_config(const Config& config) {
  DecodeOptions d;
  d.sample_rate = int(config.get_int("dataset.sample_rate"));
  d.length = config.get_optional_int("dataset.clip_samples");
  return d;
}

Dataset scan_dataset(const DatasetOptions& options) {
  if (options.root.empty()) throw ConfigError("no dataset root given");
  const fs::path root = fs::absolute(options.root).lexically_normal();
  std::error_code ec;
  if (!fs::exists(root, ec))
    throw RuntimeError("dataset root " + root.string() + " does not exist (check dataset.root or the ROOT argument)");
  if (!is_dir(root)) throw RuntimeError("dataset root " + root.string() + " is not a folder");

  Dataset ds;
  ds.root = root.string();
  fs::path class_root = root;
  const std::string& layout = options.layout;
  auto require = [&](const char* sub, const char* name) {
    // The root may be the genres folder itself.
    if (root.filename() == sub) return root;
    if (!is_dir(root / sub))
      throw ConfigError("dataset.layout is " + std::string(name) + " but " + (root / sub).string() +
                        " is not a folder (use layout auto or folders for <root>/<class>/<audio>)");
    return root / sub;
  };
  if (layout == "gtzan-kaggle") {
    class_root = require("genres_original", "gtzan-kaggle");
    ds.layout = layout;
  } else if (layout == "gtzan") {
    class_root = require("genres", "gtzan");
    ds.layout = layout;
  } else if (layout == "folders") {
    ds.layout = layout;
  } else if (layout == "auto") {
    if (is_dir(root / "genres_original")) {
      class_root = root / "genres_original";
      ds.layout = "gtzan-kaggle";
    } else if (is_dir(root / "genres")) {
      class_root = root / "genres";
      ds.layout = "gtzan";
    } else {
      ds.layout = "folders";
    }
  } else {
    throw ConfigError("dataset.layout: unknown layout '" + layout + "' (auto | gtzan-kaggle | gtzan | folders)");
  }
  ds.class_root = class_root.string();

  const std::vector<std::string> folders = subfolders(class_root);
  if (folders.empty())
    throw RuntimeError(
        "dataset root " + class_root.string() +
        " holds no class folders (expected <root>/<class>/<audio files>, or genres_original/ or genres/)");
  if (options.classes.empty()) {
    ds.classes = folders;
  } else {
    for (const std::string& c : options.classes) {
      if (std::find(folders.begin(), folders.end(), c) == folders.end())
        throw ConfigError("dataset.classes: class '" + c + "' has no folder in " + class_root.string() +
                          " (folders found: " + join(folders, ", ") + ")");
      if (std::count(options.classes.begin(), options.classes.end(), c) > 1)
        throw ConfigError("dataset.classes: class '" + c + "' is listed twice");
    }
    ds.classes = options.classes;
  }
  for (size_t label = 0; label < ds.classes.size(); ++label) {
    const std::string& cls = ds.classes[label];
    std::vector<std::string> files = audio_files(class_root / cls);
    if (options.max_clips_per_class && int64_t(files.size()) > *options.max_clips_per_class)
      files.resize(size_t(*options.max_clips_per_class));
    for (const std::string& f : files) ds.clips.push_back({(class_root / cls / f).string(), cls + "/" + f, int(label)});
  }
  if (ds.clips.empty()) {
    std::string exts;
    for (const auto& e : audio_extensions()) exts += (exts.empty() ? "" : " ") + e;
    throw RuntimeError("dataset root " + class_root.string() + ": the class folders (" + join(ds.classes, ", ") +
                       ") hold no audio files (extensions " + exts + ")");
  }
  return ds;
}

LoadedDataset load_dataset(const Dataset& dataset, const LoadOptions& options) {
  const size_t n = dataset.clips.size();
  // One slot per clip, filled by whichever thread decodes it; assembled in order afterwards.
  struct Slot {
    std::optional<Audio> audio;
    std::string error;
  };
  std::vector<Slot> slots(n);
  int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<size_t>(size_t(threads), std::max<size_t>(n, 1)));

  std::atomic<size_t> next{0};
  std::optional<Progress> progress;
  if (options.progress) progress.emplace("decode", int64_t(n), "clips");
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      try {
        Audio a = decode_audio(dataset.clips[i].path, options.decode);
        if (!options.keep_samples) std::vector<float>().swap(a.samples);
        slots[i].audio = std::move(a);
      } catch (const AudioError& e) {
        slots[i].error = e.reason;
      } catch (const std::exception& e) {
        slots[i].error = e.what();
      }
      if (progress) progress->advance();
    }
  };
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  if (progress) progress->finish();

  LoadedDataset out;
  out.classes = dataset.classes;
  for (size_t i = 0; i < n; ++i) {
    if (slots[i].audio) {
      out.clips.push_back({dataset.clips[i], std::move(slots[i].audio->samples), slots[i].audio->source});
    } else {
      add_skipped_clip(dataset.clips[i], slots[i].error, options, out);
    }
  }
  require_usable_clips(dataset, out, options);
  return out;
}

void add_skipped_clip(const Clip& clip, std::string reason, const LoadOptions& options, LoadedDataset& out) {
  if (reason.empty()) reason = "unreadable (the decoder gave no reason)";
  if (options.warn) std::cerr << "warning: " << clip.path << ": " << reason << " (skipped)\n";
  out.skipped.push_back({clip.path, clip.name, std::move(reason)});
}

void require_usable_clips(const Dataset& dataset, const LoadedDataset& loaded, const LoadOptions& options) {
  if (loaded.clips.empty() && options.require_usable)
    throw RuntimeError("no usable clip in " + dataset.class_root + ": all " + std::to_string(dataset.clips.size()) +
                       " audio files failed to decode (see the warnings above)");
}

std::vector<Clip> clip_records(const LoadedDataset& loaded) {
  std::vector<Clip> out;
  out.reserve(loaded.clips.size());
  for (const auto& c : loaded.clips) out.push_back(c.clip);
  return out;
}

}  // namespace genrelab
