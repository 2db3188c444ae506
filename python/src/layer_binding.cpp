// Bindings of one recurrent layer: lstmcore::forward / backward, or with a variant
// description (a dict of cell options, python/lstmcore/_variants.py) variant_forward /
// variant_backward. Shapes in, pointers down, GIL released, NumPy results out. Defaults,
// dtype conversion and the cache object live in Python (python/lstmcore/_functional.py);
// this file only checks and forwards. bf16: CellSpec::compute = bfloat16 (float32 arrays).
#include <lstmcore/lstmcore.h>

#include <optional>
#include <vector>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

using lstmcore::Cell;
using std::int64_t;

namespace {

// Sizes of one call, with the spellings used in messages. Plain cell: T, B, I from x, H
// from w_h (H, G·H). Variant: H from w_x (I, G·H); R = P (from w_proj) or H is the width of h.
// gate_major (lstmcore::WeightLayout): the weights are the transposes, w_x (G·H, I),
// w_h (G·H, R), w_proj (P, H), and so are their gradients.
struct Problem {
  lstmcore::CellSpec spec;
  lstmcore::Dims dims;
  lstmcore::SequenceOptions options;
  std::optional<lstmcore::VariantOptions> variant;  // set: the cell variants' general path
  int64_t G = 0, R = 0;
  std::string gh;  // "4H", "3H" or "H"
  bool gate_major = false;

  lstmcore::WeightLayout layout() const {
    return gate_major ? lstmcore::WeightLayout::gate_major : lstmcore::WeightLayout::input_major;
  }
  // A weight's shape: input-major (rows, cols), or its transpose.
  Shape weight(int64_t rows, const std::string& r, int64_t cols, const std::string& c) const {
    if (!gate_major) return {{rows, cols}, "(" + r + ", " + c + ")"};
    return {{cols, rows}, "(" + c + ", " + r + ")", " for weight_layout='gate_major'"};
  }

  Shape rows(int64_t features, const std::string& letter) const {
    const auto& d = dims;
    if (options.batch_first) return {{d.batch, d.steps, features}, "(B, T, " + letter + ")"};
    return {{d.steps, d.batch, features}, "(T, B, " + letter + ")"};
  }
  std::string r_letter() const { return variant && variant->proj > 0 ? "P" : "H"; }
  Shape h_state() const { return {{dims.batch, R}, "(B, " + r_letter() + ")"}; }
  Shape c_state() const { return {{dims.batch, dims.hidden}, "(B, H)"}; }
  Shape w_x() const { return weight(dims.input, "I", G * dims.hidden, gh); }
  Shape w_h() const { return weight(R, r_letter(), G * dims.hidden, gh); }
  Shape bias() const { return {{G * dims.hidden}, "(" + gh + ",)"}; }
  Shape units() const { return {{dims.hidden}, "(H,)"}; }
  Shape peepholes() const { return {{3, dims.hidden}, "(3, H)"}; }
  Shape w_proj() const { return weight(dims.hidden, "H", R, "P"); }
  bool lstm() const { return spec.cell == Cell::lstm; }
  int64_t cache_size() const {
    return static_cast<int64_t>(variant ? lstmcore::variant_cache_size(spec, *variant, dims)
                                        : lstmcore::cache_size(spec, dims));
  }
};

Problem make_problem(const std::string& cell, bool reset_after, const py::array& x, const py::array& w_x,
                     const py::array& w_h, bool reverse, bool batch_first, py::handle variant, py::handle w_proj,
                     bool gate_major, bool bf16) {
  Problem p;
  p.gate_major = gate_major;
  const int hdim = gate_major ? 1 : 0;  // the axis of w_h that is H (plain cell)
  const std::string note = gate_major ? " for weight_layout='gate_major'" : "";
  p.spec = {lstmcore::parse_cell(cell), reset_after,
            bf16 ? lstmcore::Compute::bfloat16 : lstmcore::Compute::native};
  p.G = lstmcore::gate_count(p.spec.cell);
  p.gh = p.G == 1 ? "H" : std::to_string(p.G) + "H";
  if (x.ndim() != 3)
    throw py::value_error(std::string("x: expected 3 dimensions ") + (batch_first ? "(B, T, I)" : "(T, B, I)") +
                          ", got shape " + shape_str(shape_of(x)));
  if (variant.is_none()) {
    if (w_h.ndim() != 2)
      throw py::value_error("w_h: expected 2 dimensions " + std::string(gate_major ? "(" + p.gh + ", H)" : "(H, " + p.gh + ")") +
                            note + ", got shape " + shape_str(shape_of(w_h)));
    p.dims.hidden = w_h.shape(hdim);
  } else {
    const int gdim = 1 - hdim;  // the axis of w_x that is G·H
    if (w_x.ndim() != 2 || w_x.shape(gdim) % p.G != 0 || w_x.shape(gdim) == 0)
      throw py::value_error("w_x: expected shape " + std::string(gate_major ? "(" + p.gh + ", I)" : "(I, " + p.gh + ")") +
                            " with H >= 1" + note + ", got " + shape_str(shape_of(w_x)));
    p.dims.hidden = w_x.shape(gdim) / p.G;
  }
  p.dims.steps = batch_first ? x.shape(1) : x.shape(0);
  p.dims.batch = batch_first ? x.shape(0) : x.shape(1);
  p.dims.input = x.shape(2);
  for (auto [name, v] : {std::pair<const char*, int64_t>{"T", p.dims.steps}, {"B", p.dims.batch}, {"I", p.dims.input}})
    if (v < 1) throw py::value_error(std::string("x: ") + name + " must be >= 1, got shape " + shape_str(shape_of(x)));
  if (p.dims.hidden < 1) throw py::value_error("w_h: H must be >= 1, got shape " + shape_str(shape_of(w_h)));
  p.options.reverse = reverse;
  p.options.batch_first = batch_first;
  p.R = p.dims.hidden;
  if (variant.is_none()) {
    lstmcore::cache_size(p.spec, p.dims);  // size overflow checks
    return p;
  }
  lstmcore::VariantOptions& o = p.variant.emplace(lstmcore::variant_defaults(p.spec.cell));
  read_variant_options(py::reinterpret_borrow<py::dict>(variant), o);
  if (!w_proj.is_none()) {
    auto wp = py::reinterpret_borrow<py::array>(w_proj);
    const int pdim = 1 - hdim;  // the axis of w_proj that is P
    if (wp.ndim() != 2 || wp.shape(pdim) < 1)
      throw py::value_error(gate_major ? "w_proj: expected shape (P, H) = (P, " + std::to_string(p.dims.hidden) +
                                             ") with P >= 1" + note + ", got " + shape_str(shape_of(wp))
                                       : "w_proj: expected shape (H, P) = (" + std::to_string(p.dims.hidden) +
                                             ", P) with P >= 1, got " + shape_str(shape_of(wp)));
    o.proj = wp.shape(pdim);
    p.R = o.proj;
  }
  lstmcore::variant_cache_size(p.spec, o, p.dims);  // option and size checks
  return p;
}

template <typename T>
lstmcore::VariantParams<T> params_of(const Problem& p, py::handle peepholes, py::handle w_proj,
                                     py::handle layer_norm) {
  lstmcore::VariantParams<T> v;
  v.peepholes = optional_input<T>(peepholes, "peepholes", p.peepholes());
  v.w_proj = optional_input<T>(w_proj, "w_proj", p.w_proj());
  if (!layer_norm.is_none()) {
    auto ln = py::reinterpret_borrow<py::tuple>(layer_norm);
    const char* names[] = {"layer_norm[0] (gain_x)", "layer_norm[1] (bias_x)", "layer_norm[2] (gain_h)",
                           "layer_norm[3] (bias_h)", "layer_norm[4] (gain_c)", "layer_norm[5] (bias_c)"};
    const T** slots[] = {&v.ln_gain_x, &v.ln_bias_x, &v.ln_gain_h, &v.ln_bias_h, &v.ln_gain_c, &v.ln_bias_c};
    for (int k = 0; k < 6; ++k) *slots[k] = checked<T>(ln[k], names[k], k < 4 ? p.bias() : p.units()).data();
  }
  return v;
}

// A variant's parameters, as given.
struct Params {
  py::handle peepholes, w_proj, layer_norm;
};

template <typename T>
py::tuple forward_t(const Problem& p, const py::array& x, const py::array& w_x, const py::array& w_h, py::handle b,
                    py::handle b_h, py::handle h0, py::handle c0, py::handle seq_lengths, bool training,
                    py::handle out, const Params& params) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(seq_lengths, p.dims.batch);
  lstmcore::VariantParams<T> v;
  if (p.variant) v = params_of<T>(p, params.peepholes, params.w_proj, params.layer_norm);
  lstmcore::ForwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.w_x = checked<T>(w_x, "w_x", p.w_x()).data();
  a.w_h = checked<T>(w_h, "w_h", p.w_h()).data();
  a.b = optional_input<T>(b, "b", p.bias());
  a.b_h = optional_input<T>(b_h, "b_h", p.bias());
  a.h0 = optional_input<T>(h0, "h0", p.h_state());
  require_no_state(p.spec.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.c_state());

  const Shape y_shape = p.rows(p.R, p.r_letter());
  py::array_t<T> y = out.is_none() ? new_array<T>(y_shape.dims) : checked<T>(out, "out", y_shape, true);
  py::array_t<T> h_n = new_array<T>(p.h_state().dims);
  std::optional<py::array_t<T>> c_n, cache;
  if (p.lstm()) c_n = new_array<T>(p.c_state().dims);
  if (training) cache = new_array<T>({p.cache_size()});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = c_n ? c_n->mutable_data() : nullptr;
  a.cache = cache ? cache->mutable_data() : nullptr;
  a.weight_layout = p.layout();
  {
    py::gil_scoped_release unlocked;
    if (p.variant)
      lstmcore::variant_forward<T>(p.spec, *p.variant, p.dims, options, a, v);
    else
      lstmcore::forward<T>(p.spec, p.dims, options, a);
  }
  return py::make_tuple(y, h_n, optional_result(c_n), optional_result(cache));
}

template <typename T>
py::tuple backward_t(const Problem& p, const py::array& x, const py::array& w_x, const py::array& w_h,
                     py::handle h0, py::handle c0, py::handle seq_lengths, const py::array& cache, bool has_b,
                     bool has_b_h, py::handle dy, py::handle dh_n, py::handle dc_n, const Params& params) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(seq_lengths, p.dims.batch);
  lstmcore::BackwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.w_x = checked<T>(w_x, "w_x", p.w_x()).data();
  a.w_h = checked<T>(w_h, "w_h", p.w_h()).data();
  a.h0 = optional_input<T>(h0, "h0", p.h_state());
  require_no_state(p.spec.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.c_state());
  a.cache = checked<T>(cache, "cache", {{p.cache_size()}, "(cache_size,)"}, true).mutable_data();
  a.dy = optional_input<T>(dy, "dy", p.rows(p.R, p.r_letter()));
  a.dh_n = optional_input<T>(dh_n, "dh_n", p.h_state());
  require_no_state(p.spec.cell, dc_n, "dc_n");
  a.dc_n = optional_input<T>(dc_n, "dc_n", p.c_state());
  lstmcore::VariantParams<T> v;
  if (p.variant) v = params_of<T>(p, params.peepholes, params.w_proj, params.layer_norm);

  auto dx = new_array<T>(p.rows(p.dims.input, "I").dims);
  auto dh0 = new_array<T>(p.h_state().dims);
  auto dw_x = new_array<T>(p.w_x().dims);
  auto dw_h = new_array<T>(p.w_h().dims);
  std::optional<py::array_t<T>> dc0, db, db_h, dpeep, dproj;
  std::vector<py::array_t<T>> dln;
  if (p.lstm()) dc0 = new_array<T>(p.c_state().dims);
  if (has_b) db = new_array<T>(p.bias().dims);
  if (has_b_h) db_h = new_array<T>(p.bias().dims);
  lstmcore::VariantGrads<T> g;
  if (p.variant && p.variant->peepholes) {
    dpeep = new_array<T>(p.peepholes().dims);
    g.dpeepholes = dpeep->mutable_data();
  }
  if (p.variant && p.variant->proj > 0) {
    dproj = new_array<T>(p.w_proj().dims);
    g.dw_proj = dproj->mutable_data();
  }
  if (p.variant && p.variant->layer_norm) {
    T** slots[] = {&g.dln_gain_x, &g.dln_bias_x, &g.dln_gain_h, &g.dln_bias_h, &g.dln_gain_c, &g.dln_bias_c};
    for (int k = 0; k < 6; ++k) {
      dln.push_back(new_array<T>((k < 4 ? p.bias() : p.units()).dims));
      *slots[k] = dln.back().mutable_data();
    }
  }
  a.dx = dx.mutable_data();
  a.dh0 = dh0.mutable_data();
  a.dc0 = dc0 ? dc0->mutable_data() : nullptr;
  a.dw_x = dw_x.mutable_data();
  a.dw_h = dw_h.mutable_data();
  a.weight_layout = p.layout();
  a.db = db ? db->mutable_data() : nullptr;
  a.db_h = db_h ? db_h->mutable_data() : nullptr;
  {
    py::gil_scoped_release unlocked;
    if (p.variant)
      lstmcore::variant_backward<T>(p.spec, *p.variant, p.dims, options, a, v, g);
    else
      lstmcore::backward<T>(p.spec, p.dims, options, a);
  }
  if (!p.variant)
    return py::make_tuple(dx, dh0, optional_result(dc0), dw_x, dw_h, optional_result(db), optional_result(db_h));
  py::object ln_grads = py::none();
  if (!dln.empty()) ln_grads = py::make_tuple(dln[0], dln[1], dln[2], dln[3], dln[4], dln[5]);
  return py::make_tuple(dx, dh0, optional_result(dc0), dw_x, dw_h, optional_result(db), optional_result(db_h),
                        optional_result(dpeep), optional_result(dproj), ln_grads);
}

}  // namespace

void register_layer(py::module_& m) {
  m.def(
      "forward",
      [](const std::string& cell, bool reset_after, const py::array& x, const py::array& w_x, const py::array& w_h,
         py::object b, py::object b_h, py::object h0, py::object c0, py::object seq_lengths, bool reverse,
         bool batch_first, bool training, py::object out, py::object variant, py::object peepholes,
         py::object w_proj, py::object layer_norm, bool gate_major, bool bf16) {
        const Problem p =
            make_problem(cell, reset_after, x, w_x, w_h, reverse, batch_first, variant, w_proj, gate_major, bf16);
        const Params params{peepholes, w_proj, layer_norm};
        if (is_float32(x, "x"))
          return forward_t<float>(p, x, w_x, w_h, b, b_h, h0, c0, seq_lengths, training, out, params);
        return forward_t<double>(p, x, w_x, w_h, b, b_h, h0, c0, seq_lengths, training, out, params);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("b"),
      py::arg("b_h"), py::arg("h0"), py::arg("c0"), py::arg("seq_lengths"), py::arg("reverse"),
      py::arg("batch_first"), py::arg("training"), py::arg("out"), py::arg("variant") = py::none(),
      py::arg("peepholes") = py::none(), py::arg("w_proj") = py::none(), py::arg("layer_norm") = py::none(),
      py::arg("gate_major") = false, py::arg("bf16") = false,
      "Checked forward pass on C-contiguous arrays of one dtype; returns (y, h_n, c_n, cache_buffer). With "
      "variant (a dict of cell options) the cell variants' general path, with their parameters.");
  m.def(
      "backward",
      [](const std::string& cell, bool reset_after, const py::array& x, const py::array& w_x, const py::array& w_h,
         py::object h0, py::object c0, py::object seq_lengths, bool reverse, bool batch_first, const py::array& cache,
         bool has_b, bool has_b_h, py::object dy, py::object dh_n, py::object dc_n, py::object variant,
         py::object peepholes, py::object w_proj, py::object layer_norm, bool gate_major, bool bf16) {
        const Problem p =
            make_problem(cell, reset_after, x, w_x, w_h, reverse, batch_first, variant, w_proj, gate_major, bf16);
        const Params params{peepholes, w_proj, layer_norm};
        if (is_float32(x, "x"))
          return backward_t<float>(p, x, w_x, w_h, h0, c0, seq_lengths, cache, has_b, has_b_h, dy, dh_n, dc_n,
                                   params);
        return backward_t<double>(p, x, w_x, w_h, h0, c0, seq_lengths, cache, has_b, has_b_h, dy, dh_n, dc_n,
                                  params);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("x"), py::arg("w_x"), py::arg("w_h"), py::arg("h0"),
      py::arg("c0"), py::arg("seq_lengths"), py::arg("reverse"), py::arg("batch_first"), py::arg("cache"),
      py::arg("has_b"), py::arg("has_b_h"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
      py::arg("variant") = py::none(), py::arg("peepholes") = py::none(), py::arg("w_proj") = py::none(),
      py::arg("layer_norm") = py::none(), py::arg("gate_major") = false, py::arg("bf16") = false,
      "Checked backward pass; consumes the cache buffer; returns (dx, dh0, dc0, dw_x, dw_h, db, db_h), plus "
      "(dpeepholes, dw_proj, dlayer_norm) with variant.");
  m.def(
      "cache_size",
      [](const std::string& cell, bool reset_after, int64_t T, int64_t B, int64_t I, int64_t H) {
        return lstmcore::cache_size({lstmcore::parse_cell(cell), reset_after}, {T, B, I, H});
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"));
}

}  // namespace lstmcore_py
