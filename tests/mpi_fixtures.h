// Shared by the tests that start `genrelab` under mpirun: the skip when this binary has no MPI or
// mpirun is absent, and the mpirun command line for ranks on this one machine.
#pragma once

#include <string>

#include "genrelab/dist.h"
#include "test_util.h"

namespace genrelab::test {

// True when this binary has MPI and mpirun is on the PATH; otherwise prints "SKIPPED: <reason>".
inline bool mpirun_or_skip() {
  if (!dist::built_with_mpi()) {
    WARN("SKIPPED: this genrelab was built without MPI (install libopenmpi-dev: tools/setup.sh)");
    return false;
  }
  if (run_command("command -v mpirun >/dev/null 2>&1") != 0) {
    WARN("SKIPPED: mpirun not found (install openmpi-bin: tools/setup.sh)");
    return false;
  }
  return true;
}
#define GENRELAB_REQUIRE_MPIRUN() \
  do { if (!::genrelab::test::mpirun_or_skip()) return; } while (0)

// `mpirun -np N genrelab ARGS` on this one machine (shared memory between the ranks).
inline std::string mpirun(int np, const std::string& args, const std::string& mpirun_options = "") {
  // Ranks yield when they wait (2 cores shared with other tests and builds: busy-polling ranks
  // would slow everything down many times).
  return "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 --mca btl self,vader "
         "--mca btl_vader_single_copy_mechanism none " +
         mpirun_options + " -np " + std::to_string(np) + " " + genrelab_binary() + " " + args;
}

}  // namespace genrelab::test
