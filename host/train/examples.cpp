// Backend arrays and the example builder: augment → windows → mel features, on the CPU (host
// memory, FFTW) or the GPU (device memory, cuFFT; the decoded clips are uploaded through a
// pinned staging buffer and augmented on the device).
#include "examples.h"

#include <algorithm>
#include <cstring>

#include "genrelab/common.h"
#include "genrelab/nvtx.h"
#include "genrelab/ops/gather.h"
#include "genrelab/parallel_for.h"
#include "genrelab/progress.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/augment.h"
#include "genrelab/cuda/gather.h"
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {

// ---- BackendArray ---------------------------------------------------------------------------

template <typename T>
BackendArray<T>::BackendArray(Device device) : device_(device) {
#if !GENRELAB_HAVE_CUDA
  GENRELAB_CHECK(device == Device::cpu, "this build has no CUDA backend");
#endif
}

template <typename T>
BackendArray<T>::~BackendArray() {
#if GENRELAB_HAVE_CUDA
  delete static_cast<cuda::DeviceBuffer<T>*>(device_buffer_);
#endif
}

template <typename T>
BackendArray<T>::BackendArray(BackendArray&& o) noexcept
    : device_(o.device_), size_(o.size_), host_(std::move(o.host_)), device_buffer_(o.device_buffer_) {
  o.device_buffer_ = nullptr;
  o.size_ = 0;
}

template <typename T>
BackendArray<T>& BackendArray<T>::operator=(BackendArray&& o) noexcept {
  if (this != &o) {
#if GENRELAB_HAVE_CUDA
    delete static_cast<cuda::DeviceBuffer<T>*>(device_buffer_);
#endif
    device_ = o.device_;
    size_ = o.size_;
    host_ = std::move(o.host_);
    device_buffer_ = o.device_buffer_;
    o.device_buffer_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

template <typename T>
void BackendArray<T>::resize(size_t count) {
  size_ = count;
  if (device_ == Device::cpu) {
    host_.resize(count);
    return;
  }
#if GENRELAB_HAVE_CUDA
  if (!device_buffer_) device_buffer_ = new cuda::DeviceBuffer<T>();
  static_cast<cuda::DeviceBuffer<T>*>(device_buffer_)->resize(count);
#endif
}

template <typename T>
T* BackendArray<T>::data() {
  if (device_ == Device::cpu) return host_.data();
#if GENRELAB_HAVE_CUDA
  return device_buffer_ ? static_cast<cuda::DeviceBuffer<T>*>(device_buffer_)->data() : nullptr;
#else
  return nullptr;
#endif
}

template <typename T>
const T* BackendArray<T>::data() const {
  return const_cast<BackendArray<T>*>(this)->data();
}

template <typename T>
void BackendArray<T>::upload(size_t offset, const T* host, size_t count) {
  GENRELAB_CHECK(offset + count <= size_, "upload past the end: ", offset, "+", count, " > ", size_);
  if (device_ == Device::cpu) {
    std::copy(host, host + count, host_.begin() + long(offset));
    return;
  }
#if GENRELAB_HAVE_CUDA
  cuda::copy_to_device(data() + offset, host, count);
#endif
}

template <typename T>
void BackendArray<T>::download(size_t offset, T* host, size_t count) const {
  GENRELAB_CHECK(offset + count <= size_, "download past the end");
  if (device_ == Device::cpu) {
    std::copy(host_.begin() + long(offset), host_.begin() + long(offset + count), host);
    return;
  }
#if GENRELAB_HAVE_CUDA
  cuda::copy_to_host(host, data() + offset, count);
#endif
}

template <typename T>
void BackendArray<T>::gather_rows(const int64_t* idx, int64_t n, int64_t row, T* dst, CUstream_st* stream) const {
  if (device_ == Device::cpu) {
    for (int64_t i = 0; i < n; ++i)
      GENRELAB_CHECK(idx[i] >= 0 && size_t((idx[i] + 1) * row) <= size_, "row ", idx[i], " out of range");
    cpu_for_2d(n, row, ops::GatherRows<T>{host_.data(), idx, row, dst});
    return;
  }
#if GENRELAB_HAVE_CUDA
  cuda::gather_rows(data(), idx, n, row, dst, stream);
#else
  (void)stream;
#endif
}

template class BackendArray<float>;
template class BackendArray<int32_t>;
template class BackendArray<int64_t>;

// ---- ExampleBuilder -------------------------------------------------------------------------

std::vector<AugmentedExample> identity_plan(int64_t clips) {
  std::vector<AugmentedExample> plan(static_cast<size_t>(clips));
  for (int64_t i = 0; i < clips; ++i) {
    plan[size_t(i)].source = i;
    plan[size_t(i)].clip_key = uint32_t(i);
  }
  return plan;
}

struct ExampleBuilder::Impl {
  Device device;
  MelExtractor& mel;
  AugmentSettings augment;
  WindowSpec windows;
  int sample_rate;
#if GENRELAB_HAVE_CUDA
  std::unique_ptr<cuda::Augmenter> augmenter;  // created on first GPU use: the CPU backend never touches CUDA
  std::unique_ptr<cuda::Stream> stream;
#endif
  Impl(Device d, MelExtractor& m, const AugmentSettings& a, const WindowSpec& w, int sr)
      : device(d), mel(m), augment(a), windows(w), sample_rate(sr) {}
};

ExampleBuilder::ExampleBuilder(Device device, MelExtractor& mel, const AugmentSettings& augment,
                               const WindowSpec& windows, int sample_rate)
    : impl_(std::make_unique<Impl>(device, mel, augment, windows, sample_rate)) {}

ExampleBuilder::~ExampleBuilder() = default;

namespace {

// Copies window `start` of x (n samples) into w (window samples), zero-padding past the end.
void cut_window(const float* x, int64_t n, int64_t start, int64_t window, float* w) {
  const int64_t take = std::max<int64_t>(0, std::min(window, n - start));
  std::memcpy(w, x + start, size_t(take) * sizeof(float));
  std::fill(w + take, w + window, 0.0f);
}

}  // namespace

void ExampleBuilder::build(const std::vector<const std::vector<float>*>& audio, const std::vector<int32_t>& labels,
                           const std::vector<AugmentedExample>& plan, ExampleSet& out, const std::string& label) {
  NvtxRange range("build examples");
  Impl& m = *impl_;
  GENRELAB_CHECK(audio.size() == labels.size(), "one label per clip");
  GENRELAB_CHECK(!audio.empty(), "no clips to build examples from");
  const int64_t n = int64_t(audio.front()->size());
  for (const auto* a : audio) GENRELAB_CHECK(int64_t(a->size()) == n, "clips differ in length");
  const std::vector<int64_t> starts = m.windows.starts(n);
  const int64_t per = int64_t(starts.size());
  const int64_t window = m.windows.window;
  const int64_t frames = m.mel.n_frames(window);
  const int64_t n_mels = m.mel.params().n_mels;
  const int64_t fsize = n_mels * frames;

  out.count = int64_t(plan.size()) * per;
  out.feature_size = fsize;
  out.labels.assign(size_t(out.count), 0);
  out.group.assign(size_t(out.count), 0);
  out.clip_labels.clear();
  for (size_t k = 0; k < plan.size(); ++k) {
    GENRELAB_CHECK(plan[k].source >= 0 && size_t(plan[k].source) < audio.size(), "plan source out of range");
    out.clip_labels.push_back(labels[size_t(plan[k].source)]);
    for (int64_t w = 0; w < per; ++w) {
      out.labels[k * size_t(per) + size_t(w)] = labels[size_t(plan[k].source)];
      out.group[k * size_t(per) + size_t(w)] = int64_t(k);
    }
  }
  out.features.resize(size_t(out.count * fsize));
  out.labels_backend.resize(size_t(out.count));
  out.labels_backend.upload(0, out.labels.data(), out.labels.size());

  const int64_t chunk = 16;  // examples per featurisation batch
  Progress progress(label, int64_t(plan.size()), "clips");
  const bool any_mask = m.augment.spec_mask.p > 0;

  if (m.device == Device::cpu) {
    std::vector<float> windows(size_t(chunk * per * window));
    std::vector<float> mel(size_t(chunk * per * fsize));
    for (int64_t first = 0; first < int64_t(plan.size()); first += chunk) {
      const int64_t count = std::min<int64_t>(chunk, int64_t(plan.size()) - first);
#pragma omp parallel for schedule(dynamic)
      for (int64_t i = 0; i < count; ++i) {
        const AugmentedExample& ex = plan[size_t(first + i)];
        const std::vector<float>& x = *audio[size_t(ex.source)];
        std::vector<float> augmented;
        const float* src = x.data();
        bool waveform = false;
        for (const auto& s : ex.steps) waveform = waveform || s.kind != AugmentKind::spec_mask;
        if (waveform) {
          augmented = apply_augment_cpu(ex, m.augment, x.data(), n, m.sample_rate);
          src = augmented.data();
        }
        for (int64_t w = 0; w < per; ++w)
          cut_window(src, n, starts[size_t(w)], window, windows.data() + (i * per + w) * window);
      }
      m.mel.compute(windows.data(), count * per, window, mel.data());
      if (any_mask) {
        std::vector<const AugmentedExample*> rows;
        for (int64_t i = 0; i < count; ++i)
          for (int64_t w = 0; w < per; ++w) rows.push_back(&plan[size_t(first + i)]);
        apply_spec_mask_cpu(mel.data(), count * per, n_mels, frames, m.augment, rows);
      }
      out.features.upload(size_t(first * per * fsize), mel.data(), size_t(count * per * fsize));
      progress.advance(count);
    }
    progress.finish();
    return;
  }

#if GENRELAB_HAVE_CUDA
  if (!m.augmenter) m.augmenter = std::make_unique<cuda::Augmenter>();
  if (!m.stream) m.stream = std::make_unique<cuda::Stream>();
  cudaStream_t stream = m.stream->get();
  cuda::PinnedBuffer<float> staging(size_t(chunk * n));
  cuda::DeviceBuffer<float> clips(size_t(chunk * n)), augmented(size_t(chunk * n)), windows(size_t(chunk * per * window));
  for (int64_t first = 0; first < int64_t(plan.size()); first += chunk) {
    const int64_t count = std::min<int64_t>(chunk, int64_t(plan.size()) - first);
    const std::vector<AugmentedExample> sub(plan.begin() + first, plan.begin() + first + count);
    GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));  // staging is reused
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(staging.data() + i * n, audio[size_t(sub[size_t(i)].source)]->data(), size_t(n) * sizeof(float));
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(clips.data(), staging.data(), size_t(count * n) * sizeof(float),
                                        cudaMemcpyHostToDevice, stream));
    m.augmenter->apply(sub, m.augment, clips.data(), augmented.data(), n, stream);
    GENRELAB_CUDA_CHECK(cudaMemsetAsync(windows.data(), 0, size_t(count * per * window) * sizeof(float), stream));
    for (int64_t i = 0; i < count; ++i)
      for (int64_t w = 0; w < per; ++w) {
        const int64_t take = std::max<int64_t>(0, std::min(window, n - starts[size_t(w)]));
        GENRELAB_CUDA_CHECK(cudaMemcpyAsync(windows.data() + (i * per + w) * window,
                                            augmented.data() + i * n + starts[size_t(w)], size_t(take) * sizeof(float),
                                            cudaMemcpyDeviceToDevice, stream));
      }
    float* dst = out.features.data() + first * per * fsize;
    m.mel.compute(windows.data(), count * per, window, dst, stream);
    if (any_mask) {
      std::vector<AugmentedExample> rows;
      for (int64_t i = 0; i < count; ++i)
        for (int64_t w = 0; w < per; ++w) rows.push_back(sub[size_t(i)]);
      m.augmenter->spec_mask(rows, m.augment, dst, n_mels, frames, stream);
    }
    progress.advance(count);
  }
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));
  progress.finish();
#endif
}

MelBandStats ExampleBuilder::band_stats(const std::vector<const std::vector<float>*>& audio) {
  Impl& m = *impl_;
  const int64_t n = int64_t(audio.front()->size());
  const std::vector<int64_t> starts = m.windows.starts(n);
  const int64_t per = int64_t(starts.size()), window = m.windows.window;
  const int64_t frames = m.mel.n_frames(window), n_mels = m.mel.params().n_mels;
  MelBandStatsAccumulator acc(static_cast<int>(n_mels));
  const int64_t chunk = 16;
  std::vector<float> windows(size_t(chunk * per * window));
  std::vector<float> mel(size_t(chunk * per * n_mels * frames));
  BackendArray<float> win_dev(m.device), mel_dev(m.device);
  win_dev.resize(windows.size());
  mel_dev.resize(mel.size());
  for (int64_t first = 0; first < int64_t(audio.size()); first += chunk) {
    const int64_t count = std::min<int64_t>(chunk, int64_t(audio.size()) - first);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t w = 0; w < per; ++w)
        cut_window(audio[size_t(first + i)]->data(), n, starts[size_t(w)], window, windows.data() + (i * per + w) * window);
    win_dev.upload(0, windows.data(), size_t(count * per * window));
    m.mel.compute_unstandardized(win_dev.data(), count * per, window, mel_dev.data());
    m.mel.accumulate_band_stats(mel_dev.data(), count * per, frames, acc);
  }
  const auto r = acc.finish();
  return MelBandStats{r.mean, r.std};
}

}  // namespace genrelab
