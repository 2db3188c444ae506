// Binding of lstmcore::Stepper (stepper.h): _core.Stepper(cell, reset_after, w_x, w_h, b, b_h, batch)
// packs the weights once; .step(x_t, h, c) advances h (and c) in place. The Python class
// lstmcore._stepper.Stepper builds these per layer and owns the state arrays.
#include <lstmcore/stepper.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {
namespace {

using std::int64_t;

class PyStepper {
 public:
  PyStepper(const std::string& cell, bool reset_after, const py::array& w_x, const py::array& w_h, py::handle b,
            py::handle b_h, int64_t batch) {
    spec_.cell = lstmcore::parse_cell(cell);
    spec_.reset_after = reset_after;
    G_ = lstmcore::gate_count(spec_.cell);
    if (w_h.ndim() != 2) throw py::value_error("w_h: expected 2 dimensions (H, G·H), got shape " + shape_str(shape_of(w_h)));
    if (w_x.ndim() != 2) throw py::value_error("w_x: expected 2 dimensions (I, G·H), got shape " + shape_str(shape_of(w_x)));
    H_ = w_h.shape(0);
    I_ = w_x.shape(0);
    B_ = batch;
    f32_ = w_x.dtype().is(py::dtype::of<float>());
    if (f32_) build<float>(w_x, w_h, b, b_h, s32_);
    else build<double>(w_x, w_h, b, b_h, s64_);
  }

  void step(py::handle x_t, py::handle h, py::handle c) {
    if (f32_) run<float>(x_t, h, c, *s32_);
    else run<double>(x_t, h, c, *s64_);
  }

 private:
  std::string gh() const { return G_ == 1 ? "H" : std::to_string(G_) + "H"; }

  template <typename T>
  void build(const py::array& w_x, const py::array& w_h, py::handle b, py::handle b_h,
             std::unique_ptr<lstmcore::Stepper<T>>& out) {
    const int64_t GH = G_ * H_;
    auto wx = checked<T>(w_x, "w_x", {{I_, GH}, "(I, " + gh() + ")"});
    auto wh = checked<T>(w_h, "w_h", {{H_, GH}, "(H, " + gh() + ")"});
    const T* bp = optional_input<T>(b, "b", {{GH}, "(" + gh() + ",)"});
    const T* bhp = optional_input<T>(b_h, "b_h", {{GH}, "(" + gh() + ",)"});
    out = std::make_unique<lstmcore::Stepper<T>>(spec_, B_, I_, H_, wx.data(), wh.data(), bp, bhp);
  }

  template <typename T>
  void run(py::handle x_t, py::handle h, py::handle c, lstmcore::Stepper<T>& s) {
    const T* x = checked<T>(x_t, "x_t", {{B_, I_}, "(B, I)"}).data();
    T* hp = checked<T>(h, "h", {{B_, H_}, "(B, H)"}, true).mutable_data();
    T* cp = nullptr;
    if (spec_.cell == lstmcore::Cell::lstm) cp = checked<T>(c, "c", {{B_, H_}, "(B, H)"}, true).mutable_data();
    else require_no_state(spec_.cell, c, "c");
    const auto overlaps = [](const T* a, int64_t na, const T* b, int64_t nb) { return a < b + nb && b < a + na; };
    if (overlaps(x, B_ * I_, hp, B_ * H_)) throw py::value_error("x_t and h: share memory");
    if (cp && overlaps(x, B_ * I_, cp, B_ * H_)) throw py::value_error("x_t and c: share memory");
    if (cp && overlaps(hp, B_ * H_, cp, B_ * H_)) throw py::value_error("h and c: share memory");
    py::gil_scoped_release unlocked;
    s.step(x, hp, cp);
  }

  lstmcore::CellSpec spec_;
  int64_t G_ = 1, B_ = 1, I_ = 1, H_ = 1;
  bool f32_ = true;
  std::unique_ptr<lstmcore::Stepper<float>> s32_;
  std::unique_ptr<lstmcore::Stepper<double>> s64_;
};

// ---------------------------------------------------------------------------------------
// _core.layer_step: a stack of unidirectional layers advanced one step by lstmcore::step_layer,
// reading the weights where they lie. Anything not ready for the core as it is makes it
// return None before it writes anything (the Python layer then takes its checked path,
// which names the problem).

// The data of obj when it is an aligned C-contiguous ndarray of T with these dims, else nullptr.
template <typename T>
const T* ready(py::handle obj, std::initializer_list<int64_t> dims) {
  if (!py::isinstance<py::array>(obj)) return nullptr;
  const auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()) || a.ndim() != static_cast<py::ssize_t>(dims.size())) return nullptr;
  py::ssize_t k = 0;
  for (int64_t d : dims)
    if (a.shape(k++) != d) return nullptr;
  if (!(a.flags() & py::array::c_style) || reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) != 0)
    return nullptr;
  return static_cast<const T*>(a.data());
}

// ready() for an optional argument: *out = nullptr for None; false when not ready.
template <typename T>
bool ready_or_none(py::handle obj, std::initializer_list<int64_t> dims, const T** out) {
  *out = obj.is_none() ? nullptr : ready<T>(obj, dims);
  return obj.is_none() || *out != nullptr;
}

template <typename T>
py::object layer_step(const lstmcore::CellSpec& spec, const py::array& x_t, const py::sequence& weights,
                      py::handle h0, py::handle c0, bool gate_major, int64_t input, int64_t hidden) {
  const int64_t L = static_cast<int64_t>(weights.size());
  if (L < 1 || x_t.ndim() != 2) return py::none();
  const int64_t B = x_t.shape(0), I = x_t.shape(1);
  const T* x = ready<T>(x_t, {B, I});
  if (!x || B < 1 || I < 1 || (input > 0 && I != input)) return py::none();
  const bool lstm = spec.cell == lstmcore::Cell::lstm;
  const int64_t G = lstmcore::gate_count(spec.cell);
  // the layers' weights: w_h gives H
  std::vector<lstmcore::LayerStep<T>> layers(static_cast<std::size_t>(L));
  int64_t H = 0;
  for (int64_t k = 0; k < L; ++k) {
    const py::handle entry = weights[static_cast<std::size_t>(k)];
    if (!py::isinstance<py::sequence>(entry) || py::len(entry) < 4) return py::none();
    const auto w = py::reinterpret_borrow<py::sequence>(entry);
    if (k == 0) {
      if (!py::isinstance<py::array>(w[1]) || py::reinterpret_borrow<py::array>(w[1]).ndim() != 2) return py::none();
      H = py::reinterpret_borrow<py::array>(w[1]).shape(gate_major ? 1 : 0);
      if (H < 1 || (hidden > 0 && H != hidden)) return py::none();
    }
    const int64_t K = k == 0 ? I : H, GH = G * H;
    lstmcore::LayerStep<T>& a = layers[static_cast<std::size_t>(k)];
    a.spec = spec;
    a.layout = gate_major ? lstmcore::WeightLayout::gate_major : lstmcore::WeightLayout::input_major;
    a.batch = B;
    a.input = K;
    a.hidden = H;
    a.w_x = gate_major ? ready<T>(w[0], {GH, K}) : ready<T>(w[0], {K, GH});
    a.w_h = gate_major ? ready<T>(w[1], {GH, H}) : ready<T>(w[1], {H, GH});
    if (!a.w_x || !a.w_h || !ready_or_none<T>(w[2], {GH}, &a.b) || !ready_or_none<T>(w[3], {GH}, &a.b_h))
      return py::none();
  }
  const T* h0p = nullptr;
  const T* c0p = nullptr;
  if (!ready_or_none<T>(h0, {L, B, H}, &h0p) || !ready_or_none<T>(c0, {L, B, H}, &c0p)) return py::none();
  if (!lstm && !c0.is_none()) return py::none();
  // new outputs: the state starts as h0 (c0) or zeros and is stepped in place, layer by layer
  auto h_n = new_array<T>({L, B, H});
  T* hp = h_n.mutable_data();
  const int64_t n = B * H;
  if (h0p) std::memcpy(hp, h0p, sizeof(T) * L * n);
  else std::fill(hp, hp + L * n, T(0));
  py::object c_out = py::none();
  T* cp = nullptr;
  if (lstm) {
    auto c_n = new_array<T>({L, B, H});
    cp = c_n.mutable_data();
    if (c0p) std::memcpy(cp, c0p, sizeof(T) * L * n);
    else std::fill(cp, cp + L * n, T(0));
    c_out = c_n;
  }
  auto y = new_array<T>({B, H});
  // the workspace is the calling thread's, grown when a step needs more (never per step)
  thread_local std::vector<T> workspace;
  const auto need = static_cast<std::size_t>(lstmcore::step_workspace_size(spec, B, H));
  if (workspace.size() < need) workspace.resize(need);
  {
    py::gil_scoped_release unlocked;
    const T* in = x;
    for (int64_t k = 0; k < L; ++k) {
      lstmcore::LayerStep<T>& a = layers[static_cast<std::size_t>(k)];
      a.x_t = in;
      a.h_in = a.h_out = hp + k * n;
      if (lstm) a.c_in = a.c_out = cp + k * n;
      lstmcore::step_layer(a, workspace.data(), static_cast<int64_t>(workspace.size()));
      in = a.h_out;
    }
    std::memcpy(y.mutable_data(), in, sizeof(T) * n);
  }
  return py::make_tuple(y, h_n, c_out);
}

}  // namespace

void register_stepper(py::module_& m) {
  m.def(
      "layer_step",
      [](const std::string& cell, bool reset_after, py::handle x_t, py::sequence weights, py::handle h0,
         py::handle c0, bool gate_major, int64_t input, int64_t hidden) -> py::object {
        lstmcore::CellSpec spec;
        spec.cell = lstmcore::parse_cell(cell);
        spec.reset_after = reset_after;
        if (!py::isinstance<py::array>(x_t)) return py::none();
        const auto x = py::reinterpret_borrow<py::array>(x_t);
        if (x.dtype().is(py::dtype::of<float>())) return layer_step<float>(spec, x, weights, h0, c0, gate_major, input, hidden);
        if (x.dtype().is(py::dtype::of<double>())) return layer_step<double>(spec, x, weights, h0, c0, gate_major, input, hidden);
        return py::none();
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("x_t"), py::arg("weights"), py::arg("h0") = py::none(),
      py::arg("c0") = py::none(), py::arg("gate_major") = false, py::arg("input_size") = 0,
      py::arg("hidden_size") = 0,
      "One step of a stack of unidirectional plain layers from the weights where they lie: weights a list of "
      "(w_x, w_h, b, b_h) per layer (b, b_h may be None), x_t (B, I), h0 / c0 (L, B, H) or None (zeros). "
      "Returns (y_t (B, H), h_n, c_n or None), or None when an argument is not an aligned C-contiguous array "
      "of x_t's dtype and the expected shape, or I, H differ from input_size, hidden_size when given (> 0) "
      "(nothing is written then).");
  py::class_<PyStepper>(m, "Stepper")
      .def(py::init<const std::string&, bool, const py::array&, const py::array&, py::handle, py::handle, int64_t>(),
           py::arg("cell"), py::arg("reset_after"), py::arg("w_x"), py::arg("w_h"), py::arg("b"), py::arg("b_h"),
           py::arg("batch"))
      .def("step", &PyStepper::step, py::arg("x_t"), py::arg("h"), py::arg("c") = py::none());
}

}  // namespace lstmcore_py
