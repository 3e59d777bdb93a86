#!/usr/bin/env bash
# The baseline recipe end to end (SPEC §1: experiments/seed-baseline.json, 50 epochs) at GTZAN's
# size, on synthetic clips (an offline GPU machine has no GTZAN): 1 000 30-s clips, 800 train and 200
# test, so 2 400 training examples a 75-step epoch, as GTZAN's 2 397. Times the whole process for
# each precision asked and prints one line each (stdout): the wall time and where it went
# (summary.json's time_seconds, with its parts), the first epoch's and a later epoch's time.
#
#   tools/bench/recipe.sh BIN OUT_DIR [PRECISION ...]     (default precision: fp32)
#
# OUT_DIR gets the set (OUT_DIR/clips, made once and reused), each run's directory, its log
# (recipe-PRECISION.log) and summary (summary-PRECISION.json). GENRELAB_RECIPE_DEVICE (default
# cuda), GENRELAB_RECIPE_EPOCHS (default: the recipe's 50), GENRELAB_RECIPE_CLIPS_PER_GENRE (100)
# and GENRELAB_RECIPE_SECONDS (30) make a smaller run, e.g. a check on a machine without a GPU.
# GENRELAB_RECIPE_SET="KEY=VALUE ..." adds --set overrides (a variant to compare, e.g.
# "train.cudnn_search=find"), and its files are then named recipe-PRECISION-TAG.log etc. with
# GENRELAB_RECIPE_TAG (default: variant). The runs take timed choices an earlier run on this machine
# stored in the tuning cache (docs/network-gpu.md), as any run does; the line says how many.
# GENRELAB_TUNING_CACHE=off times a first run's.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/bench/recipe.sh BIN OUT_DIR [PRECISION ...]" >&2; exit 2; }
bin=$1 out=$2
shift 2
precisions=("$@")
[ ${#precisions[@]} -gt 0 ] || precisions=(fp32)
device=${GENRELAB_RECIPE_DEVICE:-cuda}
mkdir -p "$out"
clips="$out/clips"
if [ ! -d "$clips" ]; then
  "$bin" data synth "$clips.tmp" --clips-per-genre "${GENRELAB_RECIPE_CLIPS_PER_GENRE:-100}" \
    --seconds "${GENRELAB_RECIPE_SECONDS:-30}" >/dev/null
  mv "$clips.tmp" "$clips"
fi
sets=()
[ -n "${GENRELAB_RECIPE_EPOCHS:-}" ] && sets=(--set "train.epochs=$GENRELAB_RECIPE_EPOCHS")
suffix=""
if [ -n "${GENRELAB_RECIPE_SET:-}" ]; then
  for kv in $GENRELAB_RECIPE_SET; do sets+=(--set "$kv"); done
  suffix="-${GENRELAB_RECIPE_TAG:-variant}"
fi
for prec in "${precisions[@]}"; do
  name="$prec$suffix"
  log="$out/recipe-$name.log"
  start=$(date +%s.%N)
  run_dir=$(GENRELAB_LOG_CONV_ALGOS=1 GTZAN_ROOT="$clips" "$bin" train experiments/seed-baseline.json --device "$device" \
    --quiet --set "train.precision=$prec" "${sets[@]}" --out "$out/runs-$name" 2>"$log")
  end=$(date +%s.%N)
  cp "$run_dir/summary.json" "$out/summary-$name.json"
  python3 - "$out/summary-$name.json" "$log" "$name" "$device" "$start" "$end" "${GENRELAB_RECIPE_SET:-}" <<'PY'
import json, re, sys
summary, log, prec, device, start, end, overrides = sys.argv[1:8]
if overrides:
    prec += " (--set " + " --set ".join(overrides.split()) + ")"
s = json.load(open(summary))
t = s["time_seconds"]
epochs = [float(m.group(1)) for m in re.finditer(r"^epoch +\d+/\d+ .* ([0-9.]+) s +\d+ samples/s", open(log).read(), re.M)]
later = "%.2f s" % epochs[-1] if len(epochs) > 1 else "-"
p = t.get("parts", {})
cached = re.search(r"(\d+) timed choices? \(.*\) taken from the tuning cache", open(log).read())
print("recipe %s %s: %.1f s wall (process %.1f s): %.2f s before the first epoch (data %.2f, examples %.2f, "
      "network %.2f), %.2f s training (epoch 1 %.2f s, last %s), %.2f s evaluating, %.2f s saving, %.2f s the last "
      "checkpoint, %.2f s of training and evaluating choosing algorithms (%s); final test accuracy %.1f %%"
      % (device, prec, s["wall_seconds"], float(end) - float(start), t["before_training"], p.get("data", 0),
         p.get("examples", 0), p.get("network", 0), t["training"], epochs[0] if epochs else 0.0, later,
         t["evaluation"], t["saving"], t["last_checkpoint"], p.get("tuning", 0),
         "%s taken from the tuning cache" % cached.group(1) if cached else "none from the tuning cache",
         100 * s["final_test_accuracy"]))
PY
done
