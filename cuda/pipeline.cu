// The CUDA stager of the feature pipeline: a ring of pinned host slots, one device audio buffer
// per slot, a copy stream for the uploads and a compute stream for the features. Events order
// upload(slot) before features(slot), and features of the slot's previous batch before the next
// upload into its device buffer.
#include "genrelab/cuda/memory.h"
#include "genrelab/nvtx.h"
#include "genrelab/pipeline.h"

namespace genrelab {

namespace {

class CudaStager final : public FeaturePipeline::Stager {
 public:
  CudaStager(MelExtractor& ex, const PipelineOptions& o) : ex_(ex), opt_(o) {
    const size_t slot_floats = size_t(o.batch_size) * size_t(o.clip_samples);
    for (int i = 0; i < o.ring; ++i) {
      pinned_.emplace_back(slot_floats);  // (batch_size, clip_samples)
      device_audio_.emplace_back(slot_floats);
      uploaded_.emplace_back();
      consumed_.emplace_back();
      consumed_.back().record(compute_);  // nothing to wait for on the first use
    }
    mel_.resize(size_t(o.batch_size) * size_t(ex.params().n_mels) * size_t(ex.n_frames(o.clip_samples)));
  }

  float* slot(int i) override { return pinned_[size_t(i)].data(); }

  void process(int i, FeatureBatch& batch) override {
    const size_t s = size_t(i);
    const size_t bytes = size_t(batch.count) * size_t(opt_.clip_samples) * sizeof(float);
    {
      NvtxRange r("copy");
      consumed_[s].wait_on(copy_);  // the slot's device buffer is free once its last batch was featurised
      GENRELAB_CUDA_CHECK(
          cudaMemcpyAsync(device_audio_[s].data(), pinned_[s].data(), bytes, cudaMemcpyHostToDevice, copy_));
      uploaded_[s].record(copy_);
    }
    uploaded_[s].wait_on(compute_);
    ex_.compute(device_audio_[s].data(), batch.count, opt_.clip_samples, mel_.data(), compute_.get());
    consumed_[s].record(compute_);
    batch.mel = mel_.data();
    batch.stream = compute_.get();
    // The pinned slot is reusable once its upload is done; the features keep running.
    uploaded_[s].synchronize();
  }

 private:
  MelExtractor& ex_;
  PipelineOptions opt_;
  cuda::Stream copy_, compute_;
  std::vector<cuda::PinnedBuffer<float>> pinned_;        // ring x (batch_size, clip_samples)
  std::vector<cuda::DeviceBuffer<float>> device_audio_;  // ring x (batch_size, clip_samples)
  std::vector<cuda::Event> uploaded_, consumed_;         // ring each
  cuda::DeviceBuffer<float> mel_;                        // mel: (batch_size, n_mels, n_frames)
};

}  // namespace

std::unique_ptr<FeaturePipeline::Stager> make_cuda_stager(MelExtractor& extractor, const PipelineOptions& options) {
  return std::make_unique<CudaStager>(extractor, options);
}

}  // namespace genrelab
