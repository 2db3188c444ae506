// One register_* function per binding file; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace lstmcore_py {
void register_recurrent(pybind11::module_& m);
void register_stack(pybind11::module_& m);
#ifdef LSTMCORE_WITH_CUDA
void register_cuda(pybind11::module_& m);  // cuda_binding.cpp, only in a CUDA build
#endif
}  // namespace lstmcore_py
