// Mixed precision (train.precision = bf16 | fp16): float ↔ bfloat16 / IEEE half conversion with
// round-to-nearest-even in exact bit arithmetic, the cast functors both backends run (the GPU
// before cuDNN/cuBLAS, the CPU to emulate them), and the fp16 dynamic loss scale.
#pragma once

#include <cstdint>
#include <cstring>

#include "genrelab/common.h"

namespace genrelab::ops {

// The 16-bit format a product rounds its operands to (0: none, float32 products).
enum : int { kHalfNone = 0, kHalfBf16 = 1, kHalfFp16 = 2 };

// bfloat16 = the upper 16 bits of a float32, rounded to nearest, ties to even. A NaN stays a NaN
// (quieted, sign kept); values past the largest bf16 (3.3895e38) round to ±inf like any IEEE
// rounding; float32 subnormals map onto bf16 subnormals (same exponent range).
GENRELAB_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

GENRELAB_HD float bf16_bits_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// IEEE binary16: 5 exponent bits (bias 15), 10 mantissa bits; largest finite 65504, smallest
// normal 2^-14, subnormals down to 2^-24. Round to nearest, ties to even: |x| ≥ 65520 → ±inf,
// |x| ≤ 2^-25 → ±0, NaN → quiet NaN with the sign kept.
GENRELAB_HD uint16_t float_to_fp16_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // ≥ 65520 (the tie above 65504 goes to even = inf)
  if (a >= 0x38800000u) {                                 // ≥ 2^-14: normal; rebias the exponent by 127 − 15
    const uint32_t m = a - 0x38000000u;
    return uint16_t(sign | ((m + 0x0fffu + ((m >> 13) & 1u)) >> 13));  // a carry moves into the exponent
  }
  if (a <= 0x33000000u) return sign;  // ≤ 2^-25: zero (exactly 2^-25 is a tie, even = 0)
  // Subnormal: the value in units of 2^-24 is mant · 2^(e − 150 + 24) = mant >> (126 − e).
  const uint32_t e = a >> 23;  // 102 … 112
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14 … 24
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may reach 0x400 = the smallest normal
  return uint16_t(sign | q);
}

GENRELAB_HD float fp16_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return bits_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float v = float(m) * 5.9604644775390625e-8f;  // m · 2^-24, exact
    return sign ? -v : v;
  }
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

GENRELAB_HD uint16_t float_to_half_bits(float f, int format) {
  return format == kHalfFp16 ? float_to_fp16_bits(f) : float_to_bf16_bits(f);
}
GENRELAB_HD float half_bits_to_float(uint16_t h, int format) {
  return format == kHalfFp16 ? fp16_bits_to_float(h) : bf16_bits_to_float(h);
}
// x rounded to the format and back (the identity for kHalfNone).
GENRELAB_HD float round_to_half(float x, int format) {
  return format == kHalfNone ? x : half_bits_to_float(float_to_half_bits(x, format), format);
}

// y[i] = the 16-bit pattern of x[i] (the GPU's operand casts before cuDNN / cuBLAS).
struct ToHalf {
  const float* x;
  uint16_t* y;
  int format;
  GENRELAB_HD void operator()(int64_t i) const { y[i] = float_to_half_bits(x[i], format); }
};

// y[i] = float(x[i]), or y[i] += float(x[i]) when accumulating (16-bit results back to float).
struct FromHalf {
  const uint16_t* x;
  float* y;
  int format;
  bool accumulate;
  GENRELAB_HD void operator()(int64_t i) const {
    const float v = half_bits_to_float(x[i], format);
    y[i] = accumulate ? y[i] + v : v;
  }
};

// y[i] = x[i] rounded to the format and back (the CPU's emulation of the same casts; y may alias x).
template <typename T>
struct RoundToHalf {
  const T* x;
  T* y;
  int format;
  GENRELAB_HD void operator()(int64_t i) const { y[i] = T(round_to_half(float(x[i]), format)); }
};

// y[i] += x[i] rounded to the format: a product completed in float, then added as its 16-bit
// result (FromHalf's accumulate of the rounded value, without the 16-bit buffer between).
struct AddRoundedToHalf {
  const float* x;
  float* y;
  int format;
  GENRELAB_HD void operator()(int64_t i) const { y[i] += round_to_half(x[i], format); }
};

// g[i] *= scale[0], the scale read on the device (the loss scale applied to dL/dlogits).
struct ScaleByDevice {
  float* g;
  const float* scale;
  GENRELAB_HD void operator()(int64_t i) const { g[i] *= scale[0]; }
};

// The fp16 dynamic loss scale (PyTorch GradScaler). state: [0] scale, [1] consecutive finite
// steps, [2] this step's unscale factor 1/scale, [3] 1 when this step is skipped. One call (one
// thread), after the gradients are summed and before they are unscaled: a non-finite gradient
// anywhere skips the step and multiplies the scale by backoff; growth_interval finite steps in a
// row multiply it by growth.
struct LossScaleStep {
  const int64_t* nonfinite;  // (tensors) non-finite counts of the scaled gradients
  int64_t tensors;
  float* state;  // (4)
  float growth, backoff, growth_interval;
  GENRELAB_HD void operator()(int64_t) const {
    int64_t bad = 0;
    for (int64_t k = 0; k < tensors; ++k) bad += nonfinite[k];
    const float scale = state[0];
    state[2] = 1.0f / scale;
    if (bad > 0) {
      state[3] = 1.0f;
      state[0] = scale * backoff;
      state[1] = 0.0f;
    } else {
      state[3] = 0.0f;
      const float good = state[1] + 1.0f;
      if (good >= growth_interval) {
        const float grown = scale * growth;
        if (grown <= 3.4028234663852886e38f) state[0] = grown;  // as PyTorch: never grow to inf
        state[1] = 0.0f;
      } else {
        state[1] = good;
      }
    }
  }
};

}  // namespace genrelab::ops
