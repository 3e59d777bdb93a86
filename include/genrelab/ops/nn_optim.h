// Optimizer updates shared by both backends, one parameter element per call, with Keras 3
// semantics (the per-step scalars — bias-corrected rate, decay factor — are computed on the host
// in double by nn::optimizer_step, see nn/schedule.h, and read through a pointer: host memory on
// the CPU, one device block per step on the GPU, so a captured CUDA graph sees each step's values):
//   adam:  m += (g − m)(1 − β1); v += (g² − v)(1 − β2); w −= lr_t · m / (√v + ε),
//          lr_t = lr · √(1 − β2^t) / (1 − β1^t), t = step + 1
//   adamw: w −= w · wd · lr first (decoupled; kernels only), then the adam update
//   sgd:   v = μ v − lr g; w += v, or with Nesterov w += μ v − lr g (Keras form: the velocity
//          holds −lr·Σ…, so a changing lr acts on new gradients only); decoupled decay as adamw
// plus the L2 penalty gradient and the global-norm clipping scale. `skip` (optional, one value
// in the backend's memory) is the fp16 loss scaler's flag: when it is non-zero the step leaves
// the weights and the moments untouched (a gradient overflowed, see ops/low_precision.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

// The scalars of one optimisation step that change from step to step.
template <typename T>
struct OptimStep {
  T lr;     // adam, adamw: the bias-corrected step size lr_t; sgd: the learning rate
  T decay;  // lr · weight_decay (adamw, sgd: decoupled decay); 0 under adam
};

template <typename T>
struct AdamUpdate {
  T* w;
  const T* g;
  T* m;
  T* v;
  const OptimStep<T>* step;  // lr = lr_t; one value for all elements
  T beta1, beta2, epsilon;
  bool decayed;              // the parameter takes the decoupled decay (kernels)
  const T* skip = nullptr;   // fp16 loss scaling: a non-zero skip[0] leaves w, m and v as they are
  GENRELAB_HD void operator()(int64_t i) const {
    if (skip && skip[0] != T(0)) return;
    const T lr_t = step->lr, decay = decayed ? step->decay : T(0);
    T wi = w[i];
    if (decay != T(0)) wi -= wi * decay;
    const T gi = g[i];
    const T mi = m[i] + (gi - m[i]) * (T(1) - beta1);
    const T vi = v[i] + (gi * gi - v[i]) * (T(1) - beta2);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - lr_t * mi / (sqrt(vi) + epsilon);
  }
};

template <typename T>
struct SgdUpdate {
  T* w;
  const T* g;
  T* velocity;
  const OptimStep<T>* step;  // one value for all elements
  T momentum;
  bool nesterov;
  bool decayed;             // the parameter takes the decoupled decay (kernels)
  const T* skip = nullptr;  // fp16 loss scaling: a non-zero skip[0] leaves w and the velocity as they are
  GENRELAB_HD void operator()(int64_t i) const {
    if (skip && skip[0] != T(0)) return;
    const T lr = step->lr, decay = decayed ? step->decay : T(0);
    T wi = w[i];
    if (decay != T(0)) wi -= wi * decay;
    const T vi = momentum * velocity[i] - lr * g[i];
    velocity[i] = vi;
    w[i] = nesterov ? wi + momentum * vi - lr * g[i] : wi + vi;
  }
};

// g[i] = g[i] · scale + l2x2 · w[i]: the clip scale and the L2 penalty gradient (2·l2·w) in one
// pass; l2x2 = 0 for parameters without decay.
template <typename T>
struct GradFinish {
  T* g;
  const T* w;
  T scale, l2x2;
  GENRELAB_HD void operator()(int64_t i) const { g[i] = g[i] * scale + l2x2 * w[i]; }
};

}  // namespace genrelab::ops
