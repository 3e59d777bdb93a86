// The tuning cache file (nn/tuning_cache.h): {"format": kFormat, "contexts": {context: {key:
// value}}}, read once per process, merged and rewritten by each flush.
#include "genrelab/nn/tuning_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <utility>

#include "genrelab/common.h"
#include "genrelab/io.h"

namespace fs = std::filesystem;

namespace genrelab::nn {

namespace {

constexpr const char* kFormat = "genrelab tuning cache 1";

struct Store {
  std::mutex m;         // every field below
  std::mutex flushing;  // held by a flush for its whole file write (without m)
  bool opened = false;
  std::string path;             // empty: off
  json known = json::object();  // context → key → value: the file's and this process's
  json fresh = json::object();  // this process's values not yet written
  TuningCacheCounts counts;
  bool exit_flush = false;  // flush_tuning_cache registered with atexit
};

Store& store() {
  static auto* s = new Store;  // never destroyed: the atexit flush may run after static destructors
  return *s;
}

std::string configured_path() {
  if (const char* v = std::getenv("GENRELAB_TUNING_CACHE")) {
    const std::string p = v;
    return p == "off" || p.empty() ? std::string() : p;
  }
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return (fs::path(x) / "genrelab" / "tuning.json").string();
  if (const char* h = std::getenv("HOME"); h && *h)
    return (fs::path(h) / ".cache" / "genrelab" / "tuning.json").string();
  return {};
}

// The cache turned off for the rest of the process, with one warning naming the file.
void turn_off(Store& s, const std::string& why) {
  std::cerr << "genrelab: warning: tuning cache " << s.path << ": " << why
            << "; this run times its choices afresh (GENRELAB_TUNING_CACHE names another file, or off)\n";
  s.path.clear();
  s.fresh = json::object();
}

// The file's contexts; an absent file has none. Throws Damaged for a file that is not JSON,
// OtherFormat for a well-formed file this version does not write, and RuntimeError for one that
// cannot be read.
struct OtherFormat {};
struct Damaged : RuntimeError {
  using RuntimeError::RuntimeError;
};
json read_contexts(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return json::object();
  const json j = json::parse(read_file(path), nullptr, false);
  if (j.is_discarded()) throw Damaged("is not valid JSON");
  if (!j.is_object() || j.value("format", std::string()) != kFormat) throw OtherFormat{};
  const json& c = j.contains("contexts") ? j["contexts"] : json::object();
  if (!c.is_object()) throw Damaged("has no \"contexts\" object");
  return c;
}

void open(Store& s) {
  if (s.opened) return;
  s.opened = true;
  s.path = configured_path();
  if (s.path.empty()) return;
  try {
    s.known = read_contexts(s.path);
  } catch (const OtherFormat&) {
    turn_off(s, std::string("is not a \"") + kFormat + "\" file and is left as it is");
  } catch (const Damaged& e) {
    // A damaged cache is only lost time: it is replaced by the next flush.
    std::cerr << "genrelab: warning: tuning cache " << s.path << ": " << e.what() << "; starting it afresh\n";
    s.known = json::object();
  } catch (const std::exception& e) {
    turn_off(s, e.what());  // unreadable: left as it is
  }
}

// An exclusive lock on PATH.lock for a flush's read, merge and rename, so that processes flushing
// at once (data-parallel ranks at the same epoch end) each merge the other's values; released
// when destroyed. Where the file system refuses the lock the flush goes on without it.
class FlushLock {
 public:
  explicit FlushLock(const std::string& path)
      : fd_(::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FlushLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  FlushLock(const FlushLock&) = delete;
  FlushLock& operator=(const FlushLock&) = delete;

 private:
  int fd_;
};

// Writes `fresh` (values stored since the last flush) into the file at `path`, merged with what
// other processes wrote there meanwhile; returns the file's contexts after the write. Runs without
// the store's mutex, so that waiting for another process's lock never stalls this one's lookups.
json write_merged(const std::string& path, const json& fresh) {
  const fs::path file(path);
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  const FlushLock lock(path);
  json contexts = json::object();
  try {
    contexts = read_contexts(path);  // what other processes wrote since this one read it
  } catch (const Damaged&) {
    // damaged since: replaced
  }
  for (const auto& [context, values] : fresh.items())
    for (const auto& [key, value] : values.items()) contexts[context][key] = value;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);  // a temporary name of its own on a shared home too
  write_file_atomic(path, json{{"format", kFormat}, {"contexts", contexts}}.dump(1) + "\n",
                    "." + std::string(host) + "." + std::to_string(::getpid()) + ".tmp");
  return contexts;
}

}  // namespace

std::string tuning_cache_path() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  open(s);
  return s.path;
}

std::optional<json> find_tuning(const std::string& context, const std::string& key) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  open(s);
  if (s.path.empty()) return std::nullopt;
  const auto c = s.known.find(context);
  if (c == s.known.end() || !c->is_object()) return std::nullopt;
  const auto v = c->find(key);
  if (v == c->end()) return std::nullopt;
  return *v;
}

void count_tuning_taken() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  ++s.counts.found;
}

void store_tuning(const std::string& context, const std::string& key, json value) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  open(s);
  if (s.path.empty()) return;
  s.known[context][key] = value;
  s.fresh[context][key] = std::move(value);
  ++s.counts.stored;
  if (!s.exit_flush) {
    s.exit_flush = true;
    std::atexit(flush_tuning_cache);
  }
}

void flush_tuning_cache() {
  Store& s = store();
  // One flush at a time in this process; lookups and stores go on meanwhile (they take s.m only).
  std::lock_guard<std::mutex> one_flush(s.flushing);
  std::string path;
  json fresh;
  {
    std::lock_guard<std::mutex> lock(s.m);
    if (s.path.empty() || s.fresh.empty()) return;
    path = s.path;
    fresh = std::exchange(s.fresh, json::object());
  }
  try {
    json contexts = write_merged(path, fresh);
    std::lock_guard<std::mutex> lock(s.m);
    // Values stored during the write stay known (and fresh, for the next flush).
    for (const auto& [context, values] : s.fresh.items())
      for (const auto& [key, value] : values.items()) contexts[context][key] = value;
    s.known = std::move(contexts);
  } catch (const OtherFormat&) {
    std::lock_guard<std::mutex> lock(s.m);
    turn_off(s, std::string("was replaced by a file that is not a \"") + kFormat + "\" file; left as it is");
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(s.m);
    turn_off(s, e.what());
  }
}

TuningCacheCounts tuning_cache_counts() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  return s.counts;
}

void reset_tuning_cache_for_tests() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.m);
  s.opened = false;
  s.path.clear();
  s.known = json::object();
  s.fresh = json::object();
  s.counts = {};
}

}  // namespace genrelab::nn
