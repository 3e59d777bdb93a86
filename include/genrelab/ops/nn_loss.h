// The training head shared by both backends: softmax cross-entropy with label smoothing on the
// logits of the last dense layer (the softmax is fused into the loss, as Keras does for
// sparse_categorical_crossentropy on a softmax output). Gather form: one call = one output.
#pragma once

#include <cmath>
#include <cstdint>

#include "genrelab/common.h"

namespace genrelab::ops {

// Target of class k for label y with smoothing s over C classes (Keras): (1 − s)·[k = y] + s / C.
template <typename T>
GENRELAB_HD T smoothed_target(int64_t k, int32_t label, T smoothing, int64_t classes) {
  return (k == label ? T(1) - smoothing : T(0)) + smoothing / T(classes);
}

// Per example: loss = logsumexp(z) − Σ_k t_k z_k, correct = argmax(z) == label (first max wins).
// logits: (n, classes); labels: (n); loss: (n); correct: (n), either may be null.
template <typename T>
struct SoftmaxXentLoss {
  const T* logits;
  const int32_t* labels;
  int64_t classes;
  T smoothing;
  T* loss;
  int32_t* correct;
  GENRELAB_HD void operator()(int64_t e) const {
    const T* z = logits + e * classes;
    int64_t arg = 0;
    for (int64_t k = 1; k < classes; ++k) arg = z[k] > z[arg] ? k : arg;
    const T mx = z[arg];
    T sum = T(0), tz = T(0);
    for (int64_t k = 0; k < classes; ++k) {
      sum += exp(z[k] - mx);
      tz += smoothed_target<T>(k, labels[e], smoothing, classes) * (z[k] - mx);
    }
    if (loss) loss[e] = log(sum) - tz;  // Σ t = 1, so the shift by mx cancels
    if (correct) correct[e] = arg == labels[e] ? 1 : 0;
  }
};

// dlogits (n, classes) = (softmax(z) − t) · inv_batch, inv_batch = 1 / global batch: the gradient
// of the mean loss over the global batch (data-parallel shards sum their gradients).
template <typename T>
struct SoftmaxXentGrad {
  const T* logits;
  const int32_t* labels;
  int64_t classes;
  T smoothing;
  T inv_batch;
  T* dlogits;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t e = i / classes, k = i % classes;
    const T* z = logits + e * classes;
    T mx = z[0];
    for (int64_t j = 1; j < classes; ++j) mx = z[j] > mx ? z[j] : mx;
    T sum = T(0);
    for (int64_t j = 0; j < classes; ++j) sum += exp(z[j] - mx);
    const T p = exp(z[k] - mx) / sum;
    dlogits[i] = (p - smoothed_target<T>(k, labels[e], smoothing, classes)) * inv_batch;
  }
};

}  // namespace genrelab::ops
