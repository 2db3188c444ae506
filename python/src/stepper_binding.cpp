// Binding of lstmcore::Stepper (stepper.h): _core.Stepper(cell, reset_after, w_x, w_h, b, b_h, batch)
// packs the weights once; .step(x_t, h, c) advances h (and c) in place. The Python class
// lstmcore._stepper.Stepper builds these per layer and owns the state arrays.
#include <lstmcore/stepper.h>

#include <memory>
#include <string>

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

}  // namespace

void register_stepper(py::module_& m) {
  py::class_<PyStepper>(m, "Stepper")
      .def(py::init<const std::string&, bool, const py::array&, const py::array&, py::handle, py::handle, int64_t>(),
           py::arg("cell"), py::arg("reset_after"), py::arg("w_x"), py::arg("w_h"), py::arg("b"), py::arg("b_h"),
           py::arg("batch"))
      .def("step", &PyStepper::step, py::arg("x_t"), py::arg("h"), py::arg("c") = py::none());
}

}  // namespace lstmcore_py
