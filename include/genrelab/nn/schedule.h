// Learning-rate schedules (train.schedule: constant | step | cosine, with an optional linear
// warm-up) and the per-step optimizer scalars, computed on the host in double so every backend
// feeds its update functors (ops/nn_optim.h) the same numbers.
#pragma once

#include <cstdint>
#include <string>

#include "genrelab/config.h"
#include "genrelab/ops/nn_optim.h"

namespace genrelab::nn {

struct TrainHyper;

struct LrSchedule {
  std::string kind = "constant";  // constant | step | cosine
  double lr = 1e-3;
  int64_t step_epochs = 10;       // step: lr · gamma^floor(epoch / step_epochs)
  double step_gamma = 0.1;
  double warmup_epochs = 0;       // linear warm-up: lr · (s + 1) / warmup_steps for s < warmup_steps
  int64_t epochs = 1;             // cosine: decays to 0 at the end of the last epoch
  int64_t steps_per_epoch = 1;

  static LrSchedule from_config(const Config& config, int64_t steps_per_epoch);
  // The learning rate of 0-based optimisation step `step`. The epoch of a step is
  // step / steps_per_epoch (fractional); cosine runs from the end of the warm-up to the end:
  // lr · ½(1 + cos(π · (epoch − warmup) / (epochs − warmup))).
  double at(uint64_t step) const;
};

// Keras's bias-corrected Adam step size for 0-based step `step` (t = step + 1):
// lr · √(1 − β2^t) / (1 − β1^t).
double adam_step_size(double lr, double beta1, double beta2, uint64_t step);

// The update functors' per-step scalars for 0-based step `step` at learning rate `lr`, computed in
// double and rounded once: lr = adam_step_size(...) for adam/adamw, lr for sgd; decay =
// lr · weight_decay for adamw and sgd (decoupled), 0 for adam.
ops::OptimStep<float> optimizer_step(const TrainHyper& hyper, float lr, uint64_t step);

}  // namespace genrelab::nn
