// Atomic file writes and whole-file reads.
#include "genrelab/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "genrelab/common.h"

namespace genrelab {

AtomicFileWriter::AtomicFileWriter(std::string path, const std::string& tmp_suffix)
    : path_(std::move(path)), tmp_(path_ + tmp_suffix) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw RuntimeError("cannot write " + tmp_ + ": " + std::strerror(err));
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFileWriter::fail(const std::string& what, int err) {
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  throw RuntimeError(what + ": " + std::strerror(err) +
                     (err == ENOSPC || err == EFBIG ? " (free some disk space; the previous file is intact)" : ""));
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  GENRELAB_CHECK(fd_ >= 0, "write to ", path_, " after it was committed or failed");
  const char* p = static_cast<const char*>(data);
  size_t off = 0;
  while (off < bytes) {
    const ssize_t n = ::write(fd_, p + off, bytes - off);
    if (n < 0) {
      const int err = errno;  // before the message's allocation
      if (err == EINTR) continue;
      fail("cannot write " + path_, err);
    }
    off += size_t(n);
  }
}

void AtomicFileWriter::commit() {
  GENRELAB_CHECK(fd_ >= 0, "commit of ", path_, " after it was committed or failed");
  if (::fsync(fd_) != 0) {
    const int err = errno;
    if (err != EINVAL) fail("cannot write " + path_, err);
  }
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    throw RuntimeError("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(err));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& tmp_suffix) {
  AtomicFileWriter file(path, tmp_suffix);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeError("cannot read " + path + ": " + std::strerror(errno));
  // A regular file is read straight into a string of its size (one pass, no regrowing: a 188-MB
  // checkpoint); then comes whatever that did not cover (a file that grew meanwhile, a pipe, a
  // /proc file, which has no size).
  std::string bytes;
  std::error_code ec;
  const uintmax_t size = std::filesystem::is_regular_file(path, ec) ? std::filesystem::file_size(path, ec) : 0;
  if (!ec && size > 0) {
    bytes.resize(size_t(size));
    in.read(bytes.data(), std::streamsize(size));
    bytes.resize(size_t(in.gcount()));
  }
  std::ostringstream rest;
  rest << in.rdbuf();
  bytes += rest.str();
  return bytes;
}

}  // namespace genrelab
