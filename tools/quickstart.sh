#!/usr/bin/env bash
# Installs what is missing, builds, makes the embedded demo collection (data/demo) when absent,
# checks it, and trains experiments/quickstart.json on it with the CPU backend (about a minute
# on 2 cores). Ends with the summary table and the paths of the plots.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
if [ ! -d data/demo ]; then
  build/genrelab data synth data/demo
fi
build/genrelab data check data/demo >/dev/null
build/genrelab train experiments/quickstart.json --device "${GENRELAB_DEVICE:-cpu}"
