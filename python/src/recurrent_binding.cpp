// Bindings of lstmcore::forward / backward: shapes in, pointers down, GIL released,
// NumPy results out. Defaults, dtype conversion and the cache object live in Python
// (python/lstmcore/_functional.py); this file only checks and forwards.
#include <lstmcore/lstmcore.h>

#include <optional>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

using lstmcore::Cell;
using std::int64_t;

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

namespace {

// Sizes of one call, read from x and w_h, with the spellings used in messages.
struct Problem {
  lstmcore::CellSpec spec;
  lstmcore::Dims dims;
  lstmcore::SequenceOptions options;
  int64_t G = 0;
  std::string gh;  // "4H", "3H" or "H"

  Shape rows(int64_t features, const char* letter) const {
    const auto& d = dims;
    if (options.batch_first) return {{d.batch, d.steps, features}, std::string("(B, T, ") + letter + ")"};
    return {{d.steps, d.batch, features}, std::string("(T, B, ") + letter + ")"};
  }
  Shape state() const { return {{dims.batch, dims.hidden}, "(B, H)"}; }
  Shape w_x() const { return {{dims.input, G * dims.hidden}, "(I, " + gh + ")"}; }
  Shape w_h() const { return {{dims.hidden, G * dims.hidden}, "(H, " + gh + ")"}; }
  Shape bias() const { return {{G * dims.hidden}, "(" + gh + ",)"}; }
  bool lstm() const { return spec.cell == Cell::lstm; }
};

Problem make_problem(const std::string& cell, bool reset_after, const py::array& x, const py::array& w_h,
                     bool reverse, bool batch_first) {
  Problem p;
  p.spec = {lstmcore::parse_cell(cell), reset_after};
  p.G = lstmcore::gate_count(p.spec.cell);
  p.gh = p.G == 1 ? "H" : std::to_string(p.G) + "H";
  if (x.ndim() != 3)
    throw py::value_error(std::string("x: expected 3 dimensions ") + (batch_first ? "(B, T, I)" : "(T, B, I)") +
                          ", got shape " + shape_str(shape_of(x)));
  if (w_h.ndim() != 2)
    throw py::value_error("w_h: expected 2 dimensions (H, " + p.gh + "), got shape " + shape_str(shape_of(w_h)));
  p.dims.steps = batch_first ? x.shape(1) : x.shape(0);
  p.dims.batch = batch_first ? x.shape(0) : x.shape(1);
  p.dims.input = x.shape(2);
  p.dims.hidden = w_h.shape(0);
  for (auto [name, v] : {std::pair<const char*, int64_t>{"T", p.dims.steps}, {"B", p.dims.batch}, {"I", p.dims.input}})
    if (v < 1) throw py::value_error(std::string("x: ") + name + " must be >= 1, got shape " + shape_str(shape_of(x)));
  if (p.dims.hidden < 1) throw py::value_error("w_h: H must be >= 1, got shape " + shape_str(shape_of(w_h)));
  p.options.reverse = reverse;
  p.options.batch_first = batch_first;
  lstmcore::cache_size(p.spec, p.dims);  // size overflow checks
  return p;
}

const int64_t* lengths_pointer(const Problem& p, py::handle seq_lengths) {
  return optional_input<int64_t>(seq_lengths, "seq_lengths", {{p.dims.batch}, "(B,)"});
}

template <typename T>
py::tuple forward_t(const Problem& p, const py::array& x, const py::array& w_x, const py::array& w_h,
                    py::handle b, py::handle b_h, py::handle h0, py::handle c0, py::handle seq_lengths,
                    bool training, py::handle out) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(p, seq_lengths);
  lstmcore::ForwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.w_x = checked<T>(w_x, "w_x", p.w_x()).data();
  a.w_h = checked<T>(w_h, "w_h", p.w_h()).data();
  a.b = optional_input<T>(b, "b", p.bias());
  a.b_h = optional_input<T>(b_h, "b_h", p.bias());
  a.h0 = optional_input<T>(h0, "h0", p.state());
  require_no_state(p.spec.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.state());

  const Shape y_shape = p.rows(p.dims.hidden, "H");
  py::array_t<T> y = out.is_none() ? new_array<T>(y_shape.dims) : checked<T>(out, "out", y_shape, true);
  py::array_t<T> h_n = new_array<T>(p.state().dims);
  std::optional<py::array_t<T>> c_n, cache;
  if (p.lstm()) c_n = new_array<T>(p.state().dims);
  if (training) cache = new_array<T>({static_cast<int64_t>(lstmcore::cache_size(p.spec, p.dims))});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = c_n ? c_n->mutable_data() : nullptr;
  a.cache = cache ? cache->mutable_data() : nullptr;
  {
    py::gil_scoped_release unlocked;
    lstmcore::forward<T>(p.spec, p.dims, options, a);
  }
  py::object none = py::none();
  return py::make_tuple(y, h_n, c_n ? py::object(*c_n) : none, cache ? py::object(*cache) : none);
}

template <typename T>
py::tuple backward_t(const Problem& p, const py::array& x, const py::array& w_x, const py::array& w_h,
                     py::handle h0, py::handle c0, py::handle seq_lengths, const py::array& cache, bool has_b,
                     bool has_b_h, py::handle dy, py::handle dh_n, py::handle dc_n) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(p, seq_lengths);
  lstmcore::BackwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.w_x = checked<T>(w_x, "w_x", p.w_x()).data();
  a.w_h = checked<T>(w_h, "w_h", p.w_h()).data();
  a.h0 = optional_input<T>(h0, "h0", p.state());
  require_no_state(p.spec.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.state());
  const int64_t cache_len = static_cast<int64_t>(lstmcore::cache_size(p.spec, p.dims));
  a.cache = checked<T>(cache, "cache", {{cache_len}, "(cache_size,)"}, true).mutable_data();
  a.dy = optional_input<T>(dy, "dy", p.rows(p.dims.hidden, "H"));
  a.dh_n = optional_input<T>(dh_n, "dh_n", p.state());
  require_no_state(p.spec.cell, dc_n, "dc_n");
  a.dc_n = optional_input<T>(dc_n, "dc_n", p.state());

  auto dx = new_array<T>(p.rows(p.dims.input, "I").dims);
  auto dh0 = new_array<T>(p.state().dims);
  auto dw_x = new_array<T>(p.w_x().dims);
  auto dw_h = new_array<T>(p.w_h().dims);
  std::optional<py::array_t<T>> dc0, db, db_h;
  if (p.lstm()) dc0 = new_array<T>(p.state().dims);
  if (has_b) db = new_array<T>(p.bias().dims);
  if (has_b_h) db_h = new_array<T>(p.bias().dims);
  a.dx = dx.mutable_data();
  a.dh0 = dh0.mutable_data();
  a.dc0 = dc0 ? dc0->mutable_data() : nullptr;
  a.dw_x = dw_x.mutable_data();
  a.dw_h = dw_h.mutable_data();
  a.db = db ? db->mutable_data() : nullptr;
  a.db_h = db_h ? db_h->mutable_data() : nullptr;
  {
    py::gil_scoped_release unlocked;
    lstmcore::backward<T>(p.spec, p.dims, options, a);
  }
  auto opt = [](std::optional<py::array_t<T>>& v) { return v ? py::object(*v) : py::object(py::none()); };
  return py::make_tuple(dx, dh0, opt(dc0), dw_x, dw_h, opt(db), opt(db_h));
}

}  // namespace

void require_no_state(lstmcore::Cell cell, py::handle obj, const char* name) {
  if (cell != lstmcore::Cell::lstm && !obj.is_none())
    throw py::value_error(std::string(name) + ": the " + lstmcore::cell_name(cell) +
                          " cell has no cell state; pass None");
}

void register_recurrent(py::module_& m) {
  m.def(
      "forward",
      [](const std::string& cell, bool reset_after, const py::array& x, const py::array& w_x, const py::array& w_h,
         py::object b, py::object b_h, py::object h0, py::object c0, py::object seq_lengths, bool reverse,
         bool batch_first, bool training, py::object out) {
        const Problem p = make_problem(cell, reset_after, x, w_h, reverse, batch_first);
        if (is_float32(x, "x"))
          return forward_t<float>(p, x, w_x, w_h, b, b_h, h0, c0, seq_lengths, training, out);
        return forward_t<double>(p, x, w_x, w_h, b, b_h, h0, c0, seq_lengths, training, out);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("b"),
      py::arg("b_h"), py::arg("h0"), py::arg("c0"), py::arg("seq_lengths"), py::arg("reverse"),
      py::arg("batch_first"), py::arg("training"), py::arg("out"),
      "Checked forward pass on C-contiguous arrays of one dtype; returns (y, h_n, c_n, cache_buffer).");
  m.def(
      "backward",
      [](const std::string& cell, bool reset_after, const py::array& x, const py::array& w_x, const py::array& w_h,
         py::object h0, py::object c0, py::object seq_lengths, bool reverse, bool batch_first, const py::array& cache,
         bool has_b, bool has_b_h, py::object dy, py::object dh_n, py::object dc_n) {
        const Problem p = make_problem(cell, reset_after, x, w_h, reverse, batch_first);
        if (is_float32(x, "x"))
          return backward_t<float>(p, x, w_x, w_h, h0, c0, seq_lengths, cache, has_b, has_b_h, dy, dh_n, dc_n);
        return backward_t<double>(p, x, w_x, w_h, h0, c0, seq_lengths, cache, has_b, has_b_h, dy, dh_n, dc_n);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("h0"),
      py::arg("c0"), py::arg("seq_lengths"), py::arg("reverse"), py::arg("batch_first"), py::arg("cache"),
      py::arg("has_b"), py::arg("has_b_h"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
      "Checked backward pass; consumes the cache buffer; returns (dx, dh0, dc0, dw_x, dw_h, db, db_h).");
  m.def(
      "cache_size",
      [](const std::string& cell, bool reset_after, int64_t T, int64_t B, int64_t I, int64_t H) {
        return lstmcore::cache_size({lstmcore::parse_cell(cell), reset_after}, {T, B, I, H});
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"));
}

}  // namespace lstmcore_py
