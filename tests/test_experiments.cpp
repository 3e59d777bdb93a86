// Every committed experiment file loads and validates (without GTZAN_ROOT set), and the
// baseline file is exactly the recipe: the keys the article's code used.
#include <filesystem>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;

TEST_CASE("every experiment file validates", "[experiments]") {
  ::unsetenv("GTZAN_ROOT");
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(test::source_dir() + "/experiments")) {
    if (e.path().extension() != ".json") continue;
    INFO(e.path().string());
    CHECK_NOTHROW(Config::load(e.path().string()));
    ++n;
  }
  CHECK(n >= 14);
}

TEST_CASE("seed-baseline is the article recipe", "[experiments]") {
  const Config c = Config::load(test::source_dir() + "/experiments/seed-baseline.json");
  CHECK(c.get_int("dataset.sample_rate") == 22050);
  CHECK(c.get_int("dataset.clip_samples") == 617400);
  CHECK(c.get_string("split.kind") == "sklearn");
  CHECK(c.get_number("split.test_fraction") == 0.2);
  CHECK(c.get_int("split.seed") == 6);
  CHECK(c.get_string("augment.mode") == "offline");
  CHECK(c.get_number("augment.noise.p") == 0.7);
  CHECK(c.get_number("augment.noise.min_amplitude") == 0.001);
  CHECK(c.get_number("augment.noise.max_amplitude") == 0.015);
  CHECK(c.get_number("augment.pitch_shift.p") == 0.5);
  CHECK(c.get_number("augment.pitch_shift.min_semitones") == -4);
  CHECK(c.get_number("augment.pitch_shift.max_semitones") == 12);
  CHECK(c.get_number("augment.time_stretch.p") == 0);
  CHECK_FALSE(c.get_bool("features.db"));
  CHECK(c.get_int("train.batch_size") == 32);
  CHECK(c.get_int("train.epochs") == 50);
  CHECK(c.get_number("train.epsilon") == Approx(1e-7));
  CHECK(c.at("model.layers") == Config().at("model.layers"));  // the schema default is the baseline model
  // The root needs GTZAN_ROOT only when used.
  ::unsetenv("GTZAN_ROOT");
  CHECK_THROWS_AS(c.get_path("dataset.root"), ConfigError);
}
