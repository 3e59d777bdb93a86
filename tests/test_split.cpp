// Splits: bit-exact parity with sklearn's train_test_split (committed fixture and a live re-run of
// tools/fixtures/make_split_fixtures.py), the valid and stratified rules, and manifest matching.
#include <fstream>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "genrelab/io.h"
#include "genrelab/split.h"
#include "test_util.h"

using namespace genrelab;
using nlohmann::json;

namespace {

std::vector<Clip> fake_clips(int64_t n, int n_classes) {
  std::vector<Clip> clips;
  for (int64_t i = 0; i < n; ++i)
    clips.push_back({"/x/" + std::to_string(i), std::to_string(i), int(i * n_classes / n)});
  return clips;
}

std::vector<int64_t> ints(const json& a) { return a.get<std::vector<int64_t>>(); }

// Compares every case of a fixture document with make_split.
void check_fixture(const json& doc) {
  REQUIRE(doc.at("sklearn_cases").size() == 18);
  for (const json& c : doc.at("sklearn_cases")) {
    SplitOptions o;
    o.kind = "sklearn";
    o.seed = c.at("seed").get<uint32_t>();
    o.test_fraction = c.at("test_fraction").get<double>();
    const int64_t n = c.at("n").get<int64_t>();
    const Split s = make_split(fake_clips(n, 10), 10, o);
    INFO("sklearn n=" << n << " seed=" << o.seed << " f=" << o.test_fraction);
    CHECK(s.test == ints(c.at("test")));
    CHECK(s.train == ints(c.at("train")));
    CHECK(s.valid.empty());
  }
  for (const char* kind : {"valid_cases", "stratified_cases"}) {
    REQUIRE(doc.at(kind).size() == 3);
    for (const json& c : doc.at(kind)) {
      SplitOptions o;
      o.kind = std::string(kind) == "valid_cases" ? "sklearn" : "stratified";
      o.seed = c.at("seed").get<uint32_t>();
      o.test_fraction = c.at("test_fraction").get<double>();
      o.valid_fraction = c.at("valid_fraction").get<double>();
      const int64_t n = c.at("n").get<int64_t>();
      const Split s = make_split(fake_clips(n, 10), 10, o);
      INFO(kind << " n=" << n << " seed=" << o.seed);
      CHECK(s.test == ints(c.at("test")));
      CHECK(s.valid == ints(c.at("valid")));
      CHECK(s.train == ints(c.at("train")));
    }
  }
}

}  // namespace

TEST_CASE("legacy MT19937 equals std::mt19937 for an integer seed", "[split]") {
  // numpy's mt19937_seed is the reference init_genrand, as std::mt19937(seed) is.
  for (uint32_t seed : {0u, 6u, 42u, 4294967295u}) {
    LegacyRandomState r(seed);
    std::mt19937 ref(seed);
    for (int i = 0; i < 2000; ++i) REQUIRE(r.next_uint32() == ref());
  }
}

TEST_CASE("sklearn split of 999 clips with seed 6 is 799 train and 200 test", "[split]") {
  SplitOptions o;  // defaults: sklearn, 0.2, seed 6
  const Split s = make_split(fake_clips(999, 10), 10, o);
  CHECK(s.train.size() == 799);
  CHECK(s.test.size() == 200);
  // First test indices from sklearn 1.9.1 / numpy 2.4.6 (train_test_split(arange(999), test_size=0.2, random_state=6)).
  CHECK(std::vector<int64_t>(s.test.begin(), s.test.begin() + 10) ==
        std::vector<int64_t>{977, 22, 909, 399, 438, 736, 260, 989, 263, 257});
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.test.begin(), s.test.end());
  CHECK(all.size() == 999);
}

TEST_CASE("splits equal the committed sklearn fixture", "[split]") {
  check_fixture(json::parse(read_file(test::source_dir() + "/tests/data/split_fixtures.json")));
}

TEST_CASE("splits equal a live sklearn run", "[split][python]") {
  const std::string py = test::python_with_or_skip("numpy, sklearn");
  if (py.empty()) return;
  const auto dir = test::temp_dir("split-live");
  const std::string out = (dir / "fixtures.json").string();
  REQUIRE(test::run_command("'" + py + "' '" + test::source_dir() + "/tools/fixtures/make_split_fixtures.py' '" + out +
                            "'") == 0);
  check_fixture(json::parse(read_file(out)));
}

TEST_CASE("split fractions that leave no training clip are config errors", "[split]") {
  SplitOptions o;
  o.test_fraction = 0.6;
  o.valid_fraction = 0.5;
  CHECK_THROWS_AS(make_split(fake_clips(10, 2), 2, o), ConfigError);
  o.valid_fraction = 0;
  o.test_fraction = 1.0;
  CHECK_THROWS_AS(make_split(fake_clips(10, 2), 2, o), ConfigError);
  o.test_fraction = 0.2;
  o.kind = "stratified";
  // One clip per class stays in training even when the fraction rounds it into test.
  const Split s = make_split(fake_clips(2, 2), 2, o);
  CHECK(s.train == std::vector<int64_t>{0, 1});
  CHECK(s.test.empty());
}

TEST_CASE("manifest split matches list lines to any extension and reports misses", "[split]") {
  const auto dir = test::temp_dir("split-manifest");
  std::vector<Clip> clips = {{"/r/blues/blues.00000.flac", "blues/blues.00000.flac", 0},
                             {"/r/blues/blues.00001.flac", "blues/blues.00001.flac", 0},
                             {"/r/jazz/jazz.00000.au", "jazz/jazz.00000.au", 1},
                             {"/r/jazz/jazz.00001.wav", "jazz/jazz.00001.wav", 1}};
  const std::vector<SkippedFile> skipped = {{"/r/jazz/jazz.00054.wav", "jazz/jazz.00054.wav", "is empty (0 bytes)"}};
  std::ofstream(dir / "train.txt")
      << "# comment\nblues/blues.00001.wav\njazz/jazz.00054.wav\n\njazz/jazz.00000.wav\r\n";
  std::ofstream(dir / "valid.txt") << "blues/blues.00099.wav\n";
  std::ofstream(dir / "test.txt") << "jazz/jazz.00001.wav\nblues/blues.00000.wav\nblues/blues.00001.wav\n";
  SplitOptions o;
  o.kind = "manifest";
  o.train_list = (dir / "train.txt").string();
  o.valid_list = (dir / "valid.txt").string();
  o.test_list = (dir / "test.txt").string();
  const Split s = make_split(clips, 2, o, skipped);
  CHECK(s.train == std::vector<int64_t>{1, 2});
  CHECK(s.valid.empty());
  CHECK(s.test == std::vector<int64_t>{3, 0});
  REQUIRE(s.missed.size() == 3);
  CHECK(s.missed[0].entry == "jazz/jazz.00054.wav");
  CHECK(s.missed[0].line == 3);
  CHECK(s.missed[0].reason == "failed to decode: is empty (0 bytes)");
  CHECK(s.missed[1].entry == "blues/blues.00099.wav");
  CHECK(s.missed[1].reason == "not on disk");
  CHECK(s.missed[2].reason == "already listed in train");

  o.test_list = (dir / "nope.txt").string();
  CHECK_THROWS_AS(make_split(clips, 2, o, skipped), ConfigError);
}
