#!/usr/bin/env bash
# One-command GPU validation (under 10 minutes on an H100), most valuable parts first, each cut to
# the time budget left: Release build for the local GPU; the [gpu] tests; the training benchmarks
# beside PyTorch (fp32, tf32, bf16: the fusions, the conv engines, the stages and the GPU idle time
# from bench train's own activity trace); the recipe at GTZAN's scale; the [gpu] tests under
# compute-sanitizer memcheck with the rest of the suite beside it; the feature and augmentation
# benchmarks beside torchaudio; whole training runs; the layer table; the profiled steps' idle time
# (nsys where installed); racecheck, synccheck and Nsight Compute; then the CPU side by side with
# the time left. OUT_DIR/summary.md has a row per part (rewritten after each, so a run killed from
# outside still leaves one), the ratio table (tools/bench/compare.py), the GPU and the versions.
#   usage: tools/gpu-check.sh OUT_DIR
# Offline GPU machines: .gpu/env.sh (the exports of docs/gpu-offline.md) is sourced when present.
# Environment: GENRELAB_GPU_CHECK_BUDGET_S (default 540 s in all, from the start; allow about 30 s
# more for the summary), GENRELAB_BENCH_PYTHON (the interpreter with torch/torchaudio for the
# peers; default python3), GENRELAB_GPU_CHECK_RECIPE (precisions of the 50-epoch recipe to time
# first, e.g. fp32; default none), GENRELAB_GPU_CHECK_RECIPE_SET (--set overrides of a second run
# of each, beside the first).
set -uo pipefail
t0=$(date +%s)
out=${1:?usage: tools/gpu-check.sh OUT_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$root"
[ -f .gpu/env.sh ] && . .gpu/env.sh
budget=${GENRELAB_GPU_CHECK_BUDGET_S:-540}
# Every process times its own choices (no tuning cache from an earlier check or run on this
# machine), except the two steps that measure the cache, which name their own file.
export GENRELAB_TUNING_CACHE=off

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no GPU on this machine (nvidia-smi is missing or lists no GPU); nothing validated." >&2
  echo "gpu-check: run it on a machine with an NVIDIA GPU and driver (docs/gpu-offline.md)." >&2
  printf '# GenreLab GPU check\n\nNot run: no GPU on this machine (nvidia-smi is missing or lists no GPU).\n' \
    >"$out/summary.md"
  exit 1
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '. ')
export PATH="/usr/local/cuda/bin:$PATH"

# cuDNN: the environment, the toolkit folder, the system, or the wheel PyTorch uses.
if [ -z "${CUDNN_LIBRARY:-}" ]; then
  for d in /usr/local/cuda /usr $(python3 -c 'import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null); do
    h=$(ls "$d"/include/cudnn_version.h "$d"/include/*/cudnn_version.h 2>/dev/null | head -n1)
    l=$(ls "$d"/lib/libcudnn.so* "$d"/lib64/libcudnn.so* "$d"/lib/x86_64-linux-gnu/libcudnn.so* 2>/dev/null | head -n1)
    if [ -n "$h" ] && [ -n "$l" ]; then
      export CUDNN_INCLUDE_DIR=$(dirname "$h") CUDNN_LIBRARY=$l
      export LD_LIBRARY_PATH="$(dirname "$l")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      break
    fi
  done
fi
cudnn_used="${CUDNN_LIBRARY:-not found}"
echo "gpu-check: $gpu (sm_$cc); cuDNN: $cudnn_used" >&2

if [ -z "${GENRELAB_TEST_AUDIO:-}" ]; then
  for d in .gpu/audio ../shared/data/gtzan-mini; do
    [ -d "$d" ] && export GENRELAB_TEST_AUDIO=$(cd "$d" && pwd) && break
  done
fi

# Python packages for the parity tests and CPU peers, carried as wheels (docs/gpu-offline.md):
# installed in the background during the build (python_ready waits for them).
py=${GENRELAB_BENCH_PYTHON:-python3}
wheels_pid=""
if [ -d .gpu/wheels ]; then
  { "$py" -m pip install -q --no-index --find-links .gpu/wheels librosa audiomentations soundfile >"$out/wheels.log" 2>&1 ||
      echo "gpu-check: installing .gpu/wheels failed (see wheels.log); the librosa tests and peers may skip" >&2; } &
  wheels_pid=$!
fi
python_ready() {
  [ -n "$wheels_pid" ] && wait "$wheels_pid"
  wheels_pid=""
  if [ -z "${GENRELAB_PYTHON:-}" ] && "$py" -c 'import librosa, sklearn, audiomentations' >/dev/null 2>&1; then
    export GENRELAB_PYTHON=$(command -v "$py")
  fi
}

declare -a rows=()
failed=0
# summary.md so far: the header and a row per part. Rewritten after every part, so that a run
# killed from outside leaves it; the full summary at the end (write_summary) replaces it.
write_rows() {
  {
    echo "# GenreLab GPU check"
    echo
    echo "- GPU: $gpu (sm_$cc)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- wall time: $(( $(date +%s) - t0 )) s${1:+ ($1)}"
    echo
    echo "| part | result | time |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } >"$out/summary.md.tmp" && mv "$out/summary.md.tmp" "$out/summary.md"
}
skipped() { rows+=("| $1 | skipped: $2 | - |"); write_rows; }
record() {  # record NAME RC SECONDS LIMIT: the summary row of a finished step
  local name=$1 rc=$2 dt=$3 limit=$4
  if [ "$rc" -eq 0 ]; then rows+=("| $name | pass | ${dt}s |")
  else
    local why=""
    case $rc in 124 | 137) why=", timed out at its ${limit}s" ;; esac
    rows+=("| $name | FAIL (rc $rc$why) | ${dt}s |"); failed=1
  fi
  echo "gpu-check: $name -> rc $rc (${dt}s)" >&2
  write_rows
}
not_run() { rows+=("| $1 | NOT RUN (time budget) | - |"); failed=1; write_rows; return 1; }
limit_left() {  # limit_left TIMEOUT_S: the limit cut to the budget left; fails when less than
  # a third of it (at most 30 s) is left: a step cut that short would only time out
  local left=$(( budget - ($(date +%s) - t0) )) need=$(( $1 / 3 < 30 ? $1 / 3 : 30 ))
  [ "$left" -ge "$need" ] && [ "$left" -gt 0 ] && echo $(( $1 < left ? $1 : left ))
}
# Each step runs under timeout -k (a command that ignores TERM is killed 15 s later) as a job the
# script waits for, so that a signal to the script is handled at once (stop_all).
declare -A bg_pid=() bg_start=() bg_limit=()
cur_pid=""
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit; limit=$(limit_left "$2") || { not_run "$name"; return 1; }
  shift 2
  local s=$(date +%s)
  timeout -k 15 "$limit" "$@" >"$out/$name.log" 2>&1 </dev/null &
  cur_pid=$!
  wait "$cur_pid"
  local rc=$?
  cur_pid=""
  record "$name" $rc $(( $(date +%s) - s )) "$limit"
  return $rc
}
# step_start NAME TIMEOUT_S COMMAND... runs a step in the background; step_join NAME waits for it.
step_start() {
  local name=$1 limit; limit=$(limit_left "$2") || { not_run "$name"; return 1; }
  shift 2
  bg_start[$name]=$(date +%s)
  bg_limit[$name]=$limit
  timeout -k 15 "$limit" "$@" >"$out/$name.log" 2>&1 </dev/null &
  bg_pid[$name]=$!
}
step_join() {
  local name=$1
  [ -n "${bg_pid[$name]:-}" ] || return 1
  wait "${bg_pid[$name]}"
  local rc=$?
  unset "bg_pid[$name]"
  record "$name" $rc $(( $(date +%s) - ${bg_start[$name]} )) "${bg_limit[$name]}"
  return $rc
}
# Ctrl-C or a kill: every running step is stopped (timeout passes TERM on, then KILL), and the
# summary of what ran is written before the script exits.
stop_all() {
  trap - INT TERM
  local p pids="$cur_pid $wheels_pid ${bg_pid[*]}" i
  for p in $pids; do kill "$p" 2>/dev/null; done
  for i in 1 2 3 4 5 6; do  # 3 s for the steps to stop, then KILL (a hung GPU process ignores TERM)
    for p in $pids; do kill -0 "$p" 2>/dev/null && break; p=""; done
    [ -z "$p" ] && break
    sleep 0.5
  done
  for p in $pids; do pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rows+=("| gpu-check | STOPPED by a signal | - |")
  write_summary "stopped by a signal"
  exit 130
}
# The whole summary.md: the header, the measured lines, a row per part, the ratio table and
# `genrelab info`. write_summary [NOTE]: NOTE goes beside the wall time.
write_summary() {
  "$py" tools/bench/compare.py "$out" >"$out/ratios.md" 2>"$out/compare.log" ||
    python3 tools/bench/compare.py "$out" >"$out/ratios.md" 2>>"$out/compare.log" || true
  {
    echo "# GenreLab GPU check"
    echo
    echo "- GPU: $gpu (sm_$cc)"
    echo "- CUDA: $(nvcc --version | tail -n1)"
    echo "- cuDNN used: $cudnn_used"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- wall time: $(( $(date +%s) - t0 )) s${1:+ ($1)}"
    for f in "$out/recipe.log" "$out/recipe-variant.log"; do [ -s "$f" ] && grep -h "^recipe " "$f" | sed "s/^/- /"; done
    for mode in eager graph; do  # tools/bench/profile_idle.sh or train --profile's own trace; the goal is < 5 %
      f="$out/nsys-idle-$mode.json"
      [ -s "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('- GPU idle, $mode steps (nsys, %s, $idle_data): %.2f %% over %s steps, %.3f ms a step' % (d['scope'], 100*d['idle_fraction'], d.get('steps', '-'), d.get('step_ms_mean', float('nan'))))" "$f"
      f="$out/train-profile-idle-$mode.log"
      [ -s "$f" ] && grep -h "GPU idle" "$f" | sed "s/^genrelab train: /- train --profile, $mode steps ($idle_data): /"
    done
    f="$out/train-profile-streamed.log"  # dataset.streaming: idle time and the copies beside kernels
    [ -s "$f" ] && grep -h "GPU idle\|host-to-device copies" "$f" | sed "s/^genrelab train: /- train --profile, streamed steps: /"
    for prec in fp32 tf32 bf16; do  # bench --what train: each fusion against its layers one by one, each conv engine against cuDNN
      f="$out/bench-train-$prec.json"
      [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('fuse_compare'); g and print('- train step $prec: first conv+pool unfused (product + fused epilogue) %.3f ms, fused conv+pool %.3f ms (unfused/fused %.3fx; train.fuse_conv_pool)' % (g['unfused_ms_per_step'], g['fused_ms_per_step'], g['unfused_over_fused']))" "$f"
      [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('epilogue_compare'); g and print('- train step $prec: conv epilogues one by one %.3f ms, fused %.3f ms (unfused/fused %.3fx; train.fuse_conv_epilogue)' % (g['unfused_ms_per_step'], g['fused_ms_per_step'], g['unfused_over_fused']))" "$f"
      [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('engine_compare'); g and print('- train step $prec: conv2d on cuDNN %.3f ms, on %s %.3f ms (cudnn/%s %.3fx)' % (g['cudnn_ms_per_step'], g['engine'], g['engine_ms_per_step'], g['engine'], g['cudnn_over_engine']))" "$f"
      # The GPU idle time inside training steps (target < 5 %) from bench train's GPU activity trace.
      [ -s "$f" ] && python3 - "$f" "$prec" <<'PY' || true
import json, sys
g = json.load(open(sys.argv[1])).get("gpu_idle")
if g and "unavailable" in g:
    print("- train step %s GPU idle inside steps: not measured (%s)" % (sys.argv[2], g["unavailable"]))
elif g:
    e, r = g["eager"], g["graph"]
    print("- train step %s GPU idle inside steps (activity trace, %d full steps): eager %.2f %% (%.3f ms a step, "
          "largest gap %.3f ms), cuda graph %.2f %%%s" % (sys.argv[2], g["steps"], 100 * e["idle_fraction"], e["step_ms"],
          e["largest_gap_ms"], 100 * r["idle_fraction"], "" if g["graphed"] else " (NOT captured)"))
# The same trace's longest kernels of an eager step (the whole list is in the JSON and the log).
k = json.load(open(sys.argv[1])).get("kernels")
if k:
    short = lambda n: n if len(n) <= 90 else n[:87] + "..."
    print("- train step %s kernels (eager, ms a step, longest first): " % sys.argv[2] +
          "; ".join("%s %.3f (x%.0f)" % (short(x["name"]), x["ms_per_step"], x["calls_per_step"]) for x in k["list"][:10]))
PY
      # Where an eager step goes, stage by stage (bench train's stage timing), in execution order.
      [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('stages'); g and print('- train step $prec stages (eager, ms and %% of the roofline bound: FLOP peak or bandwidth; sum %.3f): ' % sum(x['ms'] for x in g['list']) + ', '.join('%s %.3f (%.0f %%)' % (x['name'], x['ms'], 100 * x.get('fraction_of_peak', 0)) for x in g['list']))" "$f"
    done
    # Achieved against the GPU's peak (the roofline fraction each benchmark prints).
    python3 - "$out" <<'PY' || true
import json, os, sys
def load(name):
    try:
        return json.load(open(os.path.join(sys.argv[1], name)))
    except (OSError, ValueError):
        return None
for prec in ("fp32", "tf32", "bf16"):
    j = load("bench-train-%s.json" % prec)
    if j and j.get("peak_tflops"):
        print("- roofline, train step %s: %.1f TFLOP/s, %.0f %% of the %.0f TFLOP/s peak (%.2f ms a step)"
              % (prec, j["gflops"] / 1e3, 100 * j["fraction_of_peak"], j["peak_tflops"], j["ms_per_step"]))
j = load("bench-features-cuda.json")
if j and j.get("peak_gb_per_s"):
    print("- roofline, mel features: %.0f GB/s, %.0f %% of the %.0f GB/s peak" % (j["gb_per_s"],
          100 * j["fraction_of_peak"], j["peak_gb_per_s"]))
j = load("bench-augment-cuda.json")
if j and j.get("peak_gb_per_s"):
    print("- roofline, offline augmentation: %.2f GB/s of audio, %.3f %% of the %.0f GB/s peak"
          % (j["audio_gb_per_second"], 100 * j["audio_fraction_of_peak"], j["peak_gb_per_s"]))
    g = j.get("stages") or []
    if g:
        print("- offline augmentation stages (one pass, device ms, %% of peak by each pass's buffers; sum %.3f ms of the %.3f-ms "
              "pass): " % (sum(x["ms"] for x in g), j["staged_pass_ms"]) +
              ", ".join("%s %.3f (%.0f %%)" % (x["name"], x["ms"], 100 * x["fraction_of_peak"]) for x in g))
PY
    for prec in fp32 tf32; do  # bench --what train: eager against CUDA-graph steps
      f="$out/bench-train-$prec.json"
      [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('graph_compare'); g and print('- train step $prec: eager %.3f ms, cuda graph %s' % (g['eager_ms_per_step'], ('%.3f ms (eager/graph %.3fx)' % (g['graph_ms_per_step'], g['eager_over_graph'])) if g['graphed'] else 'NOT USED (capture failed, see bench-train-$prec.log)'))" "$f"
    done
    # The convolution algorithms cuDNN's benchmark chose in the training benchmarks, and the engine
    # of each pass (GENRELAB_LOG_CONV_ALGOS; the whole rankings are in bench-train-*.log).
    for prec in fp32 tf32 bf16; do
      f="$out/bench-train-$prec.log"
      [ -s "$f" ] && python3 - "$f" "$prec" <<'PY' || true
import re, sys
# The first decision for each pass and shape (the choices are the process's, so a benchmark logs
# each once; any repeat is counted).
first, repeats = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"cudnn (\S+) (\S+) \(benchmarked[^)]*\):.*\[(\S+) ([0-9.]+) ms (\d+) MiB", line)
    if m:
        key = ("cudnn", m.group(1), m.group(2))
        text = "cudnn %s %s %s: %s, %.3f ms, %s MiB workspace" % (sys.argv[2], m.group(1), m.group(2), m.group(3),
                                                                 float(m.group(4)), m.group(5))
    elif re.match(r"cudnn \S+ \S+ \(as batch \d+\):", line):  # a smaller batch took a larger one's choice
        key = ("cudnn",) + tuple(line.split()[1:3])
        text = "cudnn %s %s" % (sys.argv[2], line.strip()[len("cudnn "):])
    elif line.startswith("conv engine "):  # cuDNN against im2col + cuBLAS (train.conv_engine=auto)
        key = tuple(line.split(":")[0].split()[2:4])
        text = "%s %s" % (sys.argv[2], line.strip())
    elif line.startswith("gemm "):  # a float product's timed choice, cublasSgemm or cuBLASLt (gemm_tuner.h)
        key = ("gemm", line.split(":")[0])
        text = "%s %s" % (sys.argv[2], line.strip())
    else:
        continue
    if key in first:
        repeats[key] += 1
    else:
        first[key], repeats[key] = text, 0
for key, text in first.items():
    print("- %s%s" % (text, " (and %d repeats)" % repeats[key] if repeats[key] else ""))
PY
      # Where each benchmark's winner sits in cuDNN's heuristic order (the `heuristic order:` line
      # logged beside each search): whether train.cudnn_benchmark_limit=N would still have found
      # it (every candidate the heuristics list as runnable counts, so the rank is an upper bound).
      [ -s "$f" ] && python3 - "$f" "$prec" <<'PY' || true
import re, sys
orders, winners = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"cudnn (\S+) (\S+) heuristic order:(.*)$", line)
    if m:
        # Candidates the heuristics rank and report runnable (a status in parentheses: not runnable).
        orders.setdefault((m.group(1), m.group(2)), [c for c in m.group(3).split() if "(" not in c])
        continue
    m = re.match(r"cudnn (\S+) (\S+) \(benchmarked[^)]*\):.*\[(\S+) [0-9.]+ ms \d+ MiB( tensor-op)?\]", line)
    if m:
        winners.setdefault((m.group(1), m.group(2)), m.group(3) + ("/tensor-op" if m.group(4) else ""))
ranks = []
for key, win in winners.items():
    order = orders.get(key)
    if order is None:
        continue
    rank = order.index(win) + 1 if win in order else 0
    ranks.append(rank)
    print("- cudnn %s %s %s: the benchmark's winner %s is the heuristics' %s" % (sys.argv[2], key[0], key[1], win,
          "choice no. %d" % rank if rank else "unranked choice"))
if ranks:
    print("- cudnn %s: a benchmark limit of 1 / 2 / 3 would have kept the winner in %d / %d / %d of %d searches"
          % (sys.argv[2], sum(0 < r <= 1 for r in ranks), sum(0 < r <= 2 for r in ranks), sum(0 < r <= 3 for r in ranks),
             len(ranks)))
PY
    done
    python3 - "$out" <<'PY' || true
import glob, json, sys
# At GTZAN's scale (synth-gtzan-scale): the whole run's wall time and where it went (summary.json
# "time_seconds"), and the mean training time and samples/s of the epochs after the first. 50
# epochs take about: the time before the first epoch, the first epoch, 49 later epochs, 50 epoch
# preparations and evaluations, 49 end-of-epoch saves and the last epoch's save.
for name, pattern in (("held", "/runs-scale/seed-baseline-*"), ("streamed", "/runs-scale-streamed/seed-baseline-*"),
                      ("held, train.cudnn_search=find", "/runs-scale-find/seed-baseline-*"),
                      ("held, timed choices from the tuning cache", "/runs-scale-warm/seed-baseline-*")):
    for d in sorted(glob.glob(sys.argv[1] + pattern)):
        try:
            m = [json.loads(l) for l in open(d + "/metrics.jsonl")]
            summary = json.load(open(d + "/summary.json"))
            wall, t = summary["wall_seconds"], summary["time_seconds"]
        except (OSError, KeyError, ValueError):
            continue
        if not m:  # stopped before its first epoch ended
            continue
        p = t.get("parts")
        parts = ("; parts: before the first epoch %.2f s data, %.2f s examples, %.2f s waiting for the network; %.2f s "
                 "of training and evaluating choosing algorithms" % (p["data"], p["examples"], p["network"], p["tuning"])
                 if p else "")
        if len(m) == 1:  # the first epoch only
            print("- recipe at GTZAN scale (1 000 synthetic 30-s clips), %s: 1 epoch in %.1f s wall (%.1f s before it), "
                  "which trains %.2f s%s" % (name, wall, t["before_training"], m[0]["seconds"], parts))
            continue
        later = m[1:]
        secs = sum(e["seconds"] for e in later) / len(later)
        sps = sum(e["samples_per_second"] for e in later) / len(later)
        fifty = (t["before_training"] + m[0]["seconds"] + 49 * secs + 50 * (t["preparing"] + t["evaluation"]) / len(m)
                 + 49 * t["saving"] / max(len(m) - 1, 1) + t["last_checkpoint"])
        print("- recipe at GTZAN scale (1 000 synthetic 30-s clips), %s: %d epochs in %.1f s wall (%.1f s before the "
              "first epoch, %.1f s preparing epochs, %.1f s training, %.1f s evaluating, %.1f s saving, %.1f s the "
              "last checkpoint); epoch 1 trains %.2f s, epochs 2-%d %.2f s each, %.0f samples/s; 50 epochs about %.0f s%s"
              % (name, len(m), wall, t["before_training"], t["preparing"], t["training"], t["evaluation"],
                 t["saving"], t["last_checkpoint"], m[0]["seconds"], len(m), secs, sps, fifty, parts))
PY
    echo
    echo "| part | result | time |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    if [ -s "$out/ratios.md" ]; then echo "## Side by side"; echo; cat "$out/ratios.md"; fi
    if [ -x build-gpu/genrelab ]; then echo; echo '```'; timeout -k 5 20 build-gpu/genrelab info; echo '```'; fi
  } >"$out/summary.md.tmp" && mv "$out/summary.md.tmp" "$out/summary.md"
}
trap stop_all INT TERM

jobs=$(nproc)
bin=build-gpu/genrelab
audio=${GENRELAB_TEST_AUDIO:-}
peer() {  # peer NAME TIMEOUT_S SCRIPT ARGS...: a step with a PyTorch/torchaudio peer script
  [ "$peers" = 1 ] || return 0
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" "$py" "$@"
}
no_clips="no clips to train on (GENRELAB_TEST_AUDIO, or .gpu/audio)"
scale=/tmp/genrelab-gtzan-scale  # the GTZAN-sized synthetic set (synth-gtzan-scale)
idle_data=gtzan-mini             # what the profile-idle steps trained on
# Per-step limits (seconds; each is also cut to the budget left), most valuable first. Nominal on
# an H100 with 16 cores: build ~150, [gpu] tests ~80, each training benchmark ~40 and its peer
# ~20, the recipe at GTZAN's scale ~60, memcheck ~120, other benchmarks ~10-40, trainings ~20-60.
step build $(( budget > 420 ? budget - 120 : 300 )) bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$cc && cmake --build build-gpu -j $jobs"
python_ready
# The peers need torch and torchaudio in $py: said once, in a row, when they cannot run.
peers=1
if ! "$py" -c 'import torch, torchaudio' >/dev/null 2>&1; then
  peers=0
  skipped "peers (PyTorch, torchaudio)" "$py cannot import torch and torchaudio (set GENRELAB_BENCH_PYTHON to an interpreter that can)"
fi
# GENRELAB_GPU_CHECK_RECIPE="fp32 [tf32 bf16]": first, the baseline recipe end to end at GTZAN's
# size in those precisions (tools/bench/recipe.sh: 50 epochs on 1 000 synthetic clips, each run a
# machine's first: the tuning cache is off), the figure for the 60-s target; its lines go into
# summary.md. About 90 s a precision with the clips made.
if [ -n "${GENRELAB_GPU_CHECK_RECIPE:-}" ] && [ -x "$bin" ]; then
  read -r -a recipe_precisions <<<"$GENRELAB_GPU_CHECK_RECIPE"
  step recipe $(( 60 + 90 * ${#recipe_precisions[@]} )) tools/bench/recipe.sh "$bin" /tmp/genrelab-recipe \
    "${recipe_precisions[@]}"
  # GENRELAB_GPU_CHECK_RECIPE_SET="KEY=VALUE ...": the same runs again with those overrides, also
  # a machine's first, beside the plain ones (e.g. train.cudnn_search=find against the probe).
  if [ -n "${GENRELAB_GPU_CHECK_RECIPE_SET:-}" ]; then
    step recipe-variant $(( 30 + 90 * ${#recipe_precisions[@]} )) env GENRELAB_RECIPE_SET="$GENRELAB_GPU_CHECK_RECIPE_SET" \
      GENRELAB_RECIPE_TAG=variant tools/bench/recipe.sh "$bin" /tmp/genrelab-recipe "${recipe_precisions[@]}"
  fi
fi
if [ -x build-gpu/genrelab_tests ] && [ -x "$bin" ]; then
  # The [gpu] tests in parts, so a slow part cannot take the others' results with it: the kernels
  # and layers, the baseline-sized layer checks ([big]), whole training processes ([train]), and
  # the GPU activity trace ([trace]: it turns CUPTI's recording on for the rest of its process).
  step gpu-tests 150 build-gpu/genrelab_tests "[gpu]~[big]~[train]~[trace]" --durations yes
  step gpu-tests-big 90 build-gpu/genrelab_tests "[gpu][big]" --durations yes
  step gpu-tests-train 120 build-gpu/genrelab_tests "[gpu][train]" --durations yes
  step gpu-tests-trace 30 build-gpu/genrelab_tests "[gpu][trace]" --durations yes

  # The training step beside PyTorch's, in each precision. GENRELAB_LOG_CONV_ALGOS: cuDNN's ranking
  # and the engine of every convolution pass in the log (docs/network-gpu.md); every precision also
  # times cuDNN alone against the conv engine, the fusions against their layers one by one, the
  # stages of an eager step and the GPU idle time inside eager and graphed steps (fp32 and tf32:
  # eager against graphed in time too).
  for prec in fp32 tf32 bf16; do
    step "bench-train-$prec" 150 env GENRELAB_LOG_CONV_ALGOS=1 "$bin" bench --what train --device cuda \
      --set "train.precision=$prec" --json "$out/bench-train-$prec.json"
    peer "peer-train-torch-$prec" 90 tools/bench/train_torch.py --device cuda --precision "$prec" \
      --json "$out/peer-train-torch-$prec.json"
  done

  # The recipe at GTZAN's scale without GTZAN (only gtzan-mini travels to an offline machine):
  # 1 000 synthetic 30-s clips (1.3 GB of WAV), so 2 400 training examples, 75 steps an epoch, and
  # 200 test clips, held for 5 epochs: wall time, epoch time and samples/s at the scale of the 60-s
  # target for the recipe, which gtzan-mini's 4-step epochs cannot show (streamed: further below).
  step synth-gtzan-scale 60 "$bin" data synth "$scale" --clips-per-genre 100 --seconds 30
  step train-baseline-scale-cuda 120 env GENRELAB_LOG_CONV_ALGOS=1 GENRELAB_TUNING_CACHE="$out/tuning.json" \
    GTZAN_ROOT="$scale" "$bin" train \
    experiments/seed-baseline.json --device cuda --quiet --set train.epochs=5 --out "$out/runs-scale"
  # Its first epoch again in a new process that takes every timed choice from the tuning cache the
  # run above filled (docs/network-gpu.md): a later run's first epoch on this machine.
  step train-baseline-scale-warm-cuda 45 env GENRELAB_TUNING_CACHE="$out/tuning.json" GTZAN_ROOT="$scale" "$bin" \
    train experiments/seed-baseline.json --device cuda --quiet --set train.epochs=1 --out "$out/runs-scale-warm"
  # Its first epoch again with cuDNN's own Find instead of the probed search (train.cudnn_search):
  # that epoch's time and the time choosing algorithms against the run above. Both logs name each
  # choice beside cuDNN's heuristic order; the held run's also each probe.
  step train-baseline-scale-find-cuda 45 env GENRELAB_LOG_CONV_ALGOS=1 GTZAN_ROOT="$scale" "$bin" train \
    experiments/seed-baseline.json --device cuda --quiet --set train.epochs=1 --set train.cudnn_search=find \
    --out "$out/runs-scale-find"

  # The rest of the suite (every CTest test not labelled gpu: those ran above, tests/label_tests.cmake)
  # in the background beside memcheck and the GPU steps after it, which time nothing on the CPU.
  # One OpenMP thread per test: a test per core with every core each oversubscribes the machine
  # (16 × 16 spinning threads made CPU-backend tests 10-20 times as slow as on 2 cores).
  step_start ctest-non-gpu 240 env OMP_NUM_THREADS=1 ctest --test-dir build-gpu --output-on-failure -j "$jobs" --timeout 180 -LE gpu
  # memcheck reports memory errors only: failed CUDA API calls are checked by the code itself, and
  # some are meant (NCCL probing kernels it lacks for this GPU; the CUDA-graph test's refused
  # synchronisation inside a capture, which exercises the fallback). [big] (baseline-sized maps)
  # and [train] (whole training processes) take minutes under it; [trace] (the GPU activity trace)
  # is left out: the sanitizer traces through the same interface.
  if command -v compute-sanitizer >/dev/null 2>&1; then
    step memcheck 120 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 \
      build-gpu/genrelab_tests "[gpu]~[oom]~[big]~[train]~[trace]"
  else
    skipped compute-sanitizer "not found"
  fi

  # Features and the offline augmentation beside torchaudio (paired by "work" in compare.py).
  step bench-features-cuda 60 "$bin" bench --what features --device cuda --clips 256 --json "$out/bench-features-cuda.json"
  peer peer-mel-torchaudio 60 tools/bench/mel_torchaudio.py --device cuda --clips 256 --json "$out/peer-mel-torchaudio.json"
  step bench-augment-cuda 60 "$bin" bench --what augment --device cuda --clips 64 --json "$out/bench-augment-cuda.json"
  peer peer-augment-torchaudio 90 tools/bench/augment_peers.py --device cuda --plan "$out/bench-augment-cuda.json" \
    --json "$out/peer-augment-torchaudio.json"

  # Whole runs on the GPU: the real-music example and the article's recipe on the same clips.
  if [ -n "$audio" ]; then
    step train-gtzan-mini-cuda 90 "$bin" train experiments/gtzan-mini.json --device cuda --quiet \
      --set "dataset.root=$audio" --out "$out/runs"
    step train-baseline-cuda 120 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json --device cuda \
      --quiet --out "$out/runs"
    step features-cli 60 bash -c "f=('$audio'/genres/*/*.flac); o=/tmp/genrelab-features; \
      time '$bin' features \"\${f[@]}\" --set dataset.clip_samples=617400 --out \$o-cuda.npy --device cuda && \
      time '$bin' features \"\${f[@]}\" --set dataset.clip_samples=617400 --out \$o-cpu.npy --device cpu && \
      '$py' -c \"import numpy as n; a=n.load('\$o-cuda.npy'); b=n.load('\$o-cpu.npy'); \
print('shape', a.shape, 'max |cuda-cpu| / max|cpu|', float(abs(a-b).max()/abs(b).max()))\""
    step train-rcnn-cuda 60 env GTZAN_ROOT="$audio" "$bin" train experiments/ablations/paper-rcnn.json --device cuda \
      --quiet --set train.epochs=2 --out "$out/runs"
    # Copy and compute overlap with dataset.streaming (each batch decoded on host threads and copied
    # through the pinned ring): train --profile's trace says how much of the host-to-device copy
    # time ran beside kernels.
    step train-profile-streamed 60 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json --device cuda \
      --quiet --profile 10 --set dataset.streaming=true --out "$out/runs-profile"
  else
    skipped "training runs on gtzan-mini" "$no_clips"
  fi

  # The per-layer table; its log also names the engine each convolution pass ran on. Then the same
  # table in bf16: where the mixed-precision step goes (its conv epilogues and casts).
  step bench-layers 60 env GENRELAB_LOG_CONV_ALGOS=1 "$bin" bench --what layers --device cuda --json "$out/bench-layers.json"
  step bench-layers-bf16 60 "$bin" bench --what layers --device cuda --set train.precision=bf16 \
    --json "$out/bench-layers-bf16.json"
  # The recipe at GTZAN's scale streamed from disk (dataset.streaming) for 3 epochs.
  step train-baseline-scale-streamed-cuda 90 env GTZAN_ROOT="$scale" "$bin" train experiments/seed-baseline.json \
    --device cuda --quiet --set dataset.streaming=true --set train.epochs=3 --out "$out/runs-scale-streamed"

  # Host overhead in the real training loop: GPU idle time over 10 profiled steps (`train --profile
  # 10`), eager and with train.cuda_graph, from Nsight Systems (tools/bench/gpu_idle.py), or without
  # it from the GPU activity trace `train --profile` takes itself. bench train measured the same
  # over 20 back-to-back steps above. On the GTZAN-sized set when it was made (75-step epochs: the
  # window holds training steps only), else on gtzan-mini, whose 4-step epochs put evaluations and
  # checkpoints in the window (idle_data names which in the summary).
  idle_root=$audio
  [ -d "$scale" ] && idle_root=$scale
  if [ -z "$idle_root" ]; then
    skipped profile-idle "$no_clips"
  elif ! command -v nsys >/dev/null 2>&1; then
    skipped nsys-idle "nsys (Nsight Systems) not found; the GPU activity trace instead"
    for mode in eager graph; do
      g=$([ "$mode" = graph ] && echo true || echo false)
      step "train-profile-idle-$mode" 60 env GTZAN_ROOT="$idle_root" "$bin" train experiments/seed-baseline.json \
        --device cuda --quiet --profile 10 --set "train.cuda_graph=$g" --out "$out/runs-profile"
    done
  else
    for mode in eager graph; do
      g=$([ "$mode" = graph ] && echo true || echo false)
      step "nsys-idle-$mode" 60 env GTZAN_ROOT="$idle_root" tools/bench/profile_idle.sh "$bin" \
        experiments/seed-baseline.json "$out/nsys-idle-$mode" 10 --set "train.cuda_graph=$g"
    done
  fi
  [ "$idle_root" = "$scale" ] && idle_data="GTZAN-sized synthetic set"

  # racecheck and synccheck: our kernels share no memory and take no barriers, so these mostly
  # check the libraries' kernels under our launches; after memcheck, and only with time to spare.
  if command -v compute-sanitizer >/dev/null 2>&1; then
    step racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 1 build-gpu/genrelab_tests \
      "[gpu]~[nn]~[oom]~[train]~[trace]"
    step synccheck 60 compute-sanitizer --tool synccheck --error-exitcode 1 build-gpu/genrelab_tests \
      "[gpu]~[nn]~[oom]~[train]~[trace]"
  fi
  if command -v ncu >/dev/null 2>&1; then
    step ncu-features 60 ncu --section SpeedOfLight --launch-count 16 "$bin" bench --what features --device cuda --clips 64 --iterations 1
    # Our own training kernels, which are bound by instruction issue rather than memory when they
    # are slow (docs/network-gpu.md): the fused conv epilogues (bias, activation, pooling, dropout)
    # and what still runs alone, then the fused first conv + pool's forward and backward.
    step ncu-train-kernels 60 ncu --section SpeedOfLight --kernel-name-base demangled \
      --kernel-name regex:"ConvEpilogue|MaxPool|Dropout" --launch-count 16 "$bin" bench --what train --device cuda --iterations 1
    step ncu-fused-kernels 40 ncu --section SpeedOfLight --kernel-name-base demangled --kernel-name regex:"ConvPool" \
      --launch-count 3 "$bin" bench --what train --device cuda --iterations 1 --set train.fuse_conv_pool=true
  else
    skipped ncu "not found (Nsight Compute)"
  fi

  step_join ctest-non-gpu
  demo="$out/demo-data"
  [ -n "$audio" ] || [ -d "$demo" ] || "$bin" data synth "$demo" >/dev/null 2>&1 || true
  step bench-decode 60 "$bin" bench --what decode "${audio:-$demo}" --json "$out/bench-decode.json"
  step bench-features-cpu 60 "$bin" bench --what features --device cpu --clips 16 --json "$out/bench-features-cpu.json"
  # The CPU peers need librosa and audiomentations, which an offline machine has only from
  # .gpu/wheels (docs/gpu-offline.md): skipped, with the reason, where $py cannot import them.
  cpu_peer() {  # cpu_peer NAME MODULE TIMEOUT_S SCRIPT ARGS...
    local name=$1 module=$2
    shift 2
    if "$py" -c "import $module" >/dev/null 2>&1; then step "$name" "$@"
    else skipped "$name" "$py cannot import $module (carry its wheels in .gpu/wheels: docs/gpu-offline.md)"; fi
  }
  cpu_peer peer-mel-librosa librosa 90 "$py" tools/bench/mel_librosa.py --device cpu --clips 16 --repeat 1 --json "$out/peer-mel-librosa.json"
  step bench-augment-cpu 60 "$bin" bench --what augment --device cpu --clips 8 --json "$out/bench-augment-cpu.json"
  cpu_peer peer-augment-audiomentations audiomentations 90 "$py" tools/bench/augment_peers.py --device cpu --plan "$out/bench-augment-cpu.json" --json "$out/peer-augment-audiomentations.json"
fi

write_summary
cat "$out/summary.md"
exit $failed
