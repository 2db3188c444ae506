# Makes sure CUDA::cublas exists after find_package(CUDAToolkit).
#
# A full CUDA toolkit has cuBLAS and FindCUDAToolkit defines CUDA::cublas itself. A toolkit
# assembled from NVIDIA's pip wheels (nvidia-cuda-nvcc, nvidia-cuda-runtime, ...) has none;
# cuBLAS then comes from the nvidia-cublas wheel, whose folder holds include/cublas_v2.h
# and lib/libcublas.so.<major> (no unversioned libcublas.so, which find_library would
# need). This file defines CUDA::cublas (and CUDA::cublasLt) from such a folder:
#   LSTMCORE_CUBLAS_ROOT   the folder (set it by hand), else
#   the nvidia/* folders of the Python environment's site-packages (Python_EXECUTABLE's,
#   else the interpreter on the path, e.g. the active virtual environment's).
# Used by the build (cmake/LstmcoreCuda.cmake) and by the installed package config.
include_guard(GLOBAL)

function(_lstmcore_cublas_candidates out)
  set(roots)
  if(LSTMCORE_CUBLAS_ROOT)
    list(APPEND roots "${LSTMCORE_CUBLAS_ROOT}")
  else()
    if(Python_EXECUTABLE)  # scikit-build-core names the interpreter it builds for
      set(python "${Python_EXECUTABLE}")
    else()
      find_program(_lstmcore_python NAMES python3 python)
      set(python "${_lstmcore_python}")
    endif()
    if(python)
      execute_process(
        COMMAND "${python}" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        OUTPUT_VARIABLE purelib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
      if(rc EQUAL 0 AND purelib)
        file(GLOB wheel_dirs LIST_DIRECTORIES true "${purelib}/nvidia/*")
        list(APPEND roots ${wheel_dirs})
      endif()
    endif()
  endif()
  set(${out} ${roots} PARENT_SCOPE)
endfunction()

function(lstmcore_ensure_cublas)
  if(TARGET CUDA::cublas)
    return()
  endif()
  _lstmcore_cublas_candidates(roots)
  set(major "${CUDAToolkit_VERSION_MAJOR}")
  foreach(root IN LISTS roots)
    if(EXISTS "${root}/include/cublas_v2.h")
      file(GLOB blas "${root}/lib/libcublas.so.${major}" "${root}/lib/libcublas.so")
      file(GLOB blas_lt "${root}/lib/libcublasLt.so.${major}" "${root}/lib/libcublasLt.so")
      if(blas AND blas_lt)
        list(GET blas 0 blas)
        list(GET blas_lt 0 blas_lt)
        add_library(CUDA::cublasLt SHARED IMPORTED GLOBAL)
        set_target_properties(CUDA::cublasLt PROPERTIES IMPORTED_LOCATION "${blas_lt}"
          INTERFACE_INCLUDE_DIRECTORIES "${root}/include")
        add_library(CUDA::cublas SHARED IMPORTED GLOBAL)
        set_target_properties(CUDA::cublas PROPERTIES IMPORTED_LOCATION "${blas}"
          INTERFACE_INCLUDE_DIRECTORIES "${root}/include" INTERFACE_LINK_LIBRARIES CUDA::cublasLt)
        set(LSTMCORE_CUBLAS_FOUND_ROOT "${root}" CACHE INTERNAL "where cuBLAS was found outside the toolkit")
        message(STATUS "lstmcore: cuBLAS from ${root} (not in the CUDA toolkit)")
        return()
      endif()
    endif()
  endforeach()
  message(FATAL_ERROR
    "lstmcore: cuBLAS not found. The CUDA toolkit at '${CUDAToolkit_LIBRARY_DIR}' has no libcublas. "
    "Install the toolkit's cuBLAS, or `pip install nvidia-cublas` (CUDA ${major}) into the Python "
    "environment on the path, or point -DLSTMCORE_CUBLAS_ROOT=<folder with include/cublas_v2.h and lib/>.")
endfunction()
