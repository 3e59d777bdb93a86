// Small file helpers: atomic writes (write NAME.tmp, flush, fsync, rename) so an interrupted
// program never leaves a half-written result, and whole-file reads.
#pragma once

#include <string>

namespace genrelab {

// Writes `bytes` to `path` atomically. Throws RuntimeError naming the path on any failure
// (including a full disk); the previous file at `path`, if any, is left intact then.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file; throws RuntimeError naming the path.
std::string read_file(const std::string& path);

}  // namespace genrelab
