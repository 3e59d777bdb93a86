// The streaming feature pipeline against direct per-clip computation: batches in order, clips
// cut and padded, a resampled file, a corrupt file reported in place, errors from the sink.
#include <cmath>
#include <fstream>

#include "genrelab/audio.h"
#include "genrelab/config.h"
#include "genrelab/pipeline.h"
#include "test_util.h"
#if GENRELAB_HAVE_CUDA
#include <cuda_runtime.h>
#endif

using namespace genrelab;

namespace {

constexpr int64_t kClip = 6000;

// Eight files: different lengths (shorter and longer than the clip), one at 16 kHz, one corrupt.
std::vector<std::string> make_files(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (int i = 0; i < 8; ++i) {
    const std::string path = (dir / ("clip" + std::to_string(i) + ".wav")).string();
    if (i == 5) {
      std::ofstream(path) << "this is not audio";
    } else {
      const int rate = i == 2 ? 16000 : 22050;
      const int64_t n = 3000 + 1500 * i;
      std::vector<float> y(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t)
        y[size_t(t)] = float(0.4 * std::sin(2 * M_PI * (200.0 + 150.0 * i) * double(t) / rate) +
                             0.05 * std::sin(0.37 * double(t * i)));
      write_wav(path, y, rate);
    }
    files.push_back(path);
  }
  return files;
}

MelParams small_params() {
  MelParams p = MelParams::from_config(Config());
  p.n_mels = 80;
  return p;
}

// Mel of each file computed on its own: (n_mels * n_frames) per file; corrupt -> silence.
std::vector<std::vector<float>> direct(const std::vector<std::string>& files, const MelParams& p) {
  MelExtractor ex(p, Device::cpu);
  DecodeOptions opt;
  opt.length = kClip;
  std::vector<std::vector<float>> out;
  for (const auto& f : files) {
    std::vector<float> y(size_t(kClip), 0.0f);
    try {
      y = decode_audio(f, opt).samples;
    } catch (const AudioError&) {
    }
    out.push_back(ex.compute_host(y, 1, kClip));
  }
  return out;
}

void check_cpu_pipeline(int64_t batch_size, int ring, int threads) {
  const auto dir = test::temp_dir("pipeline");
  const std::vector<std::string> files = make_files(dir);
  const MelParams p = small_params();
  const auto want = direct(files, p);
  PipelineOptions o;
  o.batch_size = batch_size;
  o.clip_samples = kClip;
  o.ring = ring;
  o.decode_threads = threads;
  FeaturePipeline pipe(p, Device::cpu, o);
  const int64_t per = int64_t(p.n_mels) * pipe.n_frames();
  int64_t expect_index = 0, clips_seen = 0;
  pipe.run(files, [&](const FeatureBatch& b) {
    CHECK(b.index == expect_index++);
    CHECK(b.first == clips_seen);
    CHECK(b.count == std::min<int64_t>(batch_size, int64_t(files.size()) - b.first));
    REQUIRE(b.errors.size() == size_t(b.count));
    const std::vector<float> mel(b.mel, b.mel + b.count * per);  // host memory on the CPU backend
    for (int64_t c = 0; c < b.count; ++c) {
      const int64_t j = b.first + c;
      CHECK(b.errors[size_t(c)].empty() == (j != 5));
      if (j == 5) CHECK_THAT(b.errors[size_t(c)], Catch::Contains("clip5.wav"));
      const std::vector<float> got(mel.begin() + c * per, mel.begin() + (c + 1) * per);
      test::require_close(got, want[size_t(j)], 0, 0, "clip " + std::to_string(j));
    }
    clips_seen += b.count;
  });
  CHECK(clips_seen == int64_t(files.size()));
  std::filesystem::remove_all(dir);
}

}  // namespace

TEST_CASE("CPU pipeline equals per-clip mel for batches of 3 and a ring of 2", "[pipeline]") {
  check_cpu_pipeline(3, 2, 2);
}

TEST_CASE("CPU pipeline with a ring of 1 and more threads than clips per batch", "[pipeline]") {
  check_cpu_pipeline(2, 1, 4);
}

TEST_CASE("CPU pipeline with one batch holding every clip", "[pipeline]") { check_cpu_pipeline(16, 3, 1); }

TEST_CASE("pipeline stops cleanly when the sink throws", "[pipeline]") {
  const auto dir = test::temp_dir("pipeline-throw");
  const std::vector<std::string> files = make_files(dir);
  PipelineOptions o;
  o.batch_size = 2;
  o.clip_samples = kClip;
  o.ring = 2;
  FeaturePipeline pipe(small_params(), Device::cpu, o);
  int calls = 0;
  CHECK_THROWS_WITH(pipe.run(files,
                             [&](const FeatureBatch& b) {
                               ++calls;
                               if (b.index == 1) throw RuntimeError("sink failed");
                             }),
                    "sink failed");
  CHECK(calls == 2);
  // The pipeline is reusable after a failed run.
  int batches = 0;
  pipe.run(files, [&](const FeatureBatch&) { ++batches; });
  CHECK(batches == 4);
  std::filesystem::remove_all(dir);
}

TEST_CASE("GPU pipeline equals the CPU pipeline", "[pipeline][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const auto dir = test::temp_dir("pipeline-gpu");
  const std::vector<std::string> files = make_files(dir);
  const MelParams p = small_params();
  const auto want = direct(files, p);
  PipelineOptions o;
  o.batch_size = 3;
  o.clip_samples = kClip;
  o.ring = 2;
  FeaturePipeline pipe(p, Device::cuda, o);
  const int64_t per = int64_t(p.n_mels) * pipe.n_frames();
  int64_t seen = 0;
  pipe.run(files, [&](const FeatureBatch& b) {
    REQUIRE(b.stream != nullptr);
    std::vector<float> mel(size_t(b.count * per));
#if GENRELAB_HAVE_CUDA
    REQUIRE(cudaMemcpyAsync(mel.data(), b.mel, mel.size() * sizeof(float), cudaMemcpyDeviceToHost, b.stream) ==
            cudaSuccess);
    REQUIRE(cudaStreamSynchronize(b.stream) == cudaSuccess);
#endif
    for (int64_t c = 0; c < b.count; ++c) {
      const int64_t j = b.first + c;
      CHECK(b.errors[size_t(c)].empty() == (j != 5));
      const std::vector<float> got(mel.begin() + c * per, mel.begin() + (c + 1) * per);
      const std::vector<float>& ref = want[size_t(j)];
      const float peak = *std::max_element(ref.begin(), ref.end());
      test::require_close(got, ref, 1e-4 * peak, 0, "gpu pipeline clip " + std::to_string(j));
    }
    seen += b.count;
  });
  CHECK(seen == 8);
  std::filesystem::remove_all(dir);
}
