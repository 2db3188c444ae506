# Finds Eigen 3.4 and provides the target Eigen3::Eigen.
# Order: a system Eigen (e.g. Debian's libeigen3-dev, or anything on CMAKE_PREFIX_PATH),
# then the copy shipped by the cmeel-eigen wheel in the Python environment doing the build
# (a build requirement in pyproject.toml, so `pip install .` needs no system step).
find_package(Eigen3 3.4 QUIET NO_MODULE)
if(NOT TARGET Eigen3::Eigen)
  find_package(Python 3 QUIET COMPONENTS Interpreter)
  set(_lstmcore_python "${Python_EXECUTABLE}")
  if(NOT _lstmcore_python)
    find_program(_lstmcore_python NAMES python3 python)
  endif()
  if(_lstmcore_python)
    execute_process(
      COMMAND "${_lstmcore_python}" -c
        "import sys, pathlib; print(';'.join(str(p / 'cmeel.prefix') for p in map(pathlib.Path, sys.path) if (p / 'cmeel.prefix').is_dir()))"
      OUTPUT_VARIABLE _lstmcore_cmeel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  if(_lstmcore_cmeel)
    find_package(Eigen3 3.4 QUIET NO_MODULE PATHS ${_lstmcore_cmeel} NO_DEFAULT_PATH)
  endif()
endif()
if(NOT TARGET Eigen3::Eigen)
  message(FATAL_ERROR "lstmcore needs Eigen 3.4: install libeigen3-dev, or `pip install cmeel-eigen` "
                      "into the Python on PATH, or pass -DEigen3_DIR=<dir with Eigen3Config.cmake>.")
endif()
message(STATUS "lstmcore: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")
