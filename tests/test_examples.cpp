// The examples a CPU training run trains and evaluates on (host/train/examples.h), built as the
// trainer builds them from an experiment file, against their composition from the public pieces:
// each plan entry's apply_augment_cpu, the windows of WindowSpec::starts cut by hand,
// MelExtractor::compute of one window, and apply_spec_mask_cpu (itself checked here for masking
// whole bands and frames with zeros).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../host/train/examples.h"
#include "genrelab/augment.h"
#include "genrelab/config.h"
#include "genrelab/dataset.h"
#include "genrelab/features.h"
#include "genrelab/train.h"
#include "test_util.h"
#include "train_fixtures.h"

namespace genrelab {
namespace {

// An experiment file of the project on the tiny collection: 1-second clips cut into three
// half-second windows, so the window cut is part of what is checked.
Config experiment_on_tiny_data(const std::string& file, std::vector<std::string> overrides) {
  overrides.insert(overrides.begin(), {"dataset.root=" + test::tiny_data(), "dataset.clip_samples=22050",
                                       "dataset.window_samples=11025", "dataset.window_hop=5512"});
  return Config::load(test::source_dir() + "/experiments/" + file, overrides);
}

// A split's clips as the trainer hands them to the builder: audio and labels in split order, keyed
// in the augmentation streams by their index in the collection.
struct SplitPart {
  std::vector<const std::vector<float>*> audio;
  std::vector<int32_t> labels;
  std::vector<uint32_t> keys;
};

struct TinyCollection {
  explicit TinyCollection(const Config& config) {
    LoadOptions load;
    load.decode = decode_options_from_config(config);
    load.threads = 2;
    load.warn = false;
    load.progress = false;
    loaded = load_dataset(scan_dataset(dataset_options_from_config(config)), load);
  }
  // Every `stride`-th clip from `first`, `count` of them.
  SplitPart part(int64_t first, int64_t stride, int64_t count) const {
    SplitPart p;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t c = first + i * stride;
      REQUIRE(size_t(c) < loaded.clips.size());
      p.audio.push_back(&loaded.clips[size_t(c)].samples);
      p.labels.push_back(int32_t(loaded.clips[size_t(c)].clip.label));
      p.keys.push_back(uint32_t(c));
    }
    return p;
  }
  LoadedDataset loaded;
};

// The builder's rows of `plan` on the host: (plan.size() · windows, n_mels, n_frames), with the set's
// labels and groups in `set`.
std::vector<float> built_rows(ExampleBuilder& builder, const SplitPart& part, const std::vector<AugmentedExample>& plan,
                              ExampleSet& set) {
  builder.build(part.audio, part.labels, plan, set, "examples");
  std::vector<float> rows(set.features.size());
  set.features.download(0, rows.data(), rows.size());
  return rows;
}

// The same rows composed from the public pieces, one window at a time; `masked` false leaves the
// SpecAugment masks out.
std::vector<float> reference_rows(MelExtractor& mel, const AugmentSettings& augment, const WindowSpec& windows,
                                  int sample_rate, const SplitPart& part, const std::vector<AugmentedExample>& plan,
                                  bool masked = true) {
  const int64_t n = int64_t(part.audio.front()->size());
  const std::vector<int64_t> starts = windows.starts(n);
  const int64_t per = int64_t(starts.size()), n_mels = mel.params().n_mels;
  const int64_t frames = mel.n_frames(windows.window), fsize = n_mels * frames;
  std::vector<float> rows(plan.size() * size_t(per * fsize));
  std::vector<float> window(static_cast<size_t>(windows.window));
  for (size_t k = 0; k < plan.size(); ++k) {
    const AugmentedExample& ex = plan[k];
    const std::vector<float>& clip = *part.audio[size_t(ex.source)];
    const std::vector<float> y = apply_augment_cpu(ex, augment, clip.data(), n, sample_rate);
    REQUIRE(int64_t(y.size()) == n);
    for (int64_t w = 0; w < per; ++w) {
      const int64_t start = starts[size_t(w)], end = std::min(n, start + windows.window);
      std::fill(window.begin(), window.end(), 0.0f);
      std::copy(y.begin() + start, y.begin() + end, window.begin());
      float* out = rows.data() + (int64_t(k) * per + w) * fsize;
      mel.compute(window.data(), 1, windows.window, out);
      if (masked && ex.has(AugmentKind::spec_mask)) apply_spec_mask_cpu(out, 1, n_mels, frames, augment, {&ex});
    }
  }
  return rows;
}

// Two rows of fsize floats, bit for bit.
bool same_rows(const float* a, const float* b, int64_t fsize) {
  return std::memcmp(a, b, size_t(fsize) * sizeof(float)) == 0;
}
// Row r of (rows, fsize) tables a and b, bit for bit.
bool same_row(const std::vector<float>& a, const std::vector<float>& b, int64_t r, int64_t fsize) {
  return same_rows(a.data() + r * fsize, b.data() + r * fsize, fsize);
}

// A masked row differs from its unmasked one only by zeros that fill whole mel bands or whole
// frames (SpecAugment's frequency and time masks), and at least one such zero is there.
void check_masked_by_bands_and_frames(const float* masked, const float* clean, int64_t n_mels, int64_t frames) {
  int64_t zeroed = 0;
  for (int64_t m = 0; m < n_mels; ++m)
    for (int64_t t = 0; t < frames; ++t) {
      const float v = masked[m * frames + t];
      if (v == clean[m * frames + t]) continue;
      REQUIRE(v == 0.0f);
      bool band = true, frame = true;
      for (int64_t u = 0; u < frames; ++u) band = band && masked[m * frames + u] == 0.0f;
      for (int64_t q = 0; q < n_mels; ++q) frame = frame && masked[q * frames + t] == 0.0f;
      INFO("mel " << m << ", frame " << t);
      REQUIRE((band || frame));
      ++zeroed;
    }
  CHECK(zeroed > 0);
}

}  // namespace

// The offline training set of each experiment file: per clip the original and one copy per
// enabled augmentation (SPEC §1: the baseline's noise and pitch-shift copies, 3 examples per
// clip), every row the features of its window of the CPU augmentation; the test set unaugmented.
TEST_CASE("offline training examples are the windowed features of each clip's CPU augmentation", "[train]") {
  struct Case {
    const char* file;
    std::vector<std::string> overrides;
    size_t copies;  // offline copies per clip the file configures
  };
  const std::vector<Case> cases = {
      {"seed-baseline.json", {}, 2},                           // noise + pitch shift
      {"seed-baseline.json", {"augment.spec_mask.p=0.6"}, 3},  // + SpecAugment masks
      {"quickstart.json", {}, 0},                              // no augmentation; dB, standardised
      {"quickstart.json", {"augment.gain.p=0.5", "augment.time_shift.p=0.5"}, 2},
  };
  for (const Case& c : cases) {
    std::string name = c.file;
    for (const auto& o : c.overrides) name += " --set " + o;
    SECTION(name) {
      const Config config = experiment_on_tiny_data(c.file, c.overrides);
      const AugmentSettings augment = AugmentSettings::from_config(config);
      REQUIRE(augment.mode == AugmentSettings::Mode::offline);
      REQUIRE(augment.enabled().size() == c.copies);
      const WindowSpec windows = WindowSpec::from_config(config);
      const MelParams params = MelParams::from_config(config);
      const TinyCollection data(config);
      // 12 training clips and 6 test clips, interleaved through the classes.
      const SplitPart train = data.part(1, 5, 12), test = data.part(3, 7, 6);
      MelExtractor mel(params, Device::cpu);
      ExampleBuilder builder(Device::cpu, mel, augment, windows, params.sample_rate);
      if (params.standardize) mel.set_band_stats(builder.band_stats(train.audio));
      const int64_t per = builder.windows_per_clip(22050), fsize = builder.feature_size();
      REQUIRE(per == 3);
      const int64_t n_mels = params.n_mels, frames = fsize / n_mels;

      const std::vector<AugmentedExample> plan = plan_augment(augment, train.keys, 0);
      ExampleSet set(Device::cpu);
      const std::vector<float> got = built_rows(builder, train, plan, set);
      // clips × (1 + offline copies) examples, each in `per` windows, labelled with its clip's class.
      CHECK(plan.size() == train.audio.size() * (1 + c.copies));
      REQUIRE(set.count == int64_t(plan.size()) * per);
      REQUIRE(set.feature_size == fsize);
      const std::vector<float> want = reference_rows(mel, augment, windows, params.sample_rate, train, plan);
      REQUIRE(got.size() == want.size());
      int64_t fired = 0, unfired_copies = 0, masked = 0;
      std::vector<int64_t> fired_by_kind(kAugmentKinds, 0);
      const std::vector<float> clean = reference_rows(mel, augment, windows, params.sample_rate, train, plan, false);
      for (size_t k = 0; k < plan.size(); ++k) {
        const AugmentedExample& ex = plan[k];
        const size_t clip = k / (1 + c.copies);
        INFO("plan entry " << k << " (clip " << clip << ", copy of " << ex.copy_of << ", steps " << ex.steps.size()
                           << ")");
        CHECK(ex.source == int64_t(clip));
        CHECK(ex.steps.size() <= 1);  // an offline copy goes through its one augmentation only
        for (const auto& s : ex.steps) {
          CHECK(int(s.kind) == ex.copy_of);
          ++fired_by_kind[size_t(s.kind)];
        }
        for (int64_t w = 0; w < per; ++w) {
          const int64_t r = int64_t(k) * per + w;
          INFO("window " << w);
          CHECK(same_row(got, want, r, fsize));
          CHECK(set.labels[size_t(r)] == train.labels[clip]);
          CHECK(set.group[size_t(r)] == int64_t(k));
          // A copy whose augmentation did not fire is the original again; one that fired is not.
          if (ex.copy_of >= 0) {
            const int64_t original = int64_t(clip * (1 + c.copies)) * per + w;
            CHECK(same_rows(got.data() + r * fsize, got.data() + original * fsize, fsize) == ex.steps.empty());
          }
          if (ex.has(AugmentKind::spec_mask))
            check_masked_by_bands_and_frames(got.data() + r * fsize, clean.data() + r * fsize, n_mels, frames);
        }
        if (ex.copy_of >= 0) (ex.steps.empty() ? unfired_copies : fired) += 1;
        masked += ex.has(AugmentKind::spec_mask);
      }
      // Each configured augmentation fired for some clips and not for others (the test is not vacuous).
      for (AugmentKind k : augment.enabled()) {
        INFO(augment_name(k));
        CHECK(fired_by_kind[size_t(k)] > 0);
      }
      if (c.copies > 0) CHECK(unfired_copies > 0);
      CHECK(masked == fired_by_kind[size_t(AugmentKind::spec_mask)]);

      // Test clips: one unaugmented example per clip.
      const std::vector<AugmentedExample> test_plan = identity_plan(int64_t(test.audio.size()));
      for (const auto& ex : test_plan) CHECK(ex.steps.empty());
      ExampleSet test_set(Device::cpu);
      const std::vector<float> test_got = built_rows(builder, test, test_plan, test_set);
      REQUIRE(test_set.count == int64_t(test.audio.size()) * per);
      const std::vector<float> test_want =
          reference_rows(mel, AugmentSettings{}, windows, params.sample_rate, test, test_plan);
      for (int64_t r = 0; r < test_set.count; ++r) {
        INFO("test row " << r);
        CHECK(same_row(test_got, test_want, r, fsize));
        CHECK(test_set.labels[size_t(r)] == test.labels[size_t(r / per)]);
      }
    }
  }
}

// Online augmentation (augment.mode online): each epoch remakes one example per clip through the
// chain of every augmentation that fires for it that epoch. Each epoch's rows are the composition
// above, and two epochs' rows differ exactly where their plans differ: an entry with the same
// steps and no epoch-keyed draw (noise samples, mask positions) is the same, any other is not.
TEST_CASE("online training examples follow each epoch's plan and change exactly where it changes", "[train]") {
  const Config config = experiment_on_tiny_data(
      "quickstart.json", {"augment.mode=online", "augment.pitch_shift.p=0.25", "augment.gain.p=0.25",
                          "augment.noise.p=0.25", "augment.spec_mask.p=0.25",
                          // masks narrower than the 22-frame windows, so that a mask never blanks a whole row
                          "augment.spec_mask.max_time_width=4", "augment.spec_mask.max_freq_width=8"});
  const AugmentSettings augment = AugmentSettings::from_config(config);
  REQUIRE(augment.mode == AugmentSettings::Mode::online);
  const WindowSpec windows = WindowSpec::from_config(config);
  const MelParams params = MelParams::from_config(config);
  const TinyCollection data(config);
  const SplitPart train = data.part(0, 2, 30);
  MelExtractor mel(params, Device::cpu);
  ExampleBuilder builder(Device::cpu, mel, augment, windows, params.sample_rate);
  if (params.standardize) mel.set_band_stats(builder.band_stats(train.audio));
  const int64_t per = builder.windows_per_clip(22050), fsize = builder.feature_size();

  // The trainer's epochs count from 1.
  std::vector<std::vector<AugmentedExample>> plans;
  std::vector<std::vector<float>> rows;
  for (uint32_t epoch : {1u, 2u}) {
    INFO("epoch " << epoch);
    plans.push_back(plan_augment(augment, train.keys, epoch));
    ExampleSet set(Device::cpu);
    rows.push_back(built_rows(builder, train, plans.back(), set));
    REQUIRE(plans.back().size() == train.audio.size());  // online: no copies
    REQUIRE(set.count == int64_t(train.audio.size()) * per);
    const std::vector<float> want = reference_rows(mel, augment, windows, params.sample_rate, train, plans.back());
    for (int64_t r = 0; r < set.count; ++r) {
      INFO("row " << r);
      CHECK(same_row(rows.back(), want, r, fsize));
    }
  }
  int64_t same = 0, changed = 0, chained = 0;
  for (size_t k = 0; k < train.audio.size(); ++k) {
    const auto& a = plans[0][k].steps;
    const auto& b = plans[1][k].steps;
    bool equal_plans = a.size() == b.size();
    for (size_t i = 0; equal_plans && i < a.size(); ++i)
      equal_plans = a[i].kind == b[i].kind && a[i].value == b[i].value && a[i].kind != AugmentKind::noise &&
                    a[i].kind != AugmentKind::spec_mask;
    chained += a.size() > 1;
    (equal_plans ? same : changed) += 1;
    for (int64_t w = 0; w < per; ++w) {
      INFO("clip " << k << " (steps " << a.size() << " then " << b.size() << "), window " << w);
      CHECK(same_row(rows[0], rows[1], int64_t(k) * per + w, fsize) == equal_plans);
    }
  }
  // Both outcomes and chains of several steps occur (the test is not vacuous).
  CHECK(same > 0);
  CHECK(changed > 0);
  CHECK(chained > 0);
}

}  // namespace genrelab
