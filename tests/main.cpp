// Catch2 entry point for genrelab_tests. The tests run without the tuning cache
// (nn/tuning_cache.h) unless GENRELAB_TUNING_CACHE is set: a GPU test's searches and logs must not
// depend on what an earlier run on the machine stored. Tests of the cache set their own file.
// The temporary folders the tests made (test::temp_dir) are removed after a run that passed, and
// kept for a look after one that failed, or when GENRELAB_KEEP_TEST_FILES is set.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "test_util.h"

int main(int argc, char* argv[]) {
  setenv("GENRELAB_TUNING_CACHE", "off", 0);
  const int rc = Catch::Session().run(argc, argv);
  const bool keep = rc != 0 || std::getenv("GENRELAB_KEEP_TEST_FILES");
  for (const std::filesystem::path& dir : genrelab::test::temp_dirs_made()) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) continue;
    if (keep)
      std::cerr << "genrelab_tests: test files kept in " << dir.string() << "\n";
    else
      std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
