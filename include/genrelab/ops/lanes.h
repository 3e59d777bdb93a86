// L consecutive elements as one access: a functor that handles four floats (L = 4) does its index
// arithmetic once and moves them with one 16-byte load or store instead of four 4-byte ones (a
// warp's four scalar stores at a 16-byte stride write each 32-byte sector in four partial pieces,
// which makes an element-wise kernel L2-bound). The pointers must be aligned to the lanes' size.
#pragma once

#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

template <typename T, int L>
struct alignas(sizeof(T) * L) Lanes {
  T v[L];
};
// Loads and stores of L lanes as one access (the alignment makes L = 4 one 128-bit access for
// floats, one 32-bit access for bytes on the GPU).
template <typename Lane, typename T>
GENRELAB_HD Lane load_lanes(const T* p) {
  return *reinterpret_cast<const Lane*>(p);
}
template <typename Lane, typename T>
GENRELAB_HD void store_lanes(T* p, const Lane& a) {
  *reinterpret_cast<Lane*>(p) = a;
}
// Whether p may be read or written as one Lane.
template <typename Lane, typename T>
GENRELAB_HD bool lanes_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(Lane) == 0;
}

}  // namespace genrelab::ops
