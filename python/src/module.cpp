// The extension module lstmcore._core: a list of register_* calls plus the
// process-wide settings. All arithmetic lives in the C++ core.
#include <lstmcore/lstmcore.h>
#include <lstmcore/testing.h>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstmcore's compiled core; use the functions of the lstmcore package instead.";
  lstmcore_py::register_layer(m);
  lstmcore_py::register_stack(m);
  lstmcore_py::register_stepper(m);
#ifdef LSTMCORE_WITH_CUDA
  lstmcore_py::register_cuda(m);
#endif
  m.def("set_num_threads", &lstmcore::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &lstmcore::get_num_threads);
  m.def("build_info", &lstmcore::build_info);
  m.def("available_isas", &lstmcore::available_isas);
  m.def("get_isa", &lstmcore::get_isa);
  m.def("set_isa", &lstmcore::set_isa, py::arg("name"));
  m.def("release_memory", &lstmcore::release_memory,
        "Frees the scratch blocks kept for later calls (and those of running calls when they return).");
  m.def("kept_memory", &lstmcore::kept_memory, "Bytes of scratch kept for later calls.");
  m.def(
      "_activation",
      [](const std::string& name, py::array x) {
        // The kernels' vectorised exp / expm1 / sigmoid / tanh (current variant), for tests.
        if (x.dtype().is(py::dtype::of<float>())) {
          auto in = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
          py::array_t<float> out(in.request().shape);
          lstmcore::testing::kernel_activation(name, in.data(), out.mutable_data(), in.size());
          return py::array(out);
        }
        auto in = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(x);
        py::array_t<double> out(in.request().shape);
        lstmcore::testing::kernel_activation(name, in.data(), out.mutable_data(), in.size());
        return py::array(out);
      },
      py::arg("name"), py::arg("x"));
  m.def(
      "_forward_fused",
      [](const std::string& cell, std::int64_t B, std::int64_t I, std::int64_t H, bool f64, bool bf16) {
        // Tests: whether such a plain forward runs the fused recurrence here and now.
        lstmcore::CellSpec spec;
        if (cell == "gru") spec.cell = lstmcore::Cell::gru;
        else if (cell == "rnn_tanh") spec.cell = lstmcore::Cell::rnn_tanh;
        else if (cell == "rnn_relu") spec.cell = lstmcore::Cell::rnn_relu;
        else if (cell != "lstm") throw py::value_error("cell: expected lstm, gru, rnn_tanh or rnn_relu, got '" + cell + "'");
        spec.compute = bf16 ? lstmcore::Compute::bfloat16 : lstmcore::Compute::native;
        return lstmcore::testing::forward_fused(spec, lstmcore::Dims{1, B, I, H}, f64);
      },
      py::arg("cell"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("f64"), py::arg("bf16") = false);
  m.def("_l2_bytes", &lstmcore::testing::machine_l2_bytes, "L2 bytes per core as the planner sees them.");
  m.def("_poison_scratch", &lstmcore::testing::poison_scratch, py::arg("on"),
        "Tests: fill each call's scratch with NaN bytes before the call uses it.");
  m.attr("__version__") = LSTMCORE_VERSION_STRING;
}
