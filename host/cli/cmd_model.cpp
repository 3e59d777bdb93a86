// `genrelab model summary EXPERIMENT.json`: the planned network as a Keras-style table (layers,
// output shapes, parameter counts) without touching the data or any GPU.
#include <iostream>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nn/model.h"

namespace genrelab::cli {
namespace {

int run_model_summary(const Args& args) {
  if (args.positional().size() != 1) args.usage_error("expects one experiment file");
  const Config config = Config::load(args.positional()[0], args.all("--set"));
  std::optional<nn::Shape3> input = nn::input_shape(config);
  if (args.has("--frames")) input = nn::Shape3{config.get_int("features.n_mels"), args.get_int("--frames", 0, 1), 1};
  if (!input)
    throw ConfigError(args.positional()[0] + ": the input length is not fixed: set dataset.clip_samples or dataset.window_samples "
                      "(e.g. --set dataset.clip_samples=617400, the baseline's 28 s) or pass --frames N");
  if (input->w < 1) config.fail("dataset.clip_samples", "is shorter than features.n_fft: no frame fits (features.center is false)");
  int64_t classes = int64_t(config.get_string_list("dataset.classes").size());
  if (classes == 0) {
    classes = 10;
    std::cerr << "model summary: dataset.classes is empty (the classes come from the data's folders); assuming 10 classes as in GTZAN\n";
  }
  const nn::ModelPlan plan = nn::plan_model(config, *input, classes);
  std::cout << nn::model_summary(plan);
  return 0;
}

CommandRegistrar reg{{"model summary", "the planned network: layers, output shapes, parameter counts",
                      "usage: genrelab model summary EXPERIMENT.json [--set key=value ...] [--frames N]\n\n"
                      "Plans model.layers on the input the experiment's features produce, (n_mels, frames, 1), with\n"
                      "frames from dataset.window_samples or else dataset.clip_samples, and prints a Keras-style table.\n"
                      "Needs no data: the class count is dataset.classes (10 when empty).\n",
                      {set_option(), {"--frames", true, false, "input frames when the config fixes no clip or window length"}},
                      run_model_summary}};

}  // namespace
}  // namespace genrelab::cli
