// `genrelab bench --what allreduce` under `mpirun -np 2` and in a world of one: every size from
// 8 B to --max-bytes, nccl-tests' definitions (algbw = bytes / time, busbw = algbw · 2(n-1)/n)
// recomputed here from the reported time, a wrong sum caught (exit 1), bad options refused (exit 2).
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "mpi_fixtures.h"
#include "train_fixtures.h"

namespace genrelab {
namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  REQUIRE(f.good());
  return json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}

// The document of a run with `ranks` ranks over the message sizes 8, 16, ..., max_bytes.
void check_document(const json& doc, int ranks, int64_t max_bytes) {
  CHECK(doc.at("bench") == "allreduce");
  CHECK(doc.at("device") == "cpu");
  CHECK(doc.at("communicator") == "mpi");
  REQUIRE(doc.at("ranks") == ranks);
  const double factor = 2.0 * (ranks - 1) / ranks;  // nccl-tests' all-reduce bus factor
  const json& results = doc.at("results");
  std::vector<int64_t> want_sizes;
  for (int64_t b = 8; b <= max_bytes; b *= 2) want_sizes.push_back(b);
  REQUIRE(results.size() == want_sizes.size());
  double busbw_sum = 0;
  for (size_t k = 0; k < results.size(); ++k) {
    const json& r = results[k];
    const int64_t bytes = want_sizes[k];
    INFO("message of " << bytes << " bytes");
    CHECK(r.at("work") == "allreduce-" + std::to_string(bytes));
    CHECK(r.at("bytes") == bytes);
    CHECK(r.at("count") == bytes / 4);
    CHECK(r.at("items") == bytes);
    CHECK(r.at("ranks") == ranks);
    const double seconds = r.at("seconds").get<double>();
    REQUIRE(seconds > 0);
    CHECK(r.at("time_us").get<double>() == Approx(seconds * 1e6).epsilon(1e-12));
    CHECK(r.at("items_per_s").get<double>() == Approx(double(bytes) / seconds).epsilon(1e-12));
    const double algbw = r.at("algbw_gbps").get<double>(), busbw = r.at("busbw_gbps").get<double>();
    CHECK(algbw == Approx(double(bytes) / seconds / 1e9).epsilon(1e-12));
    CHECK(std::fabs(busbw - algbw * factor) <= 1e-9 * std::max(1.0, algbw));
    busbw_sum += busbw;
  }
  CHECK(doc.at("busbw_gbps").get<double>() == results.back().at("busbw_gbps").get<double>());
  CHECK(doc.at("avg_busbw_gbps").get<double>() == Approx(busbw_sum / double(results.size())).epsilon(1e-12));
}

size_t count_lines(const std::string& s) { return size_t(std::count(s.begin(), s.end(), '\n')); }

TEST_CASE("bench allreduce over two MPI ranks reports every size with busbw equal to algbw", "[bench][dist][mpi]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto dir = test::temp_dir("bench-allreduce-2");
  const auto file = dir / "allreduce.json";
  const auto r = test::run_shell(
      test::mpirun(2, "bench --what allreduce --device cpu --max-bytes 65536 --iterations 3 --json " + file.string()));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  check_document(read_json(file), 2, 65536);
  // Rank 0 alone prints: a header and one row per size (8 B .. 64 KiB: 14 sizes).
  CHECK(count_lines(r.out) == 1 + 14);
  CHECK(r.out.find("busbw(GB/s)") != std::string::npos);
}

TEST_CASE("bench allreduce over two MPI ranks fails on a wrong sum", "[bench][dist][mpi]") {
  GENRELAB_REQUIRE_MPIRUN();
  const auto r = test::run_shell("GENRELAB_TEST_ALLREDUCE_WRONG=1 " +
                                 test::mpirun(2, "bench --what allreduce --device cpu --max-bytes 64 --iterations 1",
                                              "-x GENRELAB_TEST_ALLREDUCE_WRONG"));
  INFO(r.err);
  CHECK(r.rc != 0);
  // One element of the 8-byte message is off on both ranks: 2 of 4.
  CHECK(r.err.find("2 of 4 elements of the 8-byte message differ") != std::string::npos);
}

TEST_CASE("bench allreduce in a world of one times the single-rank communicator", "[bench][dist]") {
  const auto dir = test::temp_dir("bench-allreduce-1");
  const auto file = dir / "allreduce.json";
  const std::string cmd = "bench --what allreduce --device cpu --max-bytes 1000 --iterations 2 --json " + file.string();
  const auto r = test::run_genrelab(cmd);
  INFO(r.err);
  if (!dist::built_with_mpi()) {  // no communicator can be made: the error says why
    CHECK(r.rc == 1);
    CHECK(r.err.find("built without MPI") != std::string::npos);
    return;
  }
  REQUIRE(r.rc == 0);
  CHECK(r.err.find("a world of 1") != std::string::npos);
  check_document(read_json(file), 1, 512);  // sizes stop at the largest power of two <= 1000
  const json doc = read_json(file);  // kept: a range-for over a member of a temporary reads freed memory
  for (const auto& res : doc["results"]) CHECK(res["busbw_gbps"] == 0.0);
  // A wrong sum is exit 1 with the count of wrong elements.
  const auto wrong = test::run_shell("GENRELAB_TEST_ALLREDUCE_WRONG=1 " + test::genrelab_binary() + " " + cmd);
  CHECK(wrong.rc == 1);
  CHECK(wrong.err.find("1 of 2 elements of the 8-byte message differ") != std::string::npos);
}

TEST_CASE("bench allreduce refuses bad sizes and iteration counts", "[bench]") {
  for (const std::string bad :
       {"--max-bytes 4", "--max-bytes 1k", "--max-bytes 9223372036854775807", "--iterations 0", "--iterations x"}) {
    const auto r = test::run_genrelab("bench --what allreduce --device cpu " + bad);
    INFO(bad << ": " << r.err);
    CHECK(r.rc == 2);
    CHECK(r.err.find(bad.substr(0, bad.find(' '))) != std::string::npos);
  }
}

}  // namespace
}  // namespace genrelab
