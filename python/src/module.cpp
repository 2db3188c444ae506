// The extension module lstmcore._core: a list of register_* calls plus the
// process-wide settings. All arithmetic lives in the C++ core.
#include <lstmcore/lstmcore.h>

#include <pybind11/stl.h>

#include "bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstmcore's compiled core; use the functions of the lstmcore package instead.";
  lstmcore_py::register_recurrent(m);
  lstmcore_py::register_stack(m);
  m.def("set_num_threads", &lstmcore::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &lstmcore::get_num_threads);
  m.def("build_info", &lstmcore::build_info);
  m.def("available_isas", &lstmcore::available_isas);
  m.def("get_isa", &lstmcore::get_isa);
  m.def("set_isa", &lstmcore::set_isa, py::arg("name"));
  m.attr("__version__") = LSTMCORE_VERSION_STRING;
}
