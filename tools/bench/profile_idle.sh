#!/usr/bin/env bash
# GPU idle time between kernels inside training steps, from Nsight Systems: profiles
# `genrelab train --profile STEPS` (3 warm-up steps, then STEPS steps between cudaProfilerStart/Stop),
# exports the GPU trace and the NVTX ranges as CSV, and runs tools/bench/gpu_idle.py on them.
#   usage: tools/bench/profile_idle.sh GENRELAB_BIN EXPERIMENT OUT_PREFIX STEPS [genrelab train options...]
#   e.g.   tools/bench/profile_idle.sh build-gpu/genrelab experiments/seed-baseline.json runs/idle-graph 10 \
#              --set train.cuda_graph=true
# Writes OUT_PREFIX.nsys-rep, OUT_PREFIX_cuda_gpu_trace.csv, OUT_PREFIX_nvtx_pushpop_trace.csv and
# OUT_PREFIX.json (gpu_idle.py's numbers). Exit 3 when nsys is missing.
set -euo pipefail
bin=${1:?usage: profile_idle.sh GENRELAB_BIN EXPERIMENT OUT_PREFIX STEPS [train options...]}
exp=${2:?experiment file}
prefix=${3:?output prefix}
steps=${4:?profiled steps}
shift 4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v nsys >/dev/null 2>&1; then
  echo "profile_idle: nsys (Nsight Systems) is not installed; GPU idle time not measured" >&2
  exit 3
fi
# --cuda-graph-trace=node: a replayed graph shows its kernels (the default draws one block per launch).
nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop --trace=cuda,nvtx \
  --cuda-graph-trace=node -o "$prefix" --force-overwrite=true \
  "$bin" train "$exp" --device cuda --quiet --profile "$steps" --out "$(dirname "$prefix")/runs-profile" "$@"
nsys stats --report cuda_gpu_trace --format csv --force-export=true --output "$prefix" "$prefix.nsys-rep" >/dev/null
# The NVTX push/pop report was called nvtxpptrace before nsys 2023.
nsys stats --report nvtx_pushpop_trace --format csv --output "$prefix" "$prefix.nsys-rep" >/dev/null 2>&1 ||
  nsys stats --report nvtxpptrace --format csv --output "$prefix" "$prefix.nsys-rep" >/dev/null
gpu=$(ls "$prefix"_cuda_gpu_trace*.csv | head -n1)
nvtx=$(ls "$prefix"_nvtx_pushpop_trace*.csv "$prefix"_nvtxpptrace*.csv 2>/dev/null | head -n1 || true)
python3 "$here/gpu_idle.py" "$gpu" ${nvtx:+--nvtx "$nvtx"} --json "$prefix.json"
