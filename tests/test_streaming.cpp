// The streaming loader's input slots (host/train/streaming.h): each streamed step holds the
// builder's features of its rows and their labels, two slots take turns, and on cuda a step is
// featurised while the one before it still trains (a slot is rewritten only after the step two
// back, its last reader, has run).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "../host/train/streaming.h"
#include "genrelab/audio.h"
#include "genrelab/features.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "nn_fixtures.h"
#include "test_util.h"
#include "train_fixtures.h"
#if GENRELAB_HAVE_CUDA
#include <cuda_runtime.h>

#include "genrelab/cuda/check.h"
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kClipSamples = 22050;  // the tiny collection's 1-second clips
constexpr int64_t kRows = 5;             // rows per step

// A collection (by default the tiny one) streamed through a builder on `device`, with the decoded
// clips beside it for the reference features.
struct StreamingFixture {
  explicit StreamingFixture(Device device, const std::string& root = test::tiny_data())
      : mel(MelParams{}, device),
        builder(device, mel, AugmentSettings{}, WindowSpec{kClipSamples, kClipSamples}, MelParams{}.sample_rate) {
    for (const auto& e : fs::recursive_directory_iterator(root))
      if (e.is_regular_file()) paths.push_back(e.path().string());
    std::sort(paths.begin(), paths.end());
    decode.length = kClipSamples;
    for (size_t i = 0; i < paths.size(); ++i) {
      labels.push_back(int32_t(i % 10));
      audio.push_back(decode_audio(paths[i], decode).samples);
    }
    plan = identity_plan(int64_t(paths.size()));
    set = std::make_unique<StreamingSet>(builder, paths, labels, decode, kClipSamples, 2);
  }
  // Step b's rows: a stride through the collection, so steps share no slot contents by chance.
  std::vector<int64_t> rows_of(int64_t b) const {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < kRows; ++i) rows.push_back((7 * b + 11 * i) % int64_t(paths.size()));
    return rows;
  }
  // The builder's features of `rows` on the host: (rows, n_mels, n_frames).
  std::vector<float> reference(const std::vector<int64_t>& rows) {
    std::vector<const std::vector<float>*> ptrs;
    for (const auto& a : audio) ptrs.push_back(&a);
    BackendArray<float> dst(mel.device());
    dst.resize(size_t(int64_t(rows.size()) * builder.feature_size()));
    builder.featurize(ptrs, plan, rows, dst.data());
    std::vector<float> host(dst.size());
    dst.download(0, host.data(), host.size());
    return host;
  }
  void start(int64_t steps) {
    set->start_epoch(plan, [this](int64_t b) { return rows_of(b); }, 0, steps);
  }

  MelExtractor mel;
  ExampleBuilder builder;
  DecodeOptions decode;
  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  std::vector<std::vector<float>> audio;
  std::vector<AugmentedExample> plan;
  std::unique_ptr<StreamingSet> set;
};

TEST_CASE("streamed steps come in two alternating slots holding the builder's features", "[train]") {
  StreamingFixture f(Device::cpu);
  f.start(4);
  std::vector<const float*> slots;
  for (int64_t b = 0; b < 4; ++b) {
    INFO("step " << b);
    const StreamedBatch in = f.set->load_step(b, nullptr, nullptr);
    REQUIRE(in.rows == kRows);
    const std::vector<int64_t> rows = f.rows_of(b);
    const std::vector<float> want = f.reference(rows);
    CHECK(std::equal(want.begin(), want.end(), in.x));  // the same code on the same clips: bit for bit
    for (int64_t i = 0; i < kRows; ++i) CHECK(in.y[i] == f.labels[size_t(rows[size_t(i)])]);
    slots.push_back(in.x);
  }
  CHECK(slots[0] != slots[1]);
  CHECK(slots[2] == slots[0]);
  CHECK(slots[3] == slots[1]);
  CHECK_THROWS_WITH(f.set->load_step(2, nullptr, nullptr), Catch::Contains("loaded in order"));
}

TEST_CASE("a clip that no longer decodes stops streamed statistics and evaluation, and the set recovers", "[train]") {
  const auto dir = test::temp_dir("streaming-broken-clip");
  fs::copy(test::tiny_data(), dir / "data", fs::copy_options::recursive);
  StreamingFixture f(Device::cpu, (dir / "data").string());
  std::vector<const std::vector<float>*> all;
  for (const auto& a : f.audio) all.push_back(&a);
  // A network over the features, for evaluation (its weights are its seeded initialisation).
  const nn::ModelPlan plan = nn::plan_layers(
      test::small_cnn(), nn::Shape3{f.mel.params().n_mels, f.mel.n_frames(kClipSamples), 1}, 10);
  auto net = nn::make_cpu_network(plan, nn::TrainHyper{});
  // The clip in the middle of the second evaluation chunk (7 clips per chunk at batch 7), cut to
  // its 44-byte header after the set was made: the start-up check had passed it.
  const std::string broken = f.paths[10];
  const std::string bytes = [&] {
    std::ifstream in(broken, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }();
  fs::resize_file(broken, 44);
  for (int attempt = 0; attempt < 2; ++attempt) {  // a failure leaves nothing behind in the prefetcher
    INFO("attempt " << attempt);
    CHECK_THROWS_WITH(f.set->band_stats(nullptr), Catch::Contains(broken) && Catch::Contains("decoded when training started"));
    CHECK_THROWS_AS(f.set->predict(*net, 10, 7, nullptr), StreamedDecodeError);
  }
  std::ofstream(broken, std::ios::binary) << bytes;
  // Mended: the statistics of the clips held in memory, and the probabilities of their features.
  const MelBandStats streamed = f.set->band_stats(nullptr), held = f.builder.band_stats(all);
  CHECK(streamed.mean == held.mean);
  CHECK(streamed.std == held.std);
  std::vector<int64_t> rows(f.paths.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i);
  const std::vector<float> features = f.reference(rows);
  std::vector<float> want(rows.size() * 10);
  for (size_t first = 0; first < rows.size(); first += 7) {
    const int64_t n = std::min<int64_t>(7, int64_t(rows.size() - first));
    net->predict(features.data() + first * size_t(f.builder.feature_size()), n, want.data() + first * 10);
  }
  CHECK(f.set->predict(*net, 10, 7, nullptr) == want);
}

#if GENRELAB_HAVE_CUDA
TEST_CASE("gpu streamed steps are featurised while the previous step trains", "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  StreamingFixture f(Device::cuda);
  f.start(4);
  cuda::Stream net;  // stands in for the network's stream
  std::atomic<int> trained{-1};  // the last step whose stand-in training has finished
  // Step b "trains" on `net` for 300 ms, then marks itself done.
  struct Hold {
    std::atomic<int>* trained;
    int step;
  };
  std::vector<std::unique_ptr<Hold>> holds;
  auto train = [&](int step) {
    holds.push_back(std::make_unique<Hold>(Hold{&trained, step}));
    GENRELAB_CUDA_CHECK(cudaLaunchHostFunc(
        net.get(),
        [](void* p) {
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          auto* h = static_cast<Hold*>(p);
          h->trained->store(h->step);
        },
        holds.back().get()));
  };
  auto download = [](const StreamedBatch& in, int64_t count) {
    std::vector<float> host(static_cast<size_t>(count));
    GENRELAB_CUDA_CHECK(cudaMemcpy(host.data(), in.x, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
  };
  const int64_t count = kRows * f.builder.feature_size();
  // A first epoch without stand-in training: the slots, cuFFT plans and staging buffers are made
  // (allocations may synchronise the device), and every step holds its reference features.
  for (int64_t b = 0; b < 4; ++b) {
    INFO("first epoch, step " << b);
    const StreamedBatch in = f.set->load_step(b, net.get(), nullptr);
    CHECK(download(in, count) == f.reference(f.rows_of(b)));
  }
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(net.get()));
  f.start(4);
  const StreamedBatch s0 = f.set->load_step(0, net.get(), nullptr);
  train(0);
  const StreamedBatch s1 = f.set->load_step(1, net.get(), nullptr);
  CHECK(trained.load() == -1);  // step 1 was made while step 0 trained
  CHECK(s1.x != s0.x);
  train(1);
  const StreamedBatch s2 = f.set->load_step(2, net.get(), nullptr);
  CHECK(trained.load() >= 0);  // step 0's slot was rewritten only after step 0 had run
  CHECK(s2.x == s0.x);  // step 0's slot, now holding step 2
  GENRELAB_CUDA_CHECK(cudaStreamSynchronize(net.get()));
  CHECK(download(s1, count) == f.reference(f.rows_of(1)));
  CHECK(download(s2, count) == f.reference(f.rows_of(2)));
}

TEST_CASE("gpu clips kept on the device give the band statistics and examples of clips uploaded per chunk",
          "[train][gpu]") {
  GENRELAB_REQUIRE_GPU();
  StreamingFixture f(Device::cuda);
  std::vector<const std::vector<float>*> clips;
  std::vector<uint32_t> keys;
  for (const auto& a : f.audio) {
    clips.push_back(&a);
    keys.push_back(uint32_t(keys.size()));
  }
  // The baseline's offline augmentation: each clip read for its original, a noise and a
  // pitch-shift copy.
  AugmentSettings augment;
  augment.noise.p = 0.7;
  augment.pitch_shift.p = 0.5;
  const std::vector<AugmentedExample> plan = plan_offline(augment, keys);
  REQUIRE(plan.size() > clips.size());
  const WindowSpec windows{kClipSamples, kClipSamples};
  ExampleBuilder uploading(Device::cuda, f.mel, augment, windows, MelParams{}.sample_rate),
      keeping(Device::cuda, f.mel, augment, windows, MelParams{}.sample_rate);
  auto features = [&](ExampleBuilder& b, const std::vector<const std::vector<float>*>& audio) {
    ExampleSet set(Device::cuda);
    b.build(audio, f.labels, plan, set, "examples");
    std::vector<float> host(set.features.size());
    set.features.download(0, host.data(), host.size());
    return host;
  };
  const MelBandStats want_stats = uploading.band_stats(clips);
  const std::vector<float> want = features(uploading, clips);
  // Kept copies of the clips, whose host side is then silenced: what the keeping builder makes
  // from them can only come from the device copy. The same clips through the same code: bit for bit.
  std::vector<std::vector<float>> copies = f.audio;
  std::vector<const std::vector<float>*> kept;
  for (const auto& a : copies) kept.push_back(&a);
  REQUIRE(keeping.keep_on_device(kept));
  for (auto& a : copies) std::fill(a.begin(), a.end(), 0.0f);
  const MelBandStats got_stats = keeping.band_stats(kept);
  CHECK(got_stats.mean == want_stats.mean);
  CHECK(got_stats.std == want_stats.std);
  CHECK(features(keeping, kept) == want);
  // Another list (the same clips in another order) is not the kept one: uploaded per chunk.
  const std::vector<const std::vector<float>*> reversed(clips.rbegin(), clips.rend());
  CHECK(features(keeping, reversed) == features(uploading, reversed));
  // Released, the silenced host clips are read.
  keeping.release_device_clips();
  CHECK(features(keeping, kept) != want);
  CHECK(features(keeping, kept) == features(uploading, kept));
}
#endif

}  // namespace
}  // namespace genrelab
