// One register_* function per binding file; module.cpp calls them all.
#pragma once

#include <lstmcore/stack.h>
#include <lstmcore/variants.h>
#include <pybind11/pybind11.h>

#include <string>

namespace lstmcore_py {
void register_layer(pybind11::module_& m);  // layer_binding.cpp: one layer, plain or variant
void register_stack(pybind11::module_& m);  // stack_binding.cpp
void register_stepper(pybind11::module_& m);  // stepper_binding.cpp

// Shared by the binding files (shared.cpp):

// The options dict of the Python layer (python/lstmcore/_variants.py: "activations",
// "clip", "input_forget", "forget_gate", "peepholes", "layer_norm", "zoneout", "seed")
// into o, over the defaults already there.
void read_variant_options(const pybind11::dict& opts, lstmcore::VariantOptions& o);

// ValueError naming `name` when a cell-state array is given to a cell without a cell state.
void require_no_state(lstmcore::Cell cell, pybind11::handle obj, const char* name);

// "concat" or "sum" (ValueError otherwise).
lstmcore::Merge parse_merge(const std::string& merge);

#ifdef LSTMCORE_WITH_CUDA
void register_cuda(pybind11::module_& m);  // cuda_binding.cpp, only in a CUDA build
#endif
}  // namespace lstmcore_py
