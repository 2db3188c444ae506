// One register_* function per binding file; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace lstmcore_py {
void register_recurrent(pybind11::module_& m);
void register_stack(pybind11::module_& m);
void register_variants(pybind11::module_& m);
}  // namespace lstmcore_py
