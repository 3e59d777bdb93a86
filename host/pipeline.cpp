// The streaming feature pipeline (see pipeline.h): decode workers fill ring slots clip by clip,
// the calling thread hands each full slot to the backend's stager and then to the sink. The CPU
// stager featurises straight from the slot in ordinary memory.
#include "genrelab/pipeline.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "genrelab/audio.h"
#include "genrelab/nvtx.h"

namespace genrelab {

namespace {

class CpuStager final : public FeaturePipeline::Stager {
 public:
  CpuStager(MelExtractor& ex, const PipelineOptions& o)
      : ex_(ex),
        opt_(o),
        mel_(size_t(o.batch_size) * size_t(ex.params().n_mels) * size_t(ex.n_frames(o.clip_samples))) {
    for (int i = 0; i < o.ring; ++i) slots_.emplace_back(size_t(o.batch_size) * size_t(o.clip_samples));
  }
  float* slot(int i) override { return slots_[size_t(i)].data(); }
  void process(int i, FeatureBatch& batch) override {
    NvtxRange r("features");
    ex_.compute(slots_[size_t(i)].data(), batch.count, opt_.clip_samples, mel_.data());
    batch.mel = mel_.data();
    batch.stream = nullptr;
  }

 private:
  MelExtractor& ex_;
  PipelineOptions opt_;
  std::vector<std::vector<float>> slots_;  // slots: ring x (batch_size, clip_samples)
  std::vector<float> mel_;                 // mel: (batch_size, n_mels, n_frames)
};

}  // namespace

#if !GENRELAB_HAVE_CUDA
std::unique_ptr<FeaturePipeline::Stager> make_cuda_stager(MelExtractor&, const PipelineOptions&) {
  throw RuntimeError("this genrelab was built without the CUDA backend; use --device cpu");
}
#endif

FeaturePipeline::FeaturePipeline(const MelParams& params, Device device, const PipelineOptions& options)
    : params_(params), device_(device), options_(options) {
  if (options_.batch_size < 1) throw ConfigError("pipeline: batch size must be at least 1");
  if (options_.clip_samples < 1) throw ConfigError("pipeline: clip length must be at least 1 sample");
  if (options_.ring < 1) throw ConfigError("pipeline: the ring needs at least one buffer");
  if (options_.decode_threads <= 0) options_.decode_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  extractor_ = std::make_unique<MelExtractor>(params_, device_);
  stager_ = device_ == Device::cuda ? make_cuda_stager(*extractor_, options_)
                                    : std::unique_ptr<Stager>(std::make_unique<CpuStager>(*extractor_, options_));
}

FeaturePipeline::~FeaturePipeline() = default;

void FeaturePipeline::run(const std::vector<std::string>& files, const std::function<void(const FeatureBatch&)>& sink) {
  const int64_t n = int64_t(files.size());
  if (n == 0) return;
  const int64_t B = options_.batch_size, L = options_.clip_samples;
  const int R = options_.ring;
  const int64_t n_batches = (n + B - 1) / B;
  auto batch_count = [&](int64_t b) { return std::min(B, n - b * B); };

  // Slot s holds batch owner[s] (initially s); filled[s] counts its decoded clips.
  std::mutex mu;
  std::condition_variable slot_freed, slot_filled;
  const size_t ring = static_cast<size_t>(R);
  std::vector<int64_t> owner(ring), filled(ring, 0);
  for (int s = 0; s < R; ++s) owner[size_t(s)] = s;
  std::vector<std::vector<std::string>> errors(ring);
  for (auto& e : errors) e.assign(size_t(B), "");
  std::atomic<int64_t> next{0};
  bool abort = false;
  std::exception_ptr worker_error;

  DecodeOptions dopt;
  dopt.sample_rate = params_.sample_rate;
  dopt.length = L;

  auto worker = [&] {
    try {
      for (int64_t j; (j = next.fetch_add(1)) < n;) {
        const int64_t b = j / B;
        const int s = int(b % R);
        {
          std::unique_lock<std::mutex> lock(mu);
          slot_freed.wait(lock, [&] { return abort || owner[size_t(s)] == b; });
          if (abort) return;
        }
        float* dst = stager_->slot(s) + (j % B) * L;  // dst: (clip_samples,)
        std::string error;
        {
          NvtxRange r("decode");
          try {
            const Audio a = decode_audio(files[size_t(j)], dopt);
            std::copy(a.samples.begin(), a.samples.end(), dst);
          } catch (const std::exception& e) {
            std::fill(dst, dst + L, 0.0f);
            error = e.what();
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        errors[size_t(s)][size_t(j % B)] = error;
        if (++filled[size_t(s)] == batch_count(b)) slot_filled.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!worker_error) worker_error = std::current_exception();
      abort = true;
      slot_filled.notify_all();
      slot_freed.notify_all();
    }
  };
  const int n_threads = int(std::min<int64_t>(options_.decode_threads, n));
  std::vector<std::thread> pool;
  for (int t = 0; t < n_threads; ++t) pool.emplace_back(worker);
  auto stop = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      abort = true;
    }
    slot_freed.notify_all();
    for (auto& t : pool)
      if (t.joinable()) t.join();
  };

  try {
    for (int64_t b = 0; b < n_batches; ++b) {
      const int s = int(b % R);
      FeatureBatch batch;
      batch.index = b;
      batch.first = b * B;
      batch.count = batch_count(b);
      {
        std::unique_lock<std::mutex> lock(mu);
        slot_filled.wait(lock, [&] { return abort || filled[size_t(s)] == batch.count; });
        if (abort) break;
        batch.errors.assign(errors[size_t(s)].begin(), errors[size_t(s)].begin() + batch.count);
      }
      stager_->process(s, batch);  // returns once slot s may be refilled
      {
        std::lock_guard<std::mutex> lock(mu);
        owner[size_t(s)] = b + R;
        filled[size_t(s)] = 0;
        std::fill(errors[size_t(s)].begin(), errors[size_t(s)].end(), "");
      }
      slot_freed.notify_all();
      sink(batch);
    }
  } catch (...) {
    stop();
    throw;
  }
  stop();
  if (worker_error) std::rethrow_exception(worker_error);
}

}  // namespace genrelab
