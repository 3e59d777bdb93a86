// Project-wide basics: the host/device qualifier for shared functors, integer helpers, FNV-1a, and the
// always-on checks and error types that the CLI maps onto exit codes (2 config/usage, 1 runtime).
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define GENRELAB_HD __host__ __device__ __forceinline__
#else
#define GENRELAB_HD inline
#endif

// Fully unrolls the loop after it in device code (loops over a compile-time bound, so that small
// per-thread arrays stay in registers); the host compiler unrolls such loops by itself at -O3.
#if defined(__CUDA_ARCH__)
#define GENRELAB_UNROLL _Pragma("unroll")
#else
#define GENRELAB_UNROLL
#endif

namespace genrelab {

template <typename T>
GENRELAB_HD constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

// FNV-1a 64 of n bytes, one byte at a time, from `basis` (by default the standard offset basis;
// the prime is the standard 1099511628211). A string fingerprint, not a fast checksum.
inline constexpr uint64_t kFnv1aBasis = 14695981039346656037ull;
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t basis = kFnv1aBasis) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = basis;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// The bits of a float32 and back (exact bit arithmetic: Philox's math, 16-bit rounding).
GENRELAB_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
GENRELAB_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// A flat index i of a row-major (d3, d2, d1, d0) array as its coordinates (i0 fastest). The
// arithmetic is 32-bit when i fits in 32 bits (always, for a batch of feature maps): a GPU has no
// 64-bit divide instruction, and the software routine made index arithmetic, not memory, bound
// some gather kernels.
struct Coords4 {
  int64_t i0, i1, i2, i3;
};
GENRELAB_HD Coords4 unravel4(int64_t i, int64_t d0, int64_t d1, int64_t d2) {
  if (uint64_t(i) <= 0xffffffffull) {
    const uint32_t u = uint32_t(i), a = u / uint32_t(d0), b = a / uint32_t(d1), c = b / uint32_t(d2);
    return {int64_t(u - a * uint32_t(d0)), int64_t(a - b * uint32_t(d1)), int64_t(b - c * uint32_t(d2)), int64_t(c)};
  }
  const int64_t a = i / d0, b = a / d1, c = b / d2;
  return {i - a * d0, a - b * d1, b - c * d2, c};
}

// A problem with what the user asked for (config key, command-line usage): exit code 2.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A problem found while running (I/O, decoding, CUDA, numerics): exit code 1.
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error whose message is already on stderr (the ranks of a data-parallel job report a shared
// failure before any of them exits): `genrelab` exits with `code` without printing it again.
struct ReportedError : std::runtime_error {
  int code;
  ReportedError(const std::string& what, int exit_code) : std::runtime_error(what), code(exit_code) {}
};

namespace detail {
[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& msg);
inline std::string concat() { return {}; }
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace genrelab

// Always-on precondition check (never compiled out, unlike assert): throws RuntimeError naming
// the failed expression, file and line, plus an optional streamed message.
#define GENRELAB_CHECK(cond, ...)                                                           \
  do {                                                                                      \
    if (!(cond))                                                                            \
      ::genrelab::detail::check_failed(#cond, __FILE__, __LINE__,                           \
                                       ::genrelab::detail::concat(__VA_ARGS__));            \
  } while (0)
