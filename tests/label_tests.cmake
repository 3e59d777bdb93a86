# CTest labels from the Catch2 tags that select work, so `ctest -L slow`, `ctest -LE gpu`:
# ctest includes this after catch_discover_tests's list (CMakeLists.txt sets
# GENRELAB_TEST_BINARY); Catch2 2 gives its tests no labels itself. The binary lists the names
# under each tag; a test with several of these tags gets all of them.
#   gpu     runs on a GPU (reports SKIPPED without one)
#   slow    several seconds of whole training runs (several runs, or several ranks), left out of
#           the sanitizer suite (tools/test.sh): the fast [train] tests run the same code there
#   mpi     starts mpirun
#   python  runs Python: a live reference (skips without GENRELAB_PYTHON) or a tools/ script
#           (python3 when GENRELAB_PYTHON is unset)
#   train   whole training processes, or the trainer's examples and steps in process
if(NOT EXISTS "${GENRELAB_TEST_BINARY}")
  return()
endif()
# A ';' in a test name splits it into two CTest tests (a CMake list), one of which matches nothing.
execute_process(COMMAND "${GENRELAB_TEST_BINARY}" --list-test-names-only OUTPUT_VARIABLE all_names ERROR_QUIET)
if(all_names MATCHES "([^\n]*;[^\n]*)")
  message(FATAL_ERROR "test name with ';' (CTest splits it in two): ${CMAKE_MATCH_1}")
endif()
set(genrelab_labelled "")
foreach(tag gpu slow mpi python train)
  # Catch2 2 exits with the number of names it listed: the status is not an error.
  execute_process(COMMAND "${GENRELAB_TEST_BINARY}" "[${tag}]" --list-test-names-only
                  OUTPUT_VARIABLE names ERROR_QUIET)
  string(REPLACE ";" "\\;" names "${names}")
  string(REPLACE "\n" ";" names "${names}")
  foreach(name IN LISTS names)
    if(name STREQUAL "")
      continue()
    endif()
    string(MD5 key "${name}")
    if(NOT DEFINED genrelab_labels_${key})
      list(APPEND genrelab_labelled "${key}")
      set(genrelab_name_${key} "${name}")
    endif()
    list(APPEND genrelab_labels_${key} ${tag})
  endforeach()
endforeach()
foreach(key IN LISTS genrelab_labelled)
  set_tests_properties("${genrelab_name_${key}}" PROPERTIES LABELS "${genrelab_labels_${key}}")
endforeach()
