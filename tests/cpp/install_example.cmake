# ctest script (cmake -P): install the lstmcore build BUILD_DIR into a scratch prefix,
# configure examples/cpp against that prefix in a clean build directory, build it and
# run it (on generated data and on a data file). Only the installed package is visible
# to the example: Eigen is disabled for it, so a package that still needs Eigen fails.
cmake_minimum_required(VERSION 3.18)
foreach(v BUILD_DIR EXAMPLE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "install_example.cmake: -D${v}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "---- ${what}: ${ARGN}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (exit ${rc})")
  endif()
  set(run_output "${out}${err}" PARENT_SCOPE)
endfunction()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()

# 1. install
run("install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})
file(GLOB_RECURSE config_file "${prefix}/*/lstmcoreConfig.cmake")
file(GLOB_RECURSE targets_files "${prefix}/*/lstmcoreTargets*.cmake")
if(NOT config_file OR NOT targets_files OR NOT EXISTS "${prefix}/include/lstmcore/lstmcore.h")
  message(FATAL_ERROR "the install lacks lstmcoreConfig.cmake, lstmcoreTargets*.cmake or the headers")
endif()
foreach(f IN LISTS targets_files)
  file(READ "${f}" text)
  if(text MATCHES "Eigen")
    message(FATAL_ERROR "${f} mentions Eigen: consumers must not need it")
  endif()
endforeach()

# 2. configure the example in a clean directory, against the prefix only
set(configure_args -S "${EXAMPLE_DIR}" -B "${build}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(GENERATOR_PLATFORM)
  list(APPEND configure_args -A "${GENERATOR_PLATFORM}")
endif()
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CONFIG)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
run("configure the example" "${CMAKE_COMMAND}" --no-warn-unused-cli ${configure_args})
file(TO_CMAKE_PATH "${prefix}" prefix_cmake)
string(FIND "${run_output}" "${prefix_cmake}" at)
if(at LESS 0)
  message(FATAL_ERROR "the example did not find lstmcore in ${prefix}")
endif()

# 3. build
run("build the example" "${CMAKE_COMMAND}" --build "${build}" ${config_args})

# 4. run it: generated data, then a data file
file(GLOB_RECURSE app LIST_DIRECTORIES false "${build}/lstmcore_example" "${build}/lstmcore_example.exe")
if(NOT app)
  message(FATAL_ERROR "no lstmcore_example executable under ${build}")
endif()
list(GET app 0 app)
if(WIN32)
  set(ENV{PATH} "${prefix}/bin;$ENV{PATH}")  # a shared lstmcore.dll
endif()
run("run the example (generated data)" "${app}")
if(NOT run_output MATCHES "loss after")
  message(FATAL_ERROR "the example's output lacks the loss after training")
endif()
set(data "${WORK_DIR}/data.txt")
set(text "# t  feature0  feature1\n")
foreach(t RANGE 0 23)
  math(EXPR a "(${t} * 37) % 17 - 8")
  math(EXPR b "(${t} * 11) % 7 - 3")
  string(APPEND text "${a}.5 \t ${b}.25\n")
endforeach()
file(WRITE "${data}" "${text}")
run("run the example (data file)" "${app}" "${data}")
if(NOT run_output MATCHES "24 steps")
  message(FATAL_ERROR "the example did not read the 24 steps of ${data}")
endif()
message(STATUS "installed lstmcore (shared: ${SHARED}) builds and runs examples/cpp")
