// .npy encoding and decoding (see npy.h): magic, version, little-endian header length, a Python
// dict literal header padded with spaces to a 64-byte boundary and ending in '\n', raw data.
#include "genrelab/npy.h"

#include <cstring>
#include <regex>

#include "genrelab/common.h"
#include "genrelab/io.h"

namespace genrelab {

static_assert(sizeof(float) == 4, "float32 expected");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.cpp writes little-endian data with memcpy; port it for big-endian hosts"
#endif

int64_t NpyArray::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string npy_encode(const float* data, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  std::string dims;
  for (int64_t d : shape) {
    GENRELAB_CHECK(d >= 0, "negative dimension in .npy shape");
    count *= d;
    dims += std::to_string(d) + ", ";
  }
  if (shape.size() > 1)
    dims.resize(dims.size() - 2);  // "(3,)" keeps its comma, "(3, 4)" does not
  else if (shape.size() == 1)
    dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  const size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  GENRELAB_CHECK(header.size() < 65536, ".npy header too long");
  std::string out("\x93NUMPY\x01\x00", 8);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  out += header;
  const size_t offset = out.size();
  out.resize(offset + size_t(count) * 4);
  if (count > 0) std::memcpy(&out[offset], data, size_t(count) * 4);
  return out;
}

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_file_atomic(path, npy_encode(data, shape));
}

NpyArray npy_decode(const std::string& bytes, const std::string& name) {
  auto bad = [&](const std::string& why) -> RuntimeError {
    return RuntimeError(name + ": not a usable .npy file: " + why);
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("missing the \\x93NUMPY magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = size_t(static_cast<unsigned char>(bytes[8])) | size_t(static_cast<unsigned char>(bytes[9])) << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw bad("truncated header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= size_t(static_cast<unsigned char>(bytes[size_t(8 + i)])) << (8 * i);
    start = 12;
  } else {
    throw bad("unsupported format version " + std::to_string(major));
  }
  if (bytes.size() < start + header_len) throw bad("truncated header");
  const std::string header = bytes.substr(start, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) throw bad("no 'descr' in the header");
  const std::string descr = m[1];
  if (descr != "<f4" && descr != "<f8") throw bad("dtype " + descr + " (float32 or float64 expected)");
  if (!std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*(True|False)")))
    throw bad("no 'fortran_order'");
  if (m[1] == "True") throw bad("Fortran order is not supported");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) throw bad("no 'shape'");
  NpyArray a;
  const std::string dims = m[1];
  std::regex num("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  const int64_t count = a.size();
  const size_t item = descr == "<f4" ? 4 : 8;
  const size_t data_start = start + header_len;
  if (bytes.size() != data_start + size_t(count) * item)
    throw bad("data holds " + std::to_string(bytes.size() - data_start) + " bytes, the shape needs " +
              std::to_string(size_t(count) * item));
  a.data.resize(size_t(count));
  if (item == 4) {
    if (count > 0) std::memcpy(a.data.data(), &bytes[data_start], size_t(count) * 4);
  } else {
    for (int64_t i = 0; i < count; ++i) {
      double v;
      std::memcpy(&v, &bytes[data_start + size_t(i) * 8], 8);
      a.data[size_t(i)] = float(v);
    }
  }
  return a;
}

NpyArray read_npy(const std::string& path) { return npy_decode(read_file(path), path); }

}  // namespace genrelab
