// Small file helpers: atomic writes (write NAME.tmp, flush, fsync, rename) so an interrupted
// program never leaves a half-written result, and whole-file reads.
#pragma once

#include <cstddef>
#include <string>

namespace genrelab {

// A file written piece by piece under NAME.tmp and renamed over `path` by commit() (after an
// fsync), so readers see the previous file or the whole new one. Destroyed uncommitted (an
// error on the way), it removes NAME.tmp. Every failure throws RuntimeError naming the path; a
// full disk says so, and the previous file at `path`, if any, is left intact.
// The temporary file is NAME + tmp_suffix: a suffix of its own (host and process) where several
// processes may write the same file at once.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path, const std::string& tmp_suffix = ".tmp");
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t bytes);
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what, int err);
  std::string path_, tmp_;
  int fd_ = -1;
};

// Writes `bytes` to `path` atomically (AtomicFileWriter).
void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& tmp_suffix = ".tmp");

// Reads a whole file; throws RuntimeError naming the path.
std::string read_file(const std::string& path);

}  // namespace genrelab
