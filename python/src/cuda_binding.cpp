// Bindings of lstmcore::cuda (compiled only with LSTMCORE_CUDA). python/lstmcore/_cuda.py
// reads the device arrays of the caller's library (PyTorch, CuPy, Numba, DLPack), checks
// their shapes and dtypes, allocates the outputs in that library and describes each call
// by keywords: the sizes, the options, where it runs and the raw device addresses. This
// file reads them into a DeviceCall (every field named and described below; an unknown
// or missing keyword is a TypeError naming it), turns the addresses into pointers,
// releases the GIL and calls the core. No CUDA header is needed.
#include <lstmcore/cuda.h>
#include <lstmcore/lstmcore.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

namespace {

using std::int64_t;
using u64 = std::uint64_t;

// DeviceOptions::persistent_batch of every call from Python (lstmcore._cuda.set_persistent_batch).
std::atomic<int> persistent_batch{lstmcore::cuda::DeviceOptions{}.persistent_batch};

// One device call from Python. Addresses are device pointers of the call's dtype (0: absent).
struct DeviceCall {
  std::string cell, dtype, merge = "concat";
  bool reset_after = true, reverse = false, batch_first = false, allow_tf32 = false, gate_major = false;
  int64_t T = 0, B = 0, I = 0, H = 0, L = 1, D = 1;
  double dropout = 0.0;
  u64 seed = 0;
  int64_t device = -1;
  u64 stream = 0;
  py::object seq_lengths = py::none();
  u64 x = 0, w_x = 0, w_h = 0, b = 0, b_h = 0, h0 = 0, c0 = 0, y = 0, h_n = 0, c_n = 0, cache = 0, dy = 0, dh_n = 0,
      dc_n = 0, dx = 0, dh0 = 0, dc0 = 0, dw_x = 0, dw_h = 0, db = 0, db_h = 0;
  py::object weights = py::none(), grads = py::none();
};

using Member = std::variant<std::string DeviceCall::*, bool DeviceCall::*, int64_t DeviceCall::*,
                            double DeviceCall::*, u64 DeviceCall::*, py::object DeviceCall::*>;

struct Field {
  const char* name;
  Member member;
  const char* what;
};

const Field kFields[] = {
    {"cell", &DeviceCall::cell, "'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'"},
    {"reset_after", &DeviceCall::reset_after, "GRU: the reset gate after the recurrent product"},
    {"dtype", &DeviceCall::dtype, "'float32' or 'float64'"},
    {"T", &DeviceCall::T, "steps"},
    {"B", &DeviceCall::B, "batch"},
    {"I", &DeviceCall::I, "input features"},
    {"H", &DeviceCall::H, "hidden units"},
    {"L", &DeviceCall::L, "stack: layers"},
    {"D", &DeviceCall::D, "stack: directions, 1 or 2"},
    {"dropout", &DeviceCall::dropout, "stack: dropout probability between layers"},
    {"seed", &DeviceCall::seed, "stack: key of the dropout masks"},
    {"merge", &DeviceCall::merge, "stack: 'concat' or 'sum'"},
    {"seq_lengths", &DeviceCall::seq_lengths, "None or a host int64 array (B,)"},
    {"reverse", &DeviceCall::reverse, "walk time backwards"},
    {"batch_first", &DeviceCall::batch_first, "rows ordered (B, T)"},
    {"device", &DeviceCall::device, "CUDA device index, -1 for the current one"},
    {"stream", &DeviceCall::stream, "cudaStream_t as an integer, 0 for the legacy default stream"},
    {"allow_tf32", &DeviceCall::allow_tf32, "float GEMMs may use TF32"},
    {"gate_major", &DeviceCall::gate_major, "weights (and their gradients) stored as (G·H, I), (G·H, H)"},
    {"x", &DeviceCall::x, "address of x"},
    {"w_x", &DeviceCall::w_x, "address of w_x"},
    {"w_h", &DeviceCall::w_h, "address of w_h"},
    {"b", &DeviceCall::b, "address of b, 0 for none"},
    {"b_h", &DeviceCall::b_h, "address of b_h, 0 for none"},
    {"h0", &DeviceCall::h0, "address of h0, 0 for none"},
    {"c0", &DeviceCall::c0, "address of c0, 0 for none"},
    {"y", &DeviceCall::y, "address of y (output)"},
    {"h_n", &DeviceCall::h_n, "address of h_n (output)"},
    {"c_n", &DeviceCall::c_n, "address of c_n (output), 0 for none"},
    {"cache", &DeviceCall::cache, "address of the training cache, 0 for none"},
    {"dy", &DeviceCall::dy, "address of dy, 0 for none"},
    {"dh_n", &DeviceCall::dh_n, "address of dh_n, 0 for none"},
    {"dc_n", &DeviceCall::dc_n, "address of dc_n, 0 for none"},
    {"dx", &DeviceCall::dx, "address of dx (output)"},
    {"dh0", &DeviceCall::dh0, "address of dh0 (output)"},
    {"dc0", &DeviceCall::dc0, "address of dc0 (output), 0 for none"},
    {"dw_x", &DeviceCall::dw_x, "address of dw_x (output)"},
    {"dw_h", &DeviceCall::dw_h, "address of dw_h (output)"},
    {"db", &DeviceCall::db, "address of db (output), 0 to skip"},
    {"db_h", &DeviceCall::db_h, "address of db_h (output), 0 to skip"},
    {"weights", &DeviceCall::weights, "stack: L·D tuples of addresses (w_x, w_h, b, b_h)"},
    {"grads", &DeviceCall::grads, "stack: L·D tuples of output addresses (dw_x, dw_h, db, db_h)"},
};

const Field& field(const std::string& name) {
  for (const Field& f : kFields)
    if (name == f.name) return f;
  throw py::type_error("unknown field '" + name + "'");
}

// The call `entry` described by `kw`, which must hold exactly the fields `wanted`.
DeviceCall read_call(const char* entry, const py::kwargs& kw, std::initializer_list<const char*> wanted) {
  DeviceCall c;
  for (const char* name : wanted) {
    const Field& f = field(name);
    if (!kw.contains(name))
      throw py::type_error(std::string(entry) + ": missing field '" + name + "' (" + f.what + ")");
    py::handle value = kw[name];
    std::visit(
        [&](auto member) {
          using V = std::decay_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<V, py::object>)
            c.*member = py::reinterpret_borrow<py::object>(value);
          else
            c.*member = value.cast<V>();
        },
        f.member);
  }
  if (kw.size() != wanted.size())
    for (auto item : kw) {
      const std::string name = py::str(item.first);
      bool known = false;
      for (const char* w : wanted) known = known || name == w;
      if (!known) throw py::type_error(std::string(entry) + ": unexpected field '" + name + "'");
    }
  return c;
}

template <typename T>
const T* in(u64 address) {
  return reinterpret_cast<const T*>(static_cast<std::uintptr_t>(address));
}
template <typename T>
T* out(u64 address) {
  return reinterpret_cast<T*>(static_cast<std::uintptr_t>(address));
}

// The parts of a call the core takes besides the arrays.
struct Call {
  lstmcore::CellSpec spec;
  lstmcore::Dims dims;
  lstmcore::SequenceOptions options;
  lstmcore::cuda::DeviceOptions device;
  py::object lengths_keepalive;  // the host int64 array behind options.seq_lengths
};

Call make_call(const DeviceCall& d) {
  Call c;
  c.spec = {lstmcore::parse_cell(d.cell), d.reset_after};
  c.dims = {d.T, d.B, d.I, d.H};
  c.options.reverse = d.reverse;
  c.options.batch_first = d.batch_first;
  if (!d.seq_lengths.is_none()) {
    auto lengths = checked<int64_t>(d.seq_lengths, "seq_lengths", {{d.B}, "(B,)"});
    c.options.seq_lengths = lengths.data();
    c.lengths_keepalive = lengths;
  }
  c.device.device = static_cast<int>(d.device);
  c.device.stream = reinterpret_cast<void*>(static_cast<std::uintptr_t>(d.stream));
  c.device.allow_tf32 = d.allow_tf32;
  c.device.persistent_batch = persistent_batch.load();
  return c;
}

bool is_float32(const std::string& dtype) {
  if (dtype == "float32") return true;
  if (dtype == "float64") return false;
  throw py::type_error("dtype: expected float32 or float64, got " + dtype);
}

// The fields ForwardArgs and BackwardArgs share: x, the weights, the initial state, the
// cache and the weight layout.
template <typename T, class Args>
void fill_shared(const DeviceCall& d, Args& a) {
  a.x = in<T>(d.x);
  a.w_x = in<T>(d.w_x);
  a.w_h = in<T>(d.w_h);
  a.h0 = in<T>(d.h0);
  a.c0 = in<T>(d.c0);
  a.cache = out<T>(d.cache);
  a.weight_layout = d.gate_major ? lstmcore::WeightLayout::gate_major : lstmcore::WeightLayout::input_major;
}

template <typename T>
void forward_t(const DeviceCall& d) {
  const Call c = make_call(d);
  lstmcore::ForwardArgs<T> a;
  fill_shared<T>(d, a);
  a.b = in<T>(d.b);
  a.b_h = in<T>(d.b_h);
  a.y = out<T>(d.y);
  a.h_n = out<T>(d.h_n);
  a.c_n = out<T>(d.c_n);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::forward<T>(c.spec, c.dims, c.options, a, c.device);
}

template <typename T>
void backward_t(const DeviceCall& d) {
  const Call c = make_call(d);
  lstmcore::BackwardArgs<T> a;
  fill_shared<T>(d, a);
  a.dy = in<T>(d.dy);
  a.dh_n = in<T>(d.dh_n);
  a.dc_n = in<T>(d.dc_n);
  a.dx = out<T>(d.dx);
  a.dh0 = out<T>(d.dh0);
  a.dc0 = out<T>(d.dc0);
  a.dw_x = out<T>(d.dw_x);
  a.dw_h = out<T>(d.dw_h);
  a.db = out<T>(d.db);
  a.db_h = out<T>(d.db_h);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::backward<T>(c.spec, c.dims, c.options, a, c.device);
}

lstmcore::StackSpec stack_spec(const DeviceCall& d) {
  lstmcore::StackSpec s;
  s.cell = {lstmcore::parse_cell(d.cell), d.reset_after};
  s.num_layers = d.L;
  s.directions = static_cast<int>(d.D);
  s.dropout = d.dropout;
  s.seed = d.seed;
  s.merge = parse_merge(d.merge);
  return s;
}

// L·D tuples of four addresses (0 = absent), one per layer and direction.
std::vector<std::array<u64, 4>> address_table(py::handle entries_obj, const lstmcore::StackSpec& s,
                                              const char* name) {
  const auto entries = py::reinterpret_borrow<py::sequence>(entries_obj);
  const auto n = static_cast<std::size_t>(s.num_layers * s.directions);
  if (entries.size() != n)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " entries (layers x directions), got " + std::to_string(entries.size()));
  std::vector<std::array<u64, 4>> t(n);
  for (std::size_t j = 0; j < n; ++j) {
    const auto e = entries[j].cast<py::sequence>();
    if (e.size() != 4) throw py::value_error(std::string(name) + ": expected tuples of 4 addresses");
    for (std::size_t i = 0; i < 4; ++i) t[j][i] = e[i].cast<u64>();
  }
  return t;
}

// The weights (w_x, w_h, b, b_h) of every layer and direction from an address table.
template <typename T>
std::vector<lstmcore::LayerWeights<T>> layer_weights(const std::vector<std::array<u64, 4>>& table) {
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
void stack_forward_t(const DeviceCall& d) {
  const Call c = make_call(d);
  const lstmcore::StackSpec spec = stack_spec(d);
  const std::vector<lstmcore::LayerWeights<T>> w = layer_weights<T>(address_table(d.weights, spec, "weights"));
  lstmcore::StackForwardArgs<T> a;
  a.x = in<T>(d.x);
  a.weights = w.data();
  a.h0 = in<T>(d.h0);
  a.c0 = in<T>(d.c0);
  a.y = out<T>(d.y);
  a.h_n = out<T>(d.h_n);
  a.c_n = out<T>(d.c_n);
  a.cache = out<T>(d.cache);
  py::gil_scoped_release unlocked;
  lstmcore::cuda::stack_forward<T>(spec, c.dims, c.options, a, c.device);
}

template <typename T>
void stack_backward_t(const DeviceCall& d) {
  const Call c = make_call(d);
  const lstmcore::StackSpec spec = stack_spec(d);
  const std::vector<lstmcore::LayerWeights<T>> w = layer_weights<T>(address_table(d.weights, spec, "weights"));
  const auto grads = address_table(d.grads, spec, "grads");
  std::vector<lstmcore::LayerGradients<T>> g(grads.size());
  for (std::size_t j = 0; j < grads.size(); ++j) {
    g[j].dw_x = out<T>(grads[j][0]);
    g[j].dw_h = out<T>(grads[j][1]);
    g[j].db = out<T>(grads[j][2]);
    g[j].db_h = out<T>(grads[j][3]);
  }
  lstmcore::StackBackwardArgs<T> a;
  a.x = in<T>(d.x);
  a.weights = w.data();
  a.h0 = in<T>(d.h0);
  a.c0 = in<T>(d.c0);
  a.cache = out<T>(d.cache);
  a.dy = in<T>(d.dy);
  a.dh_n = in<T>(d.dh_n);
  a.dc_n = in<T>(d.dc_n);
  a.dx = out<T>(d.dx);
  a.dh0 = out<T>(d.dh0);
  a.dc0 = out<T>(d.dc0);
  a.grads = g.data();
  py::gil_scoped_release unlocked;
  lstmcore::cuda::stack_backward<T>(spec, c.dims, c.options, a, c.device);
}

#define LSTMCORE_WHERE "seq_lengths", "reverse", "batch_first", "device", "stream", "allow_tf32"
#define LSTMCORE_STACK_WHERE "seq_lengths", "batch_first", "device", "stream", "allow_tf32"

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
      [](const py::kwargs& kw) {
        const DeviceCall d = read_call("cuda_forward", kw,
                                       {"cell", "reset_after", "dtype", "T", "B", "I", "H", "x", "w_x", "w_h", "b",
                                        "b_h", "h0", "c0", "y", "h_n", "c_n", "cache", LSTMCORE_WHERE, "gate_major"});
        is_float32(d.dtype) ? forward_t<float>(d) : forward_t<double>(d);
      },
      "Forward pass on device addresses (0 = absent), described by keywords: cell, reset_after, dtype, T, B, I, "
      "H, x, w_x, w_h, b, b_h, h0, c0, y, h_n, c_n, cache, seq_lengths, reverse, batch_first, device, stream, "
      "allow_tf32, gate_major; the outputs are preallocated.");
  m.def(
      "cuda_backward",
      [](const py::kwargs& kw) {
        const DeviceCall d = read_call("cuda_backward", kw,
                                       {"cell", "reset_after", "dtype", "T", "B", "I", "H", "x", "w_x", "w_h", "h0",
                                        "c0", "cache", "dy", "dh_n", "dc_n", "dx", "dh0", "dc0", "dw_x", "dw_h", "db",
                                        "db_h", LSTMCORE_WHERE, "gate_major"});
        is_float32(d.dtype) ? backward_t<float>(d) : backward_t<double>(d);
      },
      "Backward pass on device addresses (0 = absent), described by keywords: cell, reset_after, dtype, T, B, I, "
      "H, x, w_x, w_h, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, dw_x, dw_h, db, db_h, seq_lengths, reverse, "
      "batch_first, device, stream, allow_tf32, gate_major; consumes the cache; the outputs are preallocated.");
  m.def(
      "cuda_stack_forward",
      [](const py::kwargs& kw) {
        const DeviceCall d =
            read_call("cuda_stack_forward", kw,
                      {"cell", "reset_after", "L", "D", "dropout", "seed", "merge", "dtype", "T", "B", "I", "H", "x",
                       "weights", "h0", "c0", "y", "h_n", "c_n", "cache", LSTMCORE_STACK_WHERE});
        is_float32(d.dtype) ? stack_forward_t<float>(d) : stack_forward_t<double>(d);
      },
      "Stack forward on device addresses, described by keywords: cell, reset_after, L, D, dropout, seed, merge, "
      "dtype, T, B, I, H, x, weights (L·D tuples (w_x, w_h, b, b_h) of addresses, 0 = absent), h0, c0, y, h_n, "
      "c_n, cache, seq_lengths, batch_first, device, stream, allow_tf32.");
  m.def(
      "cuda_stack_backward",
      [](const py::kwargs& kw) {
        const DeviceCall d =
            read_call("cuda_stack_backward", kw,
                      {"cell", "reset_after", "L", "D", "dropout", "seed", "merge", "dtype", "T", "B", "I", "H", "x",
                       "weights", "h0", "c0", "cache", "dy", "dh_n", "dc_n", "dx", "dh0", "dc0", "grads",
                       LSTMCORE_STACK_WHERE});
        is_float32(d.dtype) ? stack_backward_t<float>(d) : stack_backward_t<double>(d);
      },
      "Stack backward on device addresses, described by keywords: cell, reset_after, L, D, dropout, seed, merge, "
      "dtype, T, B, I, H, x, weights, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0, grads (L·D tuples (dw_x, dw_h, "
      "db, db_h) of preallocated outputs, 0 = skip db / db_h), seq_lengths, batch_first, device, stream, "
      "allow_tf32; consumes the cache.");
}

}  // namespace lstmcore_py
