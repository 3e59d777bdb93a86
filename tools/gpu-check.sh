#!/usr/bin/env bash
# One-command GPU validation (under 10 minutes on an H100): Release build for the local GPU, every
# test including [gpu], every benchmark with JSON (tools/bench/README.md) and its PyTorch /
# torchaudio / librosa / audiomentations peers, OUT_DIR/summary.md with the ratio table
# (tools/bench/compare.py), the GPU idle time inside training steps (bench train's GPU activity
# trace, and nsys where installed; eager and CUDA graph),
# the recipe at GTZAN's scale, the [gpu] tests under compute-sanitizer and Nsight Compute with the
# rest of the suite beside them, then the CPU side by side with the time left.
#   usage: tools/gpu-check.sh OUT_DIR
# Offline GPU machines: .gpu/env.sh (the exports of docs/gpu-offline.md) is sourced when present.
# Environment: GENRELAB_GPU_CHECK_BUDGET_S (default 560 s in all), GENRELAB_BENCH_PYTHON (the
# interpreter with torch/torchaudio for the peers; default python3).
set -uo pipefail
out=${1:?usage: tools/gpu-check.sh OUT_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$root"
[ -f .gpu/env.sh ] && . .gpu/env.sh
t0=$(date +%s)
budget=${GENRELAB_GPU_CHECK_BUDGET_S:-560}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no GPU on this machine (nvidia-smi is missing or lists no GPU); nothing validated." >&2
  echo "gpu-check: run it on a machine with an NVIDIA GPU and driver (docs/gpu-offline.md)." >&2
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

# Python packages for the parity tests and CPU peers, carried as wheels (docs/gpu-offline.md).
py=${GENRELAB_BENCH_PYTHON:-python3}
if [ -d .gpu/wheels ]; then
  "$py" -m pip install -q --no-index --find-links .gpu/wheels librosa audiomentations soundfile >"$out/wheels.log" 2>&1 ||
    echo "gpu-check: installing .gpu/wheels failed (see wheels.log); the librosa tests and peers may skip" >&2
fi
if [ -z "${GENRELAB_PYTHON:-}" ] && "$py" -c 'import librosa, sklearn, audiomentations' >/dev/null 2>&1; then
  export GENRELAB_PYTHON=$(command -v "$py")
fi

declare -a rows=()
failed=0
record() {  # record NAME RC SECONDS: the summary row of a finished step
  local name=$1 rc=$2 dt=$3
  if [ "$rc" -eq 0 ]; then rows+=("| $name | pass | ${dt}s |")
  else rows+=("| $name | FAIL (rc $rc$([ "$rc" -eq 124 ] && echo ', timed out')) | ${dt}s |"); failed=1; fi
  echo "gpu-check: $name -> rc $rc (${dt}s)" >&2
}
not_run() { rows+=("| $1 | NOT RUN (time budget) | - |"); failed=1; return 1; }
limit_left() {  # limit_left TIMEOUT_S: the limit cut to the budget left; fails when none is left
  local now=$(( $(date +%s) - t0 ))
  [ "$now" -lt "$budget" ] && echo $(( $1 < budget - now ? $1 : budget - now ))
}
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit; limit=$(limit_left "$2") || { not_run "$name"; return 1; }
  shift 2
  local s=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  record "$name" $rc $(( $(date +%s) - s ))
  return $rc
}
# step_start NAME TIMEOUT_S COMMAND... runs a step in the background; step_join NAME waits for it.
# (step itself stays in the foreground: a background job ignores the Ctrl-C that stops the script.)
declare -A bg_pid=() bg_start=()
step_start() {
  local name=$1 limit; limit=$(limit_left "$2") || { not_run "$name"; return 1; }
  shift 2
  bg_start[$name]=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1 &
  bg_pid[$name]=$!
}
# Ctrl-C or a kill stops the background steps too (they ignore SIGINT; timeout passes TERM on).
trap 'for p in "${bg_pid[@]}"; do kill "$p" 2>/dev/null; done; exit 130' INT TERM
step_join() {
  local name=$1
  [ -n "${bg_pid[$name]:-}" ] || return 1
  wait "${bg_pid[$name]}"
  local rc=$?
  record "$name" $rc $(( $(date +%s) - ${bg_start[$name]} ))
  return $rc
}

jobs=$(nproc)
bin=build-gpu/genrelab
audio=${GENRELAB_TEST_AUDIO:-}
# Per-step limits (seconds; each is also cut to the budget left), most valuable first: the build,
# the [gpu] tests, whole training runs on the GPU, the GPU benchmarks beside their peers, the
# profiled steps' idle time, the recipe at GTZAN's scale, the sanitizers with the rest of the suite
# in the background, then the CPU side by side. Nominal on an H100 with 16 cores:
# build ~150, [gpu] tests ~60, each training ~20-60, benches ~10-40, peers ~10-60.
step build 300 bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$cc && cmake --build build-gpu -j $jobs"
if [ -x build-gpu/genrelab_tests ] && [ -x "$bin" ]; then
  # The [gpu] tests in three parts, so a slow part cannot take the others' results with it: the
  # kernels and layers, the baseline-sized layer checks ([big]), whole training processes ([train]).
  step gpu-tests 150 build-gpu/genrelab_tests "[gpu]~[big]~[train]" --durations yes
  step gpu-tests-big 90 build-gpu/genrelab_tests "[gpu][big]" --durations yes
  step gpu-tests-train 120 build-gpu/genrelab_tests "[gpu][train]" --durations yes

  # Whole runs on the GPU: the real-music example and the article's recipe on the same clips.
  if [ -n "$audio" ]; then
    step train-gtzan-mini-cuda 90 "$bin" train experiments/gtzan-mini.json --device cuda --quiet \
      --set "dataset.root=$audio" --out "$out/runs"
    step train-baseline-cuda 120 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json --device cuda \
      --quiet --out "$out/runs"
    # The same recipe streamed from disk (dataset.streaming): its samples/s beside the held run's.
    step train-baseline-streamed-cuda 90 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json \
      --device cuda --quiet --set dataset.streaming=true --set train.epochs=5 --out "$out/runs-streamed"
    step train-rcnn-cuda 90 env GTZAN_ROOT="$audio" "$bin" train experiments/ablations/paper-rcnn.json --device cuda \
      --quiet --set train.epochs=5 --out "$out/runs"
    step features-cli 60 bash -c "f=('$audio'/genres/*/*.flac); o=/tmp/genrelab-features; \
      time '$bin' features \"\${f[@]}\" --set dataset.clip_samples=617400 --out \$o-cuda.npy --device cuda && \
      time '$bin' features \"\${f[@]}\" --set dataset.clip_samples=617400 --out \$o-cpu.npy --device cpu && \
      '$py' -c \"import numpy as n; a=n.load('\$o-cuda.npy'); b=n.load('\$o-cpu.npy'); \
print('shape', a.shape, 'max |cuda-cpu| / max|cpu|', float(abs(a-b).max()/abs(b).max()))\""
  fi

  # Benchmarks, ours and the peers on the same work (paired by "work" in compare.py).
  step bench-features-cuda 60 "$bin" bench --what features --device cuda --clips 256 --json "$out/bench-features-cuda.json"
  step peer-mel-torchaudio 60 "$py" tools/bench/mel_torchaudio.py --device cuda --clips 256 --json "$out/peer-mel-torchaudio.json"
  step bench-augment-cuda 60 "$bin" bench --what augment --device cuda --clips 64 --json "$out/bench-augment-cuda.json"
  step peer-augment-torchaudio 90 "$py" tools/bench/augment_peers.py --device cuda --plan "$out/bench-augment-cuda.json" --json "$out/peer-augment-torchaudio.json"
  for prec in fp32 tf32 bf16; do
    # GENRELAB_LOG_CONV_ALGOS: cuDNN's ranking and the engine of every convolution pass in the log
    # (docs/network-gpu.md); 150 s: every precision also times cuDNN alone against the conv engine,
    # the fusions against their layers one by one, the stages of an eager step and the GPU idle
    # time inside eager and graphed steps (fp32 and tf32: eager against graphed in time too)
    step "bench-train-$prec" 150 env GENRELAB_LOG_CONV_ALGOS=1 "$bin" bench --what train --device cuda \
      --set "train.precision=$prec" --json "$out/bench-train-$prec.json"
    step "peer-train-torch-$prec" 90 "$py" tools/bench/train_torch.py --device cuda --precision "$prec" --json "$out/peer-train-torch-$prec.json"
  done
  # The per-layer table; its log also names the engine each convolution pass ran on.
  step bench-layers 60 env GENRELAB_LOG_CONV_ALGOS=1 "$bin" bench --what layers --device cuda --json "$out/bench-layers.json"
  # The same table in bf16: where the mixed-precision step goes (its conv epilogues and casts).
  step bench-layers-bf16 60 "$bin" bench --what layers --device cuda --set train.precision=bf16 \
    --json "$out/bench-layers-bf16.json"

  # Copy and compute overlap with dataset.streaming (each batch decoded on host threads and copied
  # through the pinned ring): train --profile's trace says how much of the host-to-device copy
  # time ran beside kernels.
  if [ -n "$audio" ]; then
    step train-profile-streamed 60 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json --device cuda \
      --quiet --profile 10 --set dataset.streaming=true --out "$out/runs-profile"
  fi
  # Host overhead: GPU idle time over the profiled training steps of the real training loop
  # (`train --profile 10`), eager and with train.cuda_graph: from Nsight Systems
  # (tools/bench/gpu_idle.py), or without it from the GPU activity trace `train --profile` takes
  # itself (its "GPU idle over the profiled steps" line).
  if [ -z "$audio" ]; then
    rows+=("| profile-idle | skipped: no clips (GENRELAB_TEST_AUDIO) to train on | - |")
  elif ! command -v nsys >/dev/null 2>&1; then
    rows+=("| nsys-idle | skipped: nsys (Nsight Systems) not found; the GPU activity trace instead | - |")
    for mode in eager graph; do
      g=$([ "$mode" = graph ] && echo true || echo false)
      step "train-profile-idle-$mode" 60 env GTZAN_ROOT="$audio" "$bin" train experiments/seed-baseline.json \
        --device cuda --quiet --profile 10 --set "train.cuda_graph=$g" --out "$out/runs-profile"
    done
  else
    for mode in eager graph; do
      g=$([ "$mode" = graph ] && echo true || echo false)
      step "nsys-idle-$mode" 60 env GTZAN_ROOT="$audio" tools/bench/profile_idle.sh "$bin" experiments/seed-baseline.json \
        "$out/nsys-idle-$mode" 10 --set "train.cuda_graph=$g"
    done
  fi

  # The recipe at GTZAN's scale without GTZAN (only gtzan-mini travels to an offline machine):
  # 1 000 synthetic 30-s clips (1.3 GB of WAV), so 2 400 training examples, 75 steps an epoch, and
  # 200 test clips. Held for 5 epochs and streamed for 3: wall time, epoch time and samples/s at
  # the scale of the 60-s target for the recipe, which gtzan-mini's 4-step epochs cannot show.
  scale=/tmp/genrelab-gtzan-scale
  step synth-gtzan-scale 60 "$bin" data synth "$scale" --clips-per-genre 100 --seconds 30
  step train-baseline-scale-cuda 120 env GTZAN_ROOT="$scale" "$bin" train experiments/seed-baseline.json \
    --device cuda --quiet --set train.epochs=5 --out "$out/runs-scale"
  step train-baseline-scale-streamed-cuda 90 env GTZAN_ROOT="$scale" "$bin" train experiments/seed-baseline.json \
    --device cuda --quiet --set dataset.streaming=true --set train.epochs=3 --out "$out/runs-scale-streamed"

  # The rest of the suite (every CTest test not labelled gpu: those ran above, tests/label_tests.cmake)
  # in the background beside the sanitizers and Nsight Compute, which time nothing on the CPU. One
  # OpenMP thread per test: a test per core with every core each oversubscribes the machine (16 × 16
  # spinning threads made CPU-backend tests 10-20 times as slow as on 2 cores).
  step_start ctest-non-gpu 240 env OMP_NUM_THREADS=1 ctest --test-dir build-gpu --output-on-failure -j "$jobs" --timeout 180 -LE gpu

  # [big] (baseline-sized maps) and [train] (whole training processes) take minutes under memcheck;
  # they ran in gpu-tests-big and gpu-tests-train above.
  # memcheck reports memory errors only: failed CUDA API calls are checked by the code itself, and
  # some are meant (NCCL probing kernels it lacks for this GPU; the CUDA-graph test's refused
  # synchronisation inside a capture, which exercises the fallback).
  if command -v compute-sanitizer >/dev/null 2>&1; then
    # [trace] (the GPU activity trace) is left out: the sanitizer traces through the same interface.
    step memcheck 120 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 \
      build-gpu/genrelab_tests "[gpu]~[oom]~[big]~[train]~[trace]"
    step racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 1 build-gpu/genrelab_tests \
      "[gpu]~[nn]~[oom]~[train]~[trace]"
    step synccheck 60 compute-sanitizer --tool synccheck --error-exitcode 1 build-gpu/genrelab_tests \
      "[gpu]~[nn]~[oom]~[train]~[trace]"
  else
    rows+=("| compute-sanitizer | not found | - |")
  fi
  if command -v ncu >/dev/null 2>&1; then
    step ncu-features 60 ncu --section SpeedOfLight --launch-count 16 "$bin" bench --what features --device cuda --clips 64 --iterations 1
    # Our own training kernels, which are bound by instruction issue rather than memory when they
    # are slow (docs/network-gpu.md): pooling and dropout of one step, then the fused first conv +
    # pool's forward and backward.
    step ncu-train-kernels 60 ncu --section SpeedOfLight --kernel-name-base demangled \
      --kernel-name regex:"MaxPool|Dropout" --launch-count 16 "$bin" bench --what train --device cuda --iterations 1
    step ncu-fused-kernels 40 ncu --section SpeedOfLight --kernel-name-base demangled --kernel-name regex:"ConvPool" \
      --launch-count 3 "$bin" bench --what train --device cuda --iterations 1 --set train.fuse_conv_pool=true
  fi

  step_join ctest-non-gpu
  demo="$out/demo-data"
  [ -n "$audio" ] || [ -d "$demo" ] || "$bin" data synth "$demo" >/dev/null 2>&1 || true
  step bench-decode 60 "$bin" bench --what decode "${audio:-$demo}" --json "$out/bench-decode.json"
  step bench-features-cpu 60 "$bin" bench --what features --device cpu --clips 16 --json "$out/bench-features-cpu.json"
  step peer-mel-librosa 90 "$py" tools/bench/mel_librosa.py --device cpu --clips 16 --repeat 1 --json "$out/peer-mel-librosa.json"
  step bench-augment-cpu 60 "$bin" bench --what augment --device cpu --clips 8 --json "$out/bench-augment-cpu.json"
  step peer-augment-audiomentations 90 "$py" tools/bench/augment_peers.py --device cpu --plan "$out/bench-augment-cpu.json" --json "$out/peer-augment-audiomentations.json"
  "$py" tools/bench/compare.py "$out" >"$out/ratios.md" 2>"$out/compare.log" || python3 tools/bench/compare.py "$out" >"$out/ratios.md" 2>>"$out/compare.log" || true
fi

{
  echo "# GenreLab GPU check"
  echo
  echo "- GPU: $gpu (sm_$cc)"
  echo "- CUDA: $(nvcc --version | tail -n1)"
  echo "- cuDNN used: $cudnn_used"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- wall time: $(( $(date +%s) - t0 )) s"
  for mode in eager graph; do  # tools/bench/profile_idle.sh or train --profile's own trace; the goal is < 5 %
    f="$out/nsys-idle-$mode.json"
    [ -s "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('- GPU idle, $mode steps (nsys, %s): %.2f %% over %s steps, %.3f ms a step' % (d['scope'], 100*d['idle_fraction'], d.get('steps', '-'), d.get('step_ms_mean', float('nan'))))" "$f"
    f="$out/train-profile-idle-$mode.log"
    [ -s "$f" ] && grep -h "GPU idle" "$f" | sed "s/^genrelab train: /- train --profile, $mode steps: /"
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
    [ -s "$f" ] && python3 -c "import json,sys; g=json.load(open(sys.argv[1])).get('stages'); g and print('- train step $prec stages (eager, ms; sum %.3f): ' % sum(x['ms'] for x in g['list']) + ', '.join('%s %.3f' % (x['name'], x['ms']) for x in g['list']))" "$f"
  done
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
for line in open(sys.argv[1]):
    m = re.match(r"cudnn (\S+) (\S+) \(benchmarked[^)]*\):.*\[(\S+) ([0-9.]+) ms (\d+) MiB", line)
    if m:
        print("- cudnn %s %s %s: %s, %.3f ms, %s MiB workspace" % (sys.argv[2], m.group(1), m.group(2), m.group(3),
                                                                  float(m.group(4)), m.group(5)))
    if line.startswith("conv engine "):  # cuDNN against im2col + cuBLAS (train.conv_engine=auto)
        print("- %s %s" % (sys.argv[2], line.strip()))
PY
  done
  # Held against streamed baseline runs (train-baseline-cuda, train-baseline-streamed-cuda): the
  # mean samples/s of epochs 2 to 5 (epoch 1 holds the warm-up).
  python3 - "$out" <<'PY' || true
import glob, json, sys
def rate(pattern):
    for d in sorted(glob.glob(pattern)):
        try:
            m = [json.loads(l) for l in open(d + "/metrics.jsonl")][1:5]
        except OSError:
            continue
        if m:
            return sum(e["samples_per_second"] for e in m) / len(m)
held, streamed = rate(sys.argv[1] + "/runs/seed-baseline-*"), rate(sys.argv[1] + "/runs-streamed/seed-baseline-*")
if held and streamed:
    print("- baseline recipe, epochs 2-5: held %.0f samples/s, streamed from disk %.0f samples/s (streamed/held %.2fx)"
          % (held, streamed, streamed / held))
# At GTZAN's scale (synth-gtzan-scale): the whole run's wall time, and the mean training time and
# samples/s of the epochs after the first; 50 epochs take about wall + 45 x that epoch time (plus
# 45 evaluations of the 200 test clips, which the epoch time leaves out).
for name, pattern in (("held", "/runs-scale/seed-baseline-*"), ("streamed", "/runs-scale-streamed/seed-baseline-*")):
    for d in sorted(glob.glob(sys.argv[1] + pattern)):
        try:
            m = [json.loads(l) for l in open(d + "/metrics.jsonl")]
            wall = json.load(open(d + "/summary.json"))["wall_seconds"]
        except (OSError, KeyError, ValueError):
            continue
        later = m[1:] or m
        secs = sum(e["seconds"] for e in later) / len(later)
        sps = sum(e["samples_per_second"] for e in later) / len(later)
        print("- recipe at GTZAN scale (1 000 synthetic 30-s clips), %s: %d epochs in %.1f s wall; epochs 2-%d "
              "train %.2f s each, %.0f samples/s; 50 epochs about %.0f s plus evaluations"
              % (name, len(m), wall, len(m), secs, sps, wall + (50 - len(m)) * secs))
PY
  echo
  echo "| part | result | time |"
  echo "|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  if [ -s "$out/ratios.md" ]; then echo "## Side by side"; echo; cat "$out/ratios.md"; fi
  if [ -x build-gpu/genrelab ]; then echo; echo '```'; build-gpu/genrelab info; echo '```'; fi
} >"$out/summary.md"
cat "$out/summary.md"
exit $failed
