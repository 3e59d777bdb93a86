// The tuning cache's file (nn/tuning_cache.h): where it lives, what it holds after a flush, how it
// merges with other processes' writes, and that a damaged, foreign, unreadable or unwritable
// file never fails a run. The GPU side (a second training process taking every timed choice from the file)
// is in test_train.cpp.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "genrelab/io.h"
#include "genrelab/nn/tuning_cache.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;

namespace {

// Points the cache at `path` (or "off") for one test, then back to off.
struct CacheAt {
  explicit CacheAt(const std::string& path) {
    ::setenv("GENRELAB_TUNING_CACHE", path.c_str(), 1);
    nn::reset_tuning_cache_for_tests();
  }
  ~CacheAt() {
    ::setenv("GENRELAB_TUNING_CACHE", "off", 1);
    nn::reset_tuning_cache_for_tests();
  }
};

json read_json_file(const fs::path& p) { return json::parse(read_file(p.string())); }

}  // namespace

TEST_CASE("tuning cache: stored values are written under their context and read back by a later process") {
  const fs::path dir = test::temp_dir("tuning-cache-round-trip");
  const fs::path file = dir / "sub" / "tuning.json";  // its folder is made on the first write
  CacheAt at(file.string());
  CHECK(nn::tuning_cache_path() == file.string());
  CHECK_FALSE(nn::find_tuning("gpu A", "k1"));
  nn::store_tuning("gpu A", "k1", json{{"algo", 1}, {"ms", 2.5}});
  nn::store_tuning("gpu A", "k2", json{{"lt", false}});
  nn::store_tuning("gpu B", "k1", json{{"algo", 0}});
  CHECK_FALSE(fs::exists(file));  // kept in memory until a flush
  nn::flush_tuning_cache();
  const json expected = {
      {"format", "genrelab tuning cache 1"},
      {"contexts",
       {{"gpu A", {{"k1", {{"algo", 1}, {"ms", 2.5}}}, {"k2", {{"lt", false}}}}}, {"gpu B", {{"k1", {{"algo", 0}}}}}}}};
  CHECK(read_json_file(file) == expected);
  CHECK(nn::tuning_cache_counts().stored == 3);

  // A later process: nothing in memory, the file's values found under their own context only.
  nn::reset_tuning_cache_for_tests();
  REQUIRE(nn::find_tuning("gpu A", "k1"));
  CHECK(*nn::find_tuning("gpu A", "k1") == json{{"algo", 1}, {"ms", 2.5}});
  CHECK(*nn::find_tuning("gpu B", "k1") == json{{"algo", 0}});
  CHECK_FALSE(nn::find_tuning("gpu C", "k1"));
  CHECK_FALSE(nn::find_tuning("gpu B", "k2"));
  CHECK(nn::tuning_cache_counts().found == 0);  // what callers check and take, they count
  nn::count_tuning_taken();
  CHECK(nn::tuning_cache_counts().found == 1);
  CHECK(nn::tuning_cache_counts().stored == 0);
  // Nothing new: a flush leaves the file as it is.
  const auto before = fs::last_write_time(file);
  nn::flush_tuning_cache();
  CHECK(fs::last_write_time(file) == before);
  CHECK(read_json_file(file) == expected);
}

TEST_CASE("tuning cache: a flush keeps what another process wrote meanwhile") {
  const fs::path dir = test::temp_dir("tuning-cache-merge");
  const fs::path file = dir / "tuning.json";
  CacheAt at(file.string());
  nn::store_tuning("gpu A", "mine", json{{"ms", 1.0}});
  nn::flush_tuning_cache();
  // Another process adds its own values (and replaces one of this process's) after this one read the file.
  json other = read_json_file(file);
  other["contexts"]["gpu A"]["theirs"] = {{"ms", 2.0}};
  other["contexts"]["gpu Z"]["k"] = {{"ms", 3.0}};
  write_file_atomic(file.string(), other.dump());
  nn::store_tuning("gpu A", "new", json{{"ms", 4.0}});
  nn::flush_tuning_cache();
  const json c = read_json_file(file)["contexts"];
  CHECK(c["gpu A"]["mine"] == json{{"ms", 1.0}});
  CHECK(c["gpu A"]["theirs"] == json{{"ms", 2.0}});
  CHECK(c["gpu A"]["new"] == json{{"ms", 4.0}});
  CHECK(c["gpu Z"]["k"] == json{{"ms", 3.0}});
  // No temporary file is left beside it (only the lock file the flushes take).
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"tuning.json", "tuning.json.lock"});
}

// Data-parallel ranks flush at the same epoch end: each merges under the lock, so none of their
// values is lost.
TEST_CASE("tuning cache: processes flushing at once keep every one's values") {
  const fs::path dir = test::temp_dir("tuning-cache-concurrent");
  const fs::path file = dir / "tuning.json";
  CacheAt at(file.string());
  CHECK(nn::tuning_cache_path() == file.string());
  constexpr int kProcesses = 6;
  std::vector<pid_t> children;
  for (int r = 0; r < kProcesses; ++r) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (int k = 0; k < 20; ++k) {
        nn::store_tuning("gpu A", "rank " + std::to_string(r) + " key " + std::to_string(k), json{{"ms", r}});
        nn::flush_tuning_cache();
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
  }
  const json c = read_json_file(file)["contexts"]["gpu A"];
  CHECK(c.size() == size_t(kProcesses) * 20);
}

// A flush waiting for another process's lock (a slow network home folder) holds up nothing else in
// this process: lookups and stores answer meanwhile, and what was stored during the wait is kept.
TEST_CASE("tuning cache: lookups and stores go on while a flush waits for the file's lock") {
  const fs::path dir = test::temp_dir("tuning-cache-flush-wait");
  const fs::path file = dir / "tuning.json";
  CacheAt at(file.string());
  nn::store_tuning("gpu A", "before", json{{"ms", 1.0}});
  // Another process's flush, as far as this one can tell: the lock taken on its own open file.
  const int other = ::open((file.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(other >= 0);
  REQUIRE(::flock(other, LOCK_EX) == 0);
  std::thread flush([] { nn::flush_tuning_cache(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the flush is now waiting
  auto meanwhile = std::async(std::launch::async, [] {
    nn::store_tuning("gpu A", "during", json{{"ms", 2.0}});
    return nn::find_tuning("gpu A", "before");
  });
  const bool answered = meanwhile.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  CHECK(answered);
  CHECK_FALSE(fs::exists(file));  // the flush is still waiting
  ::close(other);                 // the other process's flush ends
  flush.join();
  const std::optional<json> before = meanwhile.get();
  REQUIRE(before);
  CHECK(*before == json{{"ms", 1.0}});
  CHECK(read_json_file(file)["contexts"] == json{{"gpu A", {{"before", {{"ms", 1.0}}}}}});
  // The value stored during the wait is still found, and written by the next flush.
  REQUIRE(nn::find_tuning("gpu A", "during"));
  nn::flush_tuning_cache();
  CHECK(read_json_file(file)["contexts"]["gpu A"]["during"] == json{{"ms", 2.0}});
}

TEST_CASE("tuning cache: a damaged file is started afresh, a foreign one left alone, an unwritable one turns it off") {
  const fs::path dir = test::temp_dir("tuning-cache-bad");
  SECTION("not JSON: nothing found, replaced by the next flush") {
    const fs::path file = dir / "damaged.json";
    std::ofstream(file) << "{\"format\": \"genrelab tuning cache 1\", \"contexts\": {\"gpu";  // cut short
    CacheAt at(file.string());
    CHECK_FALSE(nn::find_tuning("gpu A", "k"));
    CHECK(nn::tuning_cache_path() == file.string());
    nn::store_tuning("gpu A", "k", json{{"ms", 1.0}});
    nn::flush_tuning_cache();
    CHECK(read_json_file(file)["contexts"] == json{{"gpu A", {{"k", {{"ms", 1.0}}}}}});
  }
  SECTION("another format: the cache is off and the file untouched") {
    const fs::path file = dir / "foreign.json";
    const std::string foreign = R"({"format": "some other tool", "contexts": {"gpu A": {"k": 1}}})";
    std::ofstream(file) << foreign;
    CacheAt at(file.string());
    CHECK_FALSE(nn::find_tuning("gpu A", "k"));
    CHECK(nn::tuning_cache_path().empty());
    nn::store_tuning("gpu A", "k", json{{"ms", 1.0}});
    nn::flush_tuning_cache();
    CHECK(read_file(file.string()) == foreign);
  }
  SECTION("a folder that cannot be made: the flush turns the cache off, nothing throws") {
    const fs::path blocker = dir / "a-file";
    std::ofstream(blocker) << "x";
    CacheAt at((blocker / "tuning.json").string());  // under a regular file
    nn::store_tuning("gpu A", "k", json{{"ms", 1.0}});
    CHECK_NOTHROW(nn::flush_tuning_cache());
    CHECK(nn::tuning_cache_path().empty());
    CHECK_FALSE(nn::find_tuning("gpu A", "k"));
  }
  SECTION("unreadable (a folder in its place): the cache is off and the folder untouched") {
    const fs::path file = dir / "folder.json";
    fs::create_directories(file / "inside");
    CacheAt at(file.string());
    CHECK_FALSE(nn::find_tuning("gpu A", "k"));
    nn::store_tuning("gpu A", "k", json{{"ms", 1.0}});
    CHECK_NOTHROW(nn::flush_tuning_cache());
    CHECK(nn::tuning_cache_path().empty());
    CHECK(fs::is_directory(file / "inside"));
  }
  SECTION("off: nothing is read or written") {
    CacheAt at("off");
    CHECK(nn::tuning_cache_path().empty());
    nn::store_tuning("gpu A", "k", json{{"ms", 1.0}});
    CHECK_FALSE(nn::find_tuning("gpu A", "k"));
    CHECK(nn::tuning_cache_counts().stored == 0);
  }
}

TEST_CASE("tuning cache: the default file is under XDG_CACHE_HOME, else HOME's .cache") {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const std::string saved_xdg = xdg ? xdg : "";
  ::unsetenv("GENRELAB_TUNING_CACHE");
  ::setenv("XDG_CACHE_HOME", "/srv/cache", 1);
  nn::reset_tuning_cache_for_tests();
  CHECK(nn::tuning_cache_path() == "/srv/cache/genrelab/tuning.json");
  ::unsetenv("XDG_CACHE_HOME");
  nn::reset_tuning_cache_for_tests();
  const char* home = std::getenv("HOME");
  if (home && *home)
    CHECK(nn::tuning_cache_path() == (fs::path(home) / ".cache" / "genrelab" / "tuning.json").string());
  if (xdg) ::setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  ::setenv("GENRELAB_TUNING_CACHE", "off", 1);
  nn::reset_tuning_cache_for_tests();
}
