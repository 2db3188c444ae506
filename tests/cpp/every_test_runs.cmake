# ctest's check that no C++ test is left out (tests/cpp/CMakeLists.txt, lstmcore_every_test_runs):
#   every tests/cpp/test_*.cpp is compiled into a test program a ctest entry runs (RAN), or
#   named in NOT_RUN ("file: reason") by a configuration that cannot run it; and every test
#   of test_lstmcore (PROGRAM) belongs to exactly one of GROUPS, the ctest entries' filters.
set(problems)
file(GLOB files RELATIVE "${TEST_DIR}" "${TEST_DIR}/test_*.cpp")
list(REMOVE_ITEM files test_main.cpp)
foreach(file IN LISTS files)
  list(FIND RAN "${file}" ran)
  string(FIND "${NOT_RUN}" "${file}:" excused)
  if(ran EQUAL -1 AND excused EQUAL -1)
    list(APPEND problems "tests/cpp/${file}: compiled into no test program, so ctest runs none of its tests")
  endif()
endforeach()
foreach(file IN LISTS RAN)
  if(NOT EXISTS "${TEST_DIR}/${file}")
    list(APPEND problems "tests/cpp/${file}: listed as run, but there is no such file")
  endif()
endforeach()
foreach(note IN LISTS NOT_RUN)
  message(STATUS "not run in this configuration: ${note}")
endforeach()

execute_process(COMMAND "${PROGRAM}" --check-groups ${GROUPS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message(STATUS "${out}")
if(NOT rc EQUAL 0)
  list(APPEND problems "test_lstmcore: tests outside the groups ${GROUPS} (or in several), see above")
endif()

if(problems)
  string(REPLACE ";" "\n  " text "${problems}")
  message(FATAL_ERROR "C++ tests that ctest does not run exactly once:\n  ${text}")
endif()
