#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*.cpp; clang, ASan + UBSan, CPU only) and runs each for
# SECONDS seconds from its seed corpus (tests/fuzz/corpus/<target>/). Fails on any crash, leak,
# timeout, out-of-memory or sanitizer report; the reproducer is left in BUILD_DIR/artifacts/.
#   tools/fuzz.sh SECONDS [BUILD_DIR]     (BUILD_DIR defaults to build-fuzz; tools/test.sh passes
#                                          build-asan, its sanitizer build, which has the targets too)
#   GENRELAB_FUZZ_TARGETS="fuzz_decode fuzz_config"   run only these targets
# Reproduce a finding: BUILD_DIR/fuzz_<name> BUILD_DIR/artifacts/fuzz_<name>-crash-...
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:?usage: tools/fuzz.sh SECONDS [BUILD_DIR]}
build=${2:-build-fuzz}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found (tools/setup.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  # -O1 with line tables: libFuzzer's usual trade (fast to build, symbolised reports).
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DGENRELAB_FUZZ=ON -DBUILD_TESTING=OFF >&2
fi
targets=()
if [ -n "${GENRELAB_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<< "$GENRELAB_FUZZ_TARGETS"
else
  for src in tests/fuzz/*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >&2

# Leak reports from libgomp/libomp thread pools are the runtime's, not ours: see tools/lsan.supp.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tools/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$build/artifacts"
failed=()
summary=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"  # grows across runs; the committed seeds stay untouched
  mkdir -p "$work"
  seeds="tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || seeds=""
  log="$build/artifacts/$t.log"
  echo "fuzz: $t for ${seconds} s" >&2
  rc=0
  "$build/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "$work" $seeds > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  summary+=("$t: ${execs:-?} executions in ${seconds} s (${cov:-cov: ?}), exit $rc")
  if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); log $log:" >&2
    grep -E -A40 'ERROR:|runtime error:' "$log" | head -80 >&2 || tail -40 "$log" >&2
  fi
done
printf 'fuzz: %s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproducers in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean" >&2
