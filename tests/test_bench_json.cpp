// The benchmarks' JSON convention (tools/bench/README.md): `genrelab bench --json` writes
// {"bench", "device", "results": [{"work", "items", "seconds", "items_per_s"}]} and
// tools/bench/compare.py pairs it with a peer's result of the same work into the right ratio.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>

#include "genrelab/device.h"
#include "test_util.h"

namespace test = genrelab::test;
using nlohmann::json;

namespace {

json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  REQUIRE(f.good());
  return json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}

void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
}

// Runs one bench with --json into dir/name.json and returns the document.
json run_bench(const std::filesystem::path& dir, const std::string& name, const std::string& args) {
  const auto file = dir / (name + ".json");
  std::string out;
  const int rc = test::run_command(test::genrelab_binary() + " bench " + args + " --json " + file.string() + " 2>" +
                                       (dir / (name + ".err")).string(),
                                   &out);
  INFO("stdout: " << out);
  REQUIRE(rc == 0);
  return read_json(file);
}

// The shape compare.py reads, and items_per_s = items / seconds (hand-computed).
const json& check_result(const json& doc, const std::string& bench, const std::string& work, int64_t items) {
  REQUIRE(doc.at("bench") == bench);
  REQUIRE(doc.at("device") == "cpu");
  REQUIRE(doc.at("results").is_array());
  REQUIRE(doc.at("results").size() == 1);
  const json& r = doc["results"][0];
  CHECK(r.at("work") == work);
  CHECK(r.at("device") == "cpu");
  CHECK(r.at("items").get<int64_t>() == items);
  const double seconds = r.at("seconds").get<double>(), per_s = r.at("items_per_s").get<double>();
  REQUIRE(seconds > 0);
  CHECK(per_s == Approx(double(items) / seconds).epsilon(1e-9));
  return r;
}

std::string python_or_default() {
  const std::string p = test::python();
  return p.empty() ? "python3" : p;
}

// Runs compare.py on a folder; returns its stdout (the markdown table).
std::string compare(const std::filesystem::path& dir) {
  std::string out;
  const int rc = test::run_command(python_or_default() + " " + test::source_dir() + "/tools/bench/compare.py " +
                                       dir.string() + " 2>/dev/null",
                                   &out);
  REQUIRE(rc == 0);
  return out;
}

// The ratio column of the table row of `work` and `peer`, or -1.
double ratio_of(const std::string& table, const std::string& work, const std::string& peer) {
  const std::regex row("\\| " + work + " \\|[^\\n]*\\| " + peer + " \\|[^\\n]*\\| ([0-9.]+)x \\|");
  std::smatch m;
  return std::regex_search(table, m, row) ? std::stod(m[1]) : -1.0;
}

}  // namespace

TEST_CASE("bench features writes the mel-baseline JSON that compare.py pairs with a peer", "[bench][python]") {
  const auto dir = test::temp_dir("bench_json_features");
  const json doc = run_bench(dir, "features", "--what features --device cpu --clips 2 --iterations 1");
  const json& r = check_result(doc, "features", "mel-baseline", 2);
  CHECK(r.at("unit") == "clips");
  CHECK(doc.at("clips").get<int64_t>() == 2);
  // A peer at half our rate: compare.py must print a ratio of 2.00x for this work.
  const double ours = r.at("items_per_s").get<double>();
  const json peer = {{"peer", "librosa"},
                     {"device", "cpu"},
                     {"results", {{{"work", "mel-baseline"}, {"items", 2}, {"items_per_s", ours / 2}}}}};
  write_text(dir / "peer.json", peer.dump());
  const std::string table = compare(dir);
  INFO(table);
  CHECK(ratio_of(table, "mel-baseline", "librosa") == Approx(2.0).margin(0.005));
}

TEST_CASE("bench augment writes the augment-offline-baseline JSON", "[bench]") {
  const auto dir = test::temp_dir("bench_json_augment");
  const json doc = run_bench(dir, "augment", "--what augment --device cpu --clips 2");
  const json& r = check_result(doc, "augment", "augment-offline-baseline", 2);
  CHECK(r.at("unit") == "clips");
  // The applied copies the peers replay (--plan): one per fired step, counts matching.
  const auto n_steps = doc.at("steps").size();
  CHECK(n_steps == doc.at("noise_applied").get<size_t>() + doc.at("pitch_applied").get<size_t>());
  CHECK(doc.at("clips").get<int64_t>() == 2);
}

TEST_CASE("compare.py pairs results by work device and precision", "[bench][python]") {
  const auto dir = test::temp_dir("bench_json_compare");
  write_text(dir / "bench-mel.json",
             R"({"bench": "features", "device": "cpu", "results": [{"work": "mel-baseline", "items": 4,
                 "seconds": 0.5, "items_per_s": 8.0}]})");
  write_text(dir / "peer-mel.json",
             R"({"peer": "librosa", "device": "cpu", "results": [{"work": "mel-baseline", "items_per_s": 2.5}]})");
  // ours on the GPU at fp32 and tf32; the peer at fp32, tf32 and bf16 (no bf16 of ours: no row)
  write_text(dir / "bench-train-fp32.json",
             R"({"bench": "train", "device": "cuda", "results": [{"work": "train-epoch-baseline", "device": "cuda",
                 "precision": "fp32", "items_per_s": 300.0}]})");
  write_text(dir / "bench-train-tf32.json",
             R"({"bench": "train", "device": "cuda", "results": [{"work": "train-epoch-baseline", "device": "cuda",
                 "precision": "tf32", "items_per_s": 600.0}]})");
  write_text(dir / "peer-train.json",
             R"({"peer": "pytorch", "device": "cuda", "results": [
                 {"work": "train-epoch-baseline", "precision": "fp32", "items_per_s": 400.0},
                 {"work": "train-epoch-baseline", "precision": "tf32", "items_per_s": 480.0},
                 {"work": "train-epoch-baseline", "precision": "bf16", "items_per_s": 900.0}]})");
  // a skipped peer result (no items_per_s) and a work nobody of ours did: no rows
  write_text(dir / "peer-skip.json",
             R"({"peer": "torchaudio", "device": "cuda", "results": [{"work": "augment-offline-baseline",
                 "skipped": "no CUDA device"}, {"work": "unknown-work", "items_per_s": 1.0}]})");
  write_text(dir / "notes.json", R"(["not a result file"])");
  const std::string table = compare(dir);
  INFO(table);
  CHECK(ratio_of(table, "mel-baseline", "librosa") == Approx(8.0 / 2.5).margin(0.005));
  // the fp32 row is 300/400 and the tf32 row 600/480: precision decides the pairing
  CHECK(table.find("| train-epoch-baseline | cuda fp32 | 300 | pytorch | cuda fp32 | 400 | 0.75x |") != std::string::npos);
  CHECK(table.find("| train-epoch-baseline | cuda tf32 | 600 | pytorch | cuda tf32 | 480 | 1.25x |") != std::string::npos);
  CHECK(table.find("bf16") == std::string::npos);
  CHECK(table.find("augment-offline-baseline") == std::string::npos);
  CHECK(table.find("unknown-work") == std::string::npos);
}

TEST_CASE("roofline judges work by the peak that bounds it", "[bench]") {
  using genrelab::Roofline;
  using genrelab::roofline;
  // The fused first conv + pool of an fp32 step on an H100 (67 TFLOP/s, 3 350 GB/s): 2.5 GFLOP
  // take 37.3 us at the FLOP peak, 330 MB take 98.5 us at the bandwidth: memory-bound.
  Roofline r = roofline(2.5e9, 330e6, 0.624e-3, 67.0, 3350.0);
  CHECK(r.bound == "memory");
  CHECK(r.rate == Approx(330e6 / 0.624e-3 / 1e9));           // 528.8 GB/s
  CHECK(r.fraction == Approx((330e6 / 3350e9) / 0.624e-3));  // 0.1579
  // A conv's products: 78 GFLOP (1.164 ms at the peak) against 463 MB (0.138 ms): FLOP-bound.
  r = roofline(78e9, 463e6, 2.6e-3, 67.0, 3350.0);
  CHECK(r.bound == "flop");
  CHECK(r.rate == Approx(78e9 / 2.6e-3 / 1e12));         // 30 TFLOP/s
  CHECK(r.fraction == Approx((78e9 / 67e12) / 2.6e-3));  // 0.4478
  // The optimizer: bytes only.
  r = roofline(0, 437.8e6, 0.19e-3, 67.0, 3350.0);
  CHECK(r.bound == "memory");
  CHECK(r.fraction == Approx((437.8e6 / 3350e9) / 0.19e-3));
  // A side with work but no known peak (a GPU or precision the FLOP table lacks) might be the
  // bound: no verdict, as without time or work. A side without work needs no peak.
  CHECK(roofline(2.5e9, 330e6, 1e-3, 0.0, 3350.0).bound.empty());
  CHECK(roofline(2.5e9, 330e6, 1e-3, 67.0, 0.0).bound.empty());
  CHECK(roofline(2.5e9, 330e6, 1e-3, 0.0, 0.0).bound.empty());
  CHECK(roofline(0, 437.8e6, 0.19e-3, 0.0, 3350.0).bound == "memory");
  CHECK(roofline(78e9, 0, 2.6e-3, 67.0, 0.0).bound == "flop");
  CHECK(roofline(2.5e9, 330e6, 0.0, 67.0, 3350.0).bound.empty());
  CHECK(roofline(0, 0, 1e-3, 67.0, 3350.0).fraction == 0.0);
}
