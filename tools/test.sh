#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (Catch2 through CTest).
# Python references (numpy, scikit-learn, librosa, audiomentations) come from PyPI into .venv/
# for the live parity tests; when PyPI is unreachable those tests fall back to committed fixtures.
#   GENRELAB_TEST_AUDIO=DIR   real clips (../shared/data/gtzan-mini) for the tests that need them
#   CI=true                   after the suite, the full checks: one clang ASan + UBSan CPU build (build-asan/),
#                             the test suite in it except [slow], then tools/fuzz.sh on the same build
#                             (GENRELAB_FUZZ_SECONDS per target, default 60); see docs/reliability.md
#   GENRELAB_FULL_CHECKS=1    the same full checks outside CI
#   extra arguments go to ctest (e.g. -R mel; -L/-LE with the labels gpu, slow, mpi, python, train)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)

"$root/tools/setup.sh"

# Python references for parity tests, in a project-local virtual environment.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import numpy, sklearn, librosa, audiomentations, xxhash" 2>/dev/null; then
  echo "test: preparing .venv (numpy, scikit-learn, librosa, audiomentations, xxhash)" >&2
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
if [ "${CI:-}" = "true" ] || [ "${GENRELAB_FULL_CHECKS:-}" = "1" ]; then
  # ---- one clang build (build-asan/) for the sanitizer suite and the libFuzzer targets ----
  # -DGENRELAB_FUZZ=ON compiles the library, the binary and the tests with
  # -fsanitize=fuzzer-no-link,address,undefined (CUDA forced off) and adds the fuzz executables,
  # so the fuzzing below reuses this build instead of compiling the library a second time.
  # -O1 with line tables only: reports keep file:line. Cold (empty ccache) this build took 680 s of
  # CPU on 2 cores, about 6 min wall on an idle runner; the GCC -O2 -g sanitizer build it replaces
  # took 2-3x that, and the separate fuzz build it also replaces about 240 s (docs/reliability.md,
  # "CI budget").
  full_start=$(date +%s)
  failed=()
  if [ -f build-asan/CMakeCache.txt ] && { ! grep -q '^GENRELAB_FUZZ:BOOL=ON' build-asan/CMakeCache.txt ||
                                          grep -q '^BUILD_TESTING:BOOL=OFF' build-asan/CMakeCache.txt; }; then
    echo "test: build-asan/ holds another configuration (older GCC sanitizer build, or no tests); configuring it afresh" >&2
    fresh=(--fresh)
  else
    fresh=()
  fi
  if [ ! -f build-asan/CMakeCache.txt ] || [ ${#fresh[@]} -gt 0 ]; then
    CC=clang CXX=clang++ cmake "${fresh[@]}" -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DGENRELAB_FUZZ=ON >&2
  fi
  cmake --build build-asan -j "$jobs" >&2
  echo "test: sanitizer build finished in $(( $(date +%s) - full_start )) s" >&2

  # ---- the CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer ----
  suite_start=$(date +%s)
  # Tests labelled slow (tag [slow]: full training runs, tests/label_tests.cmake) are left out:
  # ~10x slower under the sanitizers, and they run the same code as the fast training tests.
  # Leaks: reported and fatal, except the OpenMP and Open MPI runtimes' own (tools/lsan.supp). The
  # slow unwinder gives leak stacks that reach through Open MPI's plugins (built without frame
  # pointers), so the suppressions can see libmpi in them. exitcode=86: a report in a `genrelab`
  # child process must not pass for the exit status 1 or 2 that a test expects from it.
  if ! ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:exitcode=86" \
       LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0" \
       UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86" \
       ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE slow; then
    failed+=("sanitizer suite (build-asan/)")
  fi
  echo "test: sanitizer suite finished in $(( $(date +%s) - suite_start )) s" >&2

  # ---- libFuzzer targets (tests/fuzz/), from the same build ----
  fuzz_start=$(date +%s)
  "$root/tools/fuzz.sh" "${GENRELAB_FUZZ_SECONDS:-60}" build-asan || failed+=("fuzzing")
  echo "test: fuzzing finished in $(( $(date +%s) - fuzz_start )) s" >&2
  echo "test: full checks finished in $(( $(date +%s) - start )) s" >&2
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'test: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
  fi
fi
