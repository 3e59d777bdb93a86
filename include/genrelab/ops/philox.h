// Counter-based random numbers (Random123 Philox4x32-10) shared by the CPU and GPU backends:
// a stream is keyed by (seed, purpose) and addressed by (index, a, b), e.g. a = clip, b = epoch
// for an augmentation, so any element's draw can be computed independently, in any order, on
// either backend, with bit-identical uniform words. Standard normals come from a Box-Muller
// transform whose logarithm, sine and cosine are written here from explicitly rounded operations
// (no libm or CUDA math-library calls, no FMA contraction), so they are bit-identical too.
#pragma once

#include <Random123/philox.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "genrelab/common.h"

namespace genrelab {

// What a stream is used for; part of the key, so streams for different purposes never overlap.
enum class RngPurpose : uint32_t {
  augment_choice = 1,  // whether an augmentation applies, and its parameters
  noise = 2,           // Gaussian noise samples
  spec_mask = 3,        // SpecAugment mask positions and widths
  dropout = 16,
  init = 17,           // weight initialisation
  shuffle = 18,        // per-epoch permutation
};

// Single-precision operations (mul and add also in double, for the resampler's filter taps in
// ops/resample.h) with one IEEE rounding each, identical on host and device. On the device the
// __f*_rn / __d*_rn intrinsics are never contracted or reassociated by nvcc; on the host plain
// operators are used (C++17 builds use -ffp-contract=off) and fma is std::fma (correctly rounded).
namespace exact {
template <typename T>
GENRELAB_HD T mul(T a, T b) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "exact::mul: float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>)
    return __dmul_rn(a, b);
  else
    return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
template <typename T>
GENRELAB_HD T add(T a, T b) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "exact::add: float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>)
    return __dadd_rn(a, b);
  else
    return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
GENRELAB_HD float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
GENRELAB_HD float sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// Natural logarithm of a normal positive float (Cephes logf: u = m·2^e with m in [√½, √2),
// degree-8 polynomial in m − 1; about 1 ulp).
GENRELAB_HD float log(float u) {
  const uint32_t bits = float_bits(u);
  int e = int((bits >> 23) & 0xffu) - 126;                    // u = m · 2^e, m in [0.5, 1)
  float m = bits_float((bits & 0x007fffffu) | 0x3f000000u);
  if (m < 0.70710678f) { e -= 1; m = add(m, m); }             // exact doubling
  const float x = add(m, -1.0f);                              // exact (Sterbenz)
  const float z = mul(x, x);
  float p = 7.0376836292e-2f;
  p = fma(p, x, -1.1514610310e-1f);
  p = fma(p, x, 1.1676998740e-1f);
  p = fma(p, x, -1.2420140846e-1f);
  p = fma(p, x, 1.4249322787e-1f);
  p = fma(p, x, -1.6668057665e-1f);
  p = fma(p, x, 2.0000714765e-1f);
  p = fma(p, x, -2.4999993993e-1f);
  p = fma(p, x, 3.3333331174e-1f);
  float y = mul(mul(p, x), z);
  const float fe = float(e);                                  // exact
  y = fma(-2.12194440e-4f, fe, y);
  y = fma(-0.5f, z, y);
  const float r = add(x, y);
  return fma(0.693359375f, fe, r);
}

// sin and cos of θ in [0, π/4] (Cephes sinf/cosf polynomials; about 1 ulp).
GENRELAB_HD void sincos_octant(float t, float* s, float* c) {
  const float z = mul(t, t);
  float ps = -1.9515295891e-4f;
  ps = fma(ps, z, 8.3321608736e-3f);
  ps = fma(ps, z, -1.6666654611e-1f);
  *s = fma(mul(ps, z), t, t);
  float pc = 2.443315711809948e-5f;
  pc = fma(pc, z, -1.388731625493765e-3f);
  pc = fma(pc, z, 4.166664568298827e-2f);
  const float q = mul(mul(pc, z), z);
  *c = add(fma(-0.5f, z, q), 1.0f);
}

// cos and sin of 2π·k/2^24 for an integer k < 2^24. The octant comes from k's top bits
// (exact), so the polynomial only ever sees θ in [0, π/4] and the result keeps ~1 ulp relative
// accuracy even next to the zeros of sin and cos.
GENRELAB_HD void cossin_turns24(uint32_t k, float* cos_out, float* sin_out) {
  const uint32_t octant = k >> 21;
  uint32_t r = k & 0x1fffffu;
  if (octant & 1u) r = 0x200000u - r;
  const float theta = mul(float(r), float(6.283185307179586 / 16777216.0));  // 2π / 2^24 as float
  float s, c;
  sincos_octant(theta, &s, &c);
  float co, si;
  switch (octant) {
    case 0: co = c; si = s; break;
    case 1: co = s; si = c; break;
    case 2: co = -s; si = c; break;
    case 3: co = -c; si = s; break;
    case 4: co = -c; si = -s; break;
    case 5: co = -s; si = -c; break;
    case 6: co = s; si = -c; break;
    default: co = c; si = -s; break;
  }
  *cos_out = co;
  *sin_out = si;
}

// Box–Muller on two uniform words: u1 = (top 24 bits of w1 + 1)/2^24 in (0, 1], angle
// 2π·(top 24 bits of w2)/2^24. Returns r·cos and r·sin, r = sqrt(−2 ln u1) ≤ 5.77 (tails beyond
// 5.77σ, probability 8e-9, are cut).
GENRELAB_HD void box_muller(uint32_t w1, uint32_t w2, float* z0, float* z1) {
  const float u1 = mul(float((w1 >> 8) + 1u), 5.9604645e-08f);  // exact: × 2^-24
  const float rad = sqrt(mul(-2.0f, log(u1)));
  float co, si;
  cossin_turns24(w2 >> 8, &co, &si);
  *z0 = mul(rad, co);
  *z1 = mul(rad, si);
}
}  // namespace exact

struct PhiloxStream {
  uint32_t k0 = 0, k1 = 0;  // key: seed, purpose
  uint32_t a = 0, b = 0;    // counter words 2 and 3 (e.g. clip, epoch)

  PhiloxStream() = default;
  GENRELAB_HD PhiloxStream(uint32_t seed, RngPurpose purpose, uint32_t a_, uint32_t b_)
      : k0(seed), k1(uint32_t(purpose)), a(a_), b(b_) {}

  // The four 32-bit words of block `i`.
  GENRELAB_HD r123::Philox4x32::ctr_type block(uint64_t i) const {
    r123::Philox4x32 rng;
    r123::Philox4x32::ctr_type ctr = {{uint32_t(i), uint32_t(i >> 32), a, b}};
    r123::Philox4x32::key_type key = {{k0, k1}};
    return rng(ctr, key);
  }
  // Word k (0 to 3) of a block, chosen by selects: a block indexed at run time would go to a
  // GPU thread's local memory instead of staying in its registers.
  GENRELAB_HD static uint32_t lane(const r123::Philox4x32::ctr_type& block, uint32_t k) {
    return k == 0 ? block.v[0] : k == 1 ? block.v[1] : k == 2 ? block.v[2] : block.v[3];
  }
  // Word `i` of the stream (block i/4, lane i%4).
  GENRELAB_HD uint32_t word(uint64_t i) const { return lane(block(i >> 2), uint32_t(i & 3)); }

  // Uniform in [0, 1) with 24 random bits (exactly representable: identical on every device).
  GENRELAB_HD float uniform(uint64_t i) const { return uniform_of(word(i)); }
  // The uniform in [0, 1) with 24 random bits that word w gives.
  GENRELAB_HD static float uniform_of(uint32_t w) { return float(w >> 8) * (1.0f / 16777216.0f); }
  // Uniform in [0, 1) with 53 random bits, from two words.
  GENRELAB_HD double uniform_double(uint64_t i) const {
    const auto blk = block(i >> 1);
    const uint32_t hi = blk.v[(i & 1) * 2], lo = blk.v[(i & 1) * 2 + 1];
    return double((uint64_t(hi) << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
  }
  // Uniform in [lo, hi).
  GENRELAB_HD double uniform_range(uint64_t i, double lo, double hi) const { return lo + (hi - lo) * uniform_double(i); }

  // Standard normal number `i` of the stream, bit-identical on host and device: block i/4 gives
  // four normals, words (0, 1) → normals 0 (cos) and 1 (sin), words (2, 3) → normals 2 and 3.
  GENRELAB_HD float normal(uint64_t i) const {
    const auto blk = block(i >> 2);
    const unsigned pair = unsigned(i >> 1) & 1u;
    float z0, z1;
    exact::box_muller(blk.v[2 * pair], blk.v[2 * pair + 1], &z0, &z1);
    return (i & 1) ? z1 : z0;
  }
  // Normals 4·j .. 4·j+3 at once (one Philox block).
  GENRELAB_HD void normal4(uint64_t j, float out[4]) const {
    const auto blk = block(j);
    exact::box_muller(blk.v[0], blk.v[1], &out[0], &out[1]);
    exact::box_muller(blk.v[2], blk.v[3], &out[2], &out[3]);
  }
};

}  // namespace genrelab
