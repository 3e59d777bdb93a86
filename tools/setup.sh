#!/usr/bin/env bash
# Installs the Debian packages GenreLab needs (only those missing; sudo only when not root),
# then configures and builds into build/. Idempotent: a second run only rebuilds what changed.
#   GENRELAB_CMAKE_ARGS="..."  extra CMake arguments
#   CI=true                    build one CUDA architecture (sm_90) to keep CI fast
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

packages=(build-essential cmake ninja-build pkg-config ccache git openmpi-bin libopenmpi-dev
          libsndfile1-dev libfftw3-dev libxxhash-dev nlohmann-json3-dev catch2 librandom123-dev
          python3 python3-venv python3-pip)
# CI's full checks (tools/test.sh with CI=true) build the sanitizer suite and the libFuzzer targets with clang.
if [ "${CI:-}" = "true" ] || [ "${GENRELAB_FULL_CHECKS:-}" = "1" ]; then
  packages+=(clang libclang-rt-14-dev libomp-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The CUDA toolkit is optional: without nvcc the CPU backend is built alone.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
if command -v nvcc >/dev/null 2>&1; then
  [ "${CI:-}" = "true" ] && cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES=90)
else
  echo "setup: no CUDA toolkit (nvcc) found; building the CPU backend only" >&2
  cmake_args+=(-DGENRELAB_CUDA=OFF)
fi
# shellcheck disable=SC2206
cmake_args+=(${GENRELAB_CMAKE_ARGS:-})

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${cmake_args[@]}" >&2
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build build -j "$jobs" >&2
echo "setup: built build/genrelab" >&2
