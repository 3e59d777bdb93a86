// NumPy .npy files (format version 1.0, float32 little-endian, C order): written atomically for
// `genrelab features` and read back for tests and parity checks (float32 or float64 readable).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace genrelab {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // data: (product of shape,) in C order
  int64_t size() const;
};

// The bytes of a .npy file holding `data` with `shape` (product of shape = element count).
std::string npy_encode(const float* data, const std::vector<int64_t>& shape);

// Writes `path` atomically (PATH.tmp, then rename). Throws RuntimeError naming the path.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

// Parses .npy bytes ('<f4' or '<f8', C order; versions 1.0-3.0). `name` labels errors.
NpyArray npy_decode(const std::string& bytes, const std::string& name);
NpyArray read_npy(const std::string& path);

}  // namespace genrelab
