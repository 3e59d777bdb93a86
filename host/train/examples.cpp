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
  // Working buffers, grown on demand and kept (featurize runs every step when streaming).
  cuda::PinnedBuffer<float> staging;                          // staging: (entries, clip_samples) host
  cuda::DeviceBuffer<float> clips, augmented, window_buffer;  // clips, augmented: (entries, clip_samples); window_buffer: (rows, window)
  // keep_on_device: the host list and its device copy, kept_clips: (kept.size(), clip_samples)
  std::vector<const std::vector<float>*> kept;
  cuda::DeviceBuffer<float> kept_clips;
#endif
  // Whether `audio` is the list kept on the device.
  bool is_kept(const std::vector<const std::vector<float>*>& audio) const {
#if GENRELAB_HAVE_CUDA
    return !kept.empty() && kept == audio;
#else
    (void)audio;
    return false;
#endif
  }
  Impl(Device d, MelExtractor& m, const AugmentSettings& a, const WindowSpec& w, int sr)
      : device(d), mel(m), augment(a), windows(w), sample_rate(sr) {}
};

ExampleBuilder::ExampleBuilder(Device device, MelExtractor& mel, const AugmentSettings& augment,
                               const WindowSpec& windows, int sample_rate)
    : impl_(std::make_unique<Impl>(device, mel, augment, windows, sample_rate)) {}

ExampleBuilder::~ExampleBuilder() = default;

Device ExampleBuilder::device() const { return impl_->device; }

int64_t ExampleBuilder::windows_per_clip(int64_t clip_samples) const {
  return int64_t(impl_->windows.starts(clip_samples).size());
}

int64_t ExampleBuilder::n_mels() const { return impl_->mel.params().n_mels; }

int64_t ExampleBuilder::feature_size() const { return n_mels() * impl_->mel.n_frames(impl_->windows.window); }

namespace {

// Copies window `start` of x (n samples) into w (window samples), zero-padding past the end.
void cut_window(const float* x, int64_t n, int64_t start, int64_t window, float* w) {
  const int64_t take = std::max<int64_t>(0, std::min(window, n - start));
  std::memcpy(w, x + start, size_t(take) * sizeof(float));
  std::fill(w + take, w + window, 0.0f);
}

#if GENRELAB_HAVE_CUDA
// cut_window on the device, queued on s: x and w in device memory.
void cut_window_async(const float* x, int64_t n, int64_t start, int64_t window, float* w, cudaStream_t s) {
  const int64_t take = std::max<int64_t>(0, std::min(window, n - start));
  if (take > 0)
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(w, x + start, size_t(take) * sizeof(float), cudaMemcpyDeviceToDevice, s));
  if (take < window) GENRELAB_CUDA_CHECK(cudaMemsetAsync(w + take, 0, size_t(window - take) * sizeof(float), s));
}
#endif

// A run of consecutive rows featurised together: the distinct plan entries they come from (at
// most kEntriesPerChunk) and, per row, its entry's slot in that list and its window.
constexpr int64_t kEntriesPerChunk = 16;
struct RowChunk {
  int64_t first_row = 0;
  std::vector<int64_t> entries;  // entries: (distinct,) plan indices, in order of first use
  std::vector<int64_t> slot;     // slot: (rows,) index into entries
  std::vector<int64_t> window;   // window: (rows,) window index within the clip
};

std::vector<RowChunk> chunk_rows(const std::vector<int64_t>& rows, int64_t per, int64_t plan_size) {
  std::vector<RowChunk> chunks;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t entry = rows[i] / per;
    GENRELAB_CHECK(rows[i] >= 0 && entry < plan_size, "example ", rows[i], " is outside the plan");
    auto find = [&](const RowChunk& c) { return std::find(c.entries.begin(), c.entries.end(), entry) - c.entries.begin(); };
    const bool full = chunks.empty() || int64_t(chunks.back().slot.size()) == kEntriesPerChunk * per ||
                      (find(chunks.back()) == int64_t(chunks.back().entries.size()) &&
                       int64_t(chunks.back().entries.size()) == kEntriesPerChunk);
    if (full) {
      chunks.emplace_back();
      chunks.back().first_row = int64_t(i);
    }
    RowChunk& c = chunks.back();
    const int64_t slot = find(c);
    if (slot == int64_t(c.entries.size())) c.entries.push_back(entry);
    c.slot.push_back(slot);
    c.window.push_back(rows[i] % per);
  }
  return chunks;
}

bool has_waveform_steps(const AugmentedExample& ex) {
  for (const auto& s : ex.steps)
    if (s.kind != AugmentKind::spec_mask) return true;
  return false;
}

}  // namespace

void describe_examples(const std::vector<int32_t>& labels, const std::vector<AugmentedExample>& plan,
                       int64_t windows_per_clip, ExampleSet& out) {
  const int64_t per = windows_per_clip;
  out.count = int64_t(plan.size()) * per;
  out.labels.assign(size_t(out.count), 0);
  out.group.assign(size_t(out.count), 0);
  out.clip_labels.clear();
  for (size_t k = 0; k < plan.size(); ++k) {
    GENRELAB_CHECK(plan[k].source >= 0 && size_t(plan[k].source) < labels.size(), "plan source out of range");
    out.clip_labels.push_back(labels[size_t(plan[k].source)]);
    for (int64_t w = 0; w < per; ++w) {
      out.labels[k * size_t(per) + size_t(w)] = labels[size_t(plan[k].source)];
      out.group[k * size_t(per) + size_t(w)] = int64_t(k);
    }
  }
}

void ExampleBuilder::build(const std::vector<const std::vector<float>*>& audio, const std::vector<int32_t>& labels,
                           const std::vector<AugmentedExample>& plan, ExampleSet& out, const std::string& label) {
  NvtxRange range("build examples");
  GENRELAB_CHECK(audio.size() == labels.size(), "one label per clip");
  GENRELAB_CHECK(!audio.empty(), "no clips to build examples from");
  const int64_t per = windows_per_clip(int64_t(audio.front()->size()));
  describe_examples(labels, plan, per, out);
  out.feature_size = feature_size();
  out.features.resize(size_t(out.count * out.feature_size));
  out.labels_backend.resize(size_t(out.count));
  out.labels_backend.upload(0, out.labels.data(), out.labels.size());
  std::vector<int64_t> rows(static_cast<size_t>(out.count));
  for (int64_t i = 0; i < out.count; ++i) rows[size_t(i)] = i;
  Progress progress(label, out.count, per > 1 ? "windows" : "clips");
  featurize(audio, plan, rows, out.features.data(), nullptr, &progress);
  progress.finish();
}

bool ExampleBuilder::keep_on_device(const std::vector<const std::vector<float>*>& audio) {
  release_device_clips();
  Impl& m = *impl_;
  if (m.device != Device::cuda || audio.empty()) return false;
#if GENRELAB_HAVE_CUDA
  const int64_t n = int64_t(audio.front()->size()), count = int64_t(audio.size());
  for (const auto* a : audio) GENRELAB_CHECK(int64_t(a->size()) == n, "clips differ in length");
  size_t free = 0, total = 0;
  GENRELAB_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  if (size_t(count * n) * sizeof(float) > free / 8) return false;
  try {
    m.kept_clips.resize(size_t(count * n));
  } catch (const RuntimeError&) {  // the free memory read a moment ago went to another thread
    return false;
  }
  if (!m.stream) m.stream = std::make_unique<cuda::Stream>();
  // Through two halves of the pinned staging in turn: the cores fill one half while the other's
  // copy to the device runs.
  const int64_t group = kEntriesPerChunk;
  if (m.staging.size() < size_t(2 * group * n)) m.staging = cuda::PinnedBuffer<float>(size_t(2 * group * n));
  cuda::Event copied[2];
  for (int64_t first = 0, g = 0; first < count; first += group, ++g) {
    const int64_t c = std::min(group, count - first);
    float* half = m.staging.data() + (g % 2) * group * n;
    if (g >= 2) copied[g % 2].synchronize();  // this half's previous copy has left
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < c; ++j)
      std::memcpy(half + j * n, audio[size_t(first + j)]->data(), size_t(n) * sizeof(float));
    GENRELAB_CUDA_CHECK(cudaMemcpyAsync(m.kept_clips.data() + first * n, half, size_t(c * n) * sizeof(float),
                                        cudaMemcpyHostToDevice, *m.stream));
    copied[g % 2].record(*m.stream);
  }
  m.stream->synchronize();
  m.kept = audio;
  return true;
#else
  return false;
#endif
}

void ExampleBuilder::release_device_clips() {
#if GENRELAB_HAVE_CUDA
  Impl& m = *impl_;
  m.kept.clear();
  m.kept_clips = cuda::DeviceBuffer<float>();
#endif
}

void ExampleBuilder::featurize(const std::vector<const std::vector<float>*>& audio,
                               const std::vector<AugmentedExample>& plan, const std::vector<int64_t>& rows, float* dst,
                               CUstream_st* stream_arg, Progress* progress) {
  NvtxRange range("featurize");
  Impl& m = *impl_;
  if (rows.empty()) return;
  GENRELAB_CHECK(!audio.empty(), "no clips to featurise");
  const int64_t n = int64_t(audio.front()->size());
  for (const auto* a : audio) GENRELAB_CHECK(int64_t(a->size()) == n, "clips differ in length");
  for (const auto& ex : plan)
    GENRELAB_CHECK(ex.source >= 0 && size_t(ex.source) < audio.size(), "plan source out of range");
  const std::vector<int64_t> starts = m.windows.starts(n);
  const int64_t per = int64_t(starts.size());
  const int64_t window = m.windows.window;
  const int64_t frames = m.mel.n_frames(window);
  const int64_t n_mels = m.mel.params().n_mels;
  const int64_t fsize = n_mels * frames;
  const bool any_mask = m.augment.spec_mask.p > 0;
  const std::vector<RowChunk> chunks = chunk_rows(rows, per, int64_t(plan.size()));

  if (m.device == Device::cpu) {
    std::vector<float> windows(size_t(kEntriesPerChunk * per * window));
    for (const RowChunk& c : chunks) {
      const int64_t count = int64_t(c.slot.size()), distinct = int64_t(c.entries.size());
      // Each entry's waveform augmentation once, then its windows.
      std::vector<std::vector<float>> augmented(static_cast<size_t>(distinct));
#pragma omp parallel for schedule(dynamic)
      for (int64_t j = 0; j < distinct; ++j) {
        const AugmentedExample& ex = plan[size_t(c.entries[size_t(j)])];
        if (has_waveform_steps(ex))
          augmented[size_t(j)] = apply_augment_cpu(ex, m.augment, audio[size_t(ex.source)]->data(), n, m.sample_rate);
      }
      for (int64_t i = 0; i < count; ++i) {
        const size_t j = size_t(c.slot[size_t(i)]);
        const AugmentedExample& ex = plan[size_t(c.entries[j])];
        const float* src = augmented[j].empty() ? audio[size_t(ex.source)]->data() : augmented[j].data();
        cut_window(src, n, starts[size_t(c.window[size_t(i)])], window, windows.data() + i * window);
      }
      float* mel = dst + c.first_row * fsize;
      m.mel.compute(windows.data(), count, window, mel);
      if (any_mask) {
        std::vector<const AugmentedExample*> masked_rows;
        for (int64_t i = 0; i < count; ++i) masked_rows.push_back(&plan[size_t(c.entries[size_t(c.slot[size_t(i)])])]);
        apply_spec_mask_cpu(mel, count, n_mels, frames, m.augment, masked_rows);
      }
      if (progress) progress->advance(count);
    }
    return;
  }

#if GENRELAB_HAVE_CUDA
  if (!m.augmenter) m.augmenter = std::make_unique<cuda::Augmenter>();
  if (!m.stream) m.stream = std::make_unique<cuda::Stream>();
  cudaStream_t stream = stream_arg ? stream_arg : m.stream->get();
  const bool kept = m.is_kept(audio);
  if (!kept && m.staging.size() < size_t(kEntriesPerChunk * n))
    m.staging = cuda::PinnedBuffer<float>(size_t(kEntriesPerChunk * n));
  m.clips.resize(size_t(kEntriesPerChunk * n));
  m.augmented.resize(size_t(kEntriesPerChunk * n));
  m.window_buffer.resize(size_t(kEntriesPerChunk * per * window));
  for (const RowChunk& c : chunks) {
    const int64_t count = int64_t(c.slot.size()), distinct = int64_t(c.entries.size());
    std::vector<AugmentedExample> sub;  // sub: (distinct,) the chunk's entries
    for (int64_t e : c.entries) sub.push_back(plan[size_t(e)]);
    GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));  // staging is reused
    if (kept) {                                          // the entries' clips from the device copy
      for (int64_t j = 0; j < distinct; ++j)
        GENRELAB_CUDA_CHECK(cudaMemcpyAsync(m.clips.data() + j * n, m.kept_clips.data() + sub[size_t(j)].source * n,
                                            size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    } else {
      // Up to 16 clips (40 MB of 28 s clips) into pinned memory, on all cores: one core's copy
      // takes several ms, which the device waits for (streamed steps, offline builds).
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < distinct; ++j)
        std::memcpy(m.staging.data() + j * n, audio[size_t(sub[size_t(j)].source)]->data(), size_t(n) * sizeof(float));
      GENRELAB_CUDA_CHECK(cudaMemcpyAsync(m.clips.data(), m.staging.data(), size_t(distinct * n) * sizeof(float),
                                          cudaMemcpyHostToDevice, stream));
    }
    m.augmenter->apply(sub, m.augment, m.clips.data(), m.augmented.data(), n, stream);
    for (int64_t i = 0; i < count; ++i)
      cut_window_async(m.augmented.data() + c.slot[size_t(i)] * n, n, starts[size_t(c.window[size_t(i)])], window,
                       m.window_buffer.data() + i * window, stream);
    float* mel = dst + c.first_row * fsize;
    m.mel.compute(m.window_buffer.data(), count, window, mel, stream);
    if (any_mask) {
      std::vector<AugmentedExample> masked_rows;
      for (int64_t i = 0; i < count; ++i) masked_rows.push_back(sub[size_t(c.slot[size_t(i)])]);
      m.augmenter->spec_mask(masked_rows, m.augment, mel, n_mels, frames, stream);
    }
    if (progress) progress->advance(count);
  }
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(stream));
#else
  (void)stream_arg;
#endif
}

MelBandStats ExampleBuilder::band_stats(const std::vector<const std::vector<float>*>& audio) {
  MelBandStatsAccumulator acc(static_cast<int>(n_mels()));
  accumulate_band_stats(audio, acc);
  const auto r = acc.finish();
  return MelBandStats{r.mean, r.std};
}

void ExampleBuilder::accumulate_band_stats(const std::vector<const std::vector<float>*>& audio,
                                           MelBandStatsAccumulator& acc) {
  Impl& m = *impl_;
  if (audio.empty()) return;
  const int64_t n = int64_t(audio.front()->size());
  const std::vector<int64_t> starts = m.windows.starts(n);
  const int64_t per = int64_t(starts.size()), window = m.windows.window;
  const int64_t frames = m.mel.n_frames(window), n_mels = m.mel.params().n_mels;
  const int64_t chunk = 16;
  BackendArray<float> win_dev(m.device), mel_dev(m.device);  // (chunk · per, window), (chunk · per, n_mels, frames)
  win_dev.resize(size_t(chunk * per * window));
  mel_dev.resize(size_t(chunk * per * n_mels * frames));
#if GENRELAB_HAVE_CUDA
  if (m.is_kept(audio)) {  // the windows cut from the device copy, on the builder's stream
    cudaStream_t s = m.stream->get();
    for (int64_t first = 0; first < int64_t(audio.size()); first += chunk) {
      const int64_t count = std::min<int64_t>(chunk, int64_t(audio.size()) - first);
      for (int64_t i = 0; i < count; ++i)
        for (int64_t w = 0; w < per; ++w)
          cut_window_async(m.kept_clips.data() + (first + i) * n, n, starts[size_t(w)], window,
                           win_dev.data() + (i * per + w) * window, s);
      m.mel.compute_unstandardized(win_dev.data(), count * per, window, mel_dev.data(), s);
      m.mel.accumulate_band_stats(mel_dev.data(), count * per, frames, acc, s);  // waits for its partial sums
    }
    return;
  }
#endif
  std::vector<float> windows(size_t(chunk * per * window));
  for (int64_t first = 0; first < int64_t(audio.size()); first += chunk) {
    const int64_t count = std::min<int64_t>(chunk, int64_t(audio.size()) - first);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t w = 0; w < per; ++w)
        cut_window(audio[size_t(first + i)]->data(), n, starts[size_t(w)], window, windows.data() + (i * per + w) * window);
    win_dev.upload(0, windows.data(), size_t(count * per * window));
    m.mel.compute_unstandardized(win_dev.data(), count * per, window, mel_dev.data());
    m.mel.accumulate_band_stats(mel_dev.data(), count * per, frames, acc);
  }
}

}  // namespace genrelab
