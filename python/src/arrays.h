// The helpers every binding file shares (defined here or in shared.cpp): checks that
// turn NumPy arrays into raw pointers for the core (dtype, layout and shape, each
// failure named after the argument), new result arrays, and the readers of the options
// the Python layer passes. The Python layer has already converted what it may convert;
// anything still off here is the caller's error.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <lstmcore/testing.h>

namespace lstmcore_py {

namespace py = pybind11;

// A shape expected for an argument: the numbers and how they are spelt, e.g. "(H, 4H)".
struct Shape {
  std::vector<std::int64_t> dims;
  std::string letters;
  std::string note = "";  // appended to the expected shape in messages, e.g. " for weight_layout='gate_major'"
};

std::string shape_str(const std::vector<std::int64_t>& dims);
std::vector<std::int64_t> shape_of(const py::array& a);

// The array behind obj, checked to be a C-contiguous array of T with the given shape.
// Raises TypeError (not an array, wrong dtype) or ValueError (layout, shape).
template <typename T>
py::array_t<T> checked(py::handle obj, const char* name, const Shape& want, bool writable = false) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": expected a writeable array");
  if (shape_of(a) != want.dims)
    throw py::value_error(std::string(name) + ": expected shape " + want.letters + " = " + shape_str(want.dims) +
                          want.note + ", got " + shape_str(shape_of(a)));
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// Like checked(), or nullptr for None.
template <typename T>
const T* optional_input(py::handle obj, const char* name, const Shape& want) {
  if (obj.is_none()) return nullptr;
  return checked<T>(obj, name, want).data();
}

// A new C-contiguous array of T (NaN bytes while testing::poison_scratch is on, so an
// output element no kernel writes shows in the tests).
template <typename T>
py::array_t<T> new_array(const std::vector<std::int64_t>& shape) {
  py::array_t<T> a(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  if (lstmcore::testing::scratch_poisoned()) std::memset(a.mutable_data(), 0xFF, sizeof(T) * a.size());
  return a;
}

// An optional result: the array, or None.
template <typename T>
py::object optional_result(const std::optional<py::array_t<T>>& a) {
  return a ? py::object(*a) : py::object(py::none());
}

// The (B,) int64 lengths, or nullptr for None.
const std::int64_t* lengths_pointer(py::handle seq_lengths, std::int64_t batch);

// True for float32, false for float64, TypeError naming `name` otherwise.
inline bool is_float32(const py::array& x, const char* name) {
  if (x.dtype().is(py::dtype::of<float>())) return true;
  if (x.dtype().is(py::dtype::of<double>())) return false;
  throw py::type_error(std::string(name) + ": expected dtype float32 or float64, got " + std::string(py::str(x.dtype())));
}

}  // namespace lstmcore_py
