# The CUDA backend (included only when LSTMCORE_CUDA is ON, so a CPU-only build never
# looks for the toolkit). Including this file sets up the CUDA language, the architectures,
# the toolkit and cuBLAS; it must come before any target is created, since a target takes
# its CUDA_ARCHITECTURES from CMAKE_CUDA_ARCHITECTURES when it is created.
# lstmcore_add_cuda_backend(target) then adds the kernels of cpp/src/cuda/ and the
# LSTMCORE_WITH_CUDA define to the library target.
#
#   CMAKE_CUDA_ARCHITECTURES   default "80;90" (A100, H100: SASS for both plus PTX that newer
#                              GPUs compile at load time); override with -D or CUDAARCHS,
#                              e.g. "native", "86", "90" (one architecture compiles fastest).
#   LSTMCORE_CUBLAS_ROOT       cuBLAS outside the toolkit (see LstmcoreCublas.cmake).

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "GPU architectures of the CUDA kernels")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
include(LstmcoreCublas)
lstmcore_ensure_cublas()

# The kernels compile into an object library of their own (nvcc, its own flags) whose
# objects become part of `target` (lstmcore), like the CPU kernel variants.
function(lstmcore_add_cuda_backend target)
  add_library(lstmcore_cuda OBJECT
    cpp/src/cuda/runtime.cu
    cpp/src/cuda/blas.cu
    cpp/src/cuda/lstm.cu
    cpp/src/cuda/gru.cu
    cpp/src/cuda/rnn.cu
    cpp/src/cuda/stack.cu)
  target_include_directories(lstmcore_cuda PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/cpp/include ${CMAKE_CURRENT_SOURCE_DIR}/cpp/src)
  target_link_libraries(lstmcore_cuda PRIVATE CUDA::cudart_static CUDA::cublas)  # their headers
  string(REPLACE ";" "," archs "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(lstmcore_cuda PRIVATE "LSTMCORE_CUDA_ARCHITECTURES=\"${archs}\"")
  # No fast-math: sigmoid and tanh use CUDA's accurate expf / tanhf.
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(lstmcore_cuda PRIVATE -Xcompiler=-Wall,-Wextra,-fno-math-errno)
  endif()
  target_sources(${target} PRIVATE $<TARGET_OBJECTS:lstmcore_cuda>)
  # PUBLIC: code built against this library (the Python module, tests, consumers) can tell.
  target_compile_definitions(${target} PUBLIC LSTMCORE_WITH_CUDA)
  # The static CUDA runtime: loading the library needs no libcudart, and without a driver
  # the first CUDA call fails cleanly (cuda::Error) instead of the import.
  target_link_libraries(${target} PRIVATE CUDA::cudart_static CUDA::cublas)
endfunction()

# RPATH of a module that links lstmcore, so the installed module finds libcublas: beside it
# in site-packages (nvidia/<wheel>/lib, the nvidia-cublas wheel's place relative to the
# lstmcore package) and in the folder cuBLAS was found in at build time.
function(lstmcore_cuda_module_rpath target)
  get_target_property(blas CUDA::cublas IMPORTED_LOCATION)
  set(rpath)
  if(LSTMCORE_CUBLAS_FOUND_ROOT)
    get_filename_component(wheel "${LSTMCORE_CUBLAS_FOUND_ROOT}" NAME)
    list(APPEND rpath "$ORIGIN/../nvidia/${wheel}/lib")
  endif()
  list(APPEND rpath "$ORIGIN/../nvidia/cublas/lib" "$ORIGIN/../nvidia/cu${CUDAToolkit_VERSION_MAJOR}/lib")
  if(blas)
    get_filename_component(dir "${blas}" DIRECTORY)
    list(APPEND rpath "${dir}")
  endif()
  list(REMOVE_DUPLICATES rpath)
  set_target_properties(${target} PROPERTIES INSTALL_RPATH "${rpath}")
endfunction()
