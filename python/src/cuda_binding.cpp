// Bindings of lstmcore::cuda::forward / backward (compiled only with LSTMCORE_CUDA).
// python/lstmcore/_cuda.py reads the device arrays of the caller's library (PyTorch,
// CuPy, Numba, DLPack), checks their shapes and dtypes, allocates the outputs in that
// library and passes raw device addresses here: this file turns them into pointers,
// releases the GIL and calls the core. No CUDA header is needed.
#include <lstmcore/cuda.h>
#include <lstmcore/lstmcore.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

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

// DeviceOptions::persistent_batch of every call from Python (lstmcore._cuda.set_persistent_batch).
std::atomic<int> persistent_batch{lstmcore::cuda::DeviceOptions{}.persistent_batch};

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
  c.device.persistent_batch = persistent_batch.load();
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

// A stack call: the spec, and the per-layer address tuples read into host tables.
struct StackCall {
  Call call;
  lstmcore::StackSpec spec;
};

StackCall make_stack_call(const std::string& cell, bool reset_after, int64_t num_layers, int directions,
                          double dropout, uint64_t seed, const std::string& merge, int64_t T, int64_t B, int64_t I,
                          int64_t H, py::handle seq_lengths, bool batch_first, int device, uintptr_t stream,
                          bool allow_tf32) {
  StackCall s{make_call(cell, reset_after, T, B, I, H, seq_lengths, false, batch_first, device, stream, allow_tf32),
              {}};
  s.spec.cell = s.call.spec;
  s.spec.num_layers = num_layers;
  s.spec.directions = directions;
  s.spec.dropout = dropout;
  s.spec.seed = seed;
  s.spec.merge = parse_merge(merge);
  return s;
}

// L·D tuples of four addresses (0 = absent), one per layer and direction.
std::vector<std::array<uintptr_t, 4>> address_table(const py::sequence& entries, const lstmcore::StackSpec& s,
                                                   const char* name) {
  const auto n = static_cast<std::size_t>(s.num_layers * s.directions);
  if (entries.size() != n)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " entries (layers x directions), got " + std::to_string(entries.size()));
  std::vector<std::array<uintptr_t, 4>> t(n);
  for (std::size_t j = 0; j < n; ++j) {
    const auto e = entries[j].cast<py::sequence>();
    if (e.size() != 4) throw py::value_error(std::string(name) + ": expected tuples of 4 addresses");
    for (std::size_t i = 0; i < 4; ++i) t[j][i] = e[i].cast<uintptr_t>();
  }
  return t;
}

// The weights (w_x, w_h, b, b_h) of every layer and direction from an address table.
template <typename T>
std::vector<lstmcore::LayerWeights<T>> layer_weights(const std::vector<std::array<uintptr_t, 4>>& table) {
  std::vector<lstmcore::LayerWeights<T>> w(table.size());
  for (std::size_t j = 0; j < table.size(); ++j) {
    w[j].w_x = in<T>(table[j][0]);
    w[j].w_h = in<T>(table[j][1]);
    w[j].b = in<T>(table[j][2]);
    w[j].b_h = in<T>(table[j][3]);
  }
  return w;
}

template <typename T>
void stack_forward_t(const StackCall& c, uintptr_t x, const std::vector<std::array<uintptr_t, 4>>& table,
                     uintptr_t h0, uintptr_t c0, uintptr_t y, uintptr_t h_n, uintptr_t c_n, uintptr_t cache) {
  const std::vector<lstmcore::LayerWeights<T>> w = layer_weights<T>(table);
  lstmcore::StackForwardArgs<T> a;
  a.x = in<T>(x);
  a.weights = w.data();
  a.h0 = in<T>(h0);
  a.c0 = in<T>(c0);
  a.y = out<T>(y);
  a.h_n = out<T>(h_n);
  a.c_n = out<T>(c_n);
  a.cache = out<T>(cache);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::stack_forward<T>(c.spec, c.call.dims, c.call.options, a, c.call.device);
}

template <typename T>
void stack_backward_t(const StackCall& c, uintptr_t x, const std::vector<std::array<uintptr_t, 4>>& weights,
                      uintptr_t h0, uintptr_t c0, uintptr_t cache, uintptr_t dy, uintptr_t dh_n, uintptr_t dc_n,
                      uintptr_t dx, uintptr_t dh0, uintptr_t dc0, const std::vector<std::array<uintptr_t, 4>>& grads) {
  const std::vector<lstmcore::LayerWeights<T>> w = layer_weights<T>(weights);
  std::vector<lstmcore::LayerGradients<T>> g(grads.size());
  for (std::size_t j = 0; j < grads.size(); ++j) {
    g[j].dw_x = out<T>(grads[j][0]);
    g[j].dw_h = out<T>(grads[j][1]);
    g[j].db = out<T>(grads[j][2]);
    g[j].db_h = out<T>(grads[j][3]);
  }
  lstmcore::StackBackwardArgs<T> a;
  a.x = in<T>(x);
  a.weights = w.data();
  a.h0 = in<T>(h0);
  a.c0 = in<T>(c0);
  a.cache = out<T>(cache);
  a.dy = in<T>(dy);
  a.dh_n = in<T>(dh_n);
  a.dc_n = in<T>(dc_n);
  a.dx = out<T>(dx);
  a.dh0 = out<T>(dh0);
  a.dc0 = out<T>(dc0);
  a.grads = g.data();
  py::gil_scoped_release unlocked;
  lstmcore::cuda::stack_backward<T>(c.spec, c.call.dims, c.call.options, a, c.call.device);
}

}  // namespace

void register_cuda(py::module_& m) {
  m.def("cuda_device_count", &lstmcore::cuda::device_count, "CUDA devices the runtime sees (0 without a driver).");
  m.def(
      "cuda_set_persistent_batch",
      [](int batch) {
        if (batch < 0) throw py::value_error("batch: expected >= 0, got " + std::to_string(batch));
        persistent_batch.store(batch);
      },
      py::arg("batch"), "Batches up to this size run the persistent kernels (0: never).");
  m.def(
      "cuda_persistent_batch", [] { return persistent_batch.load(); }, "The current persistent_batch.");
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
  m.def(
      "cuda_stack_forward",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, uint64_t seed,
         const std::string& merge, const std::string& dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x,
         const py::sequence& weights, uintptr_t h0, uintptr_t c0, uintptr_t y, uintptr_t h_n, uintptr_t c_n,
         uintptr_t cache, py::object seq_lengths, bool batch_first, int device, uintptr_t stream, bool allow_tf32) {
        const StackCall c = make_stack_call(cell, reset_after, num_layers, directions, dropout, seed, merge, T, B, I,
                                            H, seq_lengths, batch_first, device, stream, allow_tf32);
        const auto table = address_table(weights, c.spec, "weights");
        if (is_float32(dtype))
          stack_forward_t<float>(c, x, table, h0, c0, y, h_n, c_n, cache);
        else
          stack_forward_t<double>(c, x, table, h0, c0, y, h_n, c_n, cache);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("seed"), py::arg("merge"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("x"), py::arg("weights"), py::arg("h0"), py::arg("c0"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
      py::arg("cache"), py::arg("seq_lengths"), py::arg("batch_first"), py::arg("device"), py::arg("stream"),
      py::arg("allow_tf32"),
      "Stack forward on device addresses; weights: L·D tuples (w_x, w_h, b, b_h) of addresses (0 = absent).");
  m.def(
      "cuda_stack_backward",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, uint64_t seed,
         const std::string& merge, const std::string& dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x,
         const py::sequence& weights, uintptr_t h0, uintptr_t c0, uintptr_t cache, uintptr_t dy, uintptr_t dh_n,
         uintptr_t dc_n, uintptr_t dx, uintptr_t dh0, uintptr_t dc0, const py::sequence& grads,
         py::object seq_lengths, bool batch_first, int device, uintptr_t stream, bool allow_tf32) {
        const StackCall c = make_stack_call(cell, reset_after, num_layers, directions, dropout, seed, merge, T, B, I,
                                            H, seq_lengths, batch_first, device, stream, allow_tf32);
        const auto wt = address_table(weights, c.spec, "weights");
        const auto gt = address_table(grads, c.spec, "grads");
        if (is_float32(dtype))
          stack_backward_t<float>(c, x, wt, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, gt);
        else
          stack_backward_t<double>(c, x, wt, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, gt);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("seed"), py::arg("merge"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("x"), py::arg("weights"), py::arg("h0"), py::arg("c0"), py::arg("cache"), py::arg("dy"),
      py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"), py::arg("grads"),
      py::arg("seq_lengths"), py::arg("batch_first"), py::arg("device"), py::arg("stream"), py::arg("allow_tf32"),
      "Stack backward on device addresses; consumes the cache; grads: L·D tuples (dw_x, dw_h, db, db_h) of "
      "preallocated outputs (0 = skip db / db_h).");
}

}  // namespace lstmcore_py
