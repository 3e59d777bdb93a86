#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (Catch2 through CTest).
# Python references (numpy, scikit-learn, librosa, audiomentations) come from PyPI into .venv/
# for the live parity tests; when PyPI is unreachable those tests fall back to committed fixtures.
#   GENRELAB_TEST_AUDIO=DIR   real clips (../shared/data/gtzan-mini) for the tests that need them
#   CI=true                   after the suite, also tools/fuzz.sh (GENRELAB_FUZZ_SECONDS per target, default 60)
#   GENRELAB_FULL_CHECKS=1    also the AddressSanitizer + UBSan CPU build (build-asan/) and its tests
#                             except [slow], then the fuzzing; see docs/reliability.md
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

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ "${GENRELAB_FULL_CHECKS:-}" = "1" ]; then
  # ---- AddressSanitizer + UndefinedBehaviorSanitizer (CPU only; the option forces CUDA off) ----
  asan_start=$(date +%s)
  if [ ! -f build-asan/CMakeCache.txt ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGENRELAB_SANITIZE=ON >&2
  fi
  cmake --build build-asan -j "$jobs" >&2
  # Tests tagged [slow] (full training runs) are left out: ~10x slower under the sanitizers, and
  # they run the same code as the fast training tests. The list comes from the test binary itself.
  slow=$(build-asan/genrelab_tests "[slow]" --list-test-names-only | sed -e '/^$/d' -e 's/[][().*+?^$|\\]/\\&/g' |
         paste -sd'|' -)
  exclude=()
  if [ -n "$slow" ]; then exclude=(-E "^(${slow})\$"); fi
  # Leaks: reported and fatal, except the OpenMP and Open MPI runtimes' own (tools/lsan.supp). The
  # slow unwinder gives leak stacks that reach through Open MPI's plugins (built without frame
  # pointers), so the suppressions can see libmpi in them.
  ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0" \
  LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" "${exclude[@]}"
  echo "test: sanitizer build and tests finished in $(( $(date +%s) - asan_start )) s" >&2
fi
# The sanitizer build is opt-in (GENRELAB_FULL_CHECKS=1): cold, it takes longer than CI's budget
# on 2 cores. CI runs the fuzz targets.
if [ "${CI:-}" = "true" ] || [ "${GENRELAB_FULL_CHECKS:-}" = "1" ]; then
  # ---- libFuzzer targets (clang; tests/fuzz/) ----
  fuzz_start=$(date +%s)
  "$root/tools/fuzz.sh" "${GENRELAB_FUZZ_SECONDS:-60}" build-fuzz
  echo "test: fuzzing finished in $(( $(date +%s) - fuzz_start )) s" >&2
  echo "test: full checks finished in $(( $(date +%s) - start )) s" >&2
fi
