#!/usr/bin/env bash
# Installs what is missing, builds, makes the embedded demo collection (data/demo) and runs
# the main job on it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
if [ ! -d data/demo ]; then
  build/genrelab data synth data/demo
fi
build/genrelab data check data/demo
