// Division by a divisor fixed at launch time as one multiply and one shift, for the index
// arithmetic of gather functors: a 32-bit division is a long instruction sequence on the GPU and
// 10-25 cycles on the CPU, and a functor that splits a flat index into (example, row, column,
// tap, channel) does several per element. Granlund & Montgomery (1994), Theorem 4.2, with N = 31:
// for 1 ≤ d < 2^31, l = ⌈log2 d⌉ and m = ⌈2^(31+l) / d⌉, floor(n / d) = floor(n·m / 2^(31+l)) for
// every 0 ≤ n < 2^31; m < 2^32, so n·m < 2^63 fits one 64-bit product.
#pragma once

#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

class FastDiv {
 public:
  FastDiv() = default;  // divides by 1
  explicit FastDiv(int64_t divisor) {
    GENRELAB_CHECK(divisor >= 1 && divisor < (int64_t(1) << 31), "FastDiv: divisor ", divisor, " outside [1, 2^31)");
    d_ = uint32_t(divisor);
    int l = 0;
    while ((uint64_t(1) << l) < d_) ++l;
    shift_ = 31 + l;
    m_ = ((uint64_t(1) << shift_) + d_ - 1) / d_;
  }
  // n / d for 0 ≤ n < 2^31.
  GENRELAB_HD uint32_t div(uint32_t n) const { return uint32_t((uint64_t(n) * m_) >> shift_); }
  // q = n / d and r = n − q·d.
  GENRELAB_HD void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * d_;
  }
  GENRELAB_HD uint32_t divisor() const { return d_; }

 private:
  uint32_t d_ = 1;
  int shift_ = 31;
  uint64_t m_ = uint64_t(1) << 31;
};

}  // namespace genrelab::ops
