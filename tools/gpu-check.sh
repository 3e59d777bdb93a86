#!/usr/bin/env bash
# One-command GPU validation (under 10 minutes on an H100): Release build for the local GPU,
# every test including [gpu], the [gpu] tests under compute-sanitizer (memcheck, racecheck,
# synccheck), every benchmark, the PyTorch/torchaudio peers, and OUT_DIR/summary.md.
#   usage: tools/gpu-check.sh OUT_DIR        (on an offline machine: source .gpu/env.sh first)
set -uo pipefail
out=${1:?usage: tools/gpu-check.sh OUT_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$root"
t0=$(date +%s)
budget=${GENRELAB_GPU_CHECK_BUDGET_S:-560}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no GPU on this machine (nvidia-smi finds none); nothing to validate" >&2
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

declare -a rows=()
failed=0
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local now=$(( $(date +%s) - t0 ))
  if [ "$now" -ge "$budget" ]; then rows+=("| $name | not run (time budget) | - |"); return; fi
  [ "$limit" -gt $(( budget - now )) ] && limit=$(( budget - now ))
  local s=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - s ))
  if [ $rc -eq 0 ]; then rows+=("| $name | pass | ${dt}s |")
  else rows+=("| $name | FAIL (rc $rc$([ $rc -eq 124 ] && echo ', timed out')) | ${dt}s |"); failed=1; fi
  echo "gpu-check: $name -> rc $rc (${dt}s)" >&2
  return $rc
}

jobs=$(nproc)
step build 360 bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$cc && cmake --build build-gpu -j $jobs"
if [ -x build-gpu/genrelab_tests ]; then
  step tests 180 ctest --test-dir build-gpu --output-on-failure -j "$jobs"
  step gpu-tests 120 build-gpu/genrelab_tests "[gpu]" --durations yes
  if command -v compute-sanitizer >/dev/null 2>&1; then
    step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/genrelab_tests "[gpu]"
    step racecheck 90 compute-sanitizer --tool racecheck --error-exitcode 1 build-gpu/genrelab_tests "[gpu]~[nn]"
    step synccheck 90 compute-sanitizer --tool synccheck --error-exitcode 1 build-gpu/genrelab_tests "[gpu]~[nn]"
  else
    rows+=("| compute-sanitizer | not found | - |")
  fi
  # Benchmarks: ours (JSON) and the peers in the same run.
  demo="$out/demo-data"
  [ -d "$demo" ] || build-gpu/genrelab data synth "$demo" >/dev/null 2>&1 || true
  for what in $(build-gpu/genrelab bench 2>&1 | awk 'NR>1 && NF {print $1}'); do
    args=(--device cuda --json "$out/bench-$what.json")
    [ "$what" = decode ] && args=("${GENRELAB_TEST_AUDIO:-$demo}" --json "$out/bench-$what.json")
    step "bench-$what" 90 build-gpu/genrelab bench --what "$what" "${args[@]}"
  done
  for peer in tools/bench/*.py; do
    [ "$(basename "$peer")" = compare.py ] && continue
    name=$(basename "$peer" .py)
    step "peer-$name" 120 python3 "$peer" --device cuda --json "$out/peer-$name.json"
  done
  python3 tools/bench/compare.py "$out" >"$out/ratios.md" 2>"$out/compare.log" || true
fi

{
  echo "# GenreLab GPU check"
  echo
  echo "- GPU: $gpu (sm_$cc)"
  echo "- CUDA: $(nvcc --version | tail -n1)"
  echo "- cuDNN used: $cudnn_used"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- wall time: $(( $(date +%s) - t0 )) s"
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
