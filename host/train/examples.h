// Training and evaluation examples in backend memory: the windows of (optionally augmented)
// clips turned into mel features, with their labels and the clip each window came from.
// Internal to the trainer, eval and predict (host/train/).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "genrelab/augment.h"
#include "genrelab/device.h"
#include "genrelab/features.h"
#include "genrelab/train.h"

namespace genrelab {

class Progress;

// A table of T in the backend's memory: a host vector on cpu, a device buffer on cuda.
template <typename T>
class BackendArray {
 public:
  explicit BackendArray(Device device);
  ~BackendArray();
  BackendArray(BackendArray&&) noexcept;
  BackendArray& operator=(BackendArray&&) noexcept;

  void resize(size_t count);  // contents are kept up to min(old, new) size on cpu only
  size_t size() const { return size_; }
  T* data();
  const T* data() const;
  // Host → backend at `offset` elements; backend → host.
  void upload(size_t offset, const T* host, size_t count);
  void download(size_t offset, T* host, size_t count) const;
  // dst (backend memory, (n, row)) = rows idx[0..n) of this table viewed as (size/row, row);
  // idx in backend memory too. cuda: one ops::GatherRows kernel queued on `stream` (the
  // network's, so the step that reads dst follows it), no host synchronisation; the caller
  // checks idx (GENRELAB_CHECK on cpu only).
  void gather_rows(const int64_t* idx, int64_t n, int64_t row, T* dst, CUstream_st* stream = nullptr) const;

 private:
  Device device_;
  size_t size_ = 0;
  std::vector<T> host_;
  void* device_buffer_ = nullptr;  // cuda::DeviceBuffer<T>* on cuda
};

// Windows of clips as mel features.
struct ExampleSet {
  explicit ExampleSet(Device device) : features(device), labels_backend(device) {}
  int64_t count = 0;                 // windows
  int64_t feature_size = 0;          // n_mels * n_frames
  std::vector<int32_t> labels;       // labels: (count,) class of each window
  std::vector<int64_t> group;        // group: (count,) index of the window's clip in `clip_labels`
  std::vector<int32_t> clip_labels;  // clip_labels: (clips,)
  BackendArray<float> features;      // features: (count, n_mels, n_frames)
  BackendArray<int32_t> labels_backend;  // labels again, in backend memory
};

// Turns clips into examples. Each AugmentedExample's waveform steps are applied to its source
// clip (all clips have the same length), the result is cut into windows, featurised (dB and
// standardisation as configured) and SpecAugment-masked when the example says so. Example
// k·windows_per_clip + w is window w of plan entry k.
class ExampleBuilder {
 public:
  ExampleBuilder(Device device, MelExtractor& mel, const AugmentSettings& augment, const WindowSpec& windows,
                 int sample_rate);
  ~ExampleBuilder();

  // audio[i]: (clip_samples,) host; labels[i]: class of clip i. Builds one example per plan entry
  // and window (`plan[k].source` indexes audio) into `out` (replacing its contents).
  void build(const std::vector<const std::vector<float>*>& audio, const std::vector<int32_t>& labels,
             const std::vector<AugmentedExample>& plan, ExampleSet& out, const std::string& label);

  // The features of chosen examples only: dst (backend memory): (rows.size(), n_mels, n_frames),
  // row i = example rows[i] of `plan` (entry rows[i] / windows_per_clip, that window). Each entry
  // is augmented once however many of its windows are asked for. cuda: queued on `stream` (the
  // builder's own when null) and complete when this returns.
  void featurize(const std::vector<const std::vector<float>*>& audio, const std::vector<AugmentedExample>& plan,
                 const std::vector<int64_t>& rows, float* dst, CUstream_st* stream = nullptr,
                 Progress* progress = nullptr);

  // Keeps a copy of `audio` in device memory (cuda; nothing on cpu), uploaded once, so that the
  // band statistics and the examples later made from this same list (the same clips, unchanged
  // while kept, in the same order) cut their windows on the device instead of uploading clips per
  // chunk: an offline plan reads each training clip for several copies, and online augmentation
  // remakes the training examples every epoch. Keeps nothing and returns false when the clips
  // would take more than an eighth of the free GPU memory, or the allocation fails (each chunk
  // then uploads its clips).
  // Replaces what was kept; release_device_clips() frees it.
  bool keep_on_device(const std::vector<const std::vector<float>*>& audio);
  void release_device_clips();

  Device device() const;
  int64_t windows_per_clip(int64_t clip_samples) const;
  int64_t n_mels() const;
  int64_t feature_size() const;  // n_mels · n_frames of one window

  // Mel band statistics of the clean windows of `audio` (features.standardize): accumulate adds
  // the clips to `acc`, so a collection can be passed in parts.
  MelBandStats band_stats(const std::vector<const std::vector<float>*>& audio);
  void accumulate_band_stats(const std::vector<const std::vector<float>*>& audio, MelBandStatsAccumulator& acc);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The labels, clip groups and count of the examples of `plan` (one per entry and window) without
// their features: what evaluation and the streaming loader need. out.features is left empty.
void describe_examples(const std::vector<int32_t>& labels, const std::vector<AugmentedExample>& plan,
                       int64_t windows_per_clip, ExampleSet& out);

// Plain (unaugmented) plan: one example per clip.
std::vector<AugmentedExample> identity_plan(int64_t clips);

}  // namespace genrelab
