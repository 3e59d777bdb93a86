// Learning-rate schedules, Adam's bias-corrected step size and the optimizer's per-step scalars
// (see nn/schedule.h).
#include "genrelab/nn/schedule.h"

#include <algorithm>
#include <cmath>

#include "genrelab/common.h"
#include "genrelab/nn/network.h"

namespace genrelab::nn {

LrSchedule LrSchedule::from_config(const Config& config, int64_t steps_per_epoch) {
  LrSchedule s;
  s.kind = config.get_string("train.schedule");
  s.lr = config.get_number("train.lr");
  s.step_epochs = config.get_int("train.step_epochs");
  s.step_gamma = config.get_number("train.step_gamma");
  s.warmup_epochs = config.get_number("train.warmup_epochs");
  s.epochs = config.get_int("train.epochs");
  s.steps_per_epoch = std::max<int64_t>(1, steps_per_epoch);
  if (s.kind == "cosine" && s.warmup_epochs >= double(s.epochs))
    config.fail("train.warmup_epochs", "must be shorter than train.epochs for the cosine schedule");
  return s;
}

double LrSchedule::at(uint64_t step) const {
  const double epoch = double(step) / double(steps_per_epoch);
  double rate = lr;
  if (kind == "step") {
    rate = lr * std::pow(step_gamma, std::floor(epoch / double(step_epochs)));
  } else if (kind == "cosine") {
    const double span = double(epochs) - warmup_epochs;
    const double progress = std::clamp((epoch - warmup_epochs) / span, 0.0, 1.0);
    rate = lr * 0.5 * (1.0 + std::cos(M_PI * progress));
  } else {
    GENRELAB_CHECK(kind == "constant", "unknown learning-rate schedule '", kind, "'");
  }
  const double warmup_steps = std::round(warmup_epochs * double(steps_per_epoch));
  if (warmup_steps >= 1 && double(step) < warmup_steps) rate *= (double(step) + 1.0) / warmup_steps;
  return rate;
}

double adam_step_size(double lr, double beta1, double beta2, uint64_t step) {
  const double t = double(step) + 1.0;
  return lr * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t));
}

ops::OptimStep<float> optimizer_step(const TrainHyper& hyper, float lr, uint64_t step) {
  const bool adam = hyper.optimizer != "sgd";
  ops::OptimStep<float> s;
  s.lr = adam ? float(adam_step_size(lr, hyper.beta1, hyper.beta2, step)) : lr;
  s.decay = hyper.optimizer != "adam" ? float(double(lr) * hyper.weight_decay) : 0.0f;
  return s;
}

}  // namespace genrelab::nn
