// Streaming feature extraction: a host thread pool decodes clips into a ring of staging buffers
// (pinned memory on cuda), a copy stream uploads each filled buffer, the compute stream turns it
// into mel spectrograms, and events order copy before compute and compute before the buffer's
// reuse. The CPU backend runs the same ring in ordinary memory. NVTX ranges mark every stage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "genrelab/features.h"

namespace genrelab {

struct PipelineOptions {
  int64_t batch_size = 32;        // clips per batch
  int64_t clip_samples = 617400;  // every clip is cut or zero-padded to this length
  int decode_threads = 0;         // 0: std::thread::hardware_concurrency()
  int ring = 3;                   // staging buffers: batches being decoded, uploaded or featurised at once
};

// One featurised batch, handed to the sink in order.
struct FeatureBatch {
  int64_t index = 0;                // batch number
  int64_t first = 0;                // index of its first clip in the file list
  int64_t count = 0;                // clips in the batch (the last one may be short)
  const float* mel = nullptr;       // mel: (count, n_mels, n_frames) in backend memory (device memory on cuda)
  std::vector<std::string> errors;  // errors: (count,) "" or why the clip could not be decoded (its audio was zeros)
  CUstream_st* stream = nullptr;    // cuda: the compute stream that produced `mel` (nullptr on cpu)
};

class FeaturePipeline {
 public:
  // `sample_rate` of decoding is params.sample_rate. Standardisation, when params ask for it,
  // needs set_band_stats() on extractor() first.
  FeaturePipeline(const MelParams& params, Device device, const PipelineOptions& options);
  ~FeaturePipeline();
  FeaturePipeline(const FeaturePipeline&) = delete;
  FeaturePipeline& operator=(const FeaturePipeline&) = delete;

  MelExtractor& extractor() { return *extractor_; }
  int64_t n_frames() const { return extractor_->n_frames(options_.clip_samples); }

  // Streams `files` through the pipeline; `sink` runs on the calling thread once per batch, in
  // order. On cuda, batch.mel may be used by work enqueued on batch.stream (or after
  // synchronising it) until the sink returns; it is overwritten by the next batch.
  void run(const std::vector<std::string>& files, const std::function<void(const FeatureBatch&)>& sink);

  // The backend's part: staging memory and the hand-off of a filled slot.
  struct Stager {
    virtual ~Stager() = default;
    // Host staging buffer of slot i: (batch_size, clip_samples).
    virtual float* slot(int i) = 0;
    // Featurises the `batch.count` clips of slot i into batch.mel (and sets batch.stream); returns
    // once the slot's host memory may be refilled (cuda: its upload has finished).
    virtual void process(int i, FeatureBatch& batch) = 0;
  };

 private:
  MelParams params_;
  Device device_;
  PipelineOptions options_;
  std::unique_ptr<MelExtractor> extractor_;
  std::unique_ptr<Stager> stager_;
};

// The CUDA stager (pinned ring, copy and compute streams); RuntimeError in builds without CUDA.
std::unique_ptr<FeaturePipeline::Stager> make_cuda_stager(MelExtractor& extractor, const PipelineOptions& options);

}  // namespace genrelab
