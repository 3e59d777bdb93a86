// Element-wise network functors shared by the CPU and CUDA backends (gather form: one call
// computes one output element): fused bias + activation, activation derivatives, softmax and its
// backward, and dropout masks keyed by Philox. Templated on the scalar so CPU gradient checks can
// run the same arithmetic in double.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "genrelab/common.h"
#include "genrelab/ops/lanes.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/philox.h"

namespace genrelab::ops {

// Activation codes (same values as nn::Act).
enum : int { kActNone = 0, kActRelu, kActElu, kActLeakyRelu, kActTanh, kActSigmoid, kActSoftmax };

// The channel of element i of a channels-last tensor: a 32-bit division whenever i fits in 32 bits
// (a 64-bit one is a long instruction sequence on the GPU, as much work as the element's own).
GENRELAB_HD int64_t channel_of(int64_t i, int64_t channels) {
  return (uint64_t(i) >> 32) == 0 ? int64_t(uint32_t(i) % uint32_t(channels)) : i % channels;
}

template <typename T>
GENRELAB_HD T activate(int act, T z, T alpha) {
  switch (act) {
    case kActRelu: return z > T(0) ? z : T(0);
    case kActElu: return z > T(0) ? z : alpha * (exp(z) - T(1));
    case kActLeakyRelu: return z > T(0) ? z : alpha * z;
    case kActTanh: return tanh(z);
    case kActSigmoid: return T(1) / (T(1) + exp(-z));
    default: return z;  // none; softmax is applied row-wise (SoftmaxRows)
  }
}

// activate() on each of N values with one dispatch on `act` (a thread that computes several
// outputs branches once instead of once per output).
template <typename T, int N>
GENRELAB_HD void activate_each(int act, T (&z)[N], T alpha) {
  auto each = [&](auto a) {
    for (int j = 0; j < N; ++j) z[j] = activate<T>(decltype(a)::value, z[j], alpha);
  };
  switch (act) {
    case kActRelu: each(std::integral_constant<int, kActRelu>()); break;
    case kActElu: each(std::integral_constant<int, kActElu>()); break;
    case kActLeakyRelu: each(std::integral_constant<int, kActLeakyRelu>()); break;
    case kActTanh: each(std::integral_constant<int, kActTanh>()); break;
    case kActSigmoid: each(std::integral_constant<int, kActSigmoid>()); break;
    default: break;  // none
  }
}

// d activation / dz written in terms of the OUTPUT y (so backward needs no pre-activation copy).
// relu/elu/leaky_relu use y > 0 ⇔ z > 0 (alpha ≥ 0); the derivative at z = 0 is taken from the
// negative side (TensorFlow's convention for relu).
template <typename T>
GENRELAB_HD T activation_grad(int act, T y, T alpha) {
  switch (act) {
    case kActRelu: return y > T(0) ? T(1) : T(0);
    case kActElu: return y > T(0) ? T(1) : y + alpha;
    case kActLeakyRelu: return y > T(0) ? T(1) : alpha;
    case kActTanh: return T(1) - y * y;
    case kActSigmoid: return y * (T(1) - y);
    default: return T(1);
  }
}

// y[i] = act(y[i] + bias[i % channels]) in place; y: (rows, channels); bias may be null.
template <typename T>
struct BiasActivation {
  T* y;
  const T* bias;
  int64_t channels;
  int act;
  T alpha;
  GENRELAB_HD void operator()(int64_t i) const {
    const T z = bias ? y[i] + bias[channel_of(i, channels)] : y[i];
    y[i] = activate<T>(act, z, alpha);
  }
};

// Mixed precision (bf16/fp16), a convolution's epilogue: y[i] = act(float(y16[i]) + bias[c]) for
// the 16-bit result cuDNN wrote; bias may be null. FromHalf then BiasActivation in one pass, the
// same float arithmetic (widening is exact): 6 bytes an element moved instead of 14.
struct HalfBiasActivation {
  const uint16_t* y16;
  float* y;
  const float* bias;
  int64_t channels;
  int format;  // kHalfBf16 | kHalfFp16
  int act;
  float alpha;
  GENRELAB_HD void operator()(int64_t i) const {
    const float v = half_bits_to_float(y16[i], format);
    y[i] = activate<float>(act, bias ? v + bias[channel_of(i, channels)] : v, alpha);
  }
};

// dz[i] = dy[i] · act'(y[i]); dz may alias dy.
template <typename T>
struct ActivationBackward {
  const T* y;
  const T* dy;
  T* dz;
  int act;
  T alpha;
  GENRELAB_HD void operator()(int64_t i) const { dz[i] = dy[i] * activation_grad<T>(act, y[i], alpha); }
};

// Mixed precision, a convolution's backward: dz[i] = dy[i] · act'(y[i]) (float, for the bias
// gradient) and its 16-bit copy dz16[i] for cuDNN: ActivationBackward then ToHalf in one pass.
struct ActivationBackwardToHalf {
  const float* y;
  const float* dy;
  float* dz;
  uint16_t* dz16;
  int format;  // kHalfBf16 | kHalfFp16
  int act;
  float alpha;
  GENRELAB_HD void operator()(int64_t i) const {
    const float g = dy[i] * activation_grad<float>(act, y[i], alpha);
    dz[i] = g;
    dz16[i] = float_to_half_bits(g, format);
  }
};

// y (rows, cols) = softmax of z along each row; each call recomputes its row's max and sum
// (rows are class vectors, short). y must not alias z.
template <typename T>
struct SoftmaxRows {
  const T* z;
  T* y;
  int64_t cols;
  GENRELAB_HD void operator()(int64_t i) const {
    const T* row = z + (i / cols) * cols;
    T mx = row[0];
    for (int64_t k = 1; k < cols; ++k) mx = row[k] > mx ? row[k] : mx;
    T sum = T(0);
    for (int64_t k = 0; k < cols; ++k) sum += exp(row[k] - mx);
    y[i] = exp(z[i] - mx) / sum;
  }
};

// Backward of a row softmax: dz_k = y_k (dy_k − Σ_j dy_j y_j). dz must not alias dy.
template <typename T>
struct SoftmaxRowsBackward {
  const T* y;
  const T* dy;
  T* dz;
  int64_t cols;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t r0 = (i / cols) * cols;
    T dot = T(0);
    for (int64_t k = 0; k < cols; ++k) dot += dy[r0 + k] * y[r0 + k];
    dz[i] = y[i] * (dy[i] - dot);
  }
};

// Inverted dropout (Keras): an element is kept with probability 1 − rate and scaled by
// 1 / (1 − rate). The mask of element j of the example at global batch position e, in step
// `step` of layer `layer`, is Philox(seed, dropout; a = layer, b = step) word
// (e · layer_size + j): independent of the backend, the shard and the launch order. The same
// functor applies the mask forward (x → y) and backward (dy → dx).
//
// The per-step part of the key, read through a pointer: host memory on the CPU, the GPU network's
// per-step device block (written once before each step), so a captured CUDA graph draws each
// step's own mask.
struct DropoutStep {
  uint64_t step = 0;          // global optimisation step
  int64_t first_example = 0;  // global batch position of local example 0
};

struct DropoutMask {
  uint32_t seed = 0;
  int layer = 0;
  float rate = 0;
  int64_t layer_size = 0;           // elements per example
  const DropoutStep* key = nullptr;  // one value for all elements
  GENRELAB_HD PhiloxStream stream() const {
    return PhiloxStream(seed, RngPurpose::dropout, uint32_t(layer), uint32_t(key->step));
  }
  // i: local element index (local example · layer_size + j).
  GENRELAB_HD bool keep(int64_t i) const { return stream().uniform(uint64_t(key->first_example * layer_size + i)) >= rate; }
};

// One call applies the mask to the (up to) four elements 4·g … 4·g + 3 that share a Philox block
// when the layer's global offset is a multiple of 4 (then one block per call instead of one per
// element: Philox, not memory, bounds this kernel otherwise); launch over groups(count).
template <typename T>
struct DropoutApply {
  DropoutMask mask;
  const T* in;
  T* out;
  int64_t count;  // elements in the batch
  static GENRELAB_HD int64_t groups(int64_t count) { return (count + 3) / 4; }
  GENRELAB_HD void operator()(int64_t g) const {
    const T scale = T(1) / (T(1) - T(mask.rate));
    const PhiloxStream stream = mask.stream();
    const int64_t first = 4 * g, last = first + 4 < count ? first + 4 : count;
    const uint64_t base = uint64_t(mask.key->first_example * mask.layer_size);
    uint64_t block_index = (base + uint64_t(first)) >> 2;
    r123::Philox4x32::ctr_type block = stream.block(block_index);
    // The four elements are one Philox block's four words and one aligned 16-byte access (for
    // floats) wherever the layer's offset is a multiple of 4: the common case, one load, one store.
    using Four = Lanes<T, 4>;
    if (last - first == 4 && ((base + uint64_t(first)) & 3) == 0 && lanes_aligned<Four>(in + first) &&
        lanes_aligned<Four>(out + first)) {
      Four v = load_lanes<Four>(in + first);
      for (int j = 0; j < 4; ++j) v.v[j] = PhiloxStream::uniform_of(block.v[j]) >= mask.rate ? v.v[j] * scale : T(0);
      store_lanes(out + first, v);
      return;
    }
    for (int64_t i = first; i < last; ++i) {
      const uint64_t w = base + uint64_t(i);
      if ((w >> 2) != block_index) block = stream.block(block_index = w >> 2);
      out[i] = PhiloxStream::uniform_of(PhiloxStream::lane(block, uint32_t(w & 3))) >= mask.rate ? in[i] * scale : T(0);
    }
  }
};

// A dropout fused into the pass before it (ops/conv_epilogue.h, ops/conv_pool.h): its mask
// (DropoutMask) and whether it applies (training with a non-zero rate).
struct EpilogueDropout {
  bool on = false;
  DropoutMask mask;
  // keep[l] for the L elements o … o + L − 1 (local element indices, as DropoutMask::keep takes
  // them): one Philox block when they share one (the usual case: L = 4 at an offset that is a
  // multiple of 4).
  template <int L>
  GENRELAB_HD void keep(int64_t o, bool (&k)[L]) const {
    const PhiloxStream stream = mask.stream();
    const uint64_t base = uint64_t(mask.key->first_example * mask.layer_size) + uint64_t(o);
    uint64_t block_index = base >> 2;
    r123::Philox4x32::ctr_type block = stream.block(block_index);
    if (L == 4 && (base & 3) == 0) {  // the usual case: the block's four words, at constant indices
      GENRELAB_UNROLL
      for (int l = 0; l < L; ++l) k[l] = PhiloxStream::uniform_of(block.v[l & 3]) >= mask.rate;
      return;
    }
    for (int l = 0; l < L; ++l) {
      const uint64_t word = base + uint64_t(l);
      if ((word >> 2) != block_index) block = stream.block(block_index = word >> 2);
      k[l] = PhiloxStream::uniform_of(PhiloxStream::lane(block, uint32_t(word & 3))) >= mask.rate;
    }
  }
  GENRELAB_HD float scale() const { return 1.0f / (1.0f - mask.rate); }  // DropoutApply's
  // The mask applied to v, values (forward) or gradients (backward) of elements o … o + L − 1, as
  // DropoutApply applies it (kept: v · scale, dropped: 0); kept[l] says which.
  template <int L>
  GENRELAB_HD void apply(int64_t o, float (&v)[L], bool (&kept)[L]) const {
    keep<L>(o, kept);
    const float s = scale();
    for (int l = 0; l < L; ++l) v[l] = kept[l] ? v[l] * s : 0.0f;
  }
};

}  // namespace genrelab::ops
