// Counter-based random numbers (Random123 Philox4x32-10) shared by the CPU and GPU backends:
// a stream is keyed by (seed, purpose) and addressed by (index, a, b), e.g. a = clip, b = epoch
// for an augmentation, so any element's draw can be computed independently, in any order, on
// either backend, with bit-identical uniform words.
#pragma once

#include <Random123/philox.h>

#include <cstdint>

#include "genrelab/common.h"

namespace genrelab {

// What a stream is used for; part of the key, so streams for different purposes never overlap.
enum class RngPurpose : uint32_t {
  augment_choice = 1,  // whether an augmentation applies, and its parameters
  noise = 2,           // Gaussian noise samples
  spec_mask = 3,
  dropout = 16,
  init = 17,           // weight initialisation
  shuffle = 18,        // per-epoch permutation
};

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
  // Word `i` of the stream (block i/4, lane i%4).
  GENRELAB_HD uint32_t word(uint64_t i) const { return block(i >> 2).v[i & 3]; }

  // Uniform in [0, 1) with 24 random bits (exactly representable: identical on every device).
  GENRELAB_HD float uniform(uint64_t i) const { return float(word(i) >> 8) * (1.0f / 16777216.0f); }
  // Uniform in [0, 1) with 53 random bits, from two words.
  GENRELAB_HD double uniform_double(uint64_t i) const {
    const auto blk = block(i >> 1);
    const uint32_t hi = blk.v[(i & 1) * 2], lo = blk.v[(i & 1) * 2 + 1];
    return double((uint64_t(hi) << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
  }
  // Uniform in [lo, hi).
  GENRELAB_HD double uniform_range(uint64_t i, double lo, double hi) const { return lo + (hi - lo) * uniform_double(i); }
};

}  // namespace genrelab
