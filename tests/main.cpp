// Catch2 entry point for genrelab_tests. The tests run without the tuning cache
// (nn/tuning_cache.h) unless GENRELAB_TUNING_CACHE is set: a GPU test's searches and logs must not
// depend on what an earlier run on the machine stored. Tests of the cache set their own file.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

int main(int argc, char* argv[]) {
  setenv("GENRELAB_TUNING_CACHE", "off", 0);
  return Catch::Session().run(argc, argv);
}
