// Synchronised batch normalisation (statistics over the global batch of a data-parallel step) as
// gather functors shared by both backends: combining the ranks' per-channel sums, normalising,
// and the input gradient from the global sums. T: data type; S: statistics type (double).
#pragma once

#include <cmath>
#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

// Layout of the summed forward statistics, (1 + 2C) values of S:
//   [0] value count m (examples × h × w), [1 + c] Σ x, [1 + C + c] Σ x² of channel c.
// Each rank writes its shard's sums (Σ x² as m·(var + mean²) from a local two-pass mean and biased
// variance, which keeps the spread exact inside a shard); one all-reduce adds the ranks.
//
// From the summed statistics, per channel c: the global mean μ and biased variance σ² (the
// Keras/TensorFlow convention of the layer), stats (1 + 2C) = [m, μ (C), 1/√(σ² + ε) (C)], the
// normalisation y = x·scale + shift, and the Keras moving statistics
// moving = momentum·moving + (1 − momentum)·batch (the variance biased, as the layer keeps it).
template <typename T, typename S>
struct BatchNormGlobalStats {
  const S* sums;     // (1 + 2C) summed over the ranks
  const T* gamma;    // (C)
  const T* beta;     // (C)
  T* moving_mean;    // (C), updated in place
  T* moving_var;     // (C), updated in place
  S* stats;          // (1 + 2C): [m, mean (C), inverse deviation (C)]
  T* scale;          // (C)
  T* shift;          // (C)
  int64_t C;
  double momentum, eps;
  // One call per channel; channel 0 also copies the count.
  GENRELAB_HD void operator()(int64_t c) const {
    const S m = sums[0];
    const S mean = sums[1 + c] / m;
    const S second = sums[1 + C + c] / m - mean * mean;
    const S var = second > S(0) ? second : S(0);
    const S inv = S(1) / sqrt(double(var) + eps);
    if (c == 0) stats[0] = m;
    stats[1 + c] = mean;
    stats[1 + C + c] = inv;
    scale[c] = T(double(gamma[c]) * inv);
    shift[c] = T(double(beta[c]) - mean * double(gamma[c]) * inv);
    moving_mean[c] = T(momentum * double(moving_mean[c]) + (1.0 - momentum) * mean);
    moving_var[c] = T(momentum * double(moving_var[c]) + (1.0 - momentum) * var);
  }
};

// y (rows, C) = x · scale[c] + shift[c], one call per element.
template <typename T>
struct BatchNormApply {
  const T* x;
  const T* scale;  // (C)
  const T* shift;  // (C)
  T* y;
  int64_t C;
  GENRELAB_HD void operator()(int64_t i) const { y[i] = x[i] * scale[i % C] + shift[i % C]; }
};

// Input gradient from the global sums: with x̂ = (x − μ)·inv over the m values of a channel in
// the global batch, dx = γ·inv/m · (m·dy − Σ dy − x̂ · Σ dy·x̂), the single-process formula with
// every sum taken over all ranks. One call per element of dx (rows, C).
//   stats (1 + 2C): [m, μ (C), inv (C)] from BatchNormGlobalStats
//   grad_sums (2C): [Σ dy (C), Σ dy·x̂ (C)] summed over the ranks
template <typename T, typename S>
struct BatchNormBackwardDx {
  const T* x;
  const T* dy;
  const T* gamma;   // (C)
  const S* stats;
  const S* grad_sums;
  T* dx;
  int64_t C;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t c = i % C;
    const S m = stats[0];
    const S inv = stats[1 + C + c];
    const S xhat = (S(x[i]) - stats[1 + c]) * inv;
    dx[i] = T(S(gamma[c]) * inv / m * (m * S(dy[i]) - grad_sums[c] - xhat * grad_sums[C + c]));
  }
};

// Local gradient sums of the GPU path: sums (2C) of type S from the float column sums `local`
// (2C: Σ dy, Σ dy·x̂ of this rank's shard, or null for an empty shard: zeros), and this rank's
// parameter gradients dγ += Σ dy·x̂, dβ += Σ dy (summed over the ranks once, with the other
// parameter gradients). One call per element of sums.
template <typename S>
struct BatchNormLocalGradSums {
  const float* local;  // (2C) or null
  float* dgamma;       // (C)
  float* dbeta;        // (C)
  S* sums;             // (2C)
  int64_t C;
  GENRELAB_HD void operator()(int64_t i) const {
    const float v = local ? local[i] : 0.0f;
    sums[i] = S(v);
    if (i < C) dbeta[i] += v;
    else dgamma[i - C] += v;
  }
};

// out (rows, C) = dy · (x − μ) · inv: the terms of Σ dy·x̂ (the GPU sums them by columns).
template <typename T, typename S>
struct BatchNormDyXhat {
  const T* x;
  const T* dy;
  const S* stats;  // (1 + 2C) from BatchNormGlobalStats
  T* out;
  int64_t C;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t c = i % C;
    out[i] = T(S(dy[i]) * (S(x[i]) - stats[1 + c]) * stats[1 + C + c]);
  }
};

// Forward sums of the GPU path from cuDNN's local statistics of a shard of m values: the mean and
// the unbiased variance (cuDNN's running variance with averaging factor 1); sums (1 + 2C) in the
// layout above. m = 0 (an empty shard) writes zeros. One call per element of sums.
template <typename S>
struct BatchNormLocalSums {
  const float* mean;          // (C)
  const float* var_unbiased;  // (C)
  int64_t m, C;
  S* sums;
  GENRELAB_HD void operator()(int64_t i) const {
    if (i == 0) {
      sums[0] = S(m);
      return;
    }
    const int64_t c = (i - 1) % C;
    if (m == 0) {
      sums[i] = S(0);
      return;
    }
    const S mu = S(mean[c]);
    const S var = m > 1 ? S(var_unbiased[c]) * S(m - 1) / S(m) : S(0);
    sums[i] = i <= C ? S(m) * mu : S(m) * (var + mu * mu);
  }
};

}  // namespace genrelab::ops
