#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (Catch2 through CTest).
# Python references (numpy, scikit-learn, librosa, audiomentations) come from PyPI into .venv/
# for the live parity tests; when PyPI is unreachable those tests fall back to committed fixtures.
#   GENRELAB_TEST_AUDIO=DIR   real clips (../shared/data/gtzan-mini) for the tests that need them
#   extra arguments go to ctest (e.g. -L fast, -E slow, -R mel)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)

"$root/tools/setup.sh"

# Python references for parity tests, in a project-local virtual environment.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import numpy, sklearn, librosa, audiomentations" 2>/dev/null; then
  echo "test: preparing .venv (numpy, scikit-learn, librosa, audiomentations)" >&2
  { python3 -m venv .venv && .venv/bin/pip install -q --disable-pip-version-check \
      -r tools/requirements-test.txt; } >&2 || echo "test: Python references unavailable; live parity tests will skip" >&2
fi
if [ -x .venv/bin/python ]; then export GENRELAB_PYTHON="$root/.venv/bin/python"; fi
if [ -n "${GENRELAB_TEST_AUDIO:-}" ]; then
  GENRELAB_TEST_AUDIO=$(cd "$GENRELAB_TEST_AUDIO" 2>/dev/null && pwd || echo "$GENRELAB_TEST_AUDIO")
  export GENRELAB_TEST_AUDIO
fi

jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j "$jobs" "$@"
echo "test: finished in $(( $(date +%s) - start )) s" >&2
