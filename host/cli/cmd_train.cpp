// `genrelab train EXPERIMENT.json [--set k=v ...] [--device cuda|cpu] [--out DIR]` and
// `genrelab train --resume RUN_DIR`.
#include <string>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/train.h"

namespace genrelab::cli {
namespace {

int run_train(const Args& args) {
  TrainRequest req;
  if (args.positional().size() > 1) args.usage_error("expects one EXPERIMENT.json");
  if (!args.positional().empty()) req.experiment = args.positional()[0];
  req.overrides = args.all("--set");
  req.device = args.get_or("--device", "");
  req.out = args.get_or("--out", "");
  req.resume = args.get_or("--resume", "");
  req.quiet = args.has("--quiet");
  if (const auto p = args.get("--profile")) {
    try { req.profile_steps = std::stoi(*p); } catch (...) { args.usage_error("--profile expects a step count"); }
    if (req.profile_steps < 1) args.usage_error("--profile expects a positive step count");
  }
  if (req.experiment.empty() && req.resume.empty()) args.usage_error("expects EXPERIMENT.json or --resume RUN_DIR");
  return run_training(req);
}

CommandRegistrar reg{{"train", "train an experiment; the run directory tells the whole story",
                      "usage: genrelab train EXPERIMENT.json [--set key=value ...] [--device cuda|cpu] [--out DIR]\n"
                      "       genrelab train --resume RUN_DIR\n\n"
                      "Decodes the collection, splits it, augments the training clips, computes mel features and\n"
                      "trains, evaluating on the test (and valid) clips after every epoch. The run directory\n"
                      "DIR/<name>-<UTC timestamp>/ holds config.json, run.json, split.json, metrics.jsonl,\n"
                      "checkpoint.bin, curves.svg, confusion.svg and, at the end, summary.json; its path is printed\n"
                      "on stdout. Ctrl-C or SIGTERM stops at the next step with a checkpoint; --resume continues\n"
                      "to the result an uninterrupted run gives.\n",
                      {set_option(), device_option(),
                       {"--out", true, false, "parent folder of the run directory (default: output.dir)"},
                       {"--resume", true, false, "continue the run in RUN_DIR from its last checkpoint"},
                       {"--profile", true, false, "run N steps after 3 warm-up steps inside cudaProfilerStart/Stop, then stop"},
                       {"--quiet", false, false, "no progress bars"}},
                      run_train}};

}  // namespace
}  // namespace genrelab::cli
