// Bindings of lstmcore::cuda::forward / backward (compiled only with LSTMCORE_CUDA).
// python/lstmcore/_cuda.py reads the device arrays of the caller's library (PyTorch,
// CuPy, Numba, DLPack), checks their shapes and dtypes, allocates the outputs in that
// library and passes raw device addresses here: this file turns them into pointers,
// releases the GIL and calls the core. No CUDA header is needed.
#include <lstmcore/cuda.h>
#include <lstmcore/lstmcore.h>

#include <cstdint>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

namespace {

using std::int64_t;
using std::uintptr_t;

template <typename T>
const T* in(uintptr_t address) {
  return reinterpret_cast<const T*>(address);
}
template <typename T>
T* out(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

struct Call {
  lstmcore::CellSpec spec;
  lstmcore::Dims dims;
  lstmcore::SequenceOptions options;
  lstmcore::cuda::DeviceOptions device;
  py::object lengths_keepalive;  // the host int64 array behind options.seq_lengths
};

Call make_call(const std::string& cell, bool reset_after, int64_t T, int64_t B, int64_t I, int64_t H,
               py::handle seq_lengths, bool reverse, bool batch_first, int device, uintptr_t stream,
               bool allow_tf32) {
  Call c;
  c.spec = {lstmcore::parse_cell(cell), reset_after};
  c.dims = {T, B, I, H};
  c.options.reverse = reverse;
  c.options.batch_first = batch_first;
  if (!seq_lengths.is_none()) {
    auto lengths = checked<int64_t>(seq_lengths, "seq_lengths", {{B}, "(B,)"});
    c.options.seq_lengths = lengths.data();
    c.lengths_keepalive = lengths;
  }
  c.device.device = device;
  c.device.stream = reinterpret_cast<void*>(stream);
  c.device.allow_tf32 = allow_tf32;
  return c;
}

bool is_float32(const std::string& dtype) {
  if (dtype == "float32") return true;
  if (dtype == "float64") return false;
  throw py::type_error("dtype: expected float32 or float64, got " + dtype);
}

template <typename T>
void forward_t(const Call& c, uintptr_t x, uintptr_t w_x, uintptr_t w_h, uintptr_t b, uintptr_t b_h, uintptr_t h0,
               uintptr_t c0, uintptr_t y, uintptr_t h_n, uintptr_t c_n, uintptr_t cache) {
  lstmcore::ForwardArgs<T> a;
  a.x = in<T>(x);
  a.w_x = in<T>(w_x);
  a.w_h = in<T>(w_h);
  a.b = in<T>(b);
  a.b_h = in<T>(b_h);
  a.h0 = in<T>(h0);
  a.c0 = in<T>(c0);
  a.y = out<T>(y);
  a.h_n = out<T>(h_n);
  a.c_n = out<T>(c_n);
  a.cache = out<T>(cache);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::forward<T>(c.spec, c.dims, c.options, a, c.device);
}

template <typename T>
void backward_t(const Call& c, uintptr_t x, uintptr_t w_x, uintptr_t w_h, uintptr_t h0, uintptr_t c0,
                uintptr_t cache, uintptr_t dy, uintptr_t dh_n, uintptr_t dc_n, uintptr_t dx, uintptr_t dh0,
                uintptr_t dc0, uintptr_t dw_x, uintptr_t dw_h, uintptr_t db, uintptr_t db_h) {
  lstmcore::BackwardArgs<T> a;
  a.x = in<T>(x);
  a.w_x = in<T>(w_x);
  a.w_h = in<T>(w_h);
  a.h0 = in<T>(h0);
  a.c0 = in<T>(c0);
  a.cache = out<T>(cache);
  a.dy = in<T>(dy);
  a.dh_n = in<T>(dh_n);
  a.dc_n = in<T>(dc_n);
  a.dx = out<T>(dx);
  a.dh0 = out<T>(dh0);
  a.dc0 = out<T>(dc0);
  a.dw_x = out<T>(dw_x);
  a.dw_h = out<T>(dw_h);
  a.db = out<T>(db);
  a.db_h = out<T>(db_h);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::backward<T>(c.spec, c.dims, c.options, a, c.device);
}

}  // namespace

void register_cuda(py::module_& m) {
  m.def("cuda_device_count", &lstmcore::cuda::device_count, "CUDA devices the runtime sees (0 without a driver).");
  m.def(
      "cuda_forward",
      [](const std::string& cell, bool reset_after, const std::string& dtype, int64_t T, int64_t B, int64_t I,
         int64_t H, uintptr_t x, uintptr_t w_x, uintptr_t w_h, uintptr_t b, uintptr_t b_h, uintptr_t h0,
         uintptr_t c0, uintptr_t y, uintptr_t h_n, uintptr_t c_n, uintptr_t cache, py::object seq_lengths,
         bool reverse, bool batch_first, int device, uintptr_t stream, bool allow_tf32) {
        const Call c = make_call(cell, reset_after, T, B, I, H, seq_lengths, reverse, batch_first, device, stream,
                                 allow_tf32);
        if (is_float32(dtype))
          forward_t<float>(c, x, w_x, w_h, b, b_h, h0, c0, y, h_n, c_n, cache);
        else
          forward_t<double>(c, x, w_x, w_h, b, b_h, h0, c0, y, h_n, c_n, cache);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"),
      py::arg("H"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("b"), py::arg("b_h"), py::arg("h0"),
      py::arg("c0"), py::arg("y"), py::arg("h_n"), py::arg("c_n"), py::arg("cache"), py::arg("seq_lengths"),
      py::arg("reverse"), py::arg("batch_first"), py::arg("device"), py::arg("stream"), py::arg("allow_tf32"),
      "Forward pass on device addresses (0 = absent); the outputs are preallocated.");
  m.def(
      "cuda_backward",
      [](const std::string& cell, bool reset_after, const std::string& dtype, int64_t T, int64_t B, int64_t I,
         int64_t H, uintptr_t x, uintptr_t w_x, uintptr_t w_h, uintptr_t h0, uintptr_t c0, uintptr_t cache,
         uintptr_t dy, uintptr_t dh_n, uintptr_t dc_n, uintptr_t dx, uintptr_t dh0, uintptr_t dc0, uintptr_t dw_x,
         uintptr_t dw_h, uintptr_t db, uintptr_t db_h, py::object seq_lengths, bool reverse, bool batch_first,
         int device, uintptr_t stream, bool allow_tf32) {
        const Call c = make_call(cell, reset_after, T, B, I, H, seq_lengths, reverse, batch_first, device, stream,
                                 allow_tf32);
        if (is_float32(dtype))
          backward_t<float>(c, x, w_x, w_h, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, dw_x, dw_h, db, db_h);
        else
          backward_t<double>(c, x, w_x, w_h, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, dw_x, dw_h, db, db_h);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"),
      py::arg("H"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("h0"), py::arg("c0"), py::arg("cache"),
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
      py::arg("dw_x"), py::arg("dw_h"), py::arg("db"), py::arg("db_h"), py::arg("seq_lengths"), py::arg("reverse"),
      py::arg("batch_first"), py::arg("device"), py::arg("stream"), py::arg("allow_tf32"),
      "Backward pass on device addresses (0 = absent); consumes the cache; the outputs are preallocated.");
}

}  // namespace lstmcore_py
